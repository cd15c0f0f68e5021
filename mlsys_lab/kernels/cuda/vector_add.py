"""Vector add: the first CUDA kernel, and the shape of every host wrapper.

A kernel is a function that *every thread* runs. Threads are grouped in blocks, blocks in a grid;
each thread finds its element from its coordinates, ``cuda.grid(1) = blockIdx.x * blockDim.x +
threadIdx.x``. The grid is rounded up to whole blocks, so the last block has threads past the end of
the array: the ``if i < n`` guard is what keeps them from writing out of bounds.

Two versions:

* :func:`vector_add_kernel`: one thread per element, the grid as large as the data;
* :func:`vector_add_grid_stride`: a fixed-size grid whose threads step through the array by the
  total number of threads. Consecutive threads still touch consecutive elements (coalesced), and one
  launch configuration works for any size.

Both are memory-bound: 2 loads and 1 store (12 bytes) per floating-point add. On a GPU their speed
is the memory bandwidth.

What the simulator cannot show
------------------------------
Only that the indexing and the bounds check are right. It runs one Python thread per CUDA thread,
thousands of times slower than a GPU, with no memory transactions: it cannot show the bandwidth,
or that consecutive threads reading consecutive elements (coalescing) is what makes the kernel fast.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import _host


@cuda.jit
def vector_add_kernel(a, b, out):
    """``out[i] = a[i] + b[i]``, one thread per element (1-D float32 arrays of equal size)."""
    i = cuda.grid(1)
    if i < out.size:  # the last block overhangs the array
        out[i] = a[i] + b[i]


@cuda.jit
def vector_add_grid_stride(a, b, out):
    """``out[i] = a[i] + b[i]`` with a grid-stride loop: any grid size covers any array size."""
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, out.size, stride):
        out[i] = a[i] + b[i]


def vector_add(
    a: np.ndarray,
    b: np.ndarray,
    *,
    threads_per_block: int = 256,
    grid_stride: bool = False,
    blocks: int | None = None,
) -> np.ndarray:
    """Add two float32 arrays of the same shape on the device and return the sum as a new array.

    ``grid_stride=False`` launches one thread per element; ``True`` launches ``blocks`` blocks
    (default: enough for one element per thread, capped at 1024) of the grid-stride kernel. No
    broadcasting: the shapes must be equal. Raises ``TypeError`` for non-float32 input and
    ``ValueError`` for different shapes or a bad launch configuration.
    """
    a = _host.check_array(a, "a")
    b = _host.check_array(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"vector_add: shapes {a.shape} and {b.shape} differ (no broadcasting)")
    threads = _host.check_threads(threads_per_block)
    _host.require_launchable()
    out = np.empty_like(a)
    n = a.size
    if n == 0:  # a grid of zero blocks is not a valid launch
        return out
    if grid_stride:
        nblocks = min(_host.ceil_div(n, threads), 1024) if blocks is None else int(blocks)
        if nblocks < 1:
            raise ValueError(f"blocks must be at least 1, got {blocks}")
        kernel = vector_add_grid_stride
    else:
        nblocks = _host.ceil_div(n, threads)
        kernel = vector_add_kernel
    d_a = cuda.to_device(a.reshape(-1))
    d_b = cuda.to_device(b.reshape(-1))
    d_out = cuda.device_array(n, dtype=np.float32)
    kernel[nblocks, threads](d_a, d_b, d_out)
    return d_out.copy_to_host().reshape(a.shape)


__all__ = ["vector_add", "vector_add_grid_stride", "vector_add_kernel"]
