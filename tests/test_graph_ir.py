"""mlsys_lab.graph.ir and .shapes: building graphs, the text form, validation and shape inference.

Every malformed graph must raise an error whose ``.node`` is the name of the node at fault.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from mlsys_lab.graph import OPS, CycleError, Graph, GraphError, Node, ShapeError, infer_shapes, interpret
from mlsys_lab.graph.shapes import SHAPE_RULES


def small_graph():
    g = Graph("f")
    x = g.input("x", (4, 3))
    c = g.constant(np.float32(2.0), name="two")
    y = g.add_node("mul", [x, c], name="y")
    s = g.add_node("sum", [y], {"axis": (1,), "keepdims": False}, name="s")
    g.set_outputs([s])
    return g


def test_text_form_lists_nodes_producers_first():
    assert str(small_graph()) == (
        "graph f(%x: f32[4,3]) {\n"
        "  %two: f32[] = constant 2.0\n"
        "  %y: f32[4,3] = mul(%x, %two)\n"
        "  %s: f32[4] = sum(%y) {axis=(1,), keepdims=False}\n"
        "  return %s\n"
        "}")


def test_node_fields_and_graph_queries():
    g = small_graph()
    y = g.node("y")
    assert y.op == "mul" and [i.name for i in y.inputs] == ["x", "two"]
    assert y.shape == (4, 3) and y.dtype == np.float32 and y.attrs == {}
    assert g.node("s").attrs == {"axis": (1,), "keepdims": False}
    assert len(g) == 4 and g.num_ops() == 2 and g.count("mul") == 1
    assert g.op_counts() == {"mul": 1, "sum": 1}
    assert list(g.constants) == ["two"] and g.constants["two"] == 2.0
    assert [n.name for n in g.inputs] == ["x"] and g.params == []
    assert g.users()[g.node("x")] == [y]
    assert y.kind == "elementwise" and g.node("s").kind == "reduction"
    assert y.nbytes == 48
    with pytest.raises(KeyError, match="no node named 'nope'"):
        g.node("nope")


def test_every_op_has_a_shape_rule_and_a_kernel():
    from mlsys_lab.graph import KERNELS
    for op in OPS:
        if op not in ("input", "constant"):
            assert op in SHAPE_RULES, op
            assert op in KERNELS, op


def test_unique_names_and_param_inputs():
    g = Graph()
    a = g.input("w", (2,), kind="param")
    with pytest.raises(GraphError, match="already has a node named 'w'"):
        g.input("w", (2,))
    b = g.add_node("neg", [a])
    c = g.add_node("neg", [b])
    assert b.name != c.name and g.params == [a]
    with pytest.raises(ValueError, match="kind"):
        g.input("z", (1,), kind="weights")


def test_add_node_rejects_unknown_op_and_wrong_arity_naming_the_node():
    g = Graph()
    x = g.input("x", (2,))
    with pytest.raises(GraphError, match="unknown op 'frobnicate'") as e:
        g.add_node("frobnicate", [x], name="bad")
    assert e.value.node == "bad"
    with pytest.raises(GraphError, match="takes 2 inputs, got 1") as e:
        g.add_node("add", [x], name="half")
    assert e.value.node == "half"


def test_add_node_shape_error_names_the_node_and_both_shapes():
    g = Graph()
    a, b = g.input("a", (2, 3)), g.input("b", (4,))
    message = r"node 'oops' \(add\): cannot broadcast shapes \(2, 3\) and \(4,\)"
    with pytest.raises(ShapeError, match=message) as e:
        g.add_node("add", [a, b], name="oops")
    assert e.value.node == "oops"


def test_validate_finds_a_cycle_and_names_a_node_on_it():
    g = small_graph()
    y, s = g.node("y"), g.node("s")
    y.inputs = (s, g.node("two"))  # s reads y, y now reads s
    with pytest.raises(CycleError, match=r"cycle: %(s -> %y -> %s|y -> %s -> %y)") as e:
        g.validate()
    assert e.value.node in ("y", "s")
    with pytest.raises(CycleError):
        g.topological_order()


def test_validate_unknown_op_in_an_existing_graph():
    g = small_graph()
    g.node("y").op = "mystery"
    with pytest.raises(GraphError, match="unknown op 'mystery'") as e:
        g.validate()
    assert e.value.node == "y"


def test_validate_input_from_another_graph():
    g, other = small_graph(), Graph("other")
    stranger = other.input("z", (4, 3))
    g.node("y").inputs = (stranger, g.node("two"))
    with pytest.raises(GraphError, match="'y' .* reads 'z', which is not in graph 'f'") as e:
        g.validate()
    assert e.value.node == "y"


def test_validate_mismatched_recorded_shape():
    g = small_graph()
    g.node("s").shape = (3,)
    message = r"node 's' \(sum\) is recorded as f32\[3\] but its inputs give f32\[4\]"
    with pytest.raises(ShapeError, match=message) as e:
        g.validate()
    assert e.value.node == "s"


def test_validate_shapes_that_stopped_fitting_after_an_edit():
    g = small_graph()
    z = g.input("z", (5,))
    g.node("y").inputs = (g.node("x"), z)
    with pytest.raises(ShapeError, match="cannot broadcast") as e:
        g.validate()
    assert e.value.node == "y"


def test_validate_missing_attribute_outputs_and_stray_inputs():
    g = small_graph()
    del g.node("s").attrs["keepdims"]
    with pytest.raises(GraphError, match="needs attribute 'keepdims'") as e:
        g.validate()
    assert e.value.node == "s"
    g = small_graph()
    g.set_outputs([])
    with pytest.raises(GraphError, match="no outputs"):
        g.validate()
    g = small_graph()
    g.set_outputs([Node("neg", (), name="ghost")])
    with pytest.raises(GraphError, match="output 'ghost' is not in graph") as e:
        g.validate()
    assert e.value.node == "ghost"
    g = small_graph()
    g.inputs.clear()
    with pytest.raises(GraphError, match="'x' is an input node but not one of the graph's inputs"):
        g.validate()


def test_validate_duplicate_names():
    g = small_graph()
    g.node("s").name = "y"
    with pytest.raises(GraphError, match="two nodes are named 'y'"):
        g.validate()


def test_missing_and_wrong_input_values_name_the_input():
    g = small_graph()
    with pytest.raises(GraphError, match="input 'x' .* was not given") as e:
        interpret(g)
    assert e.value.node == "x"
    with pytest.raises(ShapeError, match=r"input 'x' expects f32\[4,3\], got f32\[3,4\]") as e:
        interpret(g, np.ones((3, 4), np.float32))
    assert e.value.node == "x"
    with pytest.raises(GraphError, match="no input named 'q'"):
        interpret(g, q=np.ones(1))


def test_topological_order_is_stable_and_sort_repairs_order():
    g = small_graph()
    assert [n.name for n in g.topological_order()] == ["x", "two", "y", "s"]
    g.nodes.reverse()
    assert [n.name for n in g.sort().nodes] == ["two", "x", "y", "s"]  # ties keep the current order
    assert "return %s" in g.text()


def test_replace_all_uses_remove_and_copy():
    g = small_graph()
    h = g.copy()
    x, y = g.node("x"), g.node("y")
    n = g.add_node("neg", [x], name="n")
    assert g.replace_all_uses(y, n) == 1
    g.remove(y)
    assert g.node("s").inputs == (n,)
    with pytest.raises(GraphError, match="still used"):
        g.remove(n)
    with pytest.raises(GraphError, match="cannot remove graph input"):
        g.remove(x)
    # the copy was not affected, and its nodes are new objects
    assert h.node("s").inputs[0].name == "y" and h.node("y") is not y
    g.validate()
    h.validate()


# -- shape inference ----------------------------------------------------------------------------------

def _node(g, op, shapes, attrs=None, dtypes=None):
    ins = [g.input(f"i{k}_{len(g)}", s, (dtypes or [np.float32] * len(shapes))[k]) for k, s in enumerate(shapes)]
    return g.add_node(op, ins, attrs)


@pytest.mark.parametrize("op, shapes, attrs, expect", [
    ("matmul", [(2, 3), (3, 4)], None, (2, 4)),
    ("matmul", [(3,), (3, 4)], None, (4,)),
    ("matmul", [(2, 3), (3,)], None, (2,)),
    ("matmul", [(3,), (3,)], None, ()),
    ("matmul", [(5, 1, 2, 3), (4, 3, 6)], None, (5, 4, 2, 6)),
    ("matmul_t", [(2, 3), (4, 3)], None, (2, 4)),
    ("linear", [(7, 2, 3), (4, 3), (4,)], None, (7, 2, 4)),
    ("einsum", [(2, 3), (3, 4)], {"subscripts": "ij,jk->ik"}, (2, 4)),
    ("einsum", [(5, 2, 3)], {"subscripts": "...ij->...ji"}, (5, 3, 2)),
    ("sum", [(2, 3, 4)], {"axis": (0, 2), "keepdims": True}, (1, 3, 1)),
    ("mean", [(2, 3, 4)], {"axis": -1, "keepdims": False}, (2, 3)),
    ("max", [(2, 3)], {"axis": None, "keepdims": False}, ()),
    ("reshape", [(2, 6)], {"shape": (3, -1)}, (3, 4)),
    ("transpose", [(2, 3, 4)], {"axes": (2, 0, 1)}, (4, 2, 3)),
    ("broadcast_to", [(3, 1)], {"shape": (2, 3, 4)}, (2, 3, 4)),
    ("sum_to", [(2, 3, 4)], {"shape": (3, 1)}, (3, 1)),
    ("getitem", [(5, 6)], {"index": (slice(1, 3), 2)}, (2,)),
    ("getitem", [(5, 6)], {"index": (np.array([0, 4, 4]),)}, (3, 6)),
    ("softmax", [(2, 5)], {"axis": 1}, (2, 5)),
    ("fused_linear", [(2, 3), (3, 4), (4,)], {"trans_b": False, "activation": "relu"}, (2, 4)),
])
def test_shape_rules(op, shapes, attrs, expect):
    assert _node(Graph(), op, shapes, attrs).shape == expect


@pytest.mark.parametrize("op, shapes, attrs, message", [
    ("matmul", [(2, 3), (4, 5)], None, r"matmul shape mismatch: \(2, 3\) @ \(4, 5\) \(inner dimensions 3 != 4\)"),
    ("matmul", [(2, 2, 3), (3, 3, 4)], None, "cannot broadcast"),
    ("matmul_t", [(2, 3), (3, 4)], None, "a @ b.T"),
    ("linear", [(2, 3), (4, 5)], None, "does not fit weight"),
    ("linear", [(2, 3), (4, 3), (5,)], None, "bias of shape"),
    ("einsum", [(2, 3), (4, 5)], {"subscripts": "ij,jk->ik"}, "index 'j' has size 3"),
    ("sum", [(2, 3)], {"axis": (2,), "keepdims": False}, "axis 2 is out of range"),
    ("reshape", [(2, 6)], {"shape": (5, 2)}, "cannot reshape"),
    ("transpose", [(2, 3)], {"axes": (0, 0)}, "not a permutation"),
    ("broadcast_to", [(3, 2)], {"shape": (3, 4)}, "cannot broadcast"),
    ("sum_to", [(2, 3)], {"shape": (4,)}, "cannot sum shape"),
    ("getitem", [(2, 3)], {"index": (5,)}, "bad index"),
    ("fused_linear", [(2, 3), (3, 4)], {"trans_b": False, "activation": "swish"}, "unknown activation"),
])
def test_shape_errors_name_the_node(op, shapes, attrs, message):
    g = Graph()
    ins = [g.input(f"i{k}", s) for k, s in enumerate(shapes)]
    with pytest.raises(ShapeError, match=message) as e:
        g.add_node(op, ins, attrs, name="culprit")
    assert e.value.node == "culprit" and "node 'culprit'" in str(e.value)


def test_loss_shape_rules_and_target_dtype():
    g = Graph()
    logits, t = g.input("logits", (8, 10)), g.input("t", (8,), np.int64)
    assert g.add_node("cross_entropy", [logits, t], {"reduction": "mean"}).shape == ()
    assert g.add_node("nll_loss", [logits, t], {"reduction": "none"}).shape == (8,)
    bad = g.input("tf", (8,), np.float32)
    with pytest.raises(ShapeError, match="targets must be integer"):
        g.add_node("cross_entropy", [logits, bad], {"reduction": "mean"})
    short = g.input("ts", (7,), np.int64)
    with pytest.raises(ShapeError, match=r"need targets of shape \(8,\)"):
        g.add_node("cross_entropy", [logits, short], {"reduction": "mean"})


def test_dtype_rules_follow_numpy():
    g = Graph()
    i = g.input("i", (3,), np.int64)
    f = g.input("f", (3,), np.float32)
    d = g.input("d", (3,), np.float64)
    assert g.add_node("add", [i, f]).dtype == np.result_type(np.int64, np.float32)
    assert g.add_node("div", [i, i]).dtype == np.float64
    assert g.add_node("exp", [i]).dtype == np.float64
    assert g.add_node("mul", [f, d]).dtype == np.float64
    assert g.add_node("mean", [f], {"axis": None, "keepdims": False}).dtype == np.float32
    assert g.add_node("sum", [g.input("b", (3,), np.bool_)], {"axis": None, "keepdims": False}).dtype == \
        np.ones(1, bool).sum().dtype


@settings(max_examples=60, deadline=None)
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4),
       st.sampled_from(["add", "sub", "mul", "div", "relu_grad"]))
def test_broadcast_shape_rule_matches_numpy(shapes, op):
    a_shape, b_shape = shapes.input_shapes
    node = _node(Graph(), op, [a_shape, b_shape])
    assert node.shape == np.broadcast_shapes(a_shape, b_shape) == shapes.result_shape


@settings(max_examples=60, deadline=None)
@given(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4), st.data())
def test_reduction_shape_rule_matches_numpy(shape, data):
    ndim = len(shape)
    axis = data.draw(st.none() | st.lists(st.integers(-ndim, ndim - 1), unique_by=lambda a: a % ndim,
                                           min_size=1, max_size=ndim).map(tuple))
    keepdims = data.draw(st.booleans())
    op = data.draw(st.sampled_from(["sum", "mean", "max"]))
    node = _node(Graph(), op, [shape], {"axis": axis, "keepdims": keepdims})
    x = np.ones(shape, np.float32)
    assert node.shape == getattr(np, op)(x, axis=axis, keepdims=keepdims).shape


def test_infer_shapes_for_a_new_batch_size_and_a_stale_reshape():
    g = Graph("net")
    x = g.input("x", (8, 3))
    w = g.constant(np.ones((4, 3), np.float32), name="w")
    h = g.add_node("linear", [x, w])
    r = g.add_node("reshape", [h], {"shape": (2, 16)}, name="flat")
    g.set_outputs([h])
    with pytest.raises(ShapeError, match=r"node 'flat' \(reshape\): cannot reshape \(5, 4\)") as e:
        infer_shapes(g, {"x": (5, 3)})
    assert e.value.node == "flat"
    g.remove(r)
    g2 = infer_shapes(g, {"x": (5, 3)})
    assert g2.outputs[0].shape == (5, 4) and g.outputs[0].shape == (8, 4)
    with pytest.raises(GraphError, match="no inputs named"):
        infer_shapes(g, {"y": (1,)})
