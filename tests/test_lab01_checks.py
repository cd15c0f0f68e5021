"""Lab 1's checks pass on the lab's own solutions and fail on planted bugs.

The solutions are taken from the solution cells of labs/lab01_autograd.ipynb (the code between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` together with the function around it), so these tests
check the notebook's answers and the checks against each other. Each planted bug is a mistake students
make; its check must raise AssertionError (with a message naming the input), never pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from mlsys_lab.course.checks import assert_array_close, call_student, numerical_gradient
from mlsys_lab.course.checks import lab01 as checks
from mlsys_lab.course.student import BEGIN_SOLUTION, STUB_RAISE, make_student_notebook

ROOT = Path(__file__).resolve().parents[1]
LAB01 = ROOT / "labs" / "lab01_autograd.ipynb"

EXERCISES = {  # function defined in the solution cell -> the check the next cell calls
    "matmul_backward": checks.check_matmul_backward,
    "unbroadcast": checks.check_unbroadcast,
    "softmax_backward": checks.check_softmax_backward,
    "einsum_backward": checks.check_einsum_backward,
    "adamw_step": checks.check_adamw_step,
}


def _solution_sources(nb, marker: str = BEGIN_SOLUTION) -> dict[str, str]:
    sources = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and marker in cell.source:
            name = re.search(r"^def (\w+)\(", cell.source, re.M).group(1)
            sources[name] = cell.source
    return sources


@pytest.fixture(scope="module")
def lab01():
    return nbformat.read(LAB01, as_version=4)


@pytest.fixture(scope="module")
def solutions(lab01) -> dict[str, str]:
    return _solution_sources(lab01)


def define(source: str, name: str):
    """Execute one exercise cell (they use only NumPy) and return the function it defines."""
    namespace = {"np": np}
    exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace[name]


def mutate(source: str, old: str, new: str) -> str:
    assert old in source, f"the planted bug expects {old!r} in the notebook's solution"
    return source.replace(old, new)


# ------------------------------------------------------------------- the notebook's own solutions ----

def test_every_exercise_is_checked_by_its_own_check(lab01, solutions):
    assert set(solutions) == set(EXERCISES)
    cells = lab01.cells
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and BEGIN_SOLUTION in cell.source:
            name = re.search(r"^def (\w+)\(", cell.source, re.M).group(1)
            check = next(c for c in cells[i + 1:] if c.cell_type == "code")
            assert check.source.strip() == f"checks.{EXERCISES[name].__name__}({name})"


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_passes_on_the_notebook_solution(name, solutions, capsys):
    EXERCISES[name](define(solutions[name], name))
    out = capsys.readouterr().out
    assert out.startswith("✓") and "passed" in out


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_lets_the_student_stub_raise_not_implemented(name, lab01):
    student = _solution_sources(make_student_notebook(lab01), marker=STUB_RAISE)
    assert set(student) == set(EXERCISES)
    with pytest.raises(NotImplementedError):
        EXERCISES[name](define(student[name], name))


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_rejects_a_function_returning_none(name):
    with pytest.raises(AssertionError, match="None|expected a pair|expected a tuple"):
        EXERCISES[name](lambda *args, **kwargs: None)


# ------------------------------------------------------- planted bugs: mutations of the solution ----

MUTATIONS = [  # (exercise, old, new, words the message must contain)
    ("matmul_backward", "grad_out @ b.T", "grad_out @ b", "matmul_backward"),
    ("matmul_backward", "a.T @ grad_out", "grad_out.T @ a", "grad_b"),
    ("softmax_backward", "dy - np.sum(y * dy, axis=axis, keepdims=True)", "dy", "Jacobian"),
    ("softmax_backward", "keepdims=True", "keepdims=False", "softmax_backward"),
    ("unbroadcast", "axis=stretched, keepdims=True", "axis=stretched, keepdims=False", "keepdims=True"),
    ("unbroadcast", "grad.ndim - len(shape)", "0", "leading axes"),
    ("einsum_backward", 'f"{out},{sb}->{sa}", grad_out, b', 'f"{out},{sa}->{sb}", grad_out, a', "einsum_backward"),
    ("adamw_step", "param * (1 - lr * weight_decay) -", "param -", "weight_decay"),
    ("adamw_step", "m / (1 - beta1 ** t)", "m", "returned param: wrong values"),
    ("adamw_step", "(1 - beta2) * grad * grad", "(1 - beta2) * grad", "adamw_step"),
]


@pytest.mark.parametrize("name, old, new, words", MUTATIONS,
                         ids=[f"{m[0]}:{m[1]}->{m[2]}" for m in MUTATIONS])
def test_check_fails_on_a_mutated_solution(name, old, new, words, solutions):
    buggy = define(mutate(solutions[name], old, new), name)
    with np.errstate(all="ignore"), pytest.raises(AssertionError) as info:
        EXERCISES[name](buggy)
    assert words in str(info.value)


# ------------------------------------------------------ planted bugs: mistakes written from scratch ----

def _split(spec):
    inputs, out = spec.split("->")
    sa, sb = inputs.split(",")
    return sa, sb, out


def softmax_no_subtraction(y, dy, axis=-1):
    return y * dy


def softmax_always_last_axis(y, dy, axis=-1):
    return y * (dy - np.sum(y * dy, axis=-1, keepdims=True))


def softmax_sum_over_everything(y, dy, axis=-1):
    return y * (dy - np.sum(y * dy))


def unbroadcast_forgets_size_one_axes(grad, shape):
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    return grad


def unbroadcast_aligns_left(grad, shape):
    grad = grad.sum(axis=tuple(range(len(shape), grad.ndim)))  # drops trailing axes instead of leading
    return grad.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)


def unbroadcast_averages(grad, shape):
    while grad.ndim > len(shape):
        grad = grad.mean(axis=0)
    return grad.mean(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)


def einsum_swaps_operands(spec, a, b, grad_out):
    sa, sb, out = _split(spec)  # pairs grad_out with the operand itself instead of the other one
    return np.einsum(f"{out},{sb}->{sa}", grad_out, a), np.einsum(f"{out},{sa}->{sb}", grad_out, b)


def einsum_returns_grads_swapped(spec, a, b, grad_out):
    sa, sb, out = _split(spec)
    return np.einsum(f"{out},{sa}->{sb}", grad_out, a), np.einsum(f"{out},{sb}->{sa}", grad_out, b)


def einsum_ignores_grad_out(spec, a, b, grad_out):
    sa, sb, out = _split(spec)
    ones = np.ones_like(grad_out)
    return np.einsum(f"{out},{sb}->{sa}", ones, b), np.einsum(f"{out},{sa}->{sb}", ones, a)


def _adam(param, grad, m, v, t, lr, betas, eps, weight_decay, *, l2=False, correct=True, decay_after=False,
          eps_inside=False, t_offset=0):
    b1, b2 = betas
    if l2:
        grad = grad + weight_decay * param
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad ** 2
    t = t + t_offset
    m_hat, v_hat = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if correct else (m, v)
    step = m_hat / (np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps)
    if l2:
        return param - lr * step, m, v
    if decay_after:
        return (param - lr * step) * (1 - lr * weight_decay), m, v
    return param * (1 - lr * weight_decay) - lr * step, m, v


def adamw(**flags):
    def step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        return _adam(param, grad, m, v, t, lr, betas, eps, weight_decay, **flags)
    return step


def adamw_returns_old_moments(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    new_param, _, _ = _adam(param, grad, m, v, t, lr, betas, eps, weight_decay)
    return new_param, m, v


def adamw_ignores_hyperparameters(param, grad, m, v, t, **ignored):
    return _adam(param, grad, m, v, t, 1e-3, (0.9, 0.999), 1e-8, 1e-2)


def matmul_forgets_transposes(a, b, grad_out):
    return grad_out @ b, a @ grad_out


def matmul_returns_one_grad(a, b, grad_out):
    return grad_out @ b.T


def matmul_elementwise(a, b, grad_out):
    return grad_out.sum() * np.ones_like(a) * b.sum(), a.sum() * np.ones_like(b) * grad_out.sum()


def sign_flipped(fn):
    def flipped(*args, **kwargs):
        result = fn(*args, **kwargs)
        return tuple(-r for r in result) if isinstance(result, tuple) else -result
    return flipped


BUGS = [  # (check, buggy function, words the message must contain)
    (checks.check_matmul_backward, matmul_forgets_transposes, "raised ValueError"),
    (checks.check_matmul_backward, matmul_returns_one_grad, "expected a pair"),
    (checks.check_matmul_backward, matmul_elementwise, "wrong values"),
    (checks.check_matmul_backward, sign_flipped(lambda a, b, g: (g @ b.T, a.T @ g)), "grad_a: wrong values"),
    (checks.check_softmax_backward, softmax_no_subtraction, "diagonal of the Jacobian"),
    (checks.check_softmax_backward, softmax_always_last_axis, "axis=0"),
    (checks.check_softmax_backward, softmax_sum_over_everything, "shape (3, 4)"),
    (checks.check_unbroadcast, unbroadcast_forgets_size_one_axes, "keepdims=True"),
    (checks.check_unbroadcast, unbroadcast_aligns_left, "unbroadcast(grad of shape"),
    (checks.check_unbroadcast, unbroadcast_averages, "wrong values"),
    (checks.check_unbroadcast, lambda grad, shape: grad, "expected shape"),
    (checks.check_einsum_backward, einsum_swaps_operands, "einsum_backward('ij,jk->ik')"),
    (checks.check_einsum_backward, einsum_returns_grads_swapped, "einsum_backward("),
    (checks.check_einsum_backward, einsum_ignores_grad_out, "wrong values"),
    (checks.check_adamw_step, adamw(l2=True), "Adam + L2"),
    (checks.check_adamw_step, adamw(correct=False), "not bias-corrected"),
    (checks.check_adamw_step, adamw(decay_after=True), "already-updated weights"),
    (checks.check_adamw_step, adamw(eps_inside=True), "outside the square root"),
    (checks.check_adamw_step, adamw(t_offset=-1), "NaN or inf"),  # t counted from 0
    (checks.check_adamw_step, adamw(t_offset=1), "wrong values"),  # t counted from 2
    (checks.check_adamw_step, adamw_returns_old_moments, "returned m"),
    (checks.check_adamw_step, adamw_ignores_hyperparameters, "lr=0.1"),
]


@pytest.mark.parametrize("check, buggy, words", BUGS,
                         ids=[f"{c.__name__}:{getattr(b, '__name__', 'lambda')}-{i}"
                              for i, (c, b, _) in enumerate(BUGS)])
def test_check_fails_on_a_planted_bug(check, buggy, words, capsys):
    with np.errstate(all="ignore"), pytest.raises(AssertionError) as info:
        check(buggy)
    assert words in str(info.value), str(info.value)
    assert "✓" not in capsys.readouterr().out


# ----------------------------------------------------------------------------------- the helpers ----

def test_numerical_gradient_is_accurate_in_float64():
    x = np.random.default_rng(0).standard_normal((3, 4))
    grad = numerical_gradient(lambda z: np.sum(np.sin(z) * z), x)
    np.testing.assert_allclose(grad, np.cos(x) * x + np.sin(x), rtol=1e-8, atol=1e-9)


def test_assert_array_close_messages_say_what_is_wrong():
    with pytest.raises(AssertionError, match=r"case A: expected shape \(2, 3\), got shape \(3, 2\)"):
        assert_array_close(np.zeros((3, 2)), np.zeros((2, 3)), "case A")
    with pytest.raises(AssertionError, match=r"case B: wrong values; largest error at index \(1,\): "
                                             r"expected 2, got 5"):
        assert_array_close(np.array([1.0, 5.0]), np.array([1.0, 2.0]), "case B")
    with pytest.raises(AssertionError, match="NaN or inf"):
        assert_array_close(np.array([np.nan]), np.array([1.0]), "case C")
    with pytest.raises(AssertionError, match="expected a NumPy array, got list"):
        assert_array_close([1.0], np.array([1.0]), "case D")
    assert_array_close(np.array([1.0, 2.0 + 1e-9]), np.array([1.0, 2.0]), "close enough")


def test_call_student_wraps_errors_but_not_not_implemented():
    def boom():
        raise KeyError("k")

    def todo():
        raise NotImplementedError

    with pytest.raises(AssertionError, match="case X: your function raised KeyError"):
        call_student(boom, "case X")
    with pytest.raises(NotImplementedError):
        call_student(todo, "case Y")
