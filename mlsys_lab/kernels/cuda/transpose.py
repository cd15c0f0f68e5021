"""Matrix transpose: coalescing, shared memory, and bank conflicts in one small kernel.

A transpose does no arithmetic; its speed is entirely how it uses memory, which makes it the
clearest example of the two rules of GPU memory:

* **Coalescing** (global memory): the 32 threads of a warp should access 32 consecutive addresses,
  which the hardware serves as a few wide transactions. :func:`transpose_naive` reads a row of ``x``
  (consecutive: coalesced) but writes a column of ``out`` (addresses ``m`` floats apart: 32 separate
  transactions for one warp's store).
* **Bank conflicts** (shared memory): shared memory is 32 banks, 4 bytes wide, address ``i`` in bank
  ``i % 32``. A warp's 32 accesses proceed in parallel only if they fall in different banks (or hit
  the very same word). :func:`transpose_tiled` stages a ``32 x 32`` tile in shared memory so that both
  the global read and the global write are coalesced; the transpose happens inside the tile, where a
  warp reads a *column*: 32 addresses 32 floats apart, all in the same bank, so the read is split in
  32 (a 32-way conflict).
* :func:`transpose_padded` declares the tile ``32 x 33``: the unused extra column shifts each row by
  one bank, the column's 32 elements land in 32 different banks, and the conflict disappears.

The blocks are ``TILE_DIM x BLOCK_ROWS`` = 32 x 8 threads, each copying ``TILE_DIM / BLOCK_ROWS`` = 4
elements of its tile (fewer, busier threads; after M. Harris, "An Efficient Matrix Transpose in CUDA
C/C++").

What the simulator cannot show
------------------------------
All three kernels are equally correct and equally slow on the simulator: it has no memory
transactions and no banks, so neither coalescing nor the padding makes any difference there. The
shared memory each kernel declares (0, 4096 and 4224 bytes) is visible in the PTX report
(:mod:`mlsys_lab.kernels.cuda.ptx`); the speed-up is only visible on a GPU.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32

from . import _host

#: Side of a tile: one warp's width, so a warp reads or writes one tile row.
TILE_DIM = 32
#: Thread rows per block; each thread handles TILE_DIM // BLOCK_ROWS elements.
BLOCK_ROWS = 8
#: Row length of the padded tile. A module constant, because the shape of a shared array must be
#: known when the kernel is compiled (an expression like ``TILE_DIM + 1`` in the kernel is not).
PADDED_DIM = TILE_DIM + 1


@cuda.jit
def transpose_naive(x, out):
    """``out = x.T`` straight through global memory: coalesced reads, strided writes."""
    m, n = x.shape
    col = cuda.blockIdx.x * TILE_DIM + cuda.threadIdx.x
    row0 = cuda.blockIdx.y * TILE_DIM
    for r in range(cuda.threadIdx.y, TILE_DIM, BLOCK_ROWS):
        row = row0 + r
        if row < m and col < n:
            out[col, row] = x[row, col]  # consecutive threads: consecutive cols of x, rows of out


@cuda.jit
def transpose_tiled(x, out):
    """``out = x.T`` through a ``TILE_DIM x TILE_DIM`` shared tile: coalesced, but bank conflicts."""
    tile = cuda.shared.array((TILE_DIM, TILE_DIM), float32)
    m, n = x.shape
    col = cuda.blockIdx.x * TILE_DIM + cuda.threadIdx.x
    row0 = cuda.blockIdx.y * TILE_DIM
    for r in range(cuda.threadIdx.y, TILE_DIM, BLOCK_ROWS):
        if row0 + r < m and col < n:
            tile[r, cuda.threadIdx.x] = x[row0 + r, col]  # coalesced read, a tile row
    cuda.syncthreads()  # the whole tile is in before anyone reads it transposed
    # Tile (by, bx) of x becomes tile (bx, by) of out.
    out_col = cuda.blockIdx.y * TILE_DIM + cuda.threadIdx.x
    out_row0 = cuda.blockIdx.x * TILE_DIM
    for r in range(cuda.threadIdx.y, TILE_DIM, BLOCK_ROWS):
        if out_row0 + r < n and out_col < m:
            # A tile column: addresses TILE_DIM floats apart, all in one bank (32-way conflict).
            out[out_row0 + r, out_col] = tile[cuda.threadIdx.x, r]  # coalesced write


@cuda.jit
def transpose_padded(x, out):
    """As :func:`transpose_tiled`, with the tile padded to ``TILE_DIM x (TILE_DIM + 1)``: no conflicts."""
    tile = cuda.shared.array((TILE_DIM, PADDED_DIM), float32)  # + 1: rows start in different banks
    m, n = x.shape
    col = cuda.blockIdx.x * TILE_DIM + cuda.threadIdx.x
    row0 = cuda.blockIdx.y * TILE_DIM
    for r in range(cuda.threadIdx.y, TILE_DIM, BLOCK_ROWS):
        if row0 + r < m and col < n:
            tile[r, cuda.threadIdx.x] = x[row0 + r, col]
    cuda.syncthreads()
    out_col = cuda.blockIdx.y * TILE_DIM + cuda.threadIdx.x
    out_row0 = cuda.blockIdx.x * TILE_DIM
    for r in range(cuda.threadIdx.y, TILE_DIM, BLOCK_ROWS):
        if out_row0 + r < n and out_col < m:
            out[out_row0 + r, out_col] = tile[cuda.threadIdx.x, r]  # stride 33: 32 different banks


#: The kernels by name, in the order of the lesson.
VARIANTS = {"naive": transpose_naive, "tiled": transpose_tiled, "padded": transpose_padded}


def transpose(x: np.ndarray, variant: str = "padded") -> np.ndarray:
    """Transpose a 2-D float32 array on the device with the named kernel; returns ``x.T`` (contiguous).

    Raises ``TypeError`` for non-float32 input and ``ValueError`` for a non-2-D array or an unknown
    variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown transpose variant {variant!r}; choose one of {list(VARIANTS)}")
    x = _host.check_array(x, "x")
    if x.ndim != 2:
        raise ValueError(f"transpose takes a 2-D array, got shape {x.shape}")
    _host.require_launchable()
    m, n = x.shape
    if x.size == 0:
        return np.empty((n, m), dtype=np.float32)
    d_out = cuda.device_array((n, m), dtype=np.float32)
    grid = (_host.ceil_div(n, TILE_DIM), _host.ceil_div(m, TILE_DIM))
    VARIANTS[variant][grid, (TILE_DIM, BLOCK_ROWS)](cuda.to_device(x), d_out)
    return d_out.copy_to_host()


__all__ = [
    "BLOCK_ROWS",
    "PADDED_DIM",
    "TILE_DIM",
    "VARIANTS",
    "transpose",
    "transpose_naive",
    "transpose_padded",
    "transpose_tiled",
]
