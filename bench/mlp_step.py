#!/usr/bin/env python
"""One training step of an MLP, mlsys_lab vs PyTorch on the CPU, with the same number of threads.

The step: ``zero_grad; loss = cross_entropy(model(x), y); loss.backward(); SGD step`` for an MLP
64-256-256-10 (ReLU), batch 256, float32. Both sides start from the same weights and data, so the
first step's losses must agree (checked). After a warm-up, the two steps are timed ``--reps``
times each, interleaved in blocks of ``--block`` steps (the order flips every round, so drifts in
clock speed and background load hit both alike), and the script prints the median and spread of
each and the ratio of the medians.

    python bench/mlp_step.py                 # print the table
    python bench/mlp_step.py --write         # ... and write it to bench/results/mlp_step.md
    python bench/mlp_step.py --threads 1 2   # compare with 1 thread, then with 2

Run it with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset, so that OpenBLAS picks its kernel
for the actual CPU (the script reports the kernel it runs, and warns when they are set). Without
PyTorch installed it times mlsys_lab alone and says so.
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
from mlsys_lab import nn, optim  # noqa: E402

SIZES = (64, 256, 256, 10)
BATCH = 256
LR = 0.01
RESULTS = Path(__file__).resolve().parent / "results" / "mlp_step.md"


def build_ours(seed: int):
    nn.init.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    return model, optim.SGD(model.parameters(), lr=LR)


def build_torch(torch, ours):
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for (name, p), (oname, q) in zip(model.named_parameters(), ours.named_parameters()):
            assert name == oname and tuple(p.shape) == q.shape, (name, oname)
            p.copy_(torch.from_numpy(q.data.copy()))
    return model, torch.optim.SGD(model.parameters(), lr=LR)


def blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None, []
    info = threadpool_info()
    numpy_blas = next((d for d in info if d.get("user_api") == "blas"
                       and "numpy" in d.get("filepath", "")), None)
    if numpy_blas is None:
        numpy_blas = next((d for d in info if d.get("user_api") == "blas"), None)
    return numpy_blas, info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def whole_step_timer(step):
    """A function that runs one step and returns its time, as a 1-tuple."""
    clock = time.perf_counter

    def run():
        t0 = clock()
        step()
        return (clock() - t0,)

    return run


def phase_timer(model, opt, x, y, loss_fn):
    """A function that runs one step and returns the times of its three phases."""
    clock = time.perf_counter

    def run():
        t0 = clock()
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        t1 = clock()
        loss.backward()
        t2 = clock()
        opt.step()
        t3 = clock()
        return t1 - t0, t2 - t1, t3 - t2

    return run


def interleave(timers, reps, block, settle):
    """Time ``reps`` steps of each timer, interleaved in blocks.

    Each block runs ``settle`` untimed steps of one implementation, then ``block`` timed ones, then
    switches; the order of the implementations flips from one round to the next. Blocks rather than
    strict alternation: NumPy's OpenBLAS (pthreads) and PyTorch (OpenMP) each keep their worker
    threads spinning for a while after a parallel call, and alternating step by step would make
    every step compete with the other library's spinning threads (on 2 cores this slows both down
    several times). Returns {name: [list of times per measured quantity]}.
    """
    names = list(timers)
    out = {name: None for name in names}
    done = 0
    rnd = 0
    while done < reps:
        n = min(block, reps - done)
        for name in (names if rnd % 2 == 0 else names[::-1]):
            run = timers[name]
            for _ in range(settle):
                run()
            for _ in range(n):
                ts = run()
                if out[name] is None:
                    out[name] = [[] for _ in ts]
                for acc, t in zip(out[name], ts):
                    acc.append(t)
        done += n
        rnd += 1
    return out


def stats(ts):
    a = np.asarray(ts) * 1e6  # microseconds
    return dict(median=np.median(a), p10=np.percentile(a, 10), p90=np.percentile(a, 90),
                min=a.min(), max=a.max())


def environment(torch, threads_list) -> list[str]:
    blas, _ = blas_info()
    env = [
        f"CPU: {cpu_name()}; {os.cpu_count()} logical cores; threads compared: "
        + ", ".join(map(str, threads_list)),
        f"Python {platform.python_version()}, NumPy {np.__version__}"
        + (f", PyTorch {torch.__version__}" if torch is not None else ", PyTorch not installed"),
    ]
    if blas:
        env.append(f"NumPy BLAS: {blas.get('internal_api')} {blas.get('version')}, kernel "
                   f"{blas.get('architecture')}, {blas.get('threading_layer')} threading")
    if torch is not None:
        import re
        m = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
        env.append(f"PyTorch BLAS: {m.group(1) if m else 'unknown'} (its own copy, not NumPy's "
                   "OpenBLAS); PyTorch threads set with torch.set_num_threads (OpenMP)")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        env.append(f"{var}: {os.environ.get(var, 'unset')}")
    if hasattr(os, "getloadavg"):
        env.append("load average (1, 5, 15 min) at the end: "
                   + ", ".join(f"{v:.2f}" for v in os.getloadavg())
                   + f" on {os.cpu_count()} cores (above the core count, other processes shared the CPU)")
    return env


def measure(threads, torch, args):
    """Build both models, check they agree, time them with ``threads`` threads; returns the
    markdown lines of this section and the ratio of medians (None without PyTorch)."""
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(limits=threads, user_api="blas")
    except ImportError:
        limiter = None
    blas, _ = blas_info()
    rng = np.random.default_rng(args.seed)
    x = rng.random((BATCH, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], size=BATCH).astype(np.int64)
    model, opt = build_ours(args.seed)

    def step_ours():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    steps = {"mlsys_lab": step_ours}
    phases = {"mlsys_lab": phase_timer(model, opt, x, y, F.cross_entropy)}
    if torch is not None:
        torch.set_num_threads(threads)
        tmodel, topt = build_torch(torch, model)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def step_torch():
            topt.zero_grad()
            loss = torch.nn.functional.cross_entropy(tmodel(tx), ty)
            loss.backward()
            topt.step()
            return loss

        steps["PyTorch"] = step_torch
        phases["PyTorch"] = phase_timer(tmodel, topt, tx, ty, torch.nn.functional.cross_entropy)
        # same weights, same data: the first losses and updated weights agree
        l_ours, l_torch = step_ours().item(), step_torch().item()
        if not np.isclose(l_ours, l_torch, rtol=1e-4):
            raise SystemExit(f"the two steps disagree: loss {l_ours} vs {l_torch}")
        w_torch = tmodel[0].weight.detach().numpy()
        if not np.allclose(model[0].weight.data, w_torch, rtol=1e-4, atol=1e-6):
            raise SystemExit("the two steps disagree: the updated weights differ")

    names = list(steps)
    for _ in range(args.warmup):
        for name in names:
            steps[name]()
    timed = {name: whole_step_timer(fn) for name, fn in steps.items()}
    times = {name: ts[0] for name, ts in interleave(timed, args.reps, args.block, args.settle).items()}
    rows = {name: stats(ts) for name, ts in times.items()}
    ratio = rows["mlsys_lab"]["median"] / rows["PyTorch"]["median"] if "PyTorch" in rows else None

    got = f"{blas.get('num_threads')} OpenBLAS" if blas else "unknown BLAS"
    if torch is not None:
        got += f", {torch.get_num_threads()} PyTorch"
    lines = [f"## {threads} thread{'s' if threads > 1 else ''} ({got})", "",
             "| implementation | median (µs) | p10 (µs) | p90 (µs) | min (µs) | max (µs) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in rows.items():
        lines.append(f"| {name} | {s['median']:.0f} | {s['p10']:.0f} | {s['p90']:.0f} | "
                     f"{s['min']:.0f} | {s['max']:.0f} |")
    lines += ["", (f"Ratio of medians, mlsys_lab / PyTorch: **{ratio:.2f}x** (target: at most 1.2x)"
                   if ratio is not None else "PyTorch not installed: no ratio")]
    if args.breakdown:
        ph = interleave(phases, args.reps, args.block, args.settle)
        keys = ("forward + loss", "backward", "optimizer step")
        lines += ["", "Median of each phase (µs), timed separately:", "",
                  "| phase | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for i, k in enumerate(keys):
            lines.append(f"| {k} | " + " | ".join(f"{np.median(ph[n][i]) * 1e6:.0f}" for n in names)
                         + " |")
    if limiter is not None:
        limiter.restore_original_limits()
    return lines, ratio


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=300, help="timed steps per implementation")
    ap.add_argument("--warmup", type=int, default=30, help="untimed steps of each first")
    ap.add_argument("--block", type=int, default=20,
                    help="timed steps of one implementation before switching to the other")
    ap.add_argument("--settle", type=int, default=5,
                    help="untimed steps after each switch (thread pools settle)")
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="thread counts to compare, e.g. --threads 1 2 (default: NumPy's BLAS "
                         "default); each sets the BLAS threads and torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help=f"write the Markdown tables to {RESULTS}")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the phases (forward + loss, backward, optimizer step) separately")
    args = ap.parse_args(argv)
    if min(args.reps, args.block, args.warmup + 1) < 1 or args.settle < 0:
        ap.error("--reps and --block must be >= 1, --warmup and --settle >= 0")

    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if os.environ.get(var):
            print(f"warning: {var}={os.environ[var]} is set; unset it to let OpenBLAS pick the kernel "
                  "for this CPU", file=sys.stderr)
    blas, _ = blas_info()
    if blas is None:
        print("note: threadpoolctl is not installed; cannot report or limit the BLAS threads")
    threads_list = args.threads or [blas["num_threads"] if blas else (os.cpu_count() or 1)]
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed: timing mlsys_lab alone (pip install torch==2.13.0 for the "
              "baseline)")

    sections, ratios = [], []
    for threads in threads_list:
        lines, ratio = measure(threads, torch, args)
        sections += lines + [""]
        ratios.append((threads, ratio))
    title = (f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float32: one SGD training step "
             f"(zero_grad, forward, cross-entropy, backward, update). {args.reps} timed steps of "
             f"each, interleaved in blocks of {args.block} (each after {args.settle} untimed "
             f"steps), after {args.warmup} warm-up steps.")
    summary = []
    if torch is not None:
        summary = ["| threads | mlsys_lab / PyTorch (ratio of medians) |", "|---:|---:|"]
        summary += [f"| {t} | {r:.2f}x |" for t, r in ratios] + [""]
    env = environment(torch, threads_list)
    text = "\n".join([title, "", *summary, *sections, *[f"- {e}" for e in env]])
    print(text)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        cmd = "python bench/mlp_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
        RESULTS.write_text("# Benchmark: one MLP training step, mlsys_lab vs PyTorch\n\n"
                           f"Written by `{cmd.strip()}`.\n\n" + text + "\n")
        print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
