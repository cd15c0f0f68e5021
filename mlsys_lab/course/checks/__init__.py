"""The labs' checks: each takes the student's own function (or class) and tests it.

A check compares the student's answer with ground truth that does not come from a reference answer:
central finite differences, NumPy's own definition of an operation, or mathematical properties the
answer must have. On a wrong answer it raises ``AssertionError`` saying which input, what was expected
and what came back; on success it prints one line starting with ``✓``. A student function that still
raises ``NotImplementedError`` (the stub of a student copy) lets that error through unchanged; any other
exception it raises becomes an ``AssertionError`` naming the input that caused it.

One module per lab: ``lab01`` (automatic differentiation), ``lab02`` (graph passes), ``lab03`` (runtime), ``lab04`` (CPU kernels), ``lab05`` (CUDA kernels),
``lab06`` (batching server).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["call_student", "assert_array_close", "numerical_gradient", "report_pass"]


def call_student(fn: Callable, what: str, *args, **kwargs):
    """Call the student's ``fn``; re-raise ``NotImplementedError``, turn other errors into AssertionError."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(f"{what}: your function raised {type(exc).__name__}: {exc}") from exc


def _shape(x) -> str:
    return str(tuple(np.shape(x)))


def assert_array_close(got, expected: np.ndarray, what: str, *, rtol: float = 1e-5, atol: float = 1e-7,
                       hint: str | None = None) -> None:
    """Assert ``got`` is an array of ``expected``'s shape with close values; the message says where not."""
    suffix = f"\n  hint: {hint}" if hint else ""
    if got is None:
        raise AssertionError(f"{what}: your function returned None (did you forget `return`?){suffix}")
    if not isinstance(got, (np.ndarray, np.generic, float, int)):
        raise AssertionError(f"{what}: expected a NumPy array, got {type(got).__name__}{suffix}")
    got = np.asarray(got)
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        raise AssertionError(
            f"{what}: expected shape {_shape(expected)}, got shape {_shape(got)}{suffix}"
        )
    if not np.all(np.isfinite(got)):
        raise AssertionError(f"{what}: your result contains NaN or inf:\n{got}{suffix}")
    if not np.allclose(got, expected, rtol=rtol, atol=atol):
        err = np.abs(got.astype(np.float64) - expected)
        where = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
        idx = tuple(int(i) for i in where)
        raise AssertionError(
            f"{what}: wrong values; largest error at index {idx}: expected {float(expected[idx]):.6g}, "
            f"got {float(got[idx]):.6g} (max abs error {float(err.max()):.3g})\n"
            f"  expected:\n{_indent(expected, err.max())}\n  got:\n{_indent(got, err.max())}{suffix}"
        )


def _indent(a: np.ndarray, error: float = 1.0, limit: int = 6) -> str:
    # enough digits that the difference shows, at most 10
    precision = int(min(10, max(4, np.ceil(-np.log10(max(float(error), 1e-300))) + 1)))
    with np.printoptions(precision=precision, suppress=True, threshold=limit * limit, edgeitems=3):
        return "\n".join("    " + line for line in np.array2string(np.asarray(a)).splitlines())


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar function ``f`` at ``x`` (float64), one entry at a time."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, g = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = float(f(x))
        flat[i] = old - h
        down = float(f(x))
        flat[i] = old
        g[i] = (up - down) / (2 * h)
    return grad


def report_pass(name: str, cases: int) -> None:
    """Print the one-line success message of a check."""
    print(f"✓ {name} passed ({cases} cases)")
