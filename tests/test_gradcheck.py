"""Central finite differences, in float64, against the analytic gradient of every op.

For a function f of tensors, L = sum(f(x) * R) with a fixed random R; dL/dx[i] is estimated as
(L(x + h e_i) - L(x - h e_i)) / 2h, which is accurate to O(h^2). No reference library needed.
"""

import numpy as np
import pytest

import mlsys_lab.functional as F
from mlsys_lab import Tensor
from mlsys_lab.autograd import make_op


def numerical_grads(fn, arrays, weight, h=1e-6):
    grads = []
    for k, a in enumerate(arrays):
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + h
            plus = (fn(*[Tensor(x) for x in arrays]).data * weight).sum()
            a[i] = old - h
            minus = (fn(*[Tensor(x) for x in arrays]).data * weight).sum()
            a[i] = old
            g[i] = (plus - minus) / (2 * h)
        grads.append(g)
    return grads


def gradcheck(fn, shapes, domain="any", seed=0, rtol=1e-5, atol=1e-7):
    rng = np.random.default_rng(seed)
    arrays = []
    for shape in shapes:
        a = rng.standard_normal(shape)
        if domain == "positive":
            a = np.abs(a) + 0.5
        elif domain == "away_from_zero":  # keep relu/max kinks further than h from the evaluation point
            a = np.sign(a) * (np.abs(a) + 0.1)
        arrays.append(a)
    ts = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*ts)
    weight = rng.standard_normal(out.shape)
    (out * Tensor(weight)).sum().backward()
    expected = numerical_grads(fn, arrays, weight)
    for i, (t, g) in enumerate(zip(ts, expected)):
        assert t.grad is not None, f"input {i} got no gradient"
        np.testing.assert_allclose(t.grad, g, rtol=rtol, atol=atol, err_msg=f"input {i}")


TARGETS = np.array([2, 0, 1, 1])

CASES = {
    "add_bcast": (lambda a, b: a + b, [(2, 3, 4), (3, 1)], "any"),
    "sub_bcast": (lambda a, b: a - b, [(3, 1), (2, 1, 4)], "any"),
    "mul_bcast": (lambda a, b: a * b, [(2, 3), (3,)], "any"),
    "div_bcast": (lambda a, b: a / b, [(2, 3), (2, 1)], "positive"),
    "scalars": (lambda a: (2 - a) * 3 / (1 + a * a) + 0.5, [(5,)], "any"),
    "rdiv": (lambda a: 1.0 / a, [(5,)], "positive"),
    "neg": (lambda a: -a, [(5,)], "any"),
    "pow_int": (lambda a: a ** 3, [(5,)], "any"),
    "pow_frac": (lambda a: a ** 1.5, [(5,)], "positive"),
    "pow_tensor": (lambda a, b: a ** b, [(2, 3), (3,)], "positive"),
    "rpow": (lambda a: 3.0 ** a, [(4,)], "any"),
    "exp": (lambda a: a.exp(), [(2, 3)], "any"),
    "log": (lambda a: a.log(), [(2, 3)], "positive"),
    "tanh": (lambda a: a.tanh(), [(2, 3)], "any"),
    "sigmoid": (lambda a: a.sigmoid(), [(2, 3)], "any"),
    "relu": (lambda a: a.relu(), [(2, 3)], "away_from_zero"),
    "matmul": (lambda a, b: a @ b, [(3, 4), (4, 2)], "any"),
    "matmul_T": (lambda a, b: a @ b.T, [(3, 4), (2, 4)], "any"),
    "matmul_batched_bcast": (lambda a, b: a @ b, [(2, 1, 3, 4), (3, 4, 2)], "any"),
    "matmul_vec": (lambda a, b: a @ b, [(4,), (2, 4, 3)], "any"),
    "matmul_mat_vec": (lambda a, b: a @ b, [(3, 4), (4,)], "any"),
    "matmul_vec_vec": (lambda a, b: a @ b, [(4,), (4,)], "any"),
    "rmatmul_ndarray": (lambda a: np.arange(6.0).reshape(2, 3) @ a, [(3, 2)], "any"),
    "sum_all": (lambda a: a.sum(), [(2, 3)], "any"),
    "sum_tuple_neg": (lambda a: a.sum(axis=(0, -1)), [(2, 3, 4)], "any"),
    "sum_keepdims": (lambda a: a.sum(axis=1, keepdims=True), [(2, 3, 4)], "any"),
    "mean_tuple_keep": (lambda a: a.mean(axis=(-3, -1), keepdims=True), [(2, 3, 4)], "any"),
    "mean_all": (lambda a: a.mean(), [(2, 3, 4)], "any"),
    "max_all": (lambda a: a.max(), [(2, 3)], "any"),
    "max_neg_keep": (lambda a: a.max(axis=-1, keepdims=True), [(2, 3, 4)], "any"),
    "max_tuple": (lambda a: a.max(axis=(0, 2)), [(2, 3, 4)], "any"),
    "reshape": (lambda a: a.reshape(3, -1) * np.arange(8.0), [(2, 3, 4)], "any"),
    "transpose": (lambda a: a.transpose(1, 2, 0) * np.arange(2.0), [(2, 3, 4)], "any"),
    "T": (lambda a: a.T @ a, [(3, 2)], "any"),
    "getitem_basic": (lambda a: a[1:, ::2, -1] * 2, [(3, 4, 5)], "any"),
    "getitem_int_none_ellipsis": (lambda a: a[0, None, ..., 1], [(2, 3, 4)], "any"),
    "getitem_array": (lambda a: a[np.array([0, 0, 2]), 1:], [(3, 2)], "any"),
    "softmax": (lambda a: F.softmax(a, axis=0), [(3, 4)], "any"),
    "log_softmax": (lambda a: F.log_softmax(a, axis=-1), [(3, 4)], "any"),
    "cross_entropy": (lambda a: F.cross_entropy(a, TARGETS), [(4, 3)], "any"),
    "cross_entropy_sum": (lambda a: F.cross_entropy(a, TARGETS, reduction="sum"), [(4, 3)], "any"),
    "cross_entropy_none": (lambda a: F.cross_entropy(a, TARGETS, reduction="none"), [(4, 3)], "any"),
    "nll_loss": (lambda a: F.nll_loss(F.log_softmax(a), TARGETS), [(4, 3)], "any"),
    "mse_loss": (lambda a, b: F.mse_loss(a, b), [(4, 3), (4, 3)], "any"),
    "gelu": (lambda a: F.gelu(a), [(2, 5)], "any"),
    "gelu_tanh": (lambda a: F.gelu(a, approximate="tanh"), [(2, 5)], "any"),
    "linear": (lambda x, w, b: F.linear(x, w, b), [(4, 3), (2, 3), (2,)], "any"),
    "einsum_matmul": (lambda a, b: F.einsum("ij,jk->ik", a, b), [(2, 3), (3, 4)], "any"),
    "einsum_batch_implicit": (lambda a, b: F.einsum("bij,bjk", a, b), [(2, 2, 3), (2, 3, 2)], "any"),
    "einsum_sum_in_one": (lambda a, b: F.einsum("ijk,j->i", a, b), [(2, 3, 4), (3,)], "any"),
    "einsum_trace": (lambda a: F.einsum("ii", a), [(3, 3)], "any"),
    "einsum_diag_outer": (lambda a, b: F.einsum("ii,j->ij", a, b), [(3, 3), (2,)], "any"),
    "einsum_three": (lambda a, b, c: F.einsum("ij,jk,k->i", a, b, c), [(2, 3), (3, 4), (4,)], "any"),
    "einsum_ellipsis_bcast": (lambda a, b: F.einsum("...ij,...j->...i", a, b), [(2, 1, 3, 4), (5, 4)], "any"),
    "composite_mlp": (lambda x, w: F.cross_entropy((x @ w).tanh() @ w.T, np.array([0, 2])),
                      [(2, 3), (3, 3)], "any"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck(name):
    fn, shapes, domain = CASES[name]
    gradcheck(fn, shapes, domain)


def test_gradcheck_reused_input():
    """A tensor used several times gets the sum of all its paths' gradients."""
    gradcheck(lambda a: a * a + a.exp() * a - (a @ a), [(4,)])


def test_gradcheck_custom_op_with_make_op():
    def cube(x):
        return make_op(x.data ** 3, (x,), lambda g: (3 * x.data ** 2 * g,), name="cube")

    gradcheck(lambda a: cube(a).sum(axis=0), [(3, 2)])
