#!/usr/bin/env python
"""The runtime (Lab 3) measured: each comparison side by side in one run, printed as ratios.

1. **Fusion.** GELU's tanh form, ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, on 4M float32:
   eager NumPy; the traced graph compiled unfused (9 NumPy kernels, planned memory); the same graph after
   ``mlsys_lab.graph.optimize`` (one ``fused_elementwise`` node) on the NumPy backend (which can only run
   it op by op) and on the Numba backend (one generated loop). Target: fused >= 2.5x faster than unfused.
2. **Compiled vs eager training step.** The Lab 1 MLP 64-256-256-10, batch 256: eager autograd
   (forward, cross-entropy, backward, SGD step) against the compiled training-step graph (trace + grad,
   then the same SGD step on the returned gradients), from the same weights and data (checked).
3. **Parallel vs sequential executor** on a graph with two independent heavy branches (``depth``
   matrix products and tanh each, ``n x n``), BLAS limited to one thread so that the only parallelism is
   the executor's (inter-op, two kernels at once). Target: >= 1.6x on 2 cores.
4. **Memory.** Planned peak vs the naive allocation (every tensor its own buffer) vs the lower bound
   (largest set of simultaneously live tensors), for the training step and the other graphs.

Timing: after warm-up, the implementations of a comparison run alternately in blocks (the order flips
every round), so drifts in clock speed and background load hit all alike; each row gives the median and
spread of single calls, and the ratios are ratios of medians. The machine's load is reported: on a shared
machine other processes take cores away, which hurts the parallel comparison most.

    python bench/runtime_bench.py            # print the tables
    python bench/runtime_bench.py --write    # ... and write bench/results/runtime.md
    python bench/runtime_bench.py --quick    # fewer repetitions (a smoke run)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import mlsys_lab.functional as F  # noqa: E402
from mlsys_lab import Tensor, optim  # noqa: E402
from mlsys_lab.graph import interpret  # noqa: E402
from mlsys_lab.runtime import compile  # noqa: E402
from mlsys_lab.runtime.examples import (gelu_tanh_graph, make_mlp, mlp_training_step,  # noqa: E402
                                        two_branch_graph, two_branch_inputs)

RESULTS = Path(__file__).resolve().parent / "results" / "runtime.md"


# -- timing ---------------------------------------------------------------------------------------------------

def interleave(fns: dict, reps: int, block: int, warmup: int) -> dict:
    """{name: [seconds per call]}: ``warmup`` untimed calls each, then blocks of ``block`` timed calls,
    alternating between implementations (order flipped every round), until ``reps`` each."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    out = {n: [] for n in names}
    clock = time.perf_counter
    rnd = 0
    while len(out[names[0]]) < reps:
        for name in (names if rnd % 2 == 0 else names[::-1]):
            fn = fns[name]
            fn()  # one untimed call after each switch: caches and thread pools settle
            for _ in range(min(block, reps - len(out[name]))):
                t0 = clock()
                fn()
                out[name].append(clock() - t0)
        rnd += 1
    return out


def table(times: dict, unit: str = "ms") -> list:
    scale = 1e3 if unit == "ms" else 1e6
    lines = [f"| implementation | median ({unit}) | p10 | p90 | min |", "|---|---:|---:|---:|---:|"]
    for name, ts in times.items():
        a = np.asarray(ts) * scale
        lines.append(f"| {name} | {np.median(a):.3f} | {np.percentile(a, 10):.3f} | "
                     f"{np.percentile(a, 90):.3f} | {a.min():.3f} |")
    return lines


def median(ts) -> float:
    return float(np.median(ts))


def blas_limit(n):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return None
    return threadpool_limits(limits=n, user_api="blas")


# -- 1. fusion ------------------------------------------------------------------------------------------------

def bench_fusion(args) -> tuple:
    n = args.gelu_n
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    unfused = gelu_tanh_graph(n)
    fused = gelu_tanh_graph(n, fused=True)
    ref = interpret(unfused, x)[0]
    # Outputs handed over without a copy (XLA style) in all three plans, so that the rows differ only in
    # how the expression is computed; the default (copy out of the arena) adds the same copy to each.
    opts = dict(outputs_in_arena=False)
    plans = {
        "compiled, unfused (9 NumPy kernels)": compile(unfused, **opts),
        "compiled, fused, NumPy backend (op by op)": compile(fused, **opts),
        "compiled, fused, Numba backend (one generated loop)": compile(fused, backend="numba", **opts),
    }
    for name, p in plans.items():
        err = float(np.abs(p(x) - ref).max())
        if err > 1e-5:
            raise SystemExit(f"{name}: result differs from the interpreter by {err}")
    k = np.float32(np.sqrt(2 / np.pi))

    def eager():
        return 0.5 * x * (1 + np.tanh(k * (x + np.float32(0.044715) * (x * x * x))))

    fns = {"eager NumPy (a temporary per op)": eager}
    fns.update({name: (lambda p=p: p(x)) for name, p in plans.items()})
    times = interleave(fns, args.reps_fusion, args.block, args.warmup)
    names = list(times)
    ratio = median(times[names[1]]) / median(times[names[3]])
    lines = [f"## 1. Fusion: GELU (tanh form) on {n:,} float32", "",
             f"Unfused graph: {unfused.num_ops()} ops; fused: {fused.count('fused_elementwise')} "
             f"`fused_elementwise` node (`{fused.outputs[0].attrs['expr']}`). Numba kernel single-threaded.",
             "", *table(times), "",
             f"**Fused (Numba) vs unfused (compiled): {ratio:.2f}x faster** (target >= 2.5x); vs eager "
             f"NumPy {median(times[names[0]]) / median(times[names[3]]):.2f}x; the fused node on the NumPy "
             f"backend: {median(times[names[1]]) / median(times[names[2]]):.2f}x (no fusion without code "
             "generation).", ""]
    return lines, ratio


# -- 2. compiled vs eager training step ------------------------------------------------------------------------

def bench_mlp(args) -> tuple:
    batch = 256
    rng = np.random.default_rng(0)
    x = rng.random((batch, 64), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    eager_model, comp_model = make_mlp(seed=0), make_mlp(seed=0)
    opt_e = optim.SGD(eager_model.parameters(), lr=0.01)
    opt_c = optim.SGD(comp_model.parameters(), lr=0.01)
    opt_o = optim.SGD(comp_model.parameters(), lr=0.01)
    step_graph = mlp_training_step(comp_model, batch=batch)
    plan = compile(step_graph)
    opt_plan = compile(step_graph, optimize=True)   # + matmul-bias-relu fusion (fused_linear)
    params = dict(comp_model.named_parameters())
    grad_names = list(step_graph.meta["grads"])

    def eager():
        opt_e.zero_grad()
        loss = F.cross_entropy(eager_model(Tensor(x)), y)
        loss.backward()
        opt_e.step()
        return loss.data

    def compiled(plan=plan, opt=opt_c):
        opt.zero_grad()
        loss, *grads = plan(x=x, y=y, **{k: p.data for k, p in params.items()})
        for name, g in zip(grad_names, grads):
            params[name].grad = g
        opt.step()
        return loss

    def optimized():
        return compiled(opt_plan, opt_o)

    le, lc = float(eager()), float(compiled())
    if not np.isclose(le, lc, rtol=1e-5):
        raise SystemExit(f"eager and compiled steps disagree: loss {le} vs {lc}")
    if not np.allclose(eager_model[0].weight.data, comp_model[0].weight.data, rtol=1e-5, atol=1e-7):
        raise SystemExit("eager and compiled steps disagree: updated weights differ")
    lines = ["## 2. Compiled vs eager: one training step of the Lab 1 MLP", "",
             f"MLP 64-256-256-10, batch {batch}, float32, SGD. Eager: autograd records and replays the "
             f"graph every step. Compiled: one plan of {len(plan.plan.steps)} kernels into a "
             f"{plan.memory.arena_bytes / 2**20:.2f} MiB arena, then the same SGD update (the compiled "
             "steps update one model, the eager step another, from the same start). Optimised: after "
             f"`mlsys_lab.graph.optimize` ({len(opt_plan.plan.steps)} kernels: matmul + bias + ReLU fused).",
             ""]
    ratios = {}
    for threads in args.threads:
        limit = blas_limit(threads)
        times = interleave({"eager (autograd)": eager, "compiled plan": compiled,
                            "compiled plan, optimised graph": optimized},
                           args.reps_mlp, args.block, args.warmup)
        if limit is not None:
            limit.restore_original_limits()
        r = median(times["eager (autograd)"]) / median(times["compiled plan"])
        ro = median(times["eager (autograd)"]) / median(times["compiled plan, optimised graph"])
        ratios[threads] = r
        lines += [f"### {threads} BLAS thread{'s' if threads > 1 else ''}", "", *table(times, "µs"), "",
                  f"**Compiled vs eager: {r:.2f}x faster** (optimised graph: {ro:.2f}x). The step is "
                  "mostly matrix products, which both run on the same BLAS: what compiling removes is the "
                  "per-op Python work and the allocations around them.", ""]
    return lines, ratios


# -- 3. parallel vs sequential ---------------------------------------------------------------------------------

def bench_parallel(args) -> tuple:
    n, depth = args.branch_n, args.branch_depth
    g = two_branch_graph(n, depth)
    inputs = two_branch_inputs(n, depth)
    limit = blas_limit(1)
    seq = compile(g)
    par = compile(g, executor="parallel", num_threads=2)
    try:
        np.testing.assert_array_equal(seq(*inputs), par(*inputs))
        times = interleave({"sequential executor": lambda: seq(*inputs),
                            "parallel executor, 2 threads": lambda: par(*inputs)},
                           args.reps_parallel, args.block, args.warmup)
        prof = par.profile(*inputs, repeat=5)
    finally:
        par.close()
        if limit is not None:
            limit.restore_original_limits()
    r = median(times["sequential executor"]) / median(times["parallel executor, 2 threads"])
    lines = ["## 3. Parallel vs sequential executor: two independent branches", "",
             f"x ({n}x{n}) feeds two branches of {depth} x (matmul, tanh) each, joined by an add; float32; "
             "BLAS limited to 1 thread (the executor's threads are the only parallelism).", "",
             *table(times), "",
             f"**Parallel vs sequential: {r:.2f}x faster** (target >= 1.6x on 2 cores). Parallel "
             f"executor's kernel-busy time / wall time: {prof.parallelism:.2f} (2.0 = both cores busy "
             "throughout).", ""]
    return lines, r


# -- 4. memory --------------------------------------------------------------------------------------------------

def bench_memory(args) -> list:
    kib = 1024
    rows = []

    def add(name, g, **kw):
        r = compile(g, **kw).memory_report()
        rows.append((name, r))

    for batch in (256, 32):
        g = mlp_training_step(batch=batch)
        add(f"MLP training step, batch {batch}", g)
        add(f"MLP training step, batch {batch}, outputs outside the arena", g, outputs_in_arena=False)
        add(f"MLP training step, batch {batch}, parallel-safe plan", g, executor="parallel")
        add(f"MLP training step, batch {batch}, no in-place", g, inplace=False)
    add("GELU chain, unfused, 4M float32", gelu_tanh_graph(args.gelu_n))
    add(f"two branches, n={args.branch_n}", two_branch_graph(args.branch_n, args.branch_depth))
    add(f"two branches, n={args.branch_n}, parallel-safe plan",
        two_branch_graph(args.branch_n, args.branch_depth), executor="parallel")
    lines = ["## 4. Memory: planned peak vs naive vs lower bound", "",
             "Naive: every computed tensor in its own buffer. Lower bound: the largest total size of "
             "tensors live at one step (views and in-place results share their input's buffer). Planned: "
             "the arena (greedy by size or by time, best fit, the smaller kept), plus output buffers when "
             "they are outside it.", "",
             "| graph | planned (KiB) | naive (KiB) | lower bound (KiB) | planned / bound | planned / naive "
             "| in place | views |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        lines.append(f"| {name} | {r.peak_bytes / kib:,.0f} | {r.naive_bytes / kib:,.0f} | "
                     f"{r.lower_bound_bytes / kib:,.0f} | {r.peak_over_lower_bound:.3f} | "
                     f"{r.peak_over_naive:.3f} | {r.num_inplace} | {r.num_views} |")
    lines += ["", "Targets on the training step (batch 256, default plan): planned within 1.10x of the "
              "lower bound, at most half of naive. At batch 32 the weight gradients (outputs, 332 KiB, all "
              "alive at the end) dominate, so half of naive is out of reach for any plan.", ""]
    return lines, rows


# -- environment and main ---------------------------------------------------------------------------------------

def environment(load_start) -> list:
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = [f"CPU: {cpu}; {os.cpu_count()} logical cores",
           f"Python {platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__}"]
    try:
        from threadpoolctl import threadpool_info
        blas = next((d for d in threadpool_info() if d.get("user_api") == "blas"), None)
        if blas:
            env.append(f"BLAS: {blas.get('internal_api')} {blas.get('version')} ({blas.get('architecture')}), "
                       f"default {blas.get('num_threads')} threads")
    except ImportError:
        pass
    if hasattr(os, "getloadavg"):
        fmt = ", ".join
        env.append(f"load average (1, 5, 15 min): {fmt(f'{v:.2f}' for v in load_start)} at the start, "
                   f"{fmt(f'{v:.2f}' for v in os.getloadavg())} at the end, on {os.cpu_count()} cores "
                   "(a 1-minute load near or above the core count means other processes shared the CPU)")
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help=f"write the tables to {RESULTS}")
    ap.add_argument("--quick", action="store_true", help="few repetitions: a smoke run")
    ap.add_argument("--gelu-n", type=int, default=1 << 22)
    ap.add_argument("--branch-n", type=int, default=768)
    ap.add_argument("--branch-depth", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="BLAS threads for the MLP step")
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args(argv)
    args.reps_fusion = 10 if args.quick else 60
    args.reps_mlp = 20 if args.quick else 300
    args.reps_parallel = 6 if args.quick else 40

    load_start = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    fusion, r_fusion = bench_fusion(args)
    mlp, r_mlp = bench_mlp(args)
    parallel, r_par = bench_parallel(args)
    memory, rows = bench_memory(args)
    main_row = rows[0][1]
    summary = ["| comparison | result | target |", "|---|---:|---:|",
               f"| fused vs unfused GELU (tanh), 4M float32 | {r_fusion:.2f}x faster | >= 2.5x |",
               *[f"| compiled vs eager MLP training step, {t} BLAS thread{'s' if t > 1 else ''} | "
                 f"{r:.2f}x faster | - |" for t, r in r_mlp.items()],
               f"| parallel vs sequential, two independent branches | {r_par:.2f}x faster | >= 1.6x |",
               f"| MLP step memory: planned / lower bound | {main_row.peak_over_lower_bound:.3f} | <= 1.10 |",
               f"| MLP step memory: planned / naive | {main_row.peak_over_naive:.3f} | <= 0.5 |", ""]
    text = "\n".join(["## Summary", "", *summary, *fusion, *mlp, *parallel, *memory, "## Environment", "",
                      *[f"- {e}" for e in environment(load_start)]])
    print(text)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        cmd = "python bench/runtime_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
        RESULTS.write_text("# Benchmark: the runtime (Lab 3)\n\n"
                           f"Written by `{cmd.strip()}`. Every ratio compares implementations timed in the "
                           "same run, interleaved.\n\n" + text + "\n")
        print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
