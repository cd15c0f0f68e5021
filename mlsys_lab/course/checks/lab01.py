"""Checks for Lab 1 (automatic differentiation): one function per exercise.

Each ``check_*`` takes the student's function, calls it on fixed awkward cases (size-1 axes, scalars,
non-square shapes) and on seeded random ones, and compares the result with ground truth computed here
without any reference answer:

* gradients of linear maps (matmul, einsum, broadcasting) and of softmax come from central finite
  differences of NumPy's own forward computation (in float64, where they are accurate to ~1e-8);
* broadcasting's backward also comes from the definition "each input element receives the sum of the
  gradients of the output elements it was copied to", counted with ``np.bincount``;
* AdamW's step comes from its definition (Loshchilov & Hutter, 2019), evaluated element by element in
  plain Python floats.

A wrong answer raises ``AssertionError`` naming the case, the expected and the returned values, and a
hint when the result matches a common mistake. A correct one prints ``✓ <exercise> passed``.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from . import assert_array_close, call_student, numerical_gradient, report_pass

__all__ = [
    "check_matmul_backward",
    "check_softmax_backward",
    "check_unbroadcast",
    "check_einsum_backward",
    "check_adamw_step",
]

_FD_RTOL, _FD_ATOL = 1e-5, 1e-7


def _pair(result, what: str, names=("grad_a", "grad_b")):
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise AssertionError(
            f"{what}: expected a pair ({names[0]}, {names[1]}), got {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        )
    return result


# ---------------------------------------------------------------------------------------- matmul ----

def check_matmul_backward(matmul_backward: Callable, seed: int = 0) -> None:
    """Check ``matmul_backward(a, b, grad_out) -> (grad_a, grad_b)`` for ``out = a @ b`` (2-D).

    Ground truth: finite differences of ``L = sum((a @ b) * grad_out)`` with respect to ``a`` and ``b``.
    """
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1), (1, 5, 1), (3, 1, 4), (2, 3, 5), (4, 4, 4), (5, 2, 1)]
    shapes += [tuple(int(s) for s in rng.integers(1, 7, size=3)) for _ in range(3)]
    for m, k, n in shapes:
        a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        g = rng.standard_normal((m, n))
        what = f"matmul_backward with a.shape={a.shape}, b.shape={b.shape}"
        grad_a, grad_b = _pair(call_student(matmul_backward, what, a.copy(), b.copy(), g.copy()), what)
        exp_a = numerical_gradient(lambda x: np.sum((x @ b) * g), a)
        exp_b = numerical_gradient(lambda x: np.sum((a @ x) * g), b)
        hint = "grad_a has a's shape (m, k) and grad_b has b's shape (k, n): which products of grad_out " \
               "(m, n) with a or b have those shapes?"
        assert_array_close(grad_a, exp_a, f"{what}: grad_a", rtol=_FD_RTOL, atol=_FD_ATOL, hint=hint)
        assert_array_close(grad_b, exp_b, f"{what}: grad_b", rtol=_FD_RTOL, atol=_FD_ATOL, hint=hint)
    report_pass("matmul backward", len(shapes))


# --------------------------------------------------------------------------------------- softmax ----

def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def check_softmax_backward(softmax_backward: Callable, seed: int = 0) -> None:
    """Check ``softmax_backward(y, dy, axis=-1) -> dx`` where ``y = softmax(x, axis)``.

    Ground truth: finite differences of ``L = sum(softmax(x, axis) * dy)`` with respect to ``x``.
    """
    rng = np.random.default_rng(seed)
    cases = [((5,), -1), ((1,), -1), ((3, 4), -1), ((3, 4), 0), ((4, 1), -1), ((2, 3, 5), 1),
             ((2, 1, 3), 0), ((2, 3, 4), -2), ((1, 6), 1)]
    for _ in range(3):
        ndim = int(rng.integers(1, 4))
        shape = tuple(int(s) for s in rng.integers(1, 6, size=ndim))
        cases.append((shape, int(rng.integers(-ndim, ndim))))
    for shape, axis in cases:
        x = rng.standard_normal(shape) * 2
        dy = rng.standard_normal(shape)
        y = _softmax(x, axis)
        what = f"softmax_backward on shape {shape} with axis={axis}"
        if axis == -1:  # the default must be the last axis
            dx = call_student(softmax_backward, what + " (axis left at its default)", y.copy(), dy.copy())
        else:
            dx = call_student(softmax_backward, what, y.copy(), dy.copy(), axis=axis)
        expected = numerical_gradient(lambda z: np.sum(_softmax(z, axis) * dy), x)
        hint = None
        if np.shape(dx) == shape and np.allclose(dx, y * dy) and not np.allclose(expected, y * dy):
            hint = "y * dy is only the diagonal of the Jacobian: each y_i depends on every x_j along " \
                   "the axis, which is where the term - sum(y * dy) comes from"
        elif np.shape(dx) != shape:
            hint = "did the sum along `axis` keep its dimension (keepdims=True) so it broadcasts back?"
        assert_array_close(dx, expected, what, rtol=_FD_RTOL, atol=_FD_ATOL, hint=hint)
    report_pass("softmax backward", len(cases))


# ---------------------------------------------------------------------------------- broadcasting ----

def _broadcast_adjoint(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Each input element gets the sum of the output gradients at the positions it was copied to."""
    size = math.prod(shape)
    owner = np.broadcast_to(np.arange(size).reshape(shape), grad.shape)  # which input feeds each output
    return np.bincount(owner.ravel(), weights=grad.ravel(), minlength=size).reshape(shape)


def _random_broadcast_pair(rng) -> tuple[tuple, tuple]:
    out_ndim = int(rng.integers(1, 5))
    out = tuple(int(s) for s in rng.integers(1, 5, size=out_ndim))
    ndim = int(rng.integers(0, out_ndim + 1))
    shape = tuple(1 if rng.random() < 0.4 else s for s in out[out_ndim - ndim:])
    return shape, out


def check_unbroadcast(unbroadcast: Callable, seed: int = 0) -> None:
    """Check ``unbroadcast(grad, shape) -> ndarray of shape `shape```.

    ``grad`` is the gradient of an output that NumPy broadcast from an input of shape ``shape``; the
    answer is the input's gradient. Ground truth: the definition of broadcasting (every copy of an
    input element passes its gradient back to it), summed with ``np.bincount``.
    """
    rng = np.random.default_rng(seed)
    cases = [((3, 4), (3, 4)), ((4,), (3, 4)), ((1, 4), (3, 4)), ((3, 1), (3, 4)), ((), (2, 3)),
             ((1,), (5,)), ((1, 1), (2, 3)), ((2, 1, 3), (4, 2, 5, 3)), ((5, 1, 1), (5, 2, 3)),
             ((1, 3, 1), (2, 1, 3, 4)), ((1, 1, 1), (1, 1, 1))]
    cases += [_random_broadcast_pair(rng) for _ in range(4)]
    for shape, out_shape in cases:
        grad = rng.standard_normal(out_shape)
        what = f"unbroadcast(grad of shape {out_shape}, shape={shape})"
        got = call_student(unbroadcast, what, grad.copy(), shape)
        expected = _broadcast_adjoint(grad, shape)
        hint = None
        if np.shape(got) != shape:
            if np.ndim(got) > len(shape):
                hint = "first sum over the leading axes that broadcasting added in front of the input"
            elif np.ndim(got) < len(shape):
                hint = "the result lost axes: sum the axes where the input had size 1 with keepdims=True"
            else:
                hint = "axes where the input had size 1 (but the output does not) must be summed with " \
                       "keepdims=True"
        assert_array_close(got, expected, what, rtol=1e-10, atol=1e-10, hint=hint)
    report_pass("unbroadcast", len(cases))


# ---------------------------------------------------------------------------------------- einsum ----

_EINSUM_SPECS = ["ij,jk->ik", "i,i->", "i,j->ij", "ij,j->i", "ij,ij->ij", "ij,ij->", "bij,bjk->bik",
                 "bhqd,bhkd->bhqk", "ik,kj->ji", "ijk,jk->ki", "bi,bi->b"]


def check_einsum_backward(einsum_backward: Callable, seed: int = 0) -> None:
    """Check ``einsum_backward(spec, a, b, grad_out) -> (grad_a, grad_b)`` for ``np.einsum(spec, a, b)``.

    Specs are explicit (``"ij,jk->ik"``), with no repeated index inside one operand and no index that
    occurs in one operand only (every index is shared or appears in the output). Ground truth: finite
    differences of ``L = sum(einsum(spec, a, b) * grad_out)``.
    """
    rng = np.random.default_rng(seed)
    cases = 0
    for spec in _EINSUM_SPECS:
        for _ in range(2):  # two random size assignments per spec, size-1 axes included
            sizes = {c: int(rng.integers(1, 5)) for c in "".join(sorted(set(spec) - set(",->")))}
            inputs, _ = spec.split("->")
            sa, sb = inputs.split(",")
            a = rng.standard_normal(tuple(sizes[c] for c in sa))
            b = rng.standard_normal(tuple(sizes[c] for c in sb))
            g = rng.standard_normal(np.einsum(spec, a, b).shape)
            what = f"einsum_backward({spec!r}) with a.shape={a.shape}, b.shape={b.shape}"
            got = call_student(einsum_backward, what, spec, a.copy(), b.copy(), g.copy())
            grad_a, grad_b = _pair(got, what)
            exp_a = numerical_gradient(lambda x: np.sum(np.einsum(spec, x, b) * g), a)
            exp_b = numerical_gradient(lambda x: np.sum(np.einsum(spec, a, x) * g), b)
            hint = "grad_a is an einsum of grad_out with b whose output subscripts are a's; " \
                   "grad_b one of grad_out with a whose output subscripts are b's"
            assert_array_close(grad_a, exp_a, f"{what}: grad_a", rtol=_FD_RTOL, atol=_FD_ATOL, hint=hint)
            assert_array_close(grad_b, exp_b, f"{what}: grad_b", rtol=_FD_RTOL, atol=_FD_ATOL, hint=hint)
            cases += 1
    report_pass("einsum backward", cases)


# ----------------------------------------------------------------------------------------- AdamW ----

def _adamw_by_definition(p, g, m, v, t, lr, betas, eps, wd, *, l2=False, bias_correction=True,
                          decay_after=False, eps_inside=False):
    """AdamW's definition, one element at a time in Python floats; flags give common mistakes."""
    b1, b2 = betas
    p_new, m_new, v_new = np.empty_like(p), np.empty_like(m), np.empty_like(v)
    for i in np.ndindex(p.shape):
        pi, gi = float(p[i]), float(g[i])
        if l2:
            gi += wd * pi  # Adam with an L2 penalty: the decay goes through the moments
        mi = b1 * float(m[i]) + (1 - b1) * gi
        vi = b2 * float(v[i]) + (1 - b2) * gi * gi
        mh, vh = (mi / (1 - b1 ** t), vi / (1 - b2 ** t)) if bias_correction else (mi, vi)
        step = mh / (math.sqrt(vh + eps) if eps_inside else math.sqrt(vh) + eps)
        if l2:
            pi = pi - lr * step
        elif decay_after:
            pi = (pi - lr * step) * (1 - lr * wd)
        else:
            pi = pi * (1 - lr * wd) - lr * step  # decoupled: decay the weights, not the gradient
        p_new[i], m_new[i], v_new[i] = pi, mi, vi
    return p_new, m_new, v_new


_ADAMW_MISTAKES = [  # (flags for _adamw_by_definition, hint)
    ({"l2": True}, "weight decay was added to the gradient (Adam + L2): AdamW decays the weights directly, "
                   "param * (1 - lr * weight_decay), and keeps the decay out of m and v"),
    ({"bias_correction": False}, "the moments were not bias-corrected: divide m by (1 - beta1**t) and v by "
                                 "(1 - beta2**t) (t counts from 1)"),
    ({"decay_after": True}, "the decay was applied to the already-updated weights; decay the weights from "
                            "before this step"),
    ({"eps_inside": True}, "eps belongs outside the square root: sqrt(v_hat) + eps"),
]


def _same(xs, ys) -> bool:
    try:
        return all(x is not None and np.shape(x) == np.shape(y) and np.allclose(x, y, rtol=1e-9, atol=1e-12)
                   for x, y in zip(xs, ys))
    except (TypeError, ValueError):
        return False


def check_adamw_step(adamw_step: Callable, seed: int = 0) -> None:
    """Check ``adamw_step(param, grad, m, v, t, lr=..., betas=..., eps=..., weight_decay=...)``.

    It must return ``(new_param, new_m, new_v)`` for step number ``t`` (1 for the first step) of AdamW
    with decoupled weight decay and bias correction. Each case runs several steps; every step starts
    from the exact state, so a mistake is reported at the first step it shows.
    """
    rng = np.random.default_rng(seed)
    configs = [  # (shape, lr, betas, eps, weight_decay, gradient scale)
        ((3,), 1e-3, (0.9, 0.999), 1e-8, 1e-2, 1.0),
        ((1,), 0.1, (0.9, 0.999), 1e-8, 0.0, 1.0),
        ((2, 3), 0.1, (0.8, 0.99), 1e-8, 0.5, 1.0),
        ((4, 1, 5), 0.05, (0.9, 0.95), 1e-8, 0.1, 3.0),
        ((), 0.1, (0.9, 0.999), 1e-8, 0.3, 1.0),
        ((5,), 0.01, (0.9, 0.999), 1e-3, 0.2, 1e-3),  # tiny gradients: where eps sits matters
    ]
    for shape, lr, betas, eps, wd, scale in configs:
        p = rng.standard_normal(shape)
        m, v = np.zeros(shape), np.zeros(shape)
        hyper = dict(lr=lr, betas=betas, eps=eps, weight_decay=wd)
        for t in range(1, 5):
            g = rng.standard_normal(shape) * scale
            settings = ", ".join(f"{k}={x}" for k, x in hyper.items())
            what = f"adamw_step on shape {shape}, step t={t}, {settings}"
            got = call_student(adamw_step, what, p.copy(), g.copy(), m.copy(), v.copy(), t, **hyper)
            if not isinstance(got, (tuple, list)) or len(got) != 3:
                raise AssertionError(f"{what}: expected a tuple (param, m, v), got {type(got).__name__}")
            expected = _adamw_by_definition(p, g, m, v, t, lr, betas, eps, wd)
            hint = None
            for flags, message in _ADAMW_MISTAKES:
                wrong = _adamw_by_definition(p, g, m, v, t, lr, betas, eps, wd, **flags)
                if _same(got, wrong) and not _same(wrong, expected):
                    hint = message
                    break
            for name, x, e in zip(("param", "m", "v"), got, expected):
                assert_array_close(x, e, f"{what}: returned {name}", rtol=1e-9, atol=1e-12, hint=hint)
            p, m, v = expected
    report_pass("AdamW step", len(configs))
