"""Tracing eager programs and nn.Modules into graphs, and the reference interpreter.

The interpreted graph must give the same results as eager mode (bit for bit, since the kernels use the
same formulas), and the op observer hook in autograd must be generic and leave the engine unchanged.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mlsys_lab.functional as F
from mlsys_lab import Tensor, nn
from mlsys_lab.autograd import no_grad
from mlsys_lab.autograd.tensor import _OpObserver, make_op, observe_ops
from mlsys_lab.graph import GraphError, TraceError, evaluate, interpret, trace

RNG = np.random.default_rng(0)


def rand(*shape, positive=False):
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + 0.5 if positive else x


def gelu_tanh(x):
    return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)).tanh())


def mlp(seed=0):
    nn.init.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def assert_same_as_eager(fn, *inputs, **kw):
    g = trace(fn, *inputs, **kw)
    eager = fn(*[Tensor(x) for x in inputs])
    eager = [eager] if isinstance(eager, Tensor) else list(eager)
    got = interpret(g, *inputs)
    assert len(got) == len(eager)
    for a, b in zip(got, eager):
        assert a.shape == b.data.shape and a.dtype == b.data.dtype
        np.testing.assert_array_equal(a, b.data)
    return g


# -- the observer hook in autograd --------------------------------------------------------------------

def test_observe_ops_sees_every_op_with_attributes_and_restores_the_previous_observer():
    seen = []
    x = Tensor(rand(2, 3), requires_grad=True)
    with observe_ops(lambda out, ins, name, attrs: seen.append((name, attrs, len(ins)))):
        x.sum(axis=1, keepdims=True)
        with no_grad():
            (x * 2.0).T
        with observe_ops(lambda *a: None):  # nested: the inner observer sees these, not the outer
            x.exp()
        F.softmax(x, axis=0)
    assert _OpObserver.fn is None
    assert seen == [("sum", (("axis", (1,)), ("keepdims", True)), 1), ("mul", None, 2),
                    ("transpose", (("axes", (1, 0)),), 1), ("softmax", (("axis", 0),), 1)]


def test_observer_is_restored_when_the_program_raises():
    with pytest.raises(ZeroDivisionError):
        with observe_ops(lambda *a: None):
            1 / 0
    assert _OpObserver.fn is None


def test_make_op_attrs_do_not_change_eager_results_or_gradients():
    x = Tensor(rand(3), requires_grad=True)
    y = make_op(x.data * 3, (x,), lambda g: (3 * g,), "triple", (("k", 3),))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 3, np.float32))


# -- tracing programs ---------------------------------------------------------------------------------

PROGRAMS = [
    ("arith", lambda x, y: (x + y) * (x - y) / (y * y + 1.0) - -x, [(3, 4), (4,)]),
    ("unary", lambda x: x.exp().tanh() + x.sigmoid() * x.relu() - (x * x + 1).log(), [(5, 6)]),
    ("pow", lambda x: x ** 2 + x ** 3 + (x * x + 1) ** 0.5, [(4, 4)]),
    ("pow_tensor", lambda x, y: (x * x + 1.0) ** y, [(3,), (3,)]),
    ("reduce", lambda x: x.sum(axis=1, keepdims=True) + x.mean(axis=0) - x.max(axis=(0, 1)), [(3, 4)]),
    ("shape", lambda x: x.reshape(4, 6).T.transpose(1, 0)[1:3, ::2] * x.reshape(-1)[:3].sum(), [(2, 3, 4)]),
    ("getitem_adv", lambda x: x[np.array([0, 2, 2])], [(4, 3)]),
    ("softmax", lambda x: F.softmax(x, axis=0) + F.log_softmax(x), [(4, 5)]),
    ("einsum", lambda a, b: F.einsum("bij,bjk->bik", a, b), [(2, 3, 4), (2, 4, 5)]),
    ("matmul", lambda a, b: a @ b + (a[0] @ b[:, 0]).sum() + (b[:, 1] @ b[:, 2]), [(2, 3, 4), (4, 5)]),
    ("gelu", lambda x: F.gelu(x) + F.gelu(x, approximate="tanh"), [(3, 7)]),
    ("gelu_tanh_chain", gelu_tanh, [(16, 32)]),
    ("multi_output", lambda x: (x.exp(), x.sum()), [(2, 2)]),
]


@pytest.mark.parametrize("name, fn, shapes", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_traced_program_interprets_to_the_eager_result(name, fn, shapes):
    g = assert_same_as_eager(fn, *[rand(*s) for s in shapes])
    g.validate()
    assert g.meta["single_output"] == (name != "multi_output")


def test_trace_records_op_names_attrs_and_input_names():
    g = trace(lambda data, scale: (data * scale).sum(axis=-1), rand(2, 3), rand(3))
    assert [n.name for n in g.inputs] == ["data", "scale"]
    assert g.op_counts() == {"mul": 1, "sum": 1}
    assert g.outputs[0].attrs == {"axis": (1,), "keepdims": False}
    assert g.name == "graph"


def test_gelu_tanh_chain_traces_to_eight_elementwise_ops():
    g = trace(gelu_tanh, rand(4, 4))
    assert g.name == "gelu_tanh" and g.num_ops() == 8
    assert g.op_counts() == {"mul": 4, "add": 2, "pow_scalar": 1, "tanh": 1}
    assert all(n.kind == "elementwise" for n in g.nodes if n.op not in ("input", "constant"))
    assert len(g.constants) == 4  # 0.5, 0.044715, sqrt(2/pi), 1


def test_mlp_module_traces_to_linear_relu_with_named_weight_constants():
    model = mlp()
    x = rand(32, 64)
    g = assert_same_as_eager(model, x)
    assert g.name == "Sequential"
    assert g.op_counts() == {"linear": 3, "relu": 2}
    assert sorted(g.constants) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]
    assert g.constants["2.weight"] is model[2].weight.data  # shared, not copied
    assert "%linear_5: f32[32,10] = linear(%relu_4, %4.weight, %4.bias)" in str(g)


def test_params_as_inputs_for_training_and_new_targets_as_an_input():
    model = mlp()
    x, y = rand(16, 64), RNG.integers(0, 10, 16)
    g = trace(lambda x, y: F.cross_entropy(model(x), y), x, y, params="input", module=model)
    assert [n.name for n in g.inputs][:2] == ["x", "y"]
    assert [p.name for p in g.params] == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert g.constants == {}
    ps = [p.data for p in model.parameters()]
    y2 = (y + 3) % 10
    got = interpret(g, x, y2, *ps)[0]
    np.testing.assert_array_equal(got, F.cross_entropy(model(x), y2).data)
    # different weights, by name
    named = {p.name: 2 * v for p, v in zip(g.params, ps)}
    got2 = interpret(g, x=x, y=y, **named)[0]
    for p, v in zip(model.parameters(), ps):
        p.data = 2 * v
    np.testing.assert_allclose(got2, F.cross_entropy(model(x), y).data, rtol=1e-6)


def test_x_at_w_transpose_records_matmul_t_with_grad_and_transpose_without():
    w = Tensor(rand(5, 3), requires_grad=True)
    x = rand(4, 3)
    g = trace(lambda x: x @ w.T, x)
    assert g.op_counts() == {"matmul_t": 1}
    with no_grad():
        g2 = trace(lambda x: x @ w.T, x)
    assert g2.op_counts() == {"matmul": 1, "transpose": 1}
    np.testing.assert_array_equal(interpret(g, x)[0], interpret(g2, x)[0])


def test_only_ops_the_outputs_need_are_kept():
    def fn(x):
        unused = x.exp() * 3  # noqa: F841  (computed, never returned)
        return x + 1
    g = trace(fn, rand(3))
    assert g.op_counts() == {"add": 1}


def test_identity_and_captured_tensors():
    g = trace(lambda x: x, rand(2))
    assert g.outputs == g.inputs
    c = Tensor(rand(2))
    g = trace(lambda x: x + c.exp(), rand(2))  # c.exp() is computed from a captured leaf: traced too
    assert g.op_counts() == {"add": 1, "exp": 1}


def test_trace_errors():
    x = rand(1, 1, 6, 6)
    conv = nn.Conv2d(1, 2, 3)
    with pytest.raises(TraceError, match="eager op 'conv2d', which the graph IR does not have"):
        trace(conv, x)
    with pytest.raises(TraceError, match="must return a Tensor"):
        trace(lambda x: x.data, rand(2))
    with pytest.raises(ValueError, match="params must be"):
        trace(lambda x: x, rand(2), params="weights")
    assert _OpObserver.fn is None


def test_interpret_evaluate_and_kernel_checks():
    g = trace(lambda x: (x * 2.0).exp(), rand(2, 2))
    env = evaluate(g, Tensor(np.zeros((2, 2), np.float32)))
    assert set(env) == set(g.nodes)
    np.testing.assert_array_equal(env[g.outputs[0]], np.ones((2, 2)))
    # a node whose recorded shape is wrong is caught at that node when interpreted
    g.outputs[0].shape = (4,)
    with pytest.raises(GraphError, match=r"computed f32\[2,2\] but is declared f32\[4\]") as e:
        interpret(g, np.zeros((2, 2), np.float32))
    assert e.value.node == g.outputs[0].name


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "sub", "mul", "div", "tanh", "exp", "relu", "neg",
                                           "sum", "mul1", "add0", "square", "sigmoid", "T"]),
                          st.integers(0, 10), st.integers(0, 10)), min_size=1, max_size=12),
       st.integers(0, 2 ** 16))
def test_random_programs_trace_to_the_eager_result(steps, seed):
    run = random_program(steps)
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((3, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    assert_same_as_eager(run, x, y)


def random_program(steps):
    """A program built from ``steps``: each step applies an op to values chosen from those so far."""
    def run(x, y):
        vals = [x, y]
        for op, i, j in steps:
            a, b = vals[i % len(vals)], vals[j % len(vals)]
            if op == "add":
                v = a + b
            elif op == "sub":
                v = a - b
            elif op == "mul":
                v = a * b
            elif op == "div":
                v = a / (b * b + 1.0)
            elif op == "sum":
                v = a.sum(axis=-1, keepdims=True)
            elif op == "mul1":
                v = a * 1.0
            elif op == "add0":
                v = 0.0 + a
            elif op == "square":
                v = a ** 2
            elif op == "exp":
                v = a.tanh().exp()
            elif op == "T":
                v = a.T
            else:
                v = getattr(a, op)() if op != "neg" else -a
            vals.append(v)
        return vals[-1] + vals[-2]
    return run
