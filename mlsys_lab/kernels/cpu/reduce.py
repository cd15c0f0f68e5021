"""``reduce_sum`` over any axes, the way frameworks lower it: move the reduced axes last, then sum rows.

Any sum over a set of axes is a sum over the rows of a 2-D matrix once the axes are in the right order:

1. permute ``x`` so the kept axes come first and the reduced axes last (``x.transpose(kept + reduced)``);
2. view it as ``(M, R)`` = (product of kept sizes, product of reduced sizes), copying only when the
   permuted array is not already contiguous;
3. sum each row (:func:`sum_rows`): a vectorised loop with several partial sums, rows shared among threads,
   long rows split into chunks so that even a full reduction (``M = 1``) uses every core;
4. reshape the ``M`` results to the kept shape (with 1s where the reduced axes were, for ``keepdims``).

One shortcut: when the reduced axes are the *leading* axes of a C-contiguous array, ``x`` already is an
``(R, M)`` matrix, and :func:`sum_cols` adds its rows together without any copy.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._checks import check_array, check_contiguous, normalize_axes
from ._fastmath import FASTMATH
from ._jit import threads_for

__all__ = ["reduce_sum", "sum_rows", "sum_cols"]

#: Elements per task: long rows are split into chunks of this size so all threads get work.
CHUNK = 1 << 15
#: Columns per task in the column-sum kernel.
COL_BLOCK = 1024


@njit(fastmath=FASTMATH, parallel=True, cache=True, nogil=True)
def _sum_rows(x2, out, nchunks, chunk):
    m, r = x2.shape
    partial = np.zeros((m, nchunks), dtype=out.dtype)
    for t in prange(m * nchunks):
        i = t // nchunks
        c = t - i * nchunks
        seg = x2[i, c * chunk:min(r, (c + 1) * chunk)]
        s = partial[i, c]
        for j in range(seg.size):
            s += seg[j]
        partial[i, c] = s
    for i in range(m):
        s = out[i] * 0
        for c in range(nchunks):
            s += partial[i, c]
        out[i] = s


def sum_rows(x2: np.ndarray) -> np.ndarray:
    """Row sums of a C-contiguous 2-D float32/float64 array ``(M, R)`` -> ``(M,)`` of the same dtype.

    Each row is summed with a vectorised loop (reassociation allowed: several running partial sums in
    vector registers, so the order of additions differs from NumPy's pairwise sum, with similar error).
    Rows longer than ``CHUNK`` are split into chunks whose partial sums are added at the end, so that a
    handful of long rows still keeps every thread busy.
    """
    check_array(x2, "x2", "sum_rows", ndim=2)
    check_contiguous(x2, "x2", "sum_rows")
    m, r = x2.shape
    out = np.zeros(m, x2.dtype)
    if m == 0 or r == 0:
        return out
    nchunks = max(1, math.ceil(r / CHUNK))
    with threads_for(x2.size, 1):
        _sum_rows(x2, out, nchunks, CHUNK)
    return out


@njit(fastmath=FASTMATH, parallel=True, cache=True, nogil=True)
def _sum_cols(x2, out, block):
    r, m = x2.shape
    nblk = (m + block - 1) // block
    for b in prange(nblk):
        j0 = b * block
        j1 = min(m, j0 + block)
        acc = out[j0:j1]
        for i in range(r):
            row = x2[i, j0:j1]
            for j in range(j1 - j0):
                acc[j] += row[j]


def sum_cols(x2: np.ndarray) -> np.ndarray:
    """Column sums of a C-contiguous 2-D float array ``(R, M)`` -> ``(M,)``: adds the R rows together.

    The inner loop runs along a row (contiguous, vectorised) into a block of ``COL_BLOCK`` accumulators
    that stays in L1; the blocks are shared among threads.
    """
    check_array(x2, "x2", "sum_cols", ndim=2)
    check_contiguous(x2, "x2", "sum_cols")
    r, m = x2.shape
    out = np.zeros(m, x2.dtype)
    if m and r:
        with threads_for(x2.size, 1):
            _sum_cols(x2, out, COL_BLOCK)
    return out


def reduce_sum(x: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
    """Sum of ``x`` over ``axis`` (None = all axes, an int, or a tuple of ints; negative ints count from the end).

    ``x``: float32 or float64 ndarray of any shape and layout. Returns an ndarray of ``x``'s dtype whose shape
    is ``x.shape`` without the reduced axes, or with 1s in their place when ``keepdims`` is true -- the same
    shape as ``np.sum`` -- or, when that shape is ``()`` (a full reduction), a NumPy scalar of ``x``'s dtype,
    as ``np.sum`` returns. Sums over empty axes are 0. Reduced axes are
    moved last and the rows of the resulting ``(M, R)`` matrix summed (see the module docstring); the
    additions are reassociated, so results match ``np.sum`` to rounding, not bit for bit.

    Raises TypeError (not an ndarray, unsupported dtype, non-integer axis), ``np.exceptions.AxisError``
    (axis out of range) or ValueError (an axis given twice).
    """
    check_array(x, "x", "reduce_sum")
    axes = normalize_axes(axis, x.ndim, "reduce_sum")
    kept = tuple(a for a in range(x.ndim) if a not in axes)
    kept_shape = tuple(x.shape[a] for a in kept)
    m = math.prod(kept_shape)
    r = math.prod(x.shape[a] for a in axes)
    if axes and axes == tuple(range(len(axes))) and x.flags.c_contiguous and kept:
        out = sum_cols(x.reshape(r, m))           # reduced axes lead: already an (R, M) matrix
    else:
        xt = np.ascontiguousarray(x.transpose(kept + axes)).reshape(m, r)
        out = sum_rows(xt)
    if keepdims:
        shape = tuple(1 if a in axes else x.shape[a] for a in range(x.ndim))
    else:
        shape = kept_shape
    res = out.reshape(shape)
    return res[()] if res.ndim == 0 else res     # a 0-d result is a NumPy scalar, as np.sum gives
