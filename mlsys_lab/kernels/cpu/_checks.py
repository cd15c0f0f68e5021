"""Input checks shared by the CPU kernels: every error names the function, the argument and the problem."""

from __future__ import annotations

import operator

import numpy as np

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
F32_ONLY = (np.dtype(np.float32),)


def _dtype_names(dtypes) -> str:
    return " or ".join(str(d) for d in dtypes)


def check_array(x, name: str, fn: str, dtypes=FLOATS, ndim: int | None = None) -> np.ndarray:
    """Return ``x`` if it is an ndarray of an allowed dtype (and ``ndim``), else raise TypeError/ValueError."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a NumPy ndarray, got {type(x).__name__}")
    if x.dtype not in dtypes:
        raise TypeError(f"{fn}: {name} has dtype {x.dtype}; supported: {_dtype_names(dtypes)}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D, got shape {x.shape}")
    return x


def check_contiguous(x: np.ndarray, name: str, fn: str) -> np.ndarray:
    """Raise ValueError unless ``x`` is C-contiguous (the low-level kernels index raw rows)."""
    if not x.flags.c_contiguous:
        raise ValueError(f"{fn}: {name} must be C-contiguous, got shape {x.shape} with strides {x.strides} "
                         f"(pass np.ascontiguousarray({name}), or use the public function, which copies)")
    return x


def check_out(out, shape, dtype, fn: str):
    """A new array for None, else ``out`` if it is a C-contiguous ndarray of ``shape`` and ``dtype``."""
    if out is None:
        return np.empty(shape, dtype)
    check_array(out, "out", fn, dtypes=(np.dtype(dtype),))
    if out.shape != tuple(shape):
        raise ValueError(f"{fn}: out has shape {out.shape}, expected {tuple(shape)}")
    check_contiguous(out, "out", fn)
    return out


def check_same_dtype(a: np.ndarray, b: np.ndarray, names: str, fn: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{fn}: {names} must have the same dtype, got {a.dtype} and {b.dtype}")


def normalize_axes(axis, ndim: int, fn: str) -> tuple[int, ...]:
    """``None`` -> all axes; an int or a tuple/list of ints -> sorted non-negative axes.

    Raises ``np.exceptions.AxisError`` for an axis out of range, ``ValueError`` for a repeated axis and
    ``TypeError`` for anything that is not an integer.
    """
    if axis is None:
        return tuple(range(ndim))
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in items:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"{fn}: axis must be None, an int or a tuple of ints, got {axis!r}")
        a = operator.index(a)
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(
                f"{fn}: axis {a} is out of bounds for an array of dimension {ndim}")
        a %= ndim if ndim else 1
        if a in out:
            raise ValueError(f"{fn}: axis {axis!r} repeats axis {a}")
        out.append(a)
    return tuple(sorted(out))


def normalize_axis(axis, ndim: int, fn: str) -> int:
    """One axis (an int) -> its non-negative form; AxisError when out of range."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{fn}: axis must be an int, got {axis!r}")
    (a,) = normalize_axes(int(axis), ndim, fn)
    return a
