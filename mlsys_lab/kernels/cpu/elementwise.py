"""Fused elementwise kernels: GELU (tanh form) and bias + GELU in one pass over memory.

``gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, the approximation used by GPT-2 and
``torch.nn.functional.gelu(x, approximate="tanh")``. Written in NumPy it is about ten array operations,
each reading and writing a full-size temporary, so it moves ~20 arrays' worth of bytes to compute ~15
flops per element. Fused, it reads ``x`` once and writes ``y`` once.

The kernel uses ``0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u))``, so each element costs one vectorised ``exp``
(:func:`~mlsys_lab.kernels.cpu._fastmath.exp_f32` for float32) and one division:
``y = x / (1 + exp(-2u))``. For very negative ``x``, ``exp(-2u)`` overflows to inf and ``y`` is ``-0.0``,
which is also what the tanh form gives.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._checks import check_array, check_out, check_same_dtype
from ._fastmath import FASTMATH, cast_like, fast_exp
from ._jit import threads_for

__all__ = ["gelu_tanh", "bias_gelu_tanh", "gelu_tanh_numpy"]

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_C = 0.044715
#: Elements per parallel task.
CHUNK = 1 << 14


@njit(fastmath=FASTMATH, parallel=True, cache=True, nogil=True)
def _gelu_flat(x1, out1, chunk):
    n = x1.size
    k0 = cast_like(SQRT_2_OVER_PI, x1[0])
    k1 = cast_like(GELU_C, x1[0])
    one = cast_like(1.0, x1[0])
    m2 = cast_like(-2.0, x1[0])
    for c in prange((n + chunk - 1) // chunk):
        seg = x1[c * chunk:min(n, (c + 1) * chunk)]
        oseg = out1[c * chunk:min(n, (c + 1) * chunk)]
        for j in range(seg.size):
            v = seg[j]
            u = k0 * (v + k1 * v * v * v)
            oseg[j] = v / (one + fast_exp(m2 * u))


@njit(fastmath=FASTMATH, parallel=True, cache=True, nogil=True)
def _bias_gelu_rows(x2, bias, out2):
    k0 = cast_like(SQRT_2_OVER_PI, bias[0])
    k1 = cast_like(GELU_C, bias[0])
    one = cast_like(1.0, bias[0])
    m2 = cast_like(-2.0, bias[0])
    for i in prange(x2.shape[0]):
        row = x2[i]
        orow = out2[i]
        for j in range(row.size):
            v = row[j] + bias[j]
            u = k0 * (v + k1 * v * v * v)
            orow[j] = v / (one + fast_exp(m2 * u))


def gelu_tanh(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """GELU, tanh approximation, elementwise, on a float32/float64 ndarray of any shape and layout.

    One fused pass (see the module docstring). Returns ``out``: None means a new array; otherwise a
    C-contiguous array of ``x``'s shape and dtype to write into. Raises TypeError for a non-array or
    another dtype, ValueError for a bad ``out``.
    """
    check_array(x, "x", "gelu_tanh")
    out = check_out(out, x.shape, x.dtype, "gelu_tanh")
    if x.size:
        with threads_for(x.size, 4):
            _gelu_flat(np.ascontiguousarray(x).reshape(-1), out.reshape(-1), CHUNK)
    return out


def bias_gelu_tanh(x: np.ndarray, bias: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``gelu_tanh(x + bias)`` in one pass, ``bias`` broadcast along the last axis (a Linear layer's epilogue).

    ``x``: float32/float64 ndarray with at least one dimension; ``bias``: 1-D, length ``x.shape[-1]``, same
    dtype; ``out``: None (a new array) or a C-contiguous array of ``x``'s shape and dtype. Returns the
    result. Raises TypeError (dtypes) or ValueError (shapes).
    """
    check_array(x, "x", "bias_gelu_tanh")
    check_array(bias, "bias", "bias_gelu_tanh")
    check_same_dtype(x, bias, "x and bias", "bias_gelu_tanh")
    if x.ndim == 0 or bias.shape != (x.shape[-1],):
        raise ValueError(f"bias_gelu_tanh: bias of shape {bias.shape} does not match the last axis of x "
                         f"of shape {x.shape}; expected shape ({x.shape[-1] if x.ndim else '?'},)")
    out = check_out(out, x.shape, x.dtype, "bias_gelu_tanh")
    if x.size:
        n = x.shape[-1]
        with threads_for(x.size, 32):
            _bias_gelu_rows(np.ascontiguousarray(x).reshape(-1, n), np.ascontiguousarray(bias),
                            out.reshape(-1, n))
    return out


def gelu_tanh_numpy(x: np.ndarray) -> np.ndarray:
    """The NumPy baseline, written the usual way: one temporary array per operation."""
    dt = x.dtype.type
    return dt(0.5) * x * (dt(1.0) + np.tanh(dt(SQRT_2_OVER_PI) * (x + dt(GELU_C) * (x * x * x))))
