"""Kernels and the registry: every op runs, agrees with the graph interpreter, and in-place kernels stay
correct when their output is one of their inputs."""

import numpy as np
import pytest

from mlsys_lab.graph import OPS, Graph, interpret, register_op
from mlsys_lab.graph import GraphError, optimize, trace
from mlsys_lab.runtime import REGISTRY, KernelNotFoundError, KernelRegistry, compile, lower

RNG = np.random.default_rng(0)


def arr(*shape, dtype=np.float32, positive=False):
    a = RNG.standard_normal(shape).astype(dtype)
    return np.abs(a) + 0.5 if positive else a


def one_op(op, inputs, attrs=None, name="g"):
    """A graph with one node ``op`` over fresh inputs of the given arrays' shapes and dtypes."""
    g = Graph(name)
    nodes = [g.input(f"x{k}", a.shape, a.dtype) for k, a in enumerate(inputs)]
    g.set_outputs([g.add_node(op, nodes, attrs or {})])
    return g


F32 = np.float32
CASES = [
    ("neg", [arr(3, 4)], {}),
    ("exp", [arr(3, 4)], {}),
    ("log", [arr(3, 4, positive=True)], {}),
    ("tanh", [arr(3, 4)], {}),
    ("sigmoid", [arr(3, 4) * 30], {}),
    ("relu", [arr(3, 4)], {}),
    ("gelu", [arr(3, 4)], {"approximate": "none"}),
    ("gelu", [arr(3, 4)], {"approximate": "tanh"}),
    ("pow_scalar", [arr(3, 4, positive=True)], {"exponent": 3}),
    ("pow_scalar", [arr(3, 4, positive=True)], {"exponent": 0.5}),
    ("pow_scalar", [arr(3, 4)], {"exponent": 2}),
    ("pow_scalar", [arr(3, 4, positive=True)], {"exponent": -1}),
    ("pow_scalar", [arr(3, 4, positive=True)], {"exponent": 1.5}),
    ("pow_scalar", [np.arange(12).reshape(3, 4)], {"exponent": 3}),
    ("add", [arr(3, 1), arr(1, 4)], {}),
    ("sub", [arr(3, 4), arr(4)], {}),
    ("mul", [arr(3, 4), arr(3, 4)], {}),
    ("div", [arr(3, 4), arr(3, 4, positive=True)], {}),
    ("div", [np.arange(6).reshape(2, 3), np.full((2, 3), 4)], {}),
    ("pow", [arr(3, 4, positive=True), arr(3, 4)], {}),
    ("relu_grad", [arr(3, 4), arr(3, 4)], {}),
    ("gelu_grad", [arr(3, 4), arr(3, 4)], {"approximate": "none"}),
    ("gelu_grad", [arr(3, 4), arr(3, 4)], {"approximate": "tanh"}),
    ("sum", [arr(2, 3, 4)], {"axis": (0, 2), "keepdims": False}),
    ("sum", [arr(2, 3, 4)], {"axis": None, "keepdims": True}),
    ("mean", [arr(2, 3, 4)], {"axis": (1,), "keepdims": True}),
    ("max", [arr(2, 3, 4)], {"axis": (2,), "keepdims": False}),
    ("sum_to", [arr(2, 3, 4)], {"shape": (3, 1)}),
    ("sum_to", [arr(3, 4)], {"shape": (3, 4)}),
    ("reshape", [arr(2, 6)], {"shape": (3, 4)}),
    ("transpose", [arr(2, 3, 4)], {"axes": (2, 0, 1)}),
    ("broadcast_to", [arr(3, 1)], {"shape": (2, 3, 4)}),
    ("getitem", [arr(5, 6)], {"index": (slice(1, 4), 2)}),
    ("getitem", [arr(5, 6)], {"index": (np.array([0, 2, 2]),)}),
    ("getitem_grad", [arr(3, 6)], {"index": (slice(1, 4),), "shape": (5, 6)}),
    ("getitem_grad", [arr(3, 6)], {"index": (np.array([0, 2, 2]),), "shape": (5, 6)}),
    ("matmul", [arr(3, 4), arr(4, 5)], {}),
    ("matmul", [arr(2, 3, 4), arr(4, 5)], {}),
    ("matmul", [arr(4), arr(4, 5)], {}),
    ("matmul_t", [arr(3, 4), arr(5, 4)], {}),
    ("linear", [arr(3, 4), arr(5, 4), arr(5)], {}),
    ("linear", [arr(2, 3, 4), arr(5, 4)], {}),
    ("einsum", [arr(2, 3, 4), arr(2, 4, 5)], {"subscripts": "bij,bjk->bik"}),
    ("einsum", [arr(3, 4)], {"subscripts": "ij->j"}),
    ("fused_linear", [arr(3, 4), arr(5, 4), arr(5)], {"trans_b": True, "activation": "relu"}),
    ("fused_linear", [arr(3, 4), arr(4, 5)], {"trans_b": False, "activation": "gelu_tanh"}),
    ("fused_linear", [arr(3, 4), arr(5, 4), arr(5)], {"trans_b": True, "activation": "sigmoid"}),
    ("softmax", [arr(3, 5) * 10], {"axis": 1}),
    ("softmax", [arr(3, 5)], {"axis": 0}),
    ("log_softmax", [arr(3, 5) * 10], {"axis": 1}),
    ("cross_entropy", [arr(4, 5), np.array([0, 4, 2, 2])], {"reduction": "mean"}),
    ("cross_entropy", [arr(4, 5), np.array([0, 4, 2, 2])], {"reduction": "none"}),
    ("nll_loss", [arr(4, 5), np.array([0, 4, 2, 2])], {"reduction": "sum"}),
    ("cross_entropy_grad", [np.array(1.0, F32), arr(4, 5), np.array([0, 4, 2, 2])], {"reduction": "mean"}),
    ("nll_loss_grad", [np.array(2.0, F32), arr(4, 5), np.array([1, 1, 0, 3])], {"reduction": "sum"}),
    ("max_grad", [arr(3), np.array([[1, 3, 3], [0, 0, 0], [2, 5, 1]], F32), np.array([3, 0, 5], F32)],
     {"axis": (1,), "keepdims": False}),
]


@pytest.mark.parametrize("op,inputs,attrs", CASES, ids=[f"{c[0]}-{k}" for k, c in enumerate(CASES)])
def test_kernel_matches_interpreter(op, inputs, attrs):
    g = one_op(op, inputs, attrs)
    node = g.outputs[0]
    # check=False: the interpreter's max_grad promotes float32 to float64 (its count is an integer array)
    ref = interpret(g, *inputs, check=False)[0].astype(node.dtype, copy=False)
    for backend in ("numpy", "reference"):
        out = compile(g, backend=backend, check=True).run(*inputs)[0]
        np.testing.assert_allclose(out, ref, rtol=2e-6, atol=1e-6, err_msg=f"{op} on {backend}")
        assert out.dtype == node.dtype and out.shape == node.shape


INPLACE_CASES = [c for c in CASES if REGISTRY.select(one_op(*c).outputs[0], "numpy").kernel.inplace]


@pytest.mark.parametrize("op,inputs,attrs", INPLACE_CASES,
                         ids=[f"{c[0]}-{k}" for k, c in enumerate(INPLACE_CASES)])
def test_in_place_kernels_survive_aliasing(op, inputs, attrs):
    """A kernel flagged ``inplace`` must give the same result when ``out`` is one of its inputs."""
    g = one_op(op, inputs, attrs)
    node = g.outputs[0]
    bound = REGISTRY.select(node, "numpy")
    ref = interpret(g, *inputs)[0]
    for k, a in enumerate(inputs):
        if a.shape != ref.shape or a.dtype != ref.dtype:
            continue
        args = [x.copy() for x in inputs]
        result = bound.call(*args, out=args[k])
        assert result is args[k] or np.shares_memory(result, args[k])
        np.testing.assert_allclose(args[k], ref, rtol=2e-6, atol=1e-6)


def test_every_ir_op_has_a_kernel():
    ops = set(OPS) - {"input", "constant"}
    assert ops <= set(REGISTRY.ops()), ops - set(REGISTRY.ops())
    # the default backend's own out= kernels cover everything on the hot paths of a training step
    for op in ("linear", "matmul", "relu", "relu_grad", "sum", "add", "mul", "transpose", "reshape", "softmax"):
        assert op in REGISTRY.ops("numpy")


def test_registry_table_lists_backends():
    table = REGISTRY.table()
    assert table.splitlines()[0].split() == ["op", "numba", "numpy", "reference"]
    assert any(line.startswith("fused_elementwise") for line in table.splitlines())


def test_unknown_op_names_the_node():
    # An op the IR does not know: the graph check fails, naming the node.
    register_op("mystery_op", 1, "elementwise")
    try:
        g = Graph("g")
        x = g.input("x", (2,), np.float32)
        g.set_outputs([g.add_node("mystery_op", [x], name="the_mystery", shape=(2,), dtype=np.float32)])
    finally:
        OPS.pop("mystery_op")
    with pytest.raises(GraphError, match="the_mystery.*mystery_op") as e:
        compile(g)
    assert e.value.node == "the_mystery"


def test_op_without_kernel_names_the_node():
    # An op the IR knows but no registered kernel computes (here: an empty registry).
    g = one_op("tanh", [arr(3)])
    with pytest.raises(KernelNotFoundError, match="'tanh_1'.*no kernel for op 'tanh'") as e:
        compile(g, registry=KernelRegistry())
    assert e.value.node == "tanh_1"


def test_custom_registry_and_kernel_selection():
    reg = KernelRegistry()
    calls = []

    @reg.register("tanh", when=lambda n: n.shape[0] > 3, name="numpy.big_tanh")
    def big_tanh(x, *, out):
        calls.append("big")
        return np.tanh(x, out=out)

    @reg.register("tanh")
    def tanh(x, *, out):
        calls.append("small")
        return np.tanh(x, out=out)

    for n, expect in ((2, "small"), (5, "big")):
        g = one_op("tanh", [arr(n)])
        plan = compile(g, registry=reg)
        assert plan.plan.steps[0].kernel.name == ("numpy.big_tanh" if expect == "big" else "numpy.tanh")
        plan.run(arr(n))
        assert calls[-1] == expect
    with pytest.raises(KernelNotFoundError, match="no kernel for op 'exp'"):
        compile(one_op("exp", [arr(2)]), registry=reg, backend="numpy")
    with pytest.raises(TypeError, match="keyword argument 'out'"):
        reg.register("neg")(lambda x: -x)
    with pytest.raises(ValueError, match="unknown backend"):
        reg.candidates("neg", "cuda")


def test_kernel_missing_attribute_names_the_node():
    reg = KernelRegistry()

    @reg.register("relu")
    def relu(x, *, out, slope):  # needs an attribute relu nodes do not have
        return np.maximum(x, 0, out=out)

    with pytest.raises(GraphError, match="'relu_1'.*slope"):
        compile(one_op("relu", [arr(3)]), registry=reg)


def test_reshape_of_strided_value_copies_and_of_contiguous_views():
    g = Graph("r")
    x = g.input("x", (3, 4), np.float32)
    t = g.add_node("transpose", [x], {"axes": (1, 0)})
    r1 = g.add_node("reshape", [t], {"shape": (12,)}, name="r_strided")
    e = g.add_node("exp", [x])
    r2 = g.add_node("reshape", [e], {"shape": (12,)}, name="r_contig")
    g.set_outputs([r1, r2])
    plan = lower(g)
    kernels = {s.name: s.kernel.name for s in plan.steps}
    assert kernels["r_strided"] == "numpy.reshape_copy"
    assert kernels["r_contig"] == "numpy.reshape_view"
    x0 = arr(3, 4)
    out = compile(g).run(x0)
    np.testing.assert_array_equal(out[0], x0.T.reshape(12))
    np.testing.assert_allclose(out[1], np.exp(x0).reshape(12), rtol=1e-6)


# -- the numba backend: generated fused kernels ---------------------------------------------------------------

def _fused_graph(fn, *examples):
    g = optimize(trace(fn, *examples))
    assert g.count("fused_elementwise") == 1, g
    return g


def test_numba_fused_gelu_matches_interpreter():
    from mlsys_lab.runtime.examples import gelu_tanh_graph

    g = gelu_tanh_graph(1000, fused=True)
    x = arr(1000) * 3
    ref = interpret(gelu_tanh_graph(1000), x)[0]
    plan = compile(g, backend="numba", check=True)
    step = plan.plan.steps[0]
    assert step.kernel.name == "numba.fused_elementwise"
    assert "for i in range(out.size)" in step.kernel.call.source
    np.testing.assert_allclose(plan(x), ref, rtol=1e-5, atol=1e-6)
    assert step.kernel.kernel.inplace           # one read, then one write per element: safe in place
    y = x.copy()
    step.kernel.call(y, out=y)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_numba_fused_broadcast_and_scalar_inputs():
    from mlsys_lab import Tensor

    def f(x, b, s):
        return ((x + b) * s).tanh() * 2.0 - (x * x).exp() / 3.0

    xs = [arr(4, 5), arr(5), arr(1)]
    g = _fused_graph(f, *[Tensor(a) for a in xs])
    ref = interpret(g, *xs)[0]
    plan = compile(g, backend="numba", check=True)
    np.testing.assert_allclose(plan(*xs), ref, rtol=1e-5, atol=1e-6)
    # the bias has another shape: the generated ufunc (NumPy broadcasting) runs instead of the flat loop
    assert "def fused_scalar" in plan.plan.steps[0].kernel.call.source


def test_numba_fused_float64_and_grad_ops():
    from mlsys_lab.runtime.kernels_numba import generate_source

    g = Graph("g")
    x = g.input("x", (50,), np.float64)
    gg = g.input("g", (50,), np.float64)
    a = g.add_node("gelu_grad", [gg, x], {"approximate": "none"})
    b = g.add_node("relu_grad", [a, x])
    c = g.add_node("sigmoid", [b])
    g.set_outputs([g.add_node("log", [g.add_node("add", [c, g.constant(np.float64(1.0))])])])
    fused = optimize(g)
    assert fused.count("fused_elementwise") == 1
    xs = [RNG.standard_normal(50), RNG.standard_normal(50)]
    np.testing.assert_allclose(compile(fused, backend="numba", check=True)(*xs), interpret(g, *xs)[0],
                               rtol=1e-12, atol=1e-12)
    sub = fused.outputs[0].attrs["graph"]
    assert "np.float64" in generate_source(sub, ["flat", "flat"])


def test_numba_declines_what_it_cannot_generate():
    from mlsys_lab.runtime.kernels_numba import generate_source

    sub = Graph("s")
    x = sub.input("x", (3,), np.bool_)
    sub.set_outputs([sub.add_node("mul", [x, x])])
    assert generate_source(sub, ["flat"]) is None


def test_numba_backend_selects_lab4_kernels_where_they_apply():
    g = Graph("k")
    a = g.input("a", (16, 8), np.float32)
    b = g.input("b", (8, 12), np.float32)
    m = g.add_node("matmul", [a, b])
    s = g.add_node("softmax", [m], {"axis": 1})
    g.set_outputs([g.add_node("sum", [s], {"axis": (1,), "keepdims": False}),
                   g.add_node("matmul", [g.add_node("sum", [a], {"axis": (0,), "keepdims": True}), b])])
    plan = compile(g, backend="numba", check=True)
    kernels = [st.kernel.name for st in plan.plan.steps]
    assert sorted(kernels) == ["numba.matmul", "numba.matmul", "numba.reduce_sum", "numba.reduce_sum",
                               "numba.softmax"]
    xs = [arr(16, 8), arr(8, 12)]
    for got, ref in zip(plan.run(*xs), interpret(g, *xs)):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
