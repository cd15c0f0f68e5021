"""Graph passes: each one's effect on the structure (node and kernel counts) and on the values.

Every optimised graph must compute what the unoptimised graph computes, on random inputs.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mlsys_lab.functional as F
from mlsys_lab import Tensor, nn
from mlsys_lab.graph import (CycleError, FixedPoint, Graph, PassManager, default_passes, grad, interpret,
                             optimize, trace)
from test_graph_trace import random_program  # noqa: E402  (a sibling test module: its program generator)
from mlsys_lab.graph.passes import (constant_fold, cse, dce, elementwise_groups, expression,
                                    fuse_elementwise, fuse_linear, fuse_patterns, fuse_softmax,
                                    scalar_source, simplify)

RNG = np.random.default_rng(2)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def gelu_tanh(x):
    return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)).tanh())


def run_pass(g, *passes):
    """Apply passes in place (each followed by a re-sort and validation), return g."""
    for p in passes:
        p(g)
        g.sort()
        g.validate()
    return g


def assert_same_values(g0, g1, *inputs, rtol=1e-6, atol=1e-7):
    for a, b in zip(interpret(g0, *inputs), interpret(g1, *inputs)):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)


# -- constant folding ---------------------------------------------------------------------------------

def test_constant_fold_computes_constant_subexpressions():
    two, three = Tensor(np.float32(2.0)), Tensor(np.float32(3.0))
    g = trace(lambda x: x * (two * three).exp() + (two - three), rand(3))
    assert g.num_ops() == 5 and g.op_counts()["mul"] == 2
    h = g.copy()
    assert constant_fold(h) == 3  # two*three, exp(...), two-three
    assert h.num_ops() == 2 and h.op_counts() == {"mul": 1, "add": 1}
    assert dce(h) == 3  # the constants 2 and 3 and the unused 6.0 are gone
    assert len(h) == 5  # x, exp(6), -1, mul, add
    np.testing.assert_allclose(sorted(float(v) for v in h.constants.values()), [-1.0, math.exp(6.0)], rtol=1e-6)
    assert_same_values(g, h, rand(3))


def test_constant_fold_skips_huge_results_and_folds_weight_transposes():
    g = Graph()
    x = g.input("x", (4, 4))
    big = g.add_node("broadcast_to", [g.constant(np.float32(1.0))], {"shape": (4, 4)})
    g.set_outputs([g.add_node("add", [x, big])])
    assert constant_fold(g, max_elements=8) == 0
    assert constant_fold(g) == 1
    # an inference graph traced without grad: W.T is computed once, at compile time
    w = Tensor(rand(5, 4))
    g2 = trace(lambda x: x @ w.T, rand(2, 4))
    assert g2.op_counts() == {"matmul": 1, "transpose": 1}
    assert run_pass(g2.copy(), constant_fold, dce).op_counts() == {"matmul": 1}


# -- dead code ----------------------------------------------------------------------------------------

def test_dce_removes_what_no_output_needs_but_keeps_inputs():
    g = Graph()
    x, unused = g.input("x", (3,)), g.input("unused", (3,))
    live = g.add_node("exp", [x])
    dead = g.add_node("tanh", [g.add_node("neg", [x])])
    g.add_node("add", [dead, g.constant(np.float32(1))])
    g.set_outputs([live])
    assert dce(g) == 4 and [n.name for n in g.nodes] == ["x", "unused", live.name]
    assert dce(g) == 0


# -- common subexpressions ----------------------------------------------------------------------------

def test_cse_merges_repeated_expressions_in_cascade():
    g = trace(lambda x: (x.exp() + x.exp()) * (x.exp() + x.exp()), rand(4))
    assert g.op_counts() == {"exp": 4, "add": 2, "mul": 1}
    h = g.copy()
    assert cse(h) == 4  # three exps, then the second add
    assert h.op_counts() == {"exp": 1, "add": 1, "mul": 1}
    assert_same_values(g, h, rand(4))


def test_cse_commutative_attrs_and_constants():
    g = trace(lambda x, y: (x * y + y * x) + (x.sum(axis=0) + x.sum(axis=1)).sum() * 2.0 * 2.0,
              rand(3, 3), rand(3, 3))
    n_const = len(g.constants)
    h = g.copy()
    merged = cse(h)
    assert h.count("mul") == g.count("mul") - 1  # y*x is x*y
    assert h.count("sum") == 3  # axis 0 and axis 1 differ, and the outer sum
    assert len(h.constants) == n_const - 1 and merged == 2  # the two 2.0 constants are one
    assert_same_values(g, h, rand(3, 3), rand(3, 3))


# -- algebraic simplification -------------------------------------------------------------------------

def test_simplify_identities_make_the_output_the_input():
    g = trace(lambda x: ((x * 1.0 + 0.0) - 0.0) / 1.0 * Tensor(np.ones((4,), np.float32)) ** 1, rand(3, 4))
    h = g.copy()
    assert simplify(h) == 6  # *1.0, +0.0, -0.0, /1.0, ones**1, then * ones (now visible)
    dce(h)
    assert h.num_ops() == 0 and h.outputs == h.inputs and len(h) == 1


def test_simplify_keeps_a_multiplication_that_broadcasts():
    g = trace(lambda x: x * Tensor(np.ones((3, 4), np.float32)), rand(4))
    assert simplify(g.copy()) == 0


def test_simplify_double_negation_square_transposes_and_reshapes():
    g = trace(lambda x: (-(-x)) ** 2 + x.transpose(1, 2, 0).transpose(2, 0, 1)
              + x.reshape(6, 4).reshape(24).reshape(2, 3, 4), rand(2, 3, 4))
    h = g.copy()
    assert simplify(h) == 5  # --x, x**2 -> x*x, transpose pair -> x, two reshapes merge, then -> x
    dce(h)
    assert h.op_counts() == {"mul": 1, "add": 2}
    assert_same_values(g, h, rand(2, 3, 4))


def test_simplify_composes_transposes():
    g = trace(lambda x: x.transpose(1, 0, 2).transpose(0, 2, 1), rand(2, 3, 4))
    h = run_pass(g.copy(), simplify, dce)
    assert h.op_counts() == {"transpose": 1} and h.outputs[0].attrs["axes"] == (1, 2, 0)
    assert_same_values(g, h, rand(2, 3, 4))


# -- elementwise fusion -------------------------------------------------------------------------------

def test_gelu_chain_fuses_into_one_kernel():
    g = trace(gelu_tanh, rand(8, 8))
    h = g.copy()
    assert fuse_elementwise(h) == 7
    dce(h)
    assert h.op_counts() == {"fused_elementwise": 1} and len(h) == 2
    fused = h.outputs[0]
    assert fused.attrs["graph"].num_ops() == 8 and fused.inputs == tuple(h.inputs)
    assert fused.attrs["expr"] == "0.5 * x0 * (1.0 + tanh(0.7978846 * (x0 + 0.044715 * x0 ** 3)))"
    x = rand(8, 8)
    np.testing.assert_array_equal(interpret(h, x)[0], interpret(g, x)[0])
    assert "fused_elementwise(%x) {expr='0.5 * x0" in str(h)


def test_scalar_source_compiles_to_the_same_function():
    h = optimize(trace(gelu_tanh, rand(4, 4)))
    src = scalar_source(h.outputs[0].attrs["graph"])
    assert src.startswith("def fused(x0):") and "math.tanh" in src
    ns = {"math": math}
    exec(src, ns)
    x = rand(4, 4).astype(np.float64)
    np.testing.assert_allclose(np.vectorize(ns["fused"])(x), gelu_tanh(Tensor(x)).data, rtol=1e-6)


def test_fusion_stops_at_values_needed_outside_the_group():
    def fn(x):
        t = x.exp()                   # read by the fused chain *and* by a reduction: must be materialised
        return (t * 2.0).tanh() + 1.0, t.sum()
    g = trace(fn, rand(3, 3))
    groups = elementwise_groups(g)
    assert len(groups) == 1 and sorted(n.op for n in groups[0][1]) == ["add", "mul", "tanh"]
    h = run_pass(g.copy(), fuse_elementwise, dce)
    assert h.op_counts() == {"fused_elementwise": 1, "exp": 1, "sum": 1}
    assert_same_values(g, h, rand(3, 3))


def test_fusion_does_not_swallow_a_graph_output_and_forms_separate_groups():
    def fn(x, y):
        a = x.exp().tanh()
        return a, (a * 3.0).sigmoid(), (y - 1.0).relu() * y
    g = trace(fn, rand(4), rand(4))
    h = run_pass(g.copy(), fuse_elementwise, dce)
    assert h.op_counts() == {"fused_elementwise": 3}
    sizes = sorted(n.attrs["graph"].num_ops() for n in h.nodes if n.op == "fused_elementwise")
    assert sizes == [2, 2, 3]
    assert_same_values(g, h, rand(4), rand(4))
    assert fuse_elementwise(g.copy(), min_ops=4) == 0


def test_expression_names_shared_values():
    g = Graph()
    x = g.input("x", (3,))
    t = g.add_node("tanh", [x])
    g.set_outputs([g.add_node("mul", [t, g.add_node("sub", [t, g.add_node("neg", [x])])])])
    assert expression(g) == "t0 = tanh(x); t0 * (t0 - -x)"


# -- pattern fusion -----------------------------------------------------------------------------------

@pytest.mark.parametrize("stable", [True, False])
def test_softmax_pattern(stable):
    def fn(x):
        z = x - x.max(axis=1, keepdims=True) if stable else x
        e = z.exp()
        return e / e.sum(axis=1, keepdims=True)
    g = trace(fn, rand(4, 6))
    h = g.copy()
    assert fuse_softmax(h) == 1
    dce(h)
    assert h.op_counts() == {"softmax": 1} and h.outputs[0].attrs == {"axis": 1}
    assert_same_values(g, h, rand(4, 6))
    np.testing.assert_array_equal(interpret(h, rand(4, 6) * 0)[0], np.full((4, 6), 1 / 6, np.float32))


def test_log_softmax_pattern_and_a_pattern_that_must_not_fire():
    def log_sm(x):
        z = x - x.max(axis=0, keepdims=True)
        return z - z.exp().sum(axis=0, keepdims=True).log()
    g = trace(log_sm, rand(5, 3))
    h = run_pass(g.copy(), fuse_patterns, dce)
    assert h.op_counts() == {"log_softmax": 1}
    assert_same_values(g, h, rand(5, 3))

    def shared(x):
        e = x.exp()
        return e / e.sum(axis=1, keepdims=True) + e  # e is needed outside the pattern
    g2 = trace(shared, rand(2, 3))
    assert fuse_softmax(g2.copy()) == 0


def test_matmul_bias_activation_patterns():
    w, b = Tensor(rand(6, 5)), Tensor(rand(5))
    wt = Tensor(rand(5, 6), requires_grad=True)
    cases = [
        (lambda x: (x @ w + b).relu(), {"trans_b": False, "activation": "relu"}),
        (lambda x: F.gelu(b + x @ wt.T, approximate="tanh"), {"trans_b": True, "activation": "gelu_tanh"}),
        (lambda x: (x @ w + b), {"trans_b": False, "activation": None}),
        (lambda x: F.linear(x, wt, b).sigmoid(), {"trans_b": True, "activation": "sigmoid"}),
        (lambda x: (x @ w).tanh(), {"trans_b": False, "activation": "tanh"}),
    ]
    for fn, attrs in cases:
        g = trace(fn, rand(3, 6))
        h = run_pass(g.copy(), fuse_linear, dce)
        assert h.op_counts() == {"fused_linear": 1}, (attrs, h)
        assert h.outputs[0].attrs == attrs
        assert_same_values(g, h, rand(3, 6), rtol=1e-5, atol=1e-6)


def test_matmul_with_a_transposed_operand_becomes_matmul_t_and_shared_matmul_is_kept():
    g = Graph()
    x, w = g.input("x", (3, 4)), g.input("w", (5, 4))
    m = g.add_node("matmul", [x, g.add_node("transpose", [w], {"axes": (1, 0)})])
    r = g.add_node("relu", [m])
    g.set_outputs([r, m])  # m is also an output: relu cannot be fused into it
    h = run_pass(g.copy(), fuse_linear, dce)
    assert h.op_counts() == {"matmul_t": 1, "relu": 1}


# -- the pass manager and the default pipeline --------------------------------------------------------

def pipeline_program(x):
    k = Tensor(np.float32(2.0)) * Tensor(np.float32(0.5))  # a constant expression: 1.0
    h = x * k + 0.0                                        # x*1 + 0 once folded
    e = (h - h.max(axis=1, keepdims=True)).exp()
    s = e / e.sum(axis=1, keepdims=True)                   # softmax
    return (s.T.T * 2.0).tanh() + (s * 2.0).tanh()         # double transpose; then a common subexpression


def test_optimize_pipeline_history_counts_each_pass():
    g = trace(pipeline_program, rand(4, 5))
    o = optimize(g)
    log = [(r.name, r.changes, r.ops_before, r.ops_after, r.nodes_after) for r in o.meta["pass_history"]]
    assert log == [
        ("constant_fold", 1, 15, 14, 21),
        ("simplify", 3, 14, 11, 18),
        ("common_subexpression_elimination", 4, 11, 9, 14),
        ("dead_code_elimination", 4, 9, 8, 10),
        ("constant_fold", 0, 8, 8, 10),
        ("simplify", 0, 8, 8, 10),
        ("common_subexpression_elimination", 0, 8, 8, 10),
        ("dead_code_elimination", 0, 8, 8, 10),
        ("fuse_patterns", 1, 8, 8, 10),
        ("dead_code_elimination", 4, 8, 4, 6),
        ("fuse_elementwise", 2, 4, 2, 4),
        ("dead_code_elimination", 1, 2, 2, 3),
    ]
    assert o.op_counts() == {"softmax": 1, "fused_elementwise": 1}
    assert o.outputs[0].attrs["expr"] == "t0 = tanh(x0 * 2.0); t0 + t0"
    assert g.num_ops() == 15  # the input graph is unchanged
    assert_same_values(g, o, rand(4, 5))


def test_optimize_mlp_inference_graph_to_three_kernels():
    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    x = rand(32, 64)
    o = optimize(trace(model, x))
    assert o.op_counts() == {"fused_linear": 2, "linear": 1}
    np.testing.assert_allclose(interpret(o, x)[0], model(x).data, rtol=1e-5, atol=1e-6)


def test_optimize_gelu_mlp_block():
    nn.init.manual_seed(0)
    block = nn.Sequential(nn.Linear(16, 32), nn.GELU(approximate="tanh"), nn.Linear(32, 16))
    x = rand(8, 16)
    g = trace(lambda x: block(x) + x, x)
    o = optimize(g)
    assert o.op_counts() == {"fused_linear": 1, "linear": 1, "add": 1}
    assert o.node(o.outputs[0].inputs[0].inputs[0].name).attrs["activation"] == "gelu_tanh"
    assert_same_values(g, o, x, rtol=1e-5, atol=1e-6)


def test_optimize_training_graph_keeps_values_and_fuses():
    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = rand(5, 8), RNG.integers(0, 4, 5)
    step = grad(trace(lambda x, y: F.cross_entropy(model(x), y), x, y, params="input", module=model))
    o = optimize(step)
    assert o.count("fused_linear") == 1 and o.num_ops() < step.num_ops()
    ps = [p.data for p in model.parameters()]
    assert_same_values(step, o, x, y, *ps, rtol=1e-5, atol=1e-6)


def test_pass_manager_validates_after_each_pass_and_names_the_pass():
    def evil(graph):
        a, b = [n for n in graph.nodes if n.op == "exp"][0], [n for n in graph.nodes if n.op == "tanh"][0]
        a.inputs = (b,)
        return 1
    g = trace(lambda x: x.exp().tanh(), rand(2))
    with pytest.raises(CycleError, match="after pass 'evil'.*cycle"):
        PassManager([dce, evil]).run(g)
    pm = PassManager([dce, FixedPoint([simplify, dce])])
    out = pm.run(g)
    assert [r.name for r in pm.history] == ["dead_code_elimination", "simplify", "dead_code_elimination"]
    assert out is not g and "simplify" in pm.report()
    assert default_passes(fuse=False)[0].name == "cleanup"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "sub", "mul", "div", "tanh", "exp", "relu", "neg",
                                           "sum", "mul1", "add0", "square", "sigmoid", "T"]),
                          st.integers(0, 10), st.integers(0, 10)), min_size=1, max_size=12),
       st.integers(0, 2 ** 16))
def test_random_programs_optimise_to_equal_values(steps, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((3, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    g = trace(random_program(steps), x, y)
    o = optimize(g)
    assert o.num_ops() <= g.num_ops()
    x2, y2 = rng.standard_normal((3, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    assert_same_values(g, o, x2, y2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op, attrs, arity", [
    ("neg", {}, 1), ("exp", {}, 1), ("log", {}, 1), ("tanh", {}, 1), ("sigmoid", {}, 1), ("relu", {}, 1),
    ("gelu", {"approximate": "none"}, 1), ("gelu", {"approximate": "tanh"}, 1),
    ("pow_scalar", {"exponent": 3}, 1),
    ("add", {}, 2), ("sub", {}, 2), ("mul", {}, 2), ("div", {}, 2), ("pow", {}, 2), ("relu_grad", {}, 2),
    ("gelu_grad", {"approximate": "none"}, 2), ("gelu_grad", {"approximate": "tanh"}, 2),
])
def test_scalar_source_of_every_elementwise_op_matches_the_kernel(op, attrs, arity):
    sub = Graph("one")
    ins = [sub.input(f"x{k}", (7,), np.float64) for k in range(arity)]
    sub.set_outputs([sub.add_node("mul", [sub.add_node(op, ins, attrs), sub.constant(np.float64(1.5))])])
    ns = {"math": math}
    exec(scalar_source(sub, "k"), ns)
    xs = [np.abs(RNG.standard_normal(7)) + 0.1 for _ in range(arity)]
    xs[-1][:3] *= -1 if op not in ("log", "pow") else 1
    np.testing.assert_allclose(np.vectorize(ns["k"])(*xs), interpret(sub, *xs)[0], rtol=1e-7, atol=1e-12)
    assert expression(sub).endswith("* 1.5")
