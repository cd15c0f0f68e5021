"""Softmax along the rows of a matrix: one block per row, online (single-pass) statistics.

``softmax(x)[j] = exp(x[j] - max(x)) / sum_i exp(x[i] - max(x))``. Subtracting the maximum keeps
``exp`` from overflowing; it needs the maximum *before* the sum, which naively costs a pass for the
maximum, a pass for the sum and a pass to write the output. The *online* formulation (Milakov &
Gimelshein, 2018) carries a running pair ``(m, d)``: the maximum so far and the sum of
``exp(x - m)`` so far. A new element ``v`` larger than ``m`` rescales the sum: ``d <- d * exp(m - v)
+ 1, m <- v``. Two pairs merge the same way (:func:`combine`), so the pairs can be reduced in a tree
exactly like a sum. The kernel reads each row twice (statistics, then output) instead of three times.
This is the same algorithm as the fused softmax of the CPU kernels (Lab 4), laid out on a GPU.

:func:`softmax_rows` gives each row one block:

1. each thread walks the row with a block-stride loop (thread ``t`` takes elements ``t, t + B, ...``,
   so a warp reads 32 consecutive elements: coalesced) and keeps its own pair;
2. each warp merges its 32 pairs with shuffles, lane 0 of each warp puts the warp's pair in shared
   memory, and the first warp merges those (the same shape as ``block_sum`` in
   :mod:`mlsys_lab.kernels.cuda.reduce`);
3. the row's pair goes through shared memory to every thread, which writes its elements of the output.

One block per row suits rows up to a few thousand elements (the row is read from global memory
twice; it would fit in shared memory for a single read, at the cost of a size limit), and a matrix
with at least as many rows as the GPU has multiprocessors.

What the simulator cannot show
------------------------------
Correctness only. The simulator cannot show that the kernel runs at memory bandwidth on a GPU (its
speed measure), that the block-stride loop is coalesced, or that a missing ``syncthreads`` before the
row's statistics are read would be a race.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from . import _host

FULL_MASK = 0xFFFFFFFF
WARP_SIZE = 32
#: Largest block :func:`softmax` launches; longer rows are walked with the block-stride loop.
MAX_THREADS = 256


@cuda.jit(device=True)
def combine(m1, d1, m2, d2):
    """Merge two online-softmax summaries ``(max, sum of exp(x - max))`` into one."""
    m = max(m1, m2)
    if m == -math.inf:  # both summaries are empty (a thread with no elements)
        return m, d1 + d2
    return m, d1 * math.exp(m1 - m) + d2 * math.exp(m2 - m)


@cuda.jit(device=True)
def warp_combine(m, d):
    """Merge the summaries of the 32 lanes of the calling warp; lane 0 gets the result."""
    offset = WARP_SIZE // 2
    while offset > 0:
        m_other = cuda.shfl_down_sync(FULL_MASK, m, offset)
        d_other = cuda.shfl_down_sync(FULL_MASK, d, offset)
        m, d = combine(m, d, m_other, d_other)
        offset //= 2
    return m, d


@cuda.jit
def softmax_rows(x, out):
    """``out[r, :] = softmax(x[r, :])`` for 2-D float32 arrays; launch one block per row.

    ``blockDim.x``: a multiple of 32, at most 1024.
    """
    warp_m = cuda.shared.array(WARP_SIZE, float32)
    warp_d = cuda.shared.array(WARP_SIZE, float32)
    row_stats = cuda.shared.array(2, float32)
    row = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    lane = tid % WARP_SIZE
    warp = tid // WARP_SIZE
    ncols = x.shape[1]

    # 1. This thread's summary of its elements, in one pass.
    m = float32(-math.inf)
    d = float32(0)
    for j in range(tid, ncols, cuda.blockDim.x):
        v = x[row, j]
        if v > m:
            d = d * math.exp(m - v) + float32(1)  # rescale the old sum to the new maximum
            m = v
        elif v != -math.inf:  # exp(-inf) adds nothing (and -inf - -inf would be nan)
            d += math.exp(v - m)

    # 2. Merge: within each warp by shuffles, then the warps' summaries in the first warp.
    m, d = warp_combine(m, d)
    if lane == 0:
        warp_m[warp] = m
        warp_d[warp] = d
    cuda.syncthreads()
    if warp == 0:
        nwarps = cuda.blockDim.x // WARP_SIZE
        m = warp_m[lane] if lane < nwarps else float32(-math.inf)
        d = warp_d[lane] if lane < nwarps else float32(0)
        m, d = warp_combine(m, d)
        if lane == 0:
            row_stats[0] = m
            row_stats[1] = d
    cuda.syncthreads()  # the row's summary is visible to every thread

    # 3. Normalise.
    m = row_stats[0]
    inv = float32(1) / row_stats[1]
    for j in range(tid, ncols, cuda.blockDim.x):
        out[row, j] = math.exp(x[row, j] - m) * inv


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax of a float32 array along ``axis`` (default: the last), computed on the device.

    The axis is moved last and the array viewed as rows; each row is one block of
    :func:`softmax_rows`. Returns a new float32 array of ``x``'s shape. Empty arrays come back empty.
    Raises ``TypeError`` for a non-float32 input or a non-integer axis and
    ``numpy.exceptions.AxisError`` for an axis out of range (including any axis of a 0-d array).
    """
    x = _host.check_array(x, "x")
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"softmax: axis must be an int, got {type(axis).__name__}")
    axis = np.lib.array_utils.normalize_axis_index(int(axis), x.ndim)
    _host.require_launchable()
    moved = np.moveaxis(x, axis, -1)
    if x.size == 0:
        return np.empty_like(x)
    ncols = moved.shape[-1]
    rows = np.ascontiguousarray(moved).reshape(-1, ncols)
    d_out = cuda.device_array(rows.shape, dtype=np.float32)
    threads = _host.row_block_size(ncols, MAX_THREADS)
    softmax_rows[rows.shape[0], threads](cuda.to_device(rows), d_out)
    return np.ascontiguousarray(np.moveaxis(d_out.copy_to_host().reshape(moved.shape), -1, axis))


__all__ = ["MAX_THREADS", "combine", "softmax", "softmax_rows", "warp_combine"]
