"""Layer normalisation over the last axis, fused into one kernel.

``y = (x - mean) / sqrt(var + eps) * weight + bias`` with ``mean`` and ``var`` (biased, as in PyTorch) taken
over the last axis of each row. NumPy needs a mean, a subtraction, a square, another mean, a square root,
a division, a multiply and an add, most of them writing a full-size temporary. The kernel reads each row
once from memory and writes it once: the mean pass, the variance pass (two passes, so no catastrophic
cancellation between ``E[x^2]`` and ``E[x]^2``) and the output pass all find the row in L1.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._checks import check_array, check_out, check_same_dtype
from ._fastmath import FASTMATH, cast_like
from ._jit import threads_for

__all__ = ["layernorm", "layernorm_numpy"]


@njit(fastmath=FASTMATH, parallel=True, cache=True, nogil=True)
def _layernorm_rows(x2, weight, bias, eps, out2):
    n_rows, n = x2.shape
    for i in prange(n_rows):
        row = x2[i]
        orow = out2[i]
        s = cast_like(0.0, row[0])
        for j in range(n):
            s += row[j]
        nf = cast_like(n, s)
        mean = s / nf
        v = cast_like(0.0, row[0])
        for j in range(n):
            t = row[j] - mean
            v += t * t
        rstd = cast_like(1.0, s) / np.sqrt(v / nf + eps)
        for j in range(n):
            orow[j] = (row[j] - mean) * rstd * weight[j] + bias[j]


def layernorm(x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
              eps: float = 1e-5, out: np.ndarray | None = None) -> np.ndarray:
    """Layer norm of ``x`` over its last axis, with optional elementwise ``weight`` and ``bias``.

    ``x``: float32 or float64 ndarray with at least one dimension, any layout (copied if not contiguous).
    ``weight``, ``bias``: None (meaning ones / zeros) or 1-D arrays of length ``x.shape[-1]`` and ``x``'s
    dtype. ``eps`` > 0 is added to the variance. ``out``: None (a new array) or a C-contiguous array of
    ``x``'s shape and dtype to write into. Returns the result.
    Raises TypeError (non-array, unsupported or mismatched dtype) or ValueError (0-d ``x``, a ``weight``
    or ``bias`` of the wrong shape, ``eps`` not positive).
    """
    check_array(x, "x", "layernorm")
    if x.ndim == 0:
        raise ValueError("layernorm: x must have at least one dimension, got a 0-d array")
    n = x.shape[-1]
    params = []
    for name, p, fill in (("weight", weight, 1.0), ("bias", bias, 0.0)):
        if p is None:
            p = np.full(n, fill, x.dtype)
        else:
            check_array(p, name, "layernorm")
            check_same_dtype(x, p, f"x and {name}", "layernorm")
            if p.shape != (n,):
                raise ValueError(f"layernorm: {name} must have shape ({n},) to match x of shape {x.shape}, "
                                 f"got {p.shape}")
            p = np.ascontiguousarray(p)
        params.append(p)
    if not eps > 0:
        raise ValueError(f"layernorm: eps must be positive, got {eps!r}")
    out = check_out(out, x.shape, x.dtype, "layernorm")
    if x.size:
        x2 = np.ascontiguousarray(x).reshape(-1, n)
        with threads_for(x.size, 32):
            _layernorm_rows(x2, params[0], params[1], x.dtype.type(eps), out.reshape(-1, n))
    return out


def layernorm_numpy(x, weight=None, bias=None, eps=1e-5):
    """The straightforward NumPy layer norm over the last axis (the baseline)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + x.dtype.type(eps))
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y
