"""The GEMM ladder: ``C = A @ B`` in float32, one optimisation per step, each one measured (Lab 4).

Every step computes the same ``C[i, j] = sum_p A[i, p] * B[p, j]`` for ``A (m, k)``, ``B (k, n)``:

1. :func:`gemm_naive` -- the textbook ``i, j, p`` triple loop. The inner loop walks down a column of B,
   ``4 n`` bytes between consecutive loads: every load is a new cache line, and the running sum is one
   long dependency chain of adds.
2. :func:`gemm_reorder` -- the same loops in ``i, p, j`` order. The inner loop now streams along a row
   of B and a row of C, contiguous in memory, and its iterations are independent: the compiler vectorises
   it (16 floats per AVX-512 instruction).
3. :func:`gemm_blocked` -- tiles the loops so that a ``KB x NB`` tile of B stays in the L2 cache while
   every row of A uses it, and the row segment of C being updated stays in L1.
4. :func:`gemm_packed` -- what BLAS libraries do (Goto's algorithm): copy ("pack") a ``KC x NR`` panel of B
   and an ``MR x KC`` panel of A into contiguous buffers, in the order the kernel reads them, and compute
   ``MR x NR`` blocks of C in a *register-blocked micro-kernel*: the block stays in vector registers for a
   whole panel, so each loaded element of A is used ``NR`` times and each element of B ``MR`` times.
5. :func:`gemm_parallel` -- step 4 with the blocks of rows of C shared among threads (``prange``).

:func:`matmul` is the public entry point: any layout, float32 (the last step) or float64 (step 3).

Blocking parameters: ``MR x NR`` is 8 x 32 with AVX-512 (16 zmm accumulators) and 6 x 16 with AVX2 or
less; ``KC = 256`` (a ``KC x NR`` panel of B is 32 KiB, for L1), ``MC = 8 MR`` rows of A per block (64 KiB
packed, for L2). See ``_microkernels.py`` for the micro-kernels and ``_jit.py`` for the compiler settings.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
from numba import njit, prange

from . import _microkernels
from ._checks import F32_ONLY, FLOATS, check_array, check_contiguous, check_same_dtype
from ._jit import HAS_AVX512, slp_vectorize, threads_for

__all__ = [
    "matmul", "gemm_naive", "gemm_reorder", "gemm_blocked", "gemm_packed", "gemm_parallel",
    "GEMM_LADDER", "microkernel_tile", "render_microkernel",
]

#: Register tile of the micro-kernel (rows of A x columns of B held in registers).
MR, NR = (8, 32) if HAS_AVX512 else (6, 16)
#: Depth of a packed panel (k-extent) and rows of A per packed block.
KC = 256
MC = 8 * MR
#: Tiles of the cache-blocked step (3).
KB, NB = 256, 512

_MICRO_SIG = numba.void(numba.int64, numba.float32[:, ::1], numba.float32[:, ::1], numba.float32[:, ::1])
with slp_vectorize():
    # Compiled now (or loaded from the on-disk cache) because SLP has to be on while it compiles. Only
    # "contract" (fused multiply-add) is allowed: with reassociation the loop vectoriser would vectorise
    # the k loop as 256 reductions instead of leaving the rows of accumulators to SLP.
    _micro = njit(_MICRO_SIG, fastmath={"contract"}, cache=True)(getattr(_microkernels, f"micro_{MR}x{NR}"))


def microkernel_tile() -> tuple[int, int]:
    """``(MR, NR)``: the block of C that the micro-kernel keeps in registers on this CPU."""
    return MR, NR


def render_microkernel(mr: int, nr: int) -> str:
    """Source of ``micro_{mr}x{nr}(kc, ap, bp, ct)``: the register-blocked micro-kernel, fully unrolled.

    ``_microkernels.py`` holds the output for 8 x 32 and 6 x 16. Python has no vector types, so the
    ``mr x nr`` block of C is written as ``mr * nr`` scalar variables; with SLP vectorisation LLVM packs
    each row of them into ``nr / 16`` (AVX-512) vector registers.
    """
    name = f"micro_{mr}x{nr}"
    per, per_fma = 8, 4  # statements per source line
    lines = [
        f"def {name}(kc, ap, bp, ct):",
        f'    """ct[:{mr}, :{nr}] = ap[:kc].T @ bp[:kc] for packed panels ap (kc, {mr}) and bp (kc, {nr}).',
        "",
        f"    The {mr}x{nr} block of C lives in {mr * nr} scalar accumulators c<row>_<col>; SLP packs each row",
        "    of them into vector registers. Step p is one rank-1 update: load row p of bp once, then for each",
        '    row r broadcast ap[p, r] and multiply-add it into that row of accumulators."""',
        "    z = np.float32(0.0)",
    ]

    def chunks(items, size):
        return [items[i:i + size] for i in range(0, len(items), size)]

    for r in range(mr):
        for grp in chunks([f"c{r}_{j}" for j in range(nr)], per):
            lines.append("    " + " = ".join(grp) + " = z")
    lines.append("    for p in range(kc):")
    for grp in chunks([f"b{j} = bp[p, {j}]" for j in range(nr)], per_fma):
        lines.append("        " + "; ".join(grp))
    for r in range(mr):
        lines.append(f"        a = ap[p, {r}]")
        for grp in chunks([f"c{r}_{j} += a * b{j}" for j in range(nr)], per_fma):
            lines.append("        " + "; ".join(grp))
    for r in range(mr):
        for grp in chunks([f"ct[{r}, {j}] = c{r}_{j}" for j in range(nr)], per_fma):
            lines.append("    " + "; ".join(grp))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# Argument checks


def _check(a, b, fn, dtypes=F32_ONLY, contiguous=True):
    check_array(a, "a", fn, dtypes, ndim=2)
    check_array(b, "b", fn, dtypes, ndim=2)
    check_same_dtype(a, b, "a and b", fn)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"{fn}: shapes {a.shape} and {b.shape} are not aligned: "
                         f"a has {a.shape[1]} columns, b has {b.shape[0]} rows")
    if contiguous:
        check_contiguous(a, "a", fn)
        check_contiguous(b, "b", fn)


# ------------------------------------------------------------------------------------------------
# 1. naive


@njit(cache=True, nogil=True)
def _gemm_naive(a, b, c):
    m, k = a.shape
    n = b.shape[1]
    for i in range(m):
        for j in range(n):
            s = np.float32(0.0)
            for p in range(k):
                s += a[i, p] * b[p, j]
            c[i, j] = s


def gemm_naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Step 1: ``i, j, p`` triple loop, one dot product per element of C.

    ``a`` (m, k) and ``b`` (k, n): C-contiguous float32. Returns a new (m, n) float32 array. The inner
    loop reads B down a column (stride ``4 n`` bytes) and adds into one scalar, in order: no
    vectorisation, and a cache miss per load once B is larger than the caches.
    """
    _check(a, b, "gemm_naive")
    c = np.empty((a.shape[0], b.shape[1]), np.float32)
    _gemm_naive(a, b, c)
    return c


# ------------------------------------------------------------------------------------------------
# 2. loop reordering


@njit(fastmath={"contract"}, cache=True, nogil=True)
def _gemm_reorder(a, b, c):
    m, k = a.shape
    n = b.shape[1]
    for i in range(m):
        crow = c[i]
        for p in range(k):
            aip = a[i, p]
            brow = b[p]
            for j in range(n):
                crow[j] += aip * brow[j]


def gemm_reorder(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Step 2: the loops in ``i, p, j`` order: ``C[i, :] += A[i, p] * B[p, :]``.

    Same arguments and result as :func:`gemm_naive`. The inner loop runs along contiguous rows of B and C
    with independent iterations, so LLVM vectorises it; each row of C is re-read from cache ``k`` times.
    """
    _check(a, b, "gemm_reorder")
    c = np.zeros((a.shape[0], b.shape[1]), np.float32)
    _gemm_reorder(a, b, c)
    return c


# ------------------------------------------------------------------------------------------------
# 3. cache blocking


@njit(fastmath={"contract"}, cache=True, nogil=True)
def _gemm_blocked(a, b, c):
    m, k = a.shape
    n = b.shape[1]
    for j0 in range(0, n, NB):
        j1 = min(j0 + NB, n)
        for p0 in range(0, k, KB):
            p1 = min(p0 + KB, k)
            for i in range(m):
                crow = c[i, j0:j1]
                for p in range(p0, p1):
                    aip = a[i, p]
                    brow = b[p, j0:j1]
                    for j in range(j1 - j0):
                        crow[j] += aip * brow[j]


def gemm_blocked(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Step 3: :func:`gemm_reorder` on ``KB x NB`` tiles of B (256 x 512), so the tile is reused from L2.

    ``a``, ``b``: C-contiguous, both float32 or both float64 (this step is also :func:`matmul`'s float64
    path). For each tile of B every row of A streams past it; the row segment of C it updates (NB
    elements) stays in L1 across the tile's ``KB`` rows.
    """
    _check(a, b, "gemm_blocked", dtypes=FLOATS)
    c = np.zeros((a.shape[0], b.shape[1]), a.dtype)
    _gemm_blocked(a, b, c)
    return c


# ------------------------------------------------------------------------------------------------
# 4. packing + register blocking


@njit(cache=True, nogil=True)
def _pack_a(a, i0, mc, p0, kc, out):
    """Copy A[i0:i0+mc, p0:p0+kc] into panels out[q] (kc, MR) of MR rows; rows past mc are zeros."""
    for q in range((mc + MR - 1) // MR):
        panel = out[q]
        for p in range(kc):
            for r in range(MR):
                i = q * MR + r
                panel[p, r] = a[i0 + i, p0 + p] if i < mc else 0.0


@njit(cache=True, nogil=True)
def _pack_b_panel(b, p0, kc, j0, out):
    """Copy B[p0:p0+kc, j0:j0+NR] into out (kc, NR); columns past n are zeros."""
    w = min(NR, b.shape[1] - j0)
    for p in range(kc):
        src = b[p0 + p]
        for j in range(w):
            out[p, j] = src[j0 + j]
        for j in range(w, NR):
            out[p, j] = 0.0


@njit(cache=True, nogil=True)
def _pack_b(b, bp):
    """All of B as panels: bp[pb, q] = B[pb*KC : pb*KC+KC, q*NR : q*NR+NR] (zero padded)."""
    k = b.shape[0]
    for pb in range(bp.shape[0]):
        p0 = pb * KC
        for q in range(bp.shape[1]):
            _pack_b_panel(b, p0, min(KC, k - p0), q * NR, bp[pb, q])


@njit(parallel=True, cache=True, nogil=True)
def _pack_b_parallel(b, bp):
    k = b.shape[0]
    npan = bp.shape[1]
    for t in prange(bp.shape[0] * npan):
        pb = t // npan
        q = t - pb * npan
        p0 = pb * KC
        _pack_b_panel(b, p0, min(KC, k - p0), q * NR, bp[pb, q])


@njit(cache=True, nogil=True)
def _macro_kernel(ap, bpanels, c, i0, mc, kc, ct):
    """C[i0:i0+mc, :] += (packed A block) @ (packed B panels), one MR x NR micro-tile at a time."""
    m, n = c.shape
    for jq in range(bpanels.shape[0]):
        bpan = bpanels[jq]                      # (KC, NR): stays in L1 while the row panels stream by
        j0 = jq * NR
        nr = min(NR, n - j0)
        for iq in range((mc + MR - 1) // MR):
            _micro(kc, ap[iq], bpan, ct)
            ii = i0 + iq * MR
            for r in range(min(MR, i0 + mc - ii)):
                crow = c[ii + r, j0:j0 + nr]
                trow = ct[r]
                for j in range(nr):
                    crow[j] += trow[j]


@njit(cache=True, nogil=True)
def _row_block(a, bp, c, blk, ap, ct):
    """All of row block ``blk`` (MC rows of C): for each KC-deep slice, pack A's block, run the macro-kernel."""
    m, k = a.shape
    i0 = blk * MC
    mc = min(MC, m - i0)
    for pb in range(bp.shape[0]):
        p0 = pb * KC
        kc = min(KC, k - p0)
        _pack_a(a, i0, mc, p0, kc, ap)
        _macro_kernel(ap, bp[pb], c, i0, mc, kc, ct)


@njit(cache=True, nogil=True)
def _gemm_packed(a, bp, c):
    ap = np.empty((MC // MR, KC, MR), np.float32)
    ct = np.empty((MR, NR), np.float32)
    for blk in range((a.shape[0] + MC - 1) // MC):
        _row_block(a, bp, c, blk, ap, ct)


@njit(parallel=True, cache=True, nogil=True)
def _gemm_parallel(a, bp, c):
    for blk in prange((a.shape[0] + MC - 1) // MC):
        ap = np.empty((MC // MR, KC, MR), np.float32)   # per block: each thread packs its own A
        ct = np.empty((MR, NR), np.float32)
        _row_block(a, bp, c, blk, ap, ct)


_workspace = threading.local()


@njit(parallel=True, cache=True, nogil=True)
def _zero_parallel(c):
    for i in prange(c.shape[0]):
        row = c[i]
        for j in range(row.size):
            row[j] = 0.0


def _new_c(m, n, parallel):
    """The result, zeroed *before* the multiply: the first write to each fresh page costs a page fault,
    and faults taken in the middle of the threaded multiply slowed it down more than 2x on the course
    machine; zeroing first (each thread its own rows) takes the faults in a quick pass of their own."""
    c = np.empty((m, n), np.float32)
    if parallel:
        with threads_for(c.size):
            _zero_parallel(c)
    else:
        c.fill(0.0)
    return c


def _packed_b_buffer(k, n):
    """A buffer for packed B, reused between calls (per Python thread), as BLAS libraries keep theirs.

    Fresh memory costs a page fault per 4 KiB page on first touch -- for 1024 x 1024 that is about as
    long as packing itself -- so the buffer only grows, it is never freed.
    """
    shape = ((k + KC - 1) // KC, (n + NR - 1) // NR, KC, NR)
    size = shape[0] * shape[1] * KC * NR
    buf = getattr(_workspace, "b", None)
    if buf is None or buf.size < size:
        buf = _workspace.b = np.empty(size, np.float32)
    return buf[:size].reshape(shape)


def gemm_packed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Step 4: packing plus a register-blocked ``MR x NR`` micro-kernel (Goto/BLIS), one thread.

    ``a`` (m, k), ``b`` (k, n): C-contiguous float32; any m, n, k >= 0 (edges are zero-padded in the packed
    panels and cut off when C is written). B is packed once into ``KC x NR`` panels; for each block of ``MC``
    rows and each ``KC``-deep slice, the block of A is packed into ``KC x MR`` panels and every
    ``(panel of A, panel of B)`` pair goes through the micro-kernel, which keeps its ``MR x NR`` block of
    C in vector registers for all ``KC`` steps: ``MR + NR`` loads for ``MR * NR`` multiply-adds.
    """
    _check(a, b, "gemm_packed")
    m, k = a.shape
    n = b.shape[1]
    c = _new_c(m, n, parallel=False)
    if m and n and k:
        bp = _packed_b_buffer(k, n)
        _pack_b(b, bp)
        _gemm_packed(a, bp, c)
    return c


def gemm_parallel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Step 5: :func:`gemm_packed` with the row blocks of C spread over Numba's threads.

    Same arguments and result as :func:`gemm_packed`. B is packed once (in parallel); then ``prange`` hands
    out the ``ceil(m / MC)`` row blocks one at a time (dynamic scheduling, chunk size 1, so a thread slowed
    by another process just takes fewer blocks). Blocks write disjoint rows of C: no locks.
    """
    _check(a, b, "gemm_parallel")
    m, k = a.shape
    n = b.shape[1]
    c = _new_c(m, n, parallel=True)
    if m and n and k:
        bp = _packed_b_buffer(k, n)
        with threads_for(m * n * k // 8):
            _pack_b_parallel(b, bp)
        with threads_for(m * n * k // 8, 1):
            _gemm_parallel(a, bp, c)
    return c


#: The ladder in order: name -> function (all take and return C-contiguous float32 arrays).
GEMM_LADDER = {
    "naive": gemm_naive,
    "reorder": gemm_reorder,
    "blocked": gemm_blocked,
    "packed": gemm_packed,
    "parallel": gemm_parallel,
}


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D float arrays: ``a`` (m, k), ``b`` (k, n) -> new C-contiguous (m, n) array.

    Both float32 (runs :func:`gemm_parallel`) or both float64 (runs :func:`gemm_blocked`). Any memory
    layout: non-contiguous inputs (e.g. transposed views) are copied first. Raises TypeError for other
    dtypes or mixed dtypes, ValueError for non-2-D inputs or mismatched inner dimensions.
    """
    _check(a, b, "matmul", dtypes=FLOATS, contiguous=False)
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    if a.dtype == np.float32:
        return gemm_parallel(a, b)
    return gemm_blocked(a, b)
