"""Matrix multiply (GEMM): from one thread per output to tiles in shared memory.

``C = A @ B`` with ``A`` of shape ``(m, k)`` and ``B`` of shape ``(k, n)``. Both kernels give each
thread one element of ``C``, on a 2-D grid of 2-D blocks: ``threadIdx.x`` walks the columns, so
the 32 threads of a warp touch 32 consecutive columns of ``B`` and ``C`` (coalesced accesses).

* :func:`gemm_naive`: every thread reads a whole row of ``A`` and a whole column of ``B`` from global
  memory: ``2k`` loads for ``2k`` flops, and each element of ``A`` and ``B`` is loaded ``n`` or ``m``
  times over. Its speed is the memory bandwidth (or the cache's luck).
* :func:`gemm_tiled`: the block's ``TILE x TILE`` threads first copy a ``TILE x TILE`` tile of ``A``
  and one of ``B`` into shared memory (one element each), wait (``syncthreads``), then each thread
  does ``TILE`` multiply-adds out of shared memory, and the block moves to the next pair of tiles.
  Each element loaded from global memory is reused ``TILE`` times: ``TILE`` times fewer global loads,
  so the arithmetic intensity grows from 1/4 to ``TILE/4`` flops per byte.

Shapes need not be multiples of ``TILE``: threads outside the matrix load zeros into the tiles
(zeros add nothing to the dot products) and skip the final store. They must still take part in the
loads and in every ``syncthreads``; a thread that returned early would leave the barrier waiting for
it (on a GPU, undefined behaviour; the simulator happens to tolerate it).

What the simulator cannot show
------------------------------
On the simulator the tiled kernel is no faster than the naive one (shared memory is an ordinary
array, there is no memory hierarchy to save trips to), and a race between the tile loads and the
multiply-adds, for example from forgetting the second ``syncthreads``, can go unnoticed. The PTX
report (:mod:`mlsys_lab.kernels.cuda.ptx`) shows the real cost: the tiled kernel's
``2 * TILE * TILE * 4`` bytes of shared memory per block, and its registers.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32

from . import _host

#: Side of the square tiles (and of the thread block): 16 x 16 = 256 threads, 2 KiB of shared memory.
TILE = 16


@cuda.jit
def gemm_naive(a, b, c):
    """``c = a @ b`` for 2-D float32 arrays, one thread per element of ``c``, no reuse."""
    col, row = cuda.grid(2)  # x walks the columns: a warp reads consecutive elements of b and c
    m, k = a.shape
    n = b.shape[1]
    if row < m and col < n:
        acc = float32(0)
        for p in range(k):
            acc += a[row, p] * b[p, col]
        c[row, col] = acc


@cuda.jit
def gemm_tiled(a, b, c):
    """``c = a @ b`` for 2-D float32 arrays with ``TILE x TILE`` tiles staged in shared memory.

    Launch with blocks of ``(TILE, TILE)`` threads and a grid of ``(ceil(n/TILE), ceil(m/TILE))``.
    """
    a_tile = cuda.shared.array((TILE, TILE), float32)
    b_tile = cuda.shared.array((TILE, TILE), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    m, k = a.shape
    n = b.shape[1]
    acc = float32(0)
    for t in range((k + TILE - 1) // TILE):
        kk = t * TILE
        # Every thread loads one element of each tile; outside the matrices, a zero.
        a_tile[ty, tx] = a[row, kk + tx] if row < m and kk + tx < k else float32(0)
        b_tile[ty, tx] = b[kk + ty, col] if kk + ty < k and col < n else float32(0)
        cuda.syncthreads()  # both tiles are complete before anyone reads them
        for p in range(TILE):
            acc += a_tile[ty, p] * b_tile[p, tx]
        cuda.syncthreads()  # everyone is done with these tiles before they are overwritten
    if row < m and col < n:
        c[row, col] = acc


#: The kernels by name, for :func:`gemm` and the benchmarks.
VARIANTS = {"naive": gemm_naive, "tiled": gemm_tiled}


def _gemm_device(kernel, d_a, d_b, d_c, m: int, n: int) -> None:
    grid = (_host.ceil_div(n, TILE), _host.ceil_div(m, TILE))  # x: columns, y: rows
    kernel[grid, (TILE, TILE)](d_a, d_b, d_c)


def gemm(a: np.ndarray, b: np.ndarray, variant: str = "tiled") -> np.ndarray:
    """Multiply two 2-D float32 matrices on the device with the named kernel; returns ``a @ b``.

    Raises ``TypeError`` for non-float32 input, ``ValueError`` for non-2-D input or inner dimensions
    that differ, naming both shapes.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown gemm variant {variant!r}; choose one of {list(VARIANTS)}")
    a = _host.check_array(a, "a")
    b = _host.check_array(b, "b")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"gemm takes 2-D matrices, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"gemm: shapes {a.shape} and {b.shape} are not aligned: "
            f"a has {a.shape[1]} columns but b has {b.shape[0]} rows"
        )
    _host.require_launchable()
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0 or k == 0:  # nothing to launch; an empty sum is zero
        return np.zeros((m, n), dtype=np.float32)
    d_c = cuda.device_array((m, n), dtype=np.float32)
    _gemm_device(VARIANTS[variant], cuda.to_device(a), cuda.to_device(b), d_c, m, n)
    return d_c.copy_to_host()


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` on the device with the tiled kernel, with ``np.matmul``'s shape rules.

    Both operands are float32 arrays with at least one dimension. A 1-D ``a`` is a row vector and a
    1-D ``b`` a column vector (the added dimension is dropped from the result); arrays with more than
    two dimensions are stacks of matrices whose leading (batch) dimensions broadcast. Each matrix of
    the stack is one launch. Raises ``TypeError`` for a non-float32 operand and ``ValueError`` for a
    0-d operand, inner dimensions that differ, or batch dimensions that do not broadcast; the message
    names both shapes.
    """
    a = _host.check_array(a, "a")
    b = _host.check_array(b, "b")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul: operands must have at least 1 dimension, got shapes {a.shape} and {b.shape}"
        )
    a2 = a[np.newaxis, :] if a.ndim == 1 else a
    b2 = b[:, np.newaxis] if b.ndim == 1 else b
    m, k = a2.shape[-2:]
    k2, n = b2.shape[-2:]
    if k != k2:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} are not aligned: "
            f"a has {k} columns but b has {k2} rows"
        )
    try:
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul: the batch dimensions of shapes {a.shape} and {b.shape} do not broadcast"
        ) from None
    out_shape = batch + (m, n)
    _host.require_launchable()
    out = np.zeros(out_shape, dtype=np.float32)
    count = int(np.prod(batch))
    if m and n and k and count:
        a3 = np.ascontiguousarray(np.broadcast_to(a2, batch + (m, k))).reshape(count, m, k)
        b3 = np.ascontiguousarray(np.broadcast_to(b2, batch + (k, n))).reshape(count, k, n)
        d_a, d_b = cuda.to_device(a3), cuda.to_device(b3)
        d_c = cuda.device_array((count, m, n), dtype=np.float32)
        for i in range(count):  # each d_x[i] is a contiguous 2-D view on the device: no copy
            _gemm_device(gemm_tiled, d_a[i], d_b[i], d_c[i], m, n)
        out = d_c.copy_to_host().reshape(out_shape)
    # Drop the dimensions that 1-D operands were promoted with, as np.matmul does.
    if a.ndim == 1:
        out = out.reshape(out.shape[:-2] + out.shape[-1:])
    if b.ndim == 1:
        out = out.reshape(out.shape[:-1])
    return out[()] if out.ndim == 0 else out  # vector @ vector is a scalar, as in NumPy


__all__ = ["TILE", "VARIANTS", "gemm", "gemm_naive", "gemm_tiled", "matmul"]
