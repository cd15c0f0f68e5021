"""Every op's forward value and gradients against PyTorch's, in float64, to 1e-6 relative error.

Skipped cleanly where torch is not installed. Each case builds the same inputs for both libraries,
reduces the output with a fixed random weighting (so every output element's gradient matters) and
compares the output and every input gradient.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
TF = torch.nn.functional

import mlsys_lab.functional as F  # noqa: E402
from mlsys_lab import Tensor  # noqa: E402

pytestmark = pytest.mark.torch

RTOL = 1e-6
ATOL = 1e-10


def _inputs(shapes, seed, domain):
    rng = np.random.default_rng(seed)
    arrays = []
    for shape in shapes:
        a = rng.standard_normal(shape)
        if domain == "positive":
            a = np.abs(a) + 0.5
        arrays.append(a)
    return arrays


def _compare(ours_fn, torch_fn, shapes, seed=0, domain="any", requires=None):
    arrays = _inputs(shapes, seed, domain)
    requires = requires or [True] * len(arrays)
    ts = [Tensor(a.copy(), requires_grad=r) for a, r in zip(arrays, requires)]
    ps = [torch.tensor(a.copy(), requires_grad=r) for a, r in zip(arrays, requires)]
    out = ours_fn(*ts)
    ref = torch_fn(*ps)
    assert out.shape == tuple(ref.shape)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=RTOL, atol=ATOL)
    weight = np.random.default_rng(seed + 1).standard_normal(out.shape)
    (out * Tensor(weight)).sum().backward()
    (ref * torch.tensor(weight)).sum().backward()
    for i, (t, p) in enumerate(zip(ts, ps)):
        if not p.requires_grad:
            assert t.grad is None
            continue
        assert t.grad is not None, f"input {i} got no gradient"
        assert t.grad.shape == t.shape and t.grad.dtype == t.dtype
        np.testing.assert_allclose(t.grad, p.grad.numpy(), rtol=RTOL, atol=ATOL, err_msg=f"input {i}")


# (id, ours, torch, shapes, domain)
CASES = [
    # elementwise with broadcasting
    ("add", lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (3, 4)], "any"),
    ("add_bcast_row", lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (4,)], "any"),
    ("add_bcast_both", lambda a, b: a + b, lambda a, b: a + b, [(3, 1, 5), (4, 1)], "any"),
    ("sub_bcast", lambda a, b: a - b, lambda a, b: a - b, [(2, 1, 4), (3, 1)], "any"),
    ("mul_bcast", lambda a, b: a * b, lambda a, b: a * b, [(2, 3, 4), (1, 3, 1)], "any"),
    ("div_bcast", lambda a, b: a / b, lambda a, b: a / b, [(2, 3), (3,)], "positive"),
    ("rdiv_scalar", lambda a: 2.0 / a, lambda a: 2.0 / a, [(5,)], "positive"),
    ("rsub_scalar", lambda a: 1.5 - a, lambda a: 1.5 - a, [(5,)], "any"),
    ("scalar_mul_add", lambda a: 3 * a + 1, lambda a: 3 * a + 1, [(2, 3)], "any"),
    ("neg", lambda a: -a, lambda a: -a, [(2, 3)], "any"),
    ("pow2", lambda a: a ** 2, lambda a: a ** 2, [(2, 3)], "any"),
    ("pow3", lambda a: a ** 3, lambda a: a ** 3, [(2, 3)], "any"),
    ("pow_half", lambda a: a ** 0.5, lambda a: a ** 0.5, [(2, 3)], "positive"),
    ("pow_neg", lambda a: a ** -1.5, lambda a: a ** -1.5, [(2, 3)], "positive"),
    ("pow_tensor", lambda a, b: a ** b, lambda a, b: a ** b, [(2, 3), (3,)], "positive"),
    ("rpow", lambda a: 2.0 ** a, lambda a: 2.0 ** a, [(4,)], "any"),
    ("exp", lambda a: a.exp(), torch.exp, [(3, 4)], "any"),
    ("log", lambda a: a.log(), torch.log, [(3, 4)], "positive"),
    ("tanh", lambda a: a.tanh(), torch.tanh, [(3, 4)], "any"),
    ("sigmoid", lambda a: a.sigmoid(), torch.sigmoid, [(3, 4)], "any"),
    ("relu", lambda a: a.relu(), torch.relu, [(3, 4)], "any"),
    # matmul in all its shapes
    ("matmul_2d", lambda a, b: a @ b, lambda a, b: a @ b, [(3, 4), (4, 5)], "any"),
    ("matmul_T", lambda a, b: a @ b.T, lambda a, b: a @ b.T, [(3, 4), (5, 4)], "any"),
    ("matmul_batched", lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4), (2, 4, 5)], "any"),
    ("matmul_bcast_batch", lambda a, b: a @ b, lambda a, b: a @ b, [(2, 1, 3, 4), (5, 4, 2)], "any"),
    ("matmul_3d_2d", lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4), (4, 5)], "any"),
    ("matmul_vec_mat", lambda a, b: a @ b, lambda a, b: a @ b, [(4,), (4, 5)], "any"),
    ("matmul_mat_vec", lambda a, b: a @ b, lambda a, b: a @ b, [(3, 4), (4,)], "any"),
    ("matmul_vec_vec", lambda a, b: a @ b, lambda a, b: a @ b, [(4,), (4,)], "any"),
    ("matmul_batch_vec", lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4), (4,)], "any"),
    ("matmul_vec_batch", lambda a, b: a @ b, lambda a, b: a @ b, [(4,), (2, 4, 3)], "any"),
    # reductions: all, negative axes, tuples of axes, keepdims
    ("sum_all", lambda a: a.sum(), lambda a: a.sum(), [(3, 4)], "any"),
    ("sum_axis0", lambda a: a.sum(axis=0), lambda a: a.sum(dim=0), [(3, 4)], "any"),
    ("sum_neg_keep", lambda a: a.sum(axis=-1, keepdims=True), lambda a: a.sum(dim=-1, keepdim=True),
     [(2, 3, 4)], "any"),
    ("sum_tuple", lambda a: a.sum(axis=(0, 2)), lambda a: a.sum(dim=(0, 2)), [(2, 3, 4)], "any"),
    ("sum_tuple_neg_keep", lambda a: a.sum(axis=(-1, 0), keepdims=True),
     lambda a: a.sum(dim=(-1, 0), keepdim=True), [(2, 3, 4)], "any"),
    ("mean_all", lambda a: a.mean(), lambda a: a.mean(), [(3, 4)], "any"),
    ("mean_tuple_keep", lambda a: a.mean(axis=(1, -1), keepdims=True),
     lambda a: a.mean(dim=(1, -1), keepdim=True), [(2, 3, 4)], "any"),
    ("mean_neg", lambda a: a.mean(axis=-2), lambda a: a.mean(dim=-2), [(2, 3, 4)], "any"),
    ("max_all", lambda a: a.max(), lambda a: a.amax(), [(3, 4)], "any"),
    ("max_axis", lambda a: a.max(axis=1), lambda a: a.amax(dim=1), [(3, 4)], "any"),
    ("max_tuple_keep", lambda a: a.max(axis=(0, -1), keepdims=True),
     lambda a: a.amax(dim=(0, -1), keepdim=True), [(2, 3, 4)], "any"),
    # shape ops and indexing
    ("reshape", lambda a: a.reshape(4, 3), lambda a: a.reshape(4, 3), [(3, 4)], "any"),
    ("reshape_tuple", lambda a: a.reshape((2, -1)), lambda a: a.reshape((2, -1)), [(2, 3, 4)], "any"),
    ("transpose", lambda a: a.transpose(2, 0, 1), lambda a: a.permute(2, 0, 1), [(2, 3, 4)], "any"),
    ("transpose_tuple", lambda a: a.transpose((1, 0, 2)), lambda a: a.permute(1, 0, 2), [(2, 3, 4)], "any"),
    ("T", lambda a: a.T, lambda a: a.T, [(3, 4)], "any"),
    ("index_int", lambda a: a[1], lambda a: a[1], [(3, 4)], "any"),
    ("index_slice", lambda a: a[:, 1:3], lambda a: a[:, 1:3], [(3, 4)], "any"),
    ("index_neg_step", lambda a: a[::-1, -1], lambda a: a.flip(0)[:, -1], [(3, 4)], "any"),
    ("index_mixed", lambda a: a[1, ..., ::2], lambda a: a[1, ..., ::2], [(2, 3, 4)], "any"),
    ("index_none", lambda a: a[None, :, 2], lambda a: a[None, :, 2], [(3, 4)], "any"),
    ("index_array_repeat", lambda a: a[np.array([0, 2, 0])], lambda a: a[torch.tensor([0, 2, 0])],
     [(3, 4)], "any"),
    # functional
    ("softmax", lambda a: F.softmax(a), lambda a: TF.softmax(a, dim=-1), [(3, 5)], "any"),
    ("softmax_axis0", lambda a: F.softmax(a, axis=0), lambda a: TF.softmax(a, dim=0), [(3, 5)], "any"),
    ("log_softmax", lambda a: F.log_softmax(a), lambda a: TF.log_softmax(a, dim=-1), [(3, 5)], "any"),
    ("log_softmax_mid", lambda a: F.log_softmax(a, axis=1), lambda a: TF.log_softmax(a, dim=1),
     [(2, 3, 4)], "any"),
    ("gelu_erf", lambda a: F.gelu(a), lambda a: TF.gelu(a), [(4, 6)], "any"),
    ("gelu_tanh", lambda a: F.gelu(a, approximate="tanh"), lambda a: TF.gelu(a, approximate="tanh"),
     [(4, 6)], "any"),
    ("F_relu", F.relu, TF.relu, [(4, 6)], "any"),
    ("F_sigmoid", F.sigmoid, torch.sigmoid, [(4, 6)], "any"),
    ("F_tanh", F.tanh, torch.tanh, [(4, 6)], "any"),
    ("linear", lambda x, w, b: F.linear(x, w, b), TF.linear, [(5, 4), (3, 4), (3,)], "any"),
    ("linear_3d", lambda x, w, b: F.linear(x, w, b), TF.linear, [(2, 5, 4), (3, 4), (3,)], "any"),
    # einsum
    ("einsum_matmul", lambda a, b: F.einsum("ij,jk->ik", a, b),
     lambda a, b: torch.einsum("ij,jk->ik", a, b), [(3, 4), (4, 5)], "any"),
    ("einsum_implicit", lambda a, b: F.einsum("ij,jk", a, b),
     lambda a, b: torch.einsum("ij,jk", a, b), [(3, 4), (4, 5)], "any"),
    ("einsum_batch", lambda a, b: F.einsum("bij,bjk->bik", a, b),
     lambda a, b: torch.einsum("bij,bjk->bik", a, b), [(2, 3, 4), (2, 4, 5)], "any"),
    ("einsum_attention", lambda q, k: F.einsum("bhqd,bhkd->bhqk", q, k),
     lambda q, k: torch.einsum("bhqd,bhkd->bhqk", q, k), [(2, 2, 3, 4), (2, 2, 5, 4)], "any"),
    ("einsum_outer", lambda a, b: F.einsum("i,j->ij", a, b),
     lambda a, b: torch.einsum("i,j->ij", a, b), [(3,), (4,)], "any"),
    ("einsum_summed_only_in_one", lambda a, b: F.einsum("ij,k->i", a, b),
     lambda a, b: torch.einsum("ij,k->i", a, b), [(3, 4), (5,)], "any"),
    ("einsum_transpose", lambda a: F.einsum("ijk->kji", a),
     lambda a: torch.einsum("ijk->kji", a), [(2, 3, 4)], "any"),
    ("einsum_sum", lambda a: F.einsum("ij->", a), lambda a: torch.einsum("ij->", a), [(2, 3)], "any"),
    ("einsum_trace", lambda a: F.einsum("ii->", a), lambda a: torch.einsum("ii->", a), [(3, 3)], "any"),
    ("einsum_diag", lambda a: F.einsum("ii->i", a), lambda a: torch.einsum("ii->i", a), [(3, 3)], "any"),
    ("einsum_three", lambda a, b, c: F.einsum("ij,jk,kl->il", a, b, c),
     lambda a, b, c: torch.einsum("ij,jk,kl->il", a, b, c), [(2, 3), (3, 4), (4, 2)], "any"),
    ("einsum_ellipsis", lambda a, b: F.einsum("...ij,...jk->...ik", a, b),
     lambda a, b: torch.einsum("...ij,...jk->...ik", a, b), [(2, 3, 4), (2, 4, 5)], "any"),
    ("einsum_ellipsis_bcast", lambda a, b: F.einsum("...ij,...jk->...ik", a, b),
     lambda a, b: torch.einsum("...ij,...jk->...ik", a, b), [(1, 3, 4), (5, 4, 2)], "any"),
    ("einsum_bilinear", lambda x, w, y: F.einsum("bi,oij,bj->bo", x, w, y),
     lambda x, w, y: torch.einsum("bi,oij,bj->bo", x, w, y), [(2, 3), (4, 3, 5), (2, 5)], "any"),
]


@pytest.mark.parametrize("ours, ref, shapes, domain", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matches_torch(ours, ref, shapes, domain):
    _compare(ours, ref, shapes, domain=domain)


def test_only_required_inputs_get_gradients():
    _compare(lambda a, b: a * b + a, lambda a, b: a * b + a, [(3,), (3,)], requires=[True, False])


def test_max_ties_split_like_torch_amax():
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    for axis, dim in [(None, None), (1, 1), (0, 0), ((0, 1), (0, 1))]:
        t = Tensor(a, requires_grad=True)
        p = torch.tensor(a, requires_grad=True)
        out = t.max() if axis is None else t.max(axis=axis)
        ref = p.amax() if dim is None else p.amax(dim=dim)
        out.sum().backward()
        ref.sum().backward()
        np.testing.assert_allclose(t.grad, p.grad.numpy(), rtol=RTOL)


@pytest.mark.parametrize("shape, reduction", [((6, 4), "mean"), ((6, 4), "sum"), ((6, 4), "none"),
                                               ((3, 4, 2, 2), "mean"), ((5,), "mean")])
def test_cross_entropy(shape, reduction):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal(shape) * 3
    classes = shape[1] if len(shape) > 1 else shape[0]
    tshape = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    targets = rng.integers(0, classes, tshape)
    _compare(lambda x: F.cross_entropy(x, targets, reduction=reduction),
             lambda x: TF.cross_entropy(x, torch.tensor(targets), reduction=reduction), [shape])


def test_nll_loss_after_log_softmax():
    targets = np.array([0, 3, 1, 1])
    _compare(lambda x: F.nll_loss(F.log_softmax(x), targets),
             lambda x: TF.nll_loss(TF.log_softmax(x, dim=-1), torch.tensor(targets)), [(4, 5)])


def test_mse_loss():
    _compare(lambda a, b: F.mse_loss(a, b), lambda a, b: TF.mse_loss(a, b), [(4, 3), (4, 3)])


def test_cross_entropy_extreme_logits_match_torch():
    logits = np.array([[1000.0, -1000.0, 0.0], [-500.0, 500.0, 499.0]])
    targets = np.array([1, 2])
    t = Tensor(logits, requires_grad=True)
    p = torch.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(t, targets)
    ref = TF.cross_entropy(p, torch.tensor(targets))
    loss.backward()
    ref.backward()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=RTOL)
    np.testing.assert_allclose(t.grad, p.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_mlp_training_step_matches_torch():
    """A whole step: Linear (x @ W.T + b), ReLU, Linear, cross-entropy, backward, SGD update."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6))
    y = rng.integers(0, 3, 8)
    arrays = [rng.standard_normal((5, 6)), rng.standard_normal(5), rng.standard_normal((3, 5)),
              rng.standard_normal(3)]
    ours = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    ref = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    for _ in range(3):
        for p in ours:
            p.grad = None
        h = (Tensor(x) @ ours[0].T + ours[1]).relu()
        F.cross_entropy(h @ ours[2].T + ours[3], y).backward()
        for p in ours:
            p.data -= 0.1 * p.grad
        for p in ref:
            p.grad = None
        h = torch.relu(torch.tensor(x) @ ref[0].T + ref[1])
        TF.cross_entropy(h @ ref[2].T + ref[3], torch.tensor(y)).backward()
        with torch.no_grad():
            for p in ref:
                p -= 0.1 * p.grad
    for p, q in zip(ours, ref):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=RTOL, atol=ATOL)
