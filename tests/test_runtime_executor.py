"""Executors: dependencies are respected, the parallel executor computes what the sequential one does and
really runs independent steps at the same time, and failures name the node. No test measures time."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_lab.graph import Graph, interpret
from mlsys_lab.runtime import KernelError, KernelRegistry, compile
from mlsys_lab.runtime.examples import mlp_training_step, random_graph, two_branch_graph, two_branch_inputs


def assert_respects_dependencies(plan, profile):
    for run in range(profile.runs):
        evs = {e.step: e for e in profile.events if e.run == run}
        assert sorted(evs) == list(range(len(plan.plan.steps))), "every step runs exactly once"
        for st_ in plan.plan.steps:
            for d in st_.deps:
                assert evs[d].seq_end < evs[st_.index].seq_start, (plan.plan.steps[d].name, st_.name)


@pytest.fixture(scope="module")
def mlp():
    g = mlp_training_step(batch=64)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(n.shape).astype(n.dtype) if n.dtype.kind == "f"
              else rng.integers(0, 10, n.shape) for n in g.inputs]
    return g, inputs


@pytest.mark.parametrize("executor", ["sequential", "parallel"])
def test_executor_order_respects_dependencies(mlp, executor):
    g, inputs = mlp
    with compile(g, executor=executor, num_threads=3) as plan:
        prof = plan.profile(*inputs, repeat=3)
        assert_respects_dependencies(plan, prof)
        assert prof.executor == executor


def test_parallel_equals_sequential_on_the_training_step(mlp):
    g, inputs = mlp
    ref = interpret(g, *inputs)
    seq = compile(g).run(*inputs)
    with compile(g, executor="parallel", num_threads=4, check=True) as par:
        for _ in range(5):  # several runs: different interleavings, same numbers
            out = par.run(*inputs)
            for a, b, r in zip(out, seq, ref):
                np.testing.assert_array_equal(a, b)
                np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), threads=st.integers(1, 4))
def test_property_parallel_equals_sequential(seed, threads):
    g, inputs = random_graph(seed, n_ops=int(seed % 30) + 3)
    seq = compile(g).run(*inputs)
    with compile(g, executor="parallel", num_threads=threads, check=True) as par:
        prof = par.profile(*inputs, repeat=2, warmup=0)
        assert_respects_dependencies(par, prof)
        for a, b in zip(par.run(*inputs), seq):
            np.testing.assert_array_equal(a, b)


def _barrier_registry(barrier):
    """A registry whose tanh kernel waits until two tanh kernels are running at the same time."""
    reg = KernelRegistry()

    @reg.register("tanh")
    def tanh(x, *, out):
        barrier.wait()
        return np.tanh(x, out=out)

    @reg.register("add")
    def add(a, b, *, out):
        return np.add(a, b, out=out)

    return reg


def _two_tanh_graph():
    g = Graph("two")
    x = g.input("x", (8,), np.float64)
    a = g.add_node("tanh", [x], name="left")
    b = g.add_node("tanh", [x], name="right")
    g.set_outputs([g.add_node("add", [a, b])])
    return g


def test_parallel_executor_runs_independent_steps_concurrently():
    # Both tanh steps wait on a two-party barrier: they can only finish if they run at the same time.
    barrier = threading.Barrier(2, timeout=10)
    with compile(_two_tanh_graph(), executor="parallel", num_threads=2,
                 registry=_barrier_registry(barrier)) as plan:
        x = np.linspace(-1, 1, 8)
        np.testing.assert_allclose(plan(x), 2 * np.tanh(x))
        prof = plan.profile(x, repeat=1, warmup=0)
        left, right = (next(e for e in prof.events if e.name == n) for n in ("left", "right"))
        assert left.thread != right.thread
        assert max(left.seq_start, right.seq_start) < min(left.seq_end, right.seq_end)  # overlapped


def test_sequential_executor_cannot_overlap():
    barrier = threading.Barrier(2, timeout=0.2)
    plan = compile(_two_tanh_graph(), registry=_barrier_registry(barrier))
    with pytest.raises(KernelError, match="'left' \\(tanh"):
        plan(np.zeros(8))


def _failing_registry():
    reg = KernelRegistry()

    @reg.register("tanh")
    def tanh(x, *, out):
        if x[0] > 0:
            raise FloatingPointError("boom")
        return np.tanh(x, out=out)

    @reg.register("add")
    def add(a, b, *, out):
        return np.add(a, b, out=out)

    return reg


@pytest.mark.parametrize("executor", ["sequential", "parallel"])
def test_kernel_failure_names_the_node_and_the_plan_survives(executor):
    with compile(_two_tanh_graph(), executor=executor, registry=_failing_registry()) as plan:
        with pytest.raises(KernelError, match="'(left|right)' \\(tanh, kernel numpy.tanh\\) failed: "
                                              "FloatingPointError: boom") as e:
            plan(np.ones(8))
        assert e.value.node in ("left", "right")
        assert isinstance(e.value.__cause__, FloatingPointError)
        np.testing.assert_allclose(plan(-np.ones(8)), 2 * np.tanh(-np.ones(8)))  # still usable


@pytest.mark.parametrize("executor", ["sequential", "parallel"])
def test_check_catches_a_kernel_that_ignores_out(executor):
    reg = KernelRegistry()

    @reg.register("tanh")
    def tanh(x, *, out):
        return np.tanh(x)  # a new array: the plan would lose track of where the result is

    @reg.register("add")
    def add(a, b, *, out):
        return np.add(a, b, out=out)

    with compile(_two_tanh_graph(), executor=executor, registry=reg, check=True) as plan:
        with pytest.raises(KernelError, match="returned a new array instead of writing into out"):
            plan(np.zeros(8))


def test_parallel_executor_restarts_after_close():
    g = two_branch_graph(16, 2, dtype=np.float64)
    inputs = two_branch_inputs(16, 2, dtype=np.float64)
    ref = compile(g)(*inputs)
    plan = compile(g, executor="parallel", num_threads=2)
    np.testing.assert_array_equal(plan(*inputs), ref)
    plan.close()
    np.testing.assert_array_equal(plan(*inputs), ref)
    plan.close()


def test_worker_threads_stop_when_the_plan_is_dropped():
    import gc

    g = two_branch_graph(8, 1, dtype=np.float64)
    inputs = two_branch_inputs(8, 1, dtype=np.float64)
    before = {t for t in threading.enumerate() if t.name.startswith("mlsys-runtime")}
    plan = compile(g, executor="parallel", num_threads=3)
    plan(*inputs)
    workers = {t for t in threading.enumerate() if t.name.startswith("mlsys-runtime")} - before
    assert len(workers) == 3
    del plan
    gc.collect()
    for t in workers:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in workers)


def test_profile_summaries_use_one_statistic_medians_over_runs():
    """Wall time, busy time and parallelism are all medians over runs (a slow outlier run moves none)."""
    from types import SimpleNamespace

    from mlsys_lab.runtime.profiler import Profile

    step = SimpleNamespace(name="n0", op="add", kernel=SimpleNamespace(name="numpy_add"))
    plan = SimpleNamespace(steps=[step, step])
    ms = 1_000_000
    # Three runs of two steps on two threads; the last run is a slow outlier.
    raw = [[(0, 0, 0, 4 * ms, 0, 1), (1, 1, 0, 4 * ms, 2, 3)],
           [(0, 0, 0, 6 * ms, 0, 1), (1, 1, 0, 6 * ms, 2, 3)],
           [(0, 0, 0, 50 * ms, 0, 1), (1, 1, 0, 50 * ms, 2, 3)]]
    prof = Profile.from_raw(plan, raw, [5 * ms, 6 * ms, 100 * ms], "parallel")
    assert prof.wall_ms == 6.0 and prof.busy_ms == 12.0
    assert prof.parallelism == pytest.approx(1.6)       # per run: 8/5, 12/6, 100/100 -> median 1.6
    assert "medians over runs: wall 6.000 ms, busy 12.000 ms, parallelism 1.60" in prof.table()
