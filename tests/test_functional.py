"""mlsys_lab.functional: values, numerical stability, the fused losses, einsum and its lowering, erf."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mlsys_lab.functional as F
from mlsys_lab import Tensor
from mlsys_lab.autograd import no_grad


def test_functional_reexports_autograd_functional():
    from mlsys_lab.autograd import functional as AF
    for name in AF.__all__:
        assert getattr(F, name) is getattr(AF, name)


# -- softmax family ---------------------------------------------------------------------------------

def test_softmax_rows_sum_to_one_and_match_definition():
    x = np.random.default_rng(0).standard_normal((4, 5))
    y = F.softmax(Tensor(x)).data
    np.testing.assert_allclose(y.sum(axis=-1), 1.0)
    np.testing.assert_allclose(y, np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True))


def test_softmax_and_log_softmax_are_stable():
    x = Tensor(np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = F.softmax(x).data
        ly = F.log_softmax(x).data
    np.testing.assert_allclose(y, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(ly, [[0.0, -1000.0, -2000.0]])
    assert y.dtype == ly.dtype == np.float32


def test_softmax_backward_formula():
    """dx = y * (dy - sum(y * dy)), the formula the chapter derives."""
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    X = Tensor(x, requires_grad=True)
    y = F.softmax(X)
    y.backward(dy)
    yd = y.data
    np.testing.assert_allclose(X.grad, yd * (dy - (yd * dy).sum(axis=-1, keepdims=True)))


def test_log_softmax_equals_log_of_softmax():
    x = Tensor(np.random.default_rng(2).standard_normal((2, 3, 4)))
    for axis in (0, 1, -1):
        np.testing.assert_allclose(F.log_softmax(x, axis=axis).data, np.log(F.softmax(x, axis=axis).data))


def test_cross_entropy_value_and_fused_gradient():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((5, 4))
    targets = np.array([0, 3, 1, 1, 2])
    X = Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(X, targets)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert loss.shape == ()
    assert loss.item() == pytest.approx(-logp[np.arange(5), targets].mean())
    loss.backward()
    onehot = np.eye(4)[targets]
    np.testing.assert_allclose(X.grad, (np.exp(logp) - onehot) / 5)


def test_cross_entropy_accepts_tensor_targets_and_keeps_float32():
    X = Tensor(np.zeros((2, 3), dtype=np.float32), requires_grad=True)
    loss = F.cross_entropy(X, Tensor(np.array([0, 2], dtype=np.int32)))
    assert loss.dtype == np.float32
    assert loss.item() == pytest.approx(math.log(3), rel=1e-6)
    loss.backward()
    assert X.grad.dtype == np.float32


def test_cross_entropy_single_sample_and_reductions():
    logits = np.array([1.0, 2.0, 0.5])
    single = F.cross_entropy(Tensor(logits), np.array(1))
    batch = F.cross_entropy(Tensor(logits[None]), np.array([1]))
    assert single.item() == pytest.approx(batch.item())
    two = Tensor(np.stack([logits, logits]))
    t = np.array([1, 0])
    per = F.cross_entropy(two, t, reduction="none").data
    assert per.shape == (2,)
    assert F.cross_entropy(two, t, reduction="sum").item() == pytest.approx(per.sum())
    assert F.cross_entropy(two, t).item() == pytest.approx(per.mean())


def test_nll_and_mse():
    lp = F.log_softmax(Tensor(np.array([[0.0, 1.0], [2.0, 0.0]])))
    assert F.nll_loss(lp, np.array([1, 0])).item() == pytest.approx(-lp.data[[0, 1], [1, 0]].mean())
    assert F.mse_loss(Tensor([1.0, 3.0]), Tensor([0.0, 1.0])).item() == pytest.approx(2.5)
    assert F.mse_loss(Tensor([1.0, 3.0]), np.zeros(2, np.float32), reduction="sum").item() == pytest.approx(10.0)


# -- activations ------------------------------------------------------------------------------------

def test_erf_matches_math_erf():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, 1.0, -1.0, 6.0, 30.0, -np.inf, np.inf]])
    expected = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(F.erf(x), expected, rtol=1e-13, atol=1e-15)
    assert np.isnan(F.erf(np.array([np.nan])))[0]


def test_gelu_values():
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    np.testing.assert_allclose(F.gelu(Tensor(x)).data, exact, rtol=1e-12)
    k = math.sqrt(2 / math.pi)
    approx = 0.5 * x * (1 + np.tanh(k * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(F.gelu(Tensor(x), approximate="tanh").data, approx, rtol=1e-12)
    assert F.gelu(Tensor(x.astype(np.float32))).dtype == np.float32


def test_relu_sigmoid_tanh_accept_arrays_and_tensors():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(F.relu(x).data, [0, 0, 2])
    np.testing.assert_allclose(F.sigmoid(Tensor(x)).data, 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(F.tanh(x).data, np.tanh(x))


def test_linear_matches_composed_ops():
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((5, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    T = [Tensor(a, requires_grad=True) for a in (x, w, b)]
    U = [Tensor(a, requires_grad=True) for a in (x, w, b)]
    F.linear(*T).sum().backward()
    (U[0] @ U[1].T + U[2]).sum().backward()
    for t, u in zip(T, U):
        np.testing.assert_allclose(t.grad, u.grad)
    assert F.linear(Tensor(x), Tensor(w)).shape == (5, 2)


# -- einsum -----------------------------------------------------------------------------------------

EINSUM_SPECS = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij,jk", [(2, 3), (3, 4)]),
    ("ba,ca", [(2, 3), (4, 3)]),  # implicit output is alphabetical: 'bc'
    ("i,i->", [(3,), (3,)]),
    ("i,i", [(3,), (3,)]),
    ("i,j->ij", [(2,), (3,)]),
    ("ij->ji", [(2, 3)]),
    ("ii->i", [(3, 3)]),
    ("ii", [(3, 3)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("ij,kl->ijkl", [(2, 3), (1, 2)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("...i,...i", [(2, 3), (3,)]),
    ("i...,i...->...", [(3, 2), (3, 2)]),
    ("ij,jk->ik", [(2, 1), (3, 4)]),  # size-1 broadcast, as NumPy and PyTorch allow
    ("a b, b c -> a c", [(2, 3), (3, 2)]),
]


@pytest.mark.parametrize("spec, shapes", EINSUM_SPECS, ids=[s for s, _ in EINSUM_SPECS])
def test_einsum_matches_numpy(spec, shapes):
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(s) for s in shapes]
    ours = F.einsum(spec, *[Tensor(a) for a in arrays])
    np.testing.assert_allclose(ours.data, np.einsum(spec.replace(" ", ""), *arrays), rtol=1e-12, atol=1e-12)


def test_einsum_backward_is_two_more_einsums():
    rng = np.random.default_rng(6)
    a, b, g = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    A, B = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    F.einsum("ij,jk->ik", A, B).backward(g)
    np.testing.assert_allclose(A.grad, np.einsum("ik,jk->ij", g, b))
    np.testing.assert_allclose(B.grad, np.einsum("ik,ij->jk", g, a))


def test_einsum_accepts_a_list_and_arrays():
    a = np.ones((2, 2))
    np.testing.assert_allclose(F.einsum("ij->", [a]).data, 4.0)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_einsum_random_two_operand_specs_match_numpy_and_lowering(data):
    letters = "abcdef"
    sizes = {c: data.draw(st.integers(1, 3), label=f"size {c}") for c in letters}
    ta = "".join(data.draw(st.permutations(letters))[: data.draw(st.integers(0, 4))])
    tb = "".join(data.draw(st.permutations(letters))[: data.draw(st.integers(0, 4))])
    pool = sorted(set(ta) | set(tb))
    out = "".join(data.draw(st.permutations(pool))[: data.draw(st.integers(0, len(pool)))]) if pool else ""
    spec = f"{ta},{tb}->{out}"
    rng = np.random.default_rng(len(spec))
    a = rng.standard_normal([sizes[c] for c in ta])
    b = rng.standard_normal([sizes[c] for c in tb])
    expected = np.einsum(spec, a, b)
    np.testing.assert_allclose(F.einsum(spec, Tensor(a), Tensor(b)).data, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(F.einsum_via_matmul(spec, a, b), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("ijk,kj->ki", [(2, 3, 4), (4, 3)]),
    ("ij,kl->", [(2, 3), (4, 5)]),
    ("abc,cd", [(2, 3, 4), (4, 5)]),
    ("i,i", [(3,), (3,)]),
])
def test_einsum_via_matmul_matches_numpy(spec, shapes):
    rng = np.random.default_rng(7)
    a, b = (rng.standard_normal(s) for s in shapes)
    np.testing.assert_allclose(F.einsum_via_matmul(spec, a, b), np.einsum(spec, a, b), rtol=1e-12, atol=1e-12)


def test_lower_einsum_plan_for_attention_scores():
    plan = F.lower_einsum("bhqd,bhkd->bhqk", (2, 3, 4, 5), (2, 3, 6, 5))
    assert (plan.batch, plan.m, plan.n, plan.k) == ("bh", "q", "k", "d")
    assert plan.bmk == (6, 4, 5) and plan.bkn == (6, 5, 6)
    assert plan.perm_b == (0, 1, 3, 2)  # B is transposed so the contracted axis comes before n
    assert any("A @ B" in step for step in plan.steps)
    assert "bhqd" in repr(plan)


def test_einsum_under_no_grad():
    a = Tensor(np.ones((2, 2)), requires_grad=True)
    with no_grad():
        assert not F.einsum("ij,jk", a, a).requires_grad
