"""``compile``: the Lab 1 MLP's training step, compiled, matches eager mode and trains as well; bad graphs
and bad calls raise errors that name the node; outputs belong to the caller; profiles and traces."""

import json

import numpy as np
import pytest

import mlsys_lab.functional as F
from mlsys_lab import Tensor, no_grad, optim
from mlsys_lab.data import DataLoader, load_digits, train_test_split
from mlsys_lab.graph import CycleError, Graph, GraphError, ShapeError, interpret, optimize, trace
from mlsys_lab.runtime import compile
from mlsys_lab.runtime.examples import make_mlp, mlp_training_step


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrices: a second BLAS thread does not help and makes runs erratic on a busy machine."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def batch(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 64)).astype(np.float32), rng.integers(0, 10, n)


# -- the training step ---------------------------------------------------------------------------------------

def test_compiled_step_matches_eager_gradients():
    model = make_mlp(seed=1)
    step = compile(mlp_training_step(model, batch=32))
    x, y = batch()
    params = dict(model.named_parameters())
    loss, *grads = step(x=x, y=y, **{k: p.data for k, p in params.items()})
    eager = F.cross_entropy(model(Tensor(x)), y)
    eager.backward()
    np.testing.assert_allclose(loss, eager.data, rtol=1e-6)
    names = [n for n in step.graph.meta["grads"]]
    for name, gr in zip(names, grads):
        np.testing.assert_allclose(gr, params[name].grad, rtol=1e-5, atol=1e-7, err_msg=name)


def _accuracy(model, x, y):
    with no_grad():
        return float((model(Tensor(x)).data.argmax(axis=1) == y).mean())


def _train(model, x_tr, y_tr, epochs, compiled: bool):
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(x_tr, y_tr, batch_size=32, shuffle=True, seed=0, drop_last=True)
    params = dict(model.named_parameters())
    step = compile(mlp_training_step(model, batch=32)) if compiled else None
    names = list(step.graph.meta["grads"]) if compiled else None
    losses = []
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            if compiled:
                loss, *grads = step(x=xb, y=yb, **{k: p.data for k, p in params.items()})
                for name, gr in zip(names, grads):
                    params[name].grad = gr
            else:
                loss = F.cross_entropy(model(Tensor(xb)), yb)
                loss.backward()
                loss = loss.data
            opt.step()
            losses.append(float(loss))
    return losses


def test_compiled_training_step_trains_like_eager_mode():
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, seed=0)
    results = {}
    for compiled in (False, True):
        model = make_mlp(seed=0)
        losses = _train(model, x_tr, y_tr, epochs=8, compiled=compiled)
        results[compiled] = (losses, _accuracy(model, x_te, y_te))
    (le, acc_e), (lc, acc_c) = results[False], results[True]
    print(f"test accuracy: eager {acc_e:.4f}, compiled {acc_c:.4f}; loss {lc[0]:.3f} -> {lc[-1]:.4f}")
    assert acc_c >= 0.95 and acc_e >= 0.95
    assert abs(acc_c - acc_e) <= 0.01
    np.testing.assert_allclose(lc[:20], le[:20], rtol=1e-4)   # the same trajectory, to rounding


# -- bad graphs and bad calls name the node --------------------------------------------------------------------

def small_graph():
    g = Graph("small")
    x = g.input("x", (2, 3), np.float32)
    a = g.add_node("exp", [x], name="a")
    b = g.add_node("tanh", [a], name="b")
    g.set_outputs([b])
    return g, x, a, b


def test_cycle_names_a_node():
    g, x, a, b = small_graph()
    a.inputs = (b,)  # a reads b, b reads a
    with pytest.raises(CycleError, match="cycle") as e:
        compile(g)
    assert e.value.node in ("a", "b")


def test_mismatched_shapes_name_the_node():
    g = Graph("bad")
    x = g.input("x", (2, 3), np.float32)
    y = g.input("y", (4,), np.float32)
    g.set_outputs([g.add_node("add", [x, y], name="bad_add", shape=(2, 3), dtype=np.float32)])
    with pytest.raises(ShapeError, match="bad_add") as e:
        compile(g)
    assert e.value.node == "bad_add"


def test_input_from_another_graph_names_the_node():
    g, x, a, b = small_graph()
    other = Graph("other")
    stray = other.input("stray", (2, 3), np.float32)
    b.inputs = (stray,)
    with pytest.raises(GraphError, match="'b'.*stray") as e:
        compile(g)
    assert e.value.node == "b"


def test_missing_and_wrong_inputs_name_the_input():
    g, *_ = small_graph()
    plan = compile(g)
    with pytest.raises(GraphError, match="input 'x'.*not given") as e:
        plan()
    assert e.value.node == "x"
    with pytest.raises(ShapeError, match="'x' expects f32\\[2,3\\], got f32\\[3,2\\]") as e:
        plan(np.zeros((3, 2), np.float32))
    assert e.value.node == "x"
    with pytest.raises(ShapeError, match="got f64"):
        plan(np.zeros((2, 3)))
    with pytest.raises(GraphError, match="no input named 'z'"):
        plan(z=np.zeros((2, 3), np.float32))
    with pytest.raises(GraphError, match="takes 1 inputs, got 2"):
        plan(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))


def test_compile_rejects_bad_options():
    g, *_ = small_graph()
    with pytest.raises(ValueError, match="unknown executor"):
        compile(g, executor="gpu")
    with pytest.raises(ValueError, match="memory must be"):
        compile(g, memory="lots")
    with pytest.raises(ValueError, match="unknown backend"):
        compile(g, backend="tpu")
    with pytest.raises(TypeError, match="Graph"):
        compile(lambda x: x)


# -- outputs belong to the caller --------------------------------------------------------------------------------

@pytest.mark.parametrize("opts", [{}, {"outputs_in_arena": False}, {"executor": "parallel"}])
def test_outputs_survive_the_next_call(opts):
    g, *_ = small_graph()
    with compile(g, **opts) as plan:
        x1, x2 = np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)
        kept = plan(x1)
        expect = kept.copy()
        again = plan(x2)
        np.testing.assert_array_equal(kept, expect)                     # not overwritten by the 2nd call
        np.testing.assert_allclose(again, np.tanh(np.exp(x2)), rtol=1e-6)
        assert not np.shares_memory(kept, again)
        assert not np.shares_memory(again, plan.arena)
        view = again[0]          # a view of an output keeps it from being reused, too
        del again
        plan(x1)
        np.testing.assert_allclose(view, np.tanh(np.exp(x2[0])), rtol=1e-6)


def test_dropped_outputs_are_recycled():
    g, *_ = small_graph()
    plan = compile(g)
    x = np.zeros((2, 3), np.float32)
    first = plan(x)
    address = first.ctypes.data
    del first
    assert plan(x).ctypes.data == address                # the dropped array was reused, not reallocated


def test_copy_outputs_false_returns_arena_views():
    g, *_ = small_graph()
    plan = compile(g, copy_outputs=False)
    out = plan(np.zeros((2, 3), np.float32))
    assert np.shares_memory(out, plan.arena)


def test_outputs_that_are_inputs_or_constants_are_copies():
    g = Graph("passthrough")
    x = g.input("x", (3,), np.float32)
    c = g.constant(np.arange(3, dtype=np.float32), name="c")
    g.set_outputs([x, c, g.add_node("add", [x, c])])
    x0 = np.ones(3, np.float32)
    ox, oc, s = compile(g)(x0)
    assert not np.shares_memory(ox, x0) and not np.shares_memory(oc, c.attrs["value"])
    np.testing.assert_array_equal(s, x0 + np.arange(3))


def test_single_output_graph_returns_an_array_and_run_a_list():
    g, *_ = small_graph()
    plan = compile(g)
    x = np.zeros((2, 3), np.float32)
    assert isinstance(plan(x), np.ndarray)
    assert isinstance(plan.run(x), list) and len(plan.run(x)) == 1
    traced = trace(lambda x: (x.exp(), x.tanh()), x)
    assert isinstance(compile(traced)(x), list)


def test_optimized_graph_compiles_to_fewer_steps_with_the_same_result():
    def f(x):
        return ((x * 1.0 + 0.0).tanh() * 2.0).exp().sum(axis=1)

    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    g = trace(f, x)
    plain, opt = compile(g), compile(g, optimize=True)
    assert len(opt.plan.steps) < len(plain.plan.steps)
    assert any(s.op == "fused_elementwise" for s in opt.plan.steps)
    np.testing.assert_allclose(opt(x), interpret(g, x)[0], rtol=1e-6)
    np.testing.assert_allclose(compile(optimize(g), backend="numba")(x), plain(x), rtol=1e-5)


# -- inspection: text, profile, Chrome trace, timeline ---------------------------------------------------------

def test_plan_text_shows_kernels_and_buffers():
    text = str(compile(mlp_training_step(batch=16)))
    assert "numpy.linear" in text and "reference.cross_entropy_grad" in text
    assert "in place of %linear" in text
    assert "view of %" in text
    assert text.count("\n  #") >= 15


def test_profile_and_chrome_trace(tmp_path):
    g = mlp_training_step(batch=16)
    x, y = batch(16)
    model = make_mlp()
    inputs = dict(x=x, y=y, **{k: p.data for k, p in model.named_parameters()})
    with compile(g, executor="parallel", num_threads=2) as plan:
        prof = plan.profile(repeat=3, **inputs)
    assert prof.runs == 3 and len(prof.events) == 3 * len(plan.plan.steps)
    rows = prof.by_op()
    assert {r["op"] for r in rows} == {s.op for s in plan.plan.steps}
    assert abs(sum(r["share"] for r in rows) - 1) < 1e-9
    assert sum(r["calls"] for r in rows) == len(plan.plan.steps)
    assert "parallel executor, 3 run(s)" in prof.table()
    path = prof.save_chrome_trace(tmp_path / "trace.json")
    trace_json = json.loads(open(path).read())
    events = trace_json["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) == len(prof.events)
    for e in complete:
        assert {"name", "cat", "ts", "dur", "pid", "tid", "args"} <= set(e) and e["dur"] >= 0 and e["ts"] >= 0
    assert {e["tid"] for e in complete} <= {e["tid"] for e in events if e["name"] == "thread_name"}
    one = plan.profile(repeat=2, **inputs).chrome_trace(run=0)["traceEvents"]
    assert sum(e["ph"] == "X" for e in one) == len(plan.plan.steps)
    seq = compile(g).profile(repeat=1, **inputs).chrome_trace()["traceEvents"]
    counters = [e for e in seq if e["ph"] == "C"]
    assert len(counters) == len(plan.plan.steps)
    assert max(c["args"]["bytes"] for c in counters) == compile(g).memory_report().lower_bound_bytes


def test_timeline_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g, *_ = small_graph()
    prof = compile(g).profile(np.zeros((2, 3), np.float32), repeat=2)
    from mlsys_lab.runtime import plot_timeline

    ax = plot_timeline(prof)
    assert len(ax.collections) == 2     # one bar per step of the last run
    plt.close("all")
