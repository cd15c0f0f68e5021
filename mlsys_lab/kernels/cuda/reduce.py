"""Sum reductions: the classic ladder of CUDA reduction kernels, and ``reduce_sum`` over any axes.

A reduction is hard to parallelise because every input feeds one output. The standard answer is a
tree: each block loads a slice of the input into shared memory and halves the number of active
threads at every step until one thread holds the block's partial sum. One launch turns ``n`` inputs
into one partial sum per block; launching again on the partials finishes the job.

The ladder
----------
Every step computes the same sums; what changes is *which threads do the work* and *which addresses
they touch*. Each rung fixes the bottleneck of the one before (after M. Harris, "Optimizing Parallel
Reduction in CUDA", and Cheng, Grossman & McKercher, "Professional CUDA C Programming", ch. 3):

1. :func:`reduce_neighbored` - neighbour pairs: at stride ``s`` thread ``t`` adds ``t + s`` if ``t``
   is a multiple of ``2s``. The active threads are scattered across every warp, so every warp keeps
   running (and diverging) until the last step, with most of its lanes idle.
2. :func:`reduce_less_divergence` - the same pairs, but thread ``t`` handles pair ``2 s t``: the active
   threads are now the *first* ones, so whole warps finish early and retire. The cost: the shared
   memory addresses ``2 s t`` are strided, so threads of one warp hit the same bank (bank conflicts).
3. :func:`reduce_interleaved` - interleaved pairs, also called sequential addressing: the stride starts
   at half the block and halves; thread ``t`` adds ``t + s``. Active threads are contiguous *and* so
   are their addresses: no divergence within a warp until fewer than 32 threads remain, and no bank
   conflicts.
4. :func:`reduce_unrolled` - half the threads of step 3 sat idle from the first step on. Here each
   thread first adds ``UNROLL`` elements while loading (a strided, still coalesced, loop), so a block
   covers ``UNROLL`` times more data and there are ``UNROLL`` times fewer blocks and partial sums.
5. :func:`reduce_warp` - once 32 or fewer values remain they all live in one warp, and a warp can
   exchange registers directly with shuffles (``cuda.shfl_down_sync``): no shared memory and no
   block-wide barrier. Each warp sums its own values with shuffles, one value per warp goes through
   shared memory, and the first warp sums those: one ``syncthreads`` instead of ``log2(threads)``.

(Older texts "unroll the last warp" by dropping the barriers and marking shared memory ``volatile``,
relying on the 32 threads of a warp running in lock-step. Since Volta (2017) warps are no longer
guaranteed to, and that code is a race; the shuffles with an explicit mask are the supported way.)

What the simulator cannot show
------------------------------
On the simulator every rung gives the same answer at the same (slow) speed: it has no warps that run
in lock-step, no divergence, no banks. Why each rung is faster is something only a GPU, or the
compiler's resource report (:mod:`mlsys_lab.kernels.cuda.ptx`), can show. A missing
``cuda.syncthreads()`` may also pass here and fail on a GPU.

Accuracy
--------
Sums are accumulated in float32, but in a tree, so the rounding error grows like ``log n`` rather than
``n`` for a left-to-right loop; the results agree with NumPy's (pairwise) float32 sum to a few ulps
of the sum of absolute values.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32

from . import _host

#: Largest block for the shared-memory rungs: the size of their static shared array.
MAX_BLOCK = 256
#: Elements each thread adds while loading, in the unrolled and warp rungs.
UNROLL = 4
#: All 32 lanes of a warp take part in the shuffle.
FULL_MASK = 0xFFFFFFFF
WARP_SIZE = 32


@cuda.jit
def reduce_neighbored(x, partial):
    """Rung 1: neighbour pairs. ``partial[block]`` = sum of the block's ``blockDim.x`` elements of ``x``.

    ``blockDim.x`` must be a power of two, at most :data:`MAX_BLOCK`.
    """
    sdata = cuda.shared.array(MAX_BLOCK, float32)
    tid = cuda.threadIdx.x
    i = cuda.blockIdx.x * cuda.blockDim.x + tid
    sdata[tid] = x[i] if i < x.size else float32(0)  # pad the last block with zeros
    cuda.syncthreads()
    stride = 1
    while stride < cuda.blockDim.x:
        if tid % (2 * stride) == 0:  # active threads are spread over every warp: divergence
            sdata[tid] += sdata[tid + stride]
        cuda.syncthreads()  # everyone's step-s sums are written before step 2s reads them
        stride *= 2
    if tid == 0:
        partial[cuda.blockIdx.x] = sdata[0]


@cuda.jit
def reduce_less_divergence(x, partial):
    """Rung 2: the same pairs as rung 1, handled by the first threads of the block.

    Thread ``t`` adds pair ``(2 s t, 2 s t + s)``. ``blockDim.x``: a power of two <= :data:`MAX_BLOCK`.
    """
    sdata = cuda.shared.array(MAX_BLOCK, float32)
    tid = cuda.threadIdx.x
    i = cuda.blockIdx.x * cuda.blockDim.x + tid
    sdata[tid] = x[i] if i < x.size else float32(0)
    cuda.syncthreads()
    stride = 1
    while stride < cuda.blockDim.x:
        index = 2 * stride * tid  # contiguous threads, but strided addresses: bank conflicts
        if index < cuda.blockDim.x:
            sdata[index] += sdata[index + stride]
        cuda.syncthreads()
        stride *= 2
    if tid == 0:
        partial[cuda.blockIdx.x] = sdata[0]


@cuda.jit
def reduce_interleaved(x, partial):
    """Rung 3: interleaved pairs (sequential addressing): thread ``t`` adds ``t + s``, ``s`` halving.

    ``blockDim.x``: a power of two <= :data:`MAX_BLOCK`.
    """
    sdata = cuda.shared.array(MAX_BLOCK, float32)
    tid = cuda.threadIdx.x
    i = cuda.blockIdx.x * cuda.blockDim.x + tid
    sdata[tid] = x[i] if i < x.size else float32(0)
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if tid < stride:  # contiguous threads, contiguous addresses
            sdata[tid] += sdata[tid + stride]
        cuda.syncthreads()
        stride //= 2
    if tid == 0:
        partial[cuda.blockIdx.x] = sdata[0]


@cuda.jit
def reduce_unrolled(x, partial):
    """Rung 4: each thread adds :data:`UNROLL` elements while loading, then rung 3's tree.

    A block covers ``UNROLL * blockDim.x`` elements. ``blockDim.x``: a power of two <= :data:`MAX_BLOCK`.
    """
    sdata = cuda.shared.array(MAX_BLOCK, float32)
    tid = cuda.threadIdx.x
    base = cuda.blockIdx.x * cuda.blockDim.x * UNROLL + tid
    acc = float32(0)
    for u in range(UNROLL):  # a constant trip count: the compiler unrolls it
        j = base + u * cuda.blockDim.x  # consecutive threads read consecutive elements: coalesced
        if j < x.size:
            acc += x[j]
    sdata[tid] = acc
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if tid < stride:
            sdata[tid] += sdata[tid + stride]
        cuda.syncthreads()
        stride //= 2
    if tid == 0:
        partial[cuda.blockIdx.x] = sdata[0]


@cuda.jit(device=True)
def warp_sum(value):
    """Sum ``value`` over the 32 lanes of the calling warp; lane 0 gets the total.

    Every lane of the warp must call it (the mask names all 32). After the step with offset ``d``,
    lane ``i`` holds the sum of lanes ``i .. i + 2d - 1``.
    """
    offset = WARP_SIZE // 2
    while offset > 0:
        value += cuda.shfl_down_sync(FULL_MASK, value, offset)
        offset //= 2
    return value


@cuda.jit(device=True)
def block_sum(value, warp_sums):
    """Sum ``value`` over the whole block; thread 0 gets the total.

    ``warp_sums`` is a shared array of at least ``blockDim.x // 32`` floats. ``blockDim.x`` must be a
    multiple of 32 (whole warps) and at most 1024 (so the warp totals fit in one warp). Contains a
    ``syncthreads``, so every thread of the block must call it.
    """
    lane = cuda.threadIdx.x % WARP_SIZE
    warp = cuda.threadIdx.x // WARP_SIZE
    value = warp_sum(value)
    if lane == 0:
        warp_sums[warp] = value
    cuda.syncthreads()  # all warp totals are in shared memory
    if warp == 0:
        nwarps = cuda.blockDim.x // WARP_SIZE
        value = warp_sums[lane] if lane < nwarps else float32(0)
        value = warp_sum(value)
    return value


@cuda.jit
def reduce_warp(x, partial):
    """Rung 5: unrolled loads, then warp shuffles; one ``syncthreads`` per block.

    A block covers ``UNROLL * blockDim.x`` elements. ``blockDim.x``: a multiple of 32, at most 1024.
    """
    warp_sums = cuda.shared.array(WARP_SIZE, float32)
    tid = cuda.threadIdx.x
    base = cuda.blockIdx.x * cuda.blockDim.x * UNROLL + tid
    acc = float32(0)
    for u in range(UNROLL):
        j = base + u * cuda.blockDim.x
        if j < x.size:
            acc += x[j]
    acc = block_sum(acc, warp_sums)
    if tid == 0:
        partial[cuda.blockIdx.x] = acc


@cuda.jit
def reduce_rows(x, out):
    """``out[r] = sum(x[r, :])`` for a 2-D array: one block per row, block-stride loop along the row.

    ``blockDim.x``: a multiple of 32, at most 1024. Launch ``x.shape[0]`` blocks.
    """
    warp_sums = cuda.shared.array(WARP_SIZE, float32)
    row = cuda.blockIdx.x
    acc = float32(0)
    for j in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):  # coalesced along the row
        acc += x[row, j]
    acc = block_sum(acc, warp_sums)
    if cuda.threadIdx.x == 0:
        out[row] = acc


#: The ladder, in order: name -> (kernel, elements per thread, needs a whole number of warps).
LADDER = {
    "neighbored": (reduce_neighbored, 1, False),
    "less_divergence": (reduce_less_divergence, 1, False),
    "interleaved": (reduce_interleaved, 1, False),
    "unrolled": (reduce_unrolled, UNROLL, False),
    "warp": (reduce_warp, UNROLL, True),
}


def _ladder_config(variant: str, threads_per_block: int):
    if variant not in LADDER:
        raise ValueError(f"unknown reduction variant {variant!r}; choose one of {list(LADDER)}")
    kernel, per_thread, warps = LADDER[variant]
    if warps:
        threads = _host.check_threads(threads_per_block, low=WARP_SIZE, pow2=True)
    else:
        threads = _host.check_threads(threads_per_block, high=MAX_BLOCK, pow2=True)
    return kernel, per_thread, threads


def _launch_level(kernel, d_x, n: int, per_thread: int, threads: int):
    nblocks = _host.ceil_div(n, threads * per_thread)
    d_partial = cuda.device_array(nblocks, dtype=np.float32)
    kernel[nblocks, threads](d_x, d_partial)
    return d_partial, nblocks


def block_partials(x: np.ndarray, variant: str = "warp", *, threads_per_block: int = 256) -> np.ndarray:
    """One launch of a ladder kernel: the per-block partial sums of a 1-D float32 array.

    ``variant`` is a key of :data:`LADDER`. Returns an array of ``ceil(n / (threads * per_thread))``
    partial sums (empty for empty input). Their sum is the total.
    """
    x = _host.check_array(x, "x")
    if x.ndim != 1:
        raise ValueError(f"block_partials takes a 1-D array, got shape {x.shape}")
    kernel, per_thread, threads = _ladder_config(variant, threads_per_block)
    _host.require_launchable()
    if x.size == 0:
        return np.zeros(0, dtype=np.float32)
    d_partial, _ = _launch_level(kernel, cuda.to_device(x), x.size, per_thread, threads)
    return d_partial.copy_to_host()


def sum_1d(x: np.ndarray, variant: str = "warp", *, threads_per_block: int = 256) -> np.float32:
    """Sum a 1-D float32 array on the device with one rung of the ladder, relaunching on the partials.

    Everything stays on the device until the last launch leaves one number. Empty input sums to 0.
    """
    x = _host.check_array(x, "x")
    if x.ndim != 1:
        raise ValueError(f"sum_1d takes a 1-D array, got shape {x.shape}")
    kernel, per_thread, threads = _ladder_config(variant, threads_per_block)
    _host.require_launchable()
    if x.size == 0:
        return np.float32(0)
    d_x, n = cuda.to_device(x), x.size
    while n > 1:
        d_x, n = _launch_level(kernel, d_x, n, per_thread, threads)
    return np.float32(d_x.copy_to_host()[0])


def sum_rows(x: np.ndarray) -> np.ndarray:
    """Sum each row of a 2-D float32 array on the device (:func:`reduce_rows`); returns shape ``(m,)``."""
    x = _host.check_array(x, "x")
    if x.ndim != 2:
        raise ValueError(f"sum_rows takes a 2-D array, got shape {x.shape}")
    _host.require_launchable()
    m, k = x.shape
    if m == 0 or k == 0:
        return np.zeros(m, dtype=np.float32)
    d_out = cuda.device_array(m, dtype=np.float32)
    reduce_rows[m, _host.row_block_size(k)](cuda.to_device(x), d_out)
    return d_out.copy_to_host()


def reduce_sum(x: np.ndarray, axis=None, keepdims: bool = False):
    """Sum a float32 array over ``axis`` on the device, like ``np.sum(x, axis, keepdims=keepdims)``.

    ``axis`` is None (all axes), an int or a tuple of ints, negative allowed. The reduced axes are
    moved last and the array viewed as ``(kept, reduced)`` rows: a full reduction goes through the
    multi-block ladder (:func:`sum_1d`, warp rung), anything else through one block per row
    (:func:`sum_rows`). Returns a NumPy float32 scalar when every axis is reduced without keepdims
    (as NumPy does), else an array. Raises ``numpy.exceptions.AxisError`` for an axis out of range,
    ``ValueError`` for a repeated axis, ``TypeError`` for a non-float32 input.
    """
    x = _host.check_array(x, "x")
    axes = tuple(range(x.ndim)) if axis is None else np.lib.array_utils.normalize_axis_tuple(axis, x.ndim)
    kept = [d for d in range(x.ndim) if d not in axes]
    kept_shape = tuple(x.shape[d] for d in kept)
    out_shape = tuple(1 if d in axes else x.shape[d] for d in range(x.ndim)) if keepdims else kept_shape
    _host.require_launchable()
    if not kept:  # every axis (or a 0-d array): the multi-block ladder
        total = sum_1d(x.reshape(-1))
        return np.full(out_shape, total, dtype=np.float32) if keepdims else total
    if not axes:  # nothing to reduce
        return x.copy()
    # Reduced axes last, then one row per kept index (a copy unless they already are last).
    m = int(np.prod(kept_shape))
    k = int(np.prod([x.shape[d] for d in axes]))
    rows = np.ascontiguousarray(np.transpose(x, kept + list(axes))).reshape(m, k)
    return sum_rows(rows).reshape(out_shape)


__all__ = [
    "LADDER",
    "MAX_BLOCK",
    "UNROLL",
    "block_partials",
    "block_sum",
    "reduce_interleaved",
    "reduce_less_divergence",
    "reduce_neighbored",
    "reduce_rows",
    "reduce_sum",
    "reduce_unrolled",
    "reduce_warp",
    "sum_1d",
    "sum_rows",
    "warp_sum",
]
