"""Symbolic autodiff: the backward graph built from a forward graph gives Lab 1's eager gradients.

For every op with a gradient rule, a small program is traced with its inputs as ``"param"``-style
differentiable inputs, differentiated with ``grad``, interpreted, and compared with ``loss.backward()``.
Then the whole training step of the Lab 1 MLP is one graph, optimised or not, and trains like eager mode.
"""

import numpy as np
import pytest

import mlsys_lab.functional as F
from mlsys_lab import Tensor, nn, optim
from mlsys_lab.graph import GraphError, grad, interpret, optimize, sgd_update, trace
from mlsys_lab.graph.autodiff import VJP_RULES

RNG = np.random.default_rng(1)


def rand(*shape, positive=False, dtype=np.float64):
    x = RNG.standard_normal(shape)
    return (np.abs(x) + 0.5 if positive else x).astype(dtype)


def check_grads(fn, *inputs, rtol=1e-10, atol=1e-12):
    """grad(trace(fn)) agrees with eager backward for every floating-point input."""
    fwd = trace(fn, *inputs)
    bwd = grad(fwd)
    tensors = [Tensor(x, requires_grad=x.dtype.kind == "f") for x in inputs]
    fn(*tensors).backward()
    outs = interpret(bwd, *inputs)
    float_inputs = [t for t in tensors if t.requires_grad]
    assert len(outs) == 1 + len(float_inputs)
    for t, got in zip(float_inputs, outs[1:]):
        assert got.shape == t.data.shape and got.dtype == t.data.dtype
        np.testing.assert_allclose(got, t.grad, rtol=rtol, atol=atol)
    return bwd


CASES = [
    ("add_sub_broadcast", lambda a, b: ((a + b) * (a - b)).sum(), [(3, 4), (4,)]),
    ("mul_div_broadcast", lambda a, b: (a * b / (b * b + 1.0)).sum(), [(2, 3, 4), (3, 1)]),
    ("neg_exp_log", lambda a: (-(a.exp()) + (a * a + 1.0).log()).sum(), [(5,)]),
    ("tanh_sigmoid", lambda a: (a.tanh() * a.sigmoid()).sum(), [(3, 3)]),
    ("relu", lambda a: (a.relu() * a).sum(), [(4, 5)]),
    ("gelu", lambda a: (F.gelu(a) + F.gelu(a, approximate="tanh")).sum(), [(6,)]),
    ("pow_scalar", lambda a: (a ** 2 + a ** 3 + (a * a + 1.0) ** 0.5 + a ** 0 + a ** 1).sum(), [(4,)]),
    ("pow_tensor", lambda a, b: ((a * a + 1.0) ** b).sum(), [(3,), (3,)]),
    ("matmul_2d", lambda a, b: (a @ b).tanh().sum(), [(3, 4), (4, 2)]),
    ("matmul_batched_vec", lambda a, b, v: ((a @ b) @ v).sum() + (v @ v), [(2, 3, 4), (4, 4), (4,)]),
    ("matmul_vec_mat", lambda v, b: (v @ b).sum(), [(4,), (2, 4, 3)]),
    ("linear_3d", lambda x, w, b: F.linear(x, w, b).tanh().sum(), [(2, 3, 4), (5, 4), (5,)]),
    ("einsum", lambda a, b: F.einsum("bij,jk->bik", a, b).tanh().sum(), [(2, 3, 4), (4, 5)]),
    ("einsum_sum_away", lambda a, b: F.einsum("ij,k->i", a, b).sum(), [(3, 4), (2,)]),
    ("sum_mean_keepdims", lambda a: (a.sum(axis=1, keepdims=True) * a).mean(axis=(0, 2)).sum(), [(2, 3, 4)]),
    ("mean_all", lambda a: (a * a).mean(), [(3, 5)]),
    ("max_with_ties", lambda a: (a.max(axis=1) + a.max()).sum(), "ties"),
    ("reshape_transpose", lambda a: (a.reshape(6, 4).T.transpose(1, 0) * a.reshape(-1, 4)).sum(),
     [(2, 3, 4)]),
    ("transpose_3d", lambda a: (a.transpose(2, 0, 1) * a.transpose(2, 0, 1).tanh()).sum(), [(2, 3, 4)]),
    ("getitem", lambda a: (a[1:, ::2] * 2.0).sum() + a[np.array([0, 0, 2])].sum(), [(3, 4)]),
    ("softmax", lambda a, w: (F.softmax(a, axis=0) * w).sum(), [(4, 5), (4, 5)]),
    ("log_softmax", lambda a, w: (F.log_softmax(a) * w).sum(), [(4, 5), (4, 5)]),
    ("reused_value", lambda a: (a * a * a + a.exp() * a).sum(), [(3,)]),
]


@pytest.mark.parametrize("name, fn, shapes", CASES, ids=[c[0] for c in CASES])
def test_grad_graph_matches_eager_gradients(name, fn, shapes):
    if shapes == "ties":
        inputs = [np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])]
    else:
        inputs = [rand(*s) for s in shapes]
    check_grads(fn, *inputs)


def test_losses_with_integer_targets():
    logits, t = rand(6, 4), RNG.integers(0, 4, 6)
    for reduction in ("mean", "sum"):
        check_grads(lambda x, t: F.cross_entropy(x, t, reduction=reduction), logits, t)
        check_grads(lambda x, t: F.nll_loss(F.log_softmax(x), t, reduction=reduction), logits, t)
    check_grads(lambda x, t: (F.cross_entropy(x, t, reduction="none") * 2.0).sum(), logits, t)
    check_grads(lambda x, t: F.cross_entropy(x, t), rand(3, 4, 5), RNG.integers(0, 4, (3, 5)))


def test_every_vjp_rule_is_exercised():
    exercised = {"add", "sub", "mul", "div", "neg", "exp", "log", "tanh", "sigmoid", "relu", "gelu",
                 "pow_scalar", "pow", "matmul", "linear", "einsum", "sum", "mean", "max", "reshape",
                 "transpose", "getitem", "softmax", "log_softmax", "cross_entropy", "nll_loss"}
    # matmul_t (test_mlp_*), sum_to / broadcast_to (test_grad_of_shape_ops) and fused ops are tested below
    others = {"matmul_t", "sum_to", "broadcast_to", "fused_elementwise", "fused_linear"}
    assert exercised | others == set(VJP_RULES)


def test_grad_of_shape_ops_and_matmul_t():
    from mlsys_lab.graph import Graph
    g = Graph("g")
    x = g.input("x", (3, 1), np.float64)
    w = g.input("w", (2, 4), np.float64)
    b = g.add_node("broadcast_to", [x], {"shape": (2, 3, 4)})
    s = g.add_node("sum_to", [b], {"shape": (3, 4)})
    m = g.add_node("matmul_t", [s, w])  # (3,4) @ (2,4).T
    loss = g.add_node("sum", [g.add_node("tanh", [m])], {"axis": None, "keepdims": False})
    g.set_outputs([loss])
    bg = grad(g)
    xv, wv = rand(3, 1), rand(2, 4)
    tx, tw = Tensor(xv, requires_grad=True), Tensor(wv, requires_grad=True)
    s_eager = (tx * Tensor(np.ones((2, 3, 4)))).sum(axis=0)
    (s_eager @ tw.T).tanh().sum().backward()
    _, gx, gw = interpret(bg, xv, wv)
    np.testing.assert_allclose(gx, tx.grad, rtol=1e-12)
    np.testing.assert_allclose(gw, tw.grad, rtol=1e-12)


def test_nonscalar_output_gets_a_seed_input_and_unused_inputs_get_zeros():
    g = trace(lambda a, b: a.exp(), rand(3), rand(2))
    bg = grad(g)
    assert [n.name for n in bg.inputs] == ["a", "b", "dexp_1"]
    seed = rand(3)
    _, ga, gb = interpret(bg, rand(3) * 0, rand(2), seed)
    np.testing.assert_allclose(ga, seed)
    np.testing.assert_array_equal(gb, np.zeros(2))
    assert bg.meta["grads"] == {"a": 1, "b": 2}


def test_grad_errors_name_the_node():
    g = trace(lambda a: a.exp().tanh().sum(), rand(3))
    fused = optimize(g)
    with pytest.raises(GraphError, match="no gradient rule; differentiate the graph before") as e:
        grad(fused)
    assert e.value.node.startswith("fused")
    g2 = trace(lambda a, t: F.cross_entropy(a, t), rand(2, 3), np.array([0, 1]))
    with pytest.raises(GraphError, match="only floating-point inputs"):
        grad(g2, wrt=["t"])
    with pytest.raises(GraphError, match="not 'cross_entropy"):
        grad(g2, wrt=[g2.outputs[0]])


# -- one training step as one graph -------------------------------------------------------------------

def mlp(seed=0):
    nn.init.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def training_graph(model, x, y, lr):
    fwd = trace(lambda x, y: F.cross_entropy(model(x), y), x, y, params="input", module=model)
    return fwd, sgd_update(grad(fwd), lr)


def test_mlp_backward_graph_equals_eager_gradients_exactly():
    model = mlp()
    x, y = RNG.standard_normal((32, 64)).astype(np.float32), RNG.integers(0, 10, 32)
    fwd = trace(lambda x, y: F.cross_entropy(model(x), y), x, y, params="input", module=model)
    bwd = grad(fwd)
    assert bwd.op_counts() == {"linear": 3, "relu": 2, "cross_entropy": 1, "cross_entropy_grad": 1,
                               "relu_grad": 2, "matmul": 6, "transpose": 3, "sum": 3}
    params = list(model.parameters())
    outs = interpret(bwd, x, y, *[p.data for p in params])
    F.cross_entropy(model(x), y).backward()
    for p, gp in zip(params, outs[1:]):
        np.testing.assert_array_equal(gp, p.grad)  # the same arithmetic in the same order
    # the data gradient nobody asked for is dead code, removed by DCE
    assert optimize(bwd, fuse=False).count("matmul") == 5


def test_compiled_mlp_training_step_trains_like_eager_mode():
    """Five SGD steps on the digits data: interpreted graph (optimised) vs eager model + optim.SGD."""
    from mlsys_lab.data import load_digits

    xs, ys = load_digits()
    xs, ys = xs[:128], ys[:128]
    model = mlp(1)
    fwd, step = training_graph(model, xs[:64], ys[:64], lr=0.1)
    opt_step = optimize(step)
    assert opt_step.op_counts()["fused_linear"] == 2 and opt_step.num_ops() < step.num_ops()
    names = [p.name for p in step.params]
    params = {n: p.data.copy() for n, p in model.named_parameters()}
    sgd = optim.SGD(model.parameters(), lr=0.1)
    for k in range(5):
        xb, yb = xs[64 * (k % 2):64 * (k % 2) + 64], ys[64 * (k % 2):64 * (k % 2) + 64]
        sgd.zero_grad()
        eager_loss = F.cross_entropy(model(xb), yb)
        eager_loss.backward()
        sgd.step()
        outs = interpret(opt_step, xb, yb, **params)
        plain = interpret(step, xb, yb, **params)
        np.testing.assert_allclose(outs[0], eager_loss.data, rtol=1e-5)
        for a, b in zip(outs, plain):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        params = {n: outs[step.meta["updates"][n]] for n in names}
    for n, p in model.named_parameters():
        np.testing.assert_allclose(params[n], p.data, rtol=1e-4, atol=1e-5)


def test_sgd_update_requires_a_grad_graph():
    g = trace(lambda a: a.sum(), rand(2))
    with pytest.raises(GraphError, match="made by grad"):
        sgd_update(g, 0.1)
