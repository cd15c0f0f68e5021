"""Softmax along one axis: NumPy's five passes, a fused three-pass kernel, and the one-pass online kernel.

``softmax(x)_j = exp(x_j - m) / sum_k exp(x_k - m)`` with ``m = max_k x_k`` (subtracting the maximum changes
nothing mathematically and keeps ``exp`` from overflowing). The versions differ in how often they touch
memory, which is what limits softmax: it does about 10 flops per element and moves 8 bytes.

* :func:`softmax_numpy` -- the straightforward NumPy code. ``max``, ``x - m``, ``exp``, ``sum`` and the
  division each sweep the whole array, and three of them write a full-size temporary: about 5 reads and
  3 writes of the array.
* :func:`softmax_three_pass` -- one Numba kernel, row by row: pass 1 finds the maximum, pass 2 writes
  ``exp(x - m)`` and adds it up, pass 3 scales the row. A 4 KiB row stays in L1 between passes, so memory
  sees one read of ``x`` and one write of the result.
* :func:`softmax_online` -- the online normaliser (Milakov & Gimelshein, 2018): a single pass over ``x``
  keeps a running maximum ``m`` and a running sum ``d`` of ``exp(x - m)``, rescaling ``d`` by
  ``exp(m_old - m_new)`` whenever the maximum grows. Here it works block by block: each block's
  exponentials are written out relative to the maximum known so far, and one final sweep over the row
  (in cache) multiplies each block by ``exp(m_block - m) / d``. ``x`` is read exactly once, which also
  works when a row does not fit in cache.

:func:`softmax` uses the online kernel for rows longer than one block (``BLOCK`` = 2048 elements). A row
that fits in one block has nothing to rescale, and the online kernel would do the three-pass kernel's
work plus bookkeeping, so for those rows (the 1024-wide benchmark included) it calls the three-pass kernel.

A memory detail: both Numba kernels prefetch the row two ahead in software
(:func:`~mlsys_lab.kernels.cpu._fastmath.prefetch`). A 1024-float row is one 4 KiB page, and the hardware
prefetchers stop at page boundaries, so without it every row would start with a stall on memory.
(Streaming stores, which skip the read that an ordinary store makes of the line it writes, were tried
too: on the course machine they made this softmax slower, with ``x`` in memory and in cache alike, so
they are not used. Measure before you believe a textbook trick.)

The Numba kernels use the vectorisable :func:`~mlsys_lab.kernels.cpu._fastmath.exp_f32_nonpos` for float32
(within 2 ulp of the exact ``exp``; every argument here is ``<= 0``, so overflow needs no handling) and
spread the rows over threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._checks import check_array, check_contiguous, check_out, normalize_axis
from ._fastmath import FASTMATH, cast_like, fast_exp_nonpos, fmax, prefetch
from ._jit import threads_for

__all__ = ["softmax", "softmax_numpy", "softmax_three_pass", "softmax_online", "SOFTMAX_LADDER"]

#: Elements per block of the online kernel (8 KiB of float32): a block of x and its exponentials stay in L1
#: between the passes over it. Rows up to this long are a single block.
BLOCK = 2048
#: Rows handed to a thread at a time; 0 = static scheduling (each thread one contiguous range of rows,
#: which streams through memory best; measured a little faster than chunks of 32 on the course machine).
ROWS_PER_TASK = 0
#: Software prefetch: while a row is processed, the row this many ahead is requested (one prefetch per
#: 64-byte line). A 4 KiB row is a page, and the hardware prefetchers do not cross pages.
PREFETCH_ROWS = 2


@njit(cache=True, nogil=True, inline="always")
def _prefetch_row(x2, i):
    if i < x2.shape[0]:
        row = x2[i]
        for j in range(0, row.size, 16):     # every 64-byte line for float32 (every other one for float64)
            prefetch(row, j)


@njit(fastmath=FASTMATH, parallel=True, cache=True, nogil=True)
def _three_pass_rows(x2, out2):
    n_rows, n = x2.shape
    for i in prange(n_rows):
        _prefetch_row(x2, i + PREFETCH_ROWS)
        row = x2[i]
        orow = out2[i]
        m = row[0]
        for j in range(n):
            m = fmax(m, row[j])
        d = cast_like(0.0, m)
        for j in range(n):
            e = fast_exp_nonpos(row[j] - m)
            orow[j] = e
            d += e
        inv = cast_like(1.0, d) / d
        for j in range(n):
            orow[j] *= inv


@njit(fastmath=FASTMATH, parallel=True, cache=True, nogil=True)
def _online_rows(x2, out2, block):
    n_rows, n = x2.shape
    nb = (n + block - 1) // block
    block_max = np.empty((n_rows, nb), x2.dtype)
    for i in prange(n_rows):
        _prefetch_row(x2, i + PREFETCH_ROWS)
        row = x2[i]
        orow = out2[i]
        mb = block_max[i]
        m = cast_like(-np.inf, row[0])
        d = cast_like(0.0, m)
        for b in range(nb):
            seg = row[b * block:min(n, (b + 1) * block)]
            oseg = orow[b * block:min(n, (b + 1) * block)]
            bm = seg[0]
            for j in range(seg.size):
                bm = fmax(bm, seg[j])
            if bm > m:                       # the maximum grew: rescale the running sum
                d = d * fast_exp_nonpos(m - bm)
                m = bm
            s = cast_like(0.0, m)
            for j in range(seg.size):
                e = fast_exp_nonpos(seg[j] - m)
                oseg[j] = e
                s += e
            d += s
            mb[b] = m                        # this block's exponentials are relative to m
        inv = cast_like(1.0, d) / d
        for b in range(nb):
            f = fast_exp_nonpos(mb[b] - m) * inv
            oseg = orow[b * block:min(n, (b + 1) * block)]
            for j in range(oseg.size):
                oseg[j] *= f


def _rows(x2, out, name):
    check_array(x2, "x2", name, ndim=2)
    check_contiguous(x2, "x2", name)
    return check_out(out, x2.shape, x2.dtype, name)


def softmax_three_pass(x2: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Softmax of each row of a C-contiguous float32/float64 matrix ``x2`` (R, C); returns ``out``.

    Pass 1: row maximum; pass 2: ``exp(x - max)`` written out and summed; pass 3: multiply by ``1 / sum``.
    Each row is read from memory once (passes 2 and 3 find it in L1). ``out``: None (a new array) or a
    C-contiguous array of ``x2``'s shape and dtype to write into (it may be ``x2`` itself).
    """
    out = _rows(x2, out, "softmax_three_pass")
    if x2.size:
        with threads_for(x2.size, ROWS_PER_TASK):
            _three_pass_rows(x2, out)
    return out


def softmax_online(x2: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Softmax of each row of a C-contiguous float32/float64 matrix ``x2`` (R, C); returns ``out``.

    One pass over the input with a running maximum and a running, rescaled sum (see the module
    docstring), then one sweep over the output row, in cache, to apply each block's correction factor.
    ``out``: None (a new array) or a C-contiguous array of ``x2``'s shape and dtype (it may be ``x2``).
    A preallocated ``out`` saves the page faults of fresh memory, which for a 16 MiB result cost about as
    much as the kernel itself; a runtime with a memory plan passes one.
    """
    out = _rows(x2, out, "softmax_online")
    if x2.size:
        with threads_for(x2.size, ROWS_PER_TASK):
            _online_rows(x2, out, BLOCK)
    return out


def softmax_numpy(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """The straightforward NumPy softmax (the baseline): ``e = exp(x - max); e / sum(e)`` along ``axis``."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


#: Row-wise softmax kernels by name, in the order of the chapter (all take a C-contiguous (R, C) matrix).
SOFTMAX_LADDER = {
    "numpy": softmax_numpy,
    "three_pass": softmax_three_pass,
    "online": softmax_online,
}


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax of ``x`` along ``axis``: ``exp(x - max) / sum(exp(x - max))``.

    ``x``: float32 or float64 ndarray with at least one dimension, any layout (the axis is moved last and
    the data made contiguous when needed). Returns a new array of the same shape and dtype whose slices
    along ``axis`` sum to 1. Rows longer than ``BLOCK`` go through the online kernel, shorter ones through
    the three-pass kernel (see the module docstring). Inputs are expected to be finite. Raises TypeError
    for a non-array or another dtype and ``np.exceptions.AxisError`` for an axis out of range (including
    any axis of a 0-d array).
    """
    check_array(x, "x", "softmax")
    ax = normalize_axis(axis, x.ndim, "softmax")
    if x.size == 0:
        return np.empty_like(x)
    xm = np.ascontiguousarray(np.moveaxis(x, ax, -1))
    x2 = xm.reshape(-1, xm.shape[-1])
    out = softmax_online(x2) if x2.shape[1] > BLOCK else softmax_three_pass(x2)
    return np.moveaxis(out.reshape(xm.shape), -1, ax)
