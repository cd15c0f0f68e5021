#!/usr/bin/env python
"""The float32 GEMM ladder of ``mlsys_lab.kernels.cpu`` against NumPy/OpenBLAS, side by side in one run.

Every step of the ladder (naive, loop reordering, cache blocking, packing + register blocking, threads)
multiplies the same two n x n float32 matrices (default n = 1024) as NumPy's ``a @ b`` (OpenBLAS
``sgemm``). After checking each step's result against NumPy, the script times them **interleaved**
(round-robin, the order rotating each round, a short pause before each call so that the spinning worker
threads of the previous library go idle) and prints, for each step, the median time with its min-max
range, GFLOP/s (2 n^3 flops / median time) and the ratio to NumPy computed round by round. The slow
steps (naive, reorder) run for fewer rounds, each paired with a NumPy run.

Two NumPy baselines: with all of OpenBLAS's threads, and limited to one thread (``threadpoolctl``), so
that each single-threaded step is compared with a single-threaded BLAS and ``parallel`` with the
multi-threaded one. The target is ``parallel`` >= 50% of NumPy's GFLOP/s with the same number of threads.

OpenBLAS reads ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` when it is loaded; set, they can force a
slower kernel than the one it detects. This script therefore removes both from its own environment
(re-executing itself before NumPy is imported) and records that it did, plus the kernel that
``threadpoolctl`` reports (``architecture``). Nothing outside this one command is changed.

    python bench/gemm_ladder.py                 # print the table
    python bench/gemm_ladder.py --write         # ... and write bench/results/gemm_ladder.md
    python bench/gemm_ladder.py --n 512 --rounds 5 --slow-rounds 1    # quicker
"""

from __future__ import annotations

import os
import sys

_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(v in os.environ for v in _OPENBLAS_VARS):
    removed = {v: os.environ[v] for v in _OPENBLAS_VARS if v in os.environ}
    env = {k: v for k, v in os.environ.items() if k not in _OPENBLAS_VARS}
    env["MLSYS_BENCH_UNSET"] = ";".join(f"{k}={v}" for k, v in removed.items())
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import mlsys_lab.kernels.cpu as K  # noqa: E402
from mlsys_lab.kernels.cpu.timing import (OtherLoad, blas_info, machine_info, markdown_table,  # noqa: E402
                                          paired_ratios, sample, summarize)

RESULTS = Path(__file__).resolve().parent / "results" / "gemm_ladder.md"
STEPS = ["naive", "reorder", "blocked", "packed", "parallel"]
SLOW = {"naive", "reorder"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1024, help="matrix side (default 1024)")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds for the fast steps")
    ap.add_argument("--slow-rounds", type=int, default=3, help="rounds for naive and reorder")
    ap.add_argument("--pause", type=float, default=0.2,
                    help="seconds of idle before each timed call (OpenBLAS threads spin ~2^28 cycles after a call)")
    ap.add_argument("--write", action="store_true", help="also write bench/results/gemm_ladder.md")
    args = ap.parse_args(argv)

    from threadpoolctl import ThreadpoolController

    blas_ctl = ThreadpoolController().select(user_api="blas")   # found once: limit() then costs microseconds

    n = args.n
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3

    def numpy_1thread():
        with blas_ctl.limit(limits=1):
            return a @ b

    # correctness first
    ref = a.astype(np.float64) @ b.astype(np.float64)
    bound = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    for name in STEPS:
        c = K.GEMM_LADDER[name](a, b)
        err = float(np.max(np.abs(c - ref) / bound))
        assert err < 1e-5, f"{name}: relative error {err:.2e}"
    print(f"all {len(STEPS)} steps agree with float64 NumPy (n = {n}); timing...", flush=True)

    mach = machine_info()
    with OtherLoad() as load:
        fast = {"numpy": lambda: a @ b, "numpy_1t": numpy_1thread}
        fast.update({s: (lambda f=K.GEMM_LADDER[s]: f(a, b)) for s in STEPS if s not in SLOW})
        times = sample(fast, rounds=args.rounds, warmup=1, pause=args.pause)
        for s in STEPS:
            if s in SLOW:
                pair = sample({"numpy_1t": numpy_1thread, s: lambda f=K.GEMM_LADDER[s]: f(a, b)},
                              rounds=args.slow_rounds, warmup=0, pause=args.pause)
                times[s] = pair[s]
                times[f"numpy_1t@{s}"] = pair["numpy_1t"]

    blas = blas_info() or {}
    mach["numba_threads"], mach["threading_layer"] = machine_info()["numba_threads"], machine_info()["threading_layer"]
    rows = []
    for name, base_key in [("numpy", None), ("numpy_1t", None)] + [
            (s, f"numpy_1t@{s}" if s in SLOW else ("numpy" if s == "parallel" else "numpy_1t")) for s in STEPS]:
        t = summarize(times[name])
        threads = (blas.get("num_threads", "?") if name == "numpy" else 1 if name == "numpy_1t"
                   else mach["numba_threads"] if name == "parallel" else 1)
        labels = {"numpy": "NumPy `a @ b` (OpenBLAS)", "numpy_1t": "NumPy `a @ b`, 1 BLAS thread"}
        label = labels[name] if name in labels else f"{STEPS.index(name) + 1}. `{name}`"
        if base_key is None:
            ratio = "1 (baseline)" if name == "numpy" else "baseline for 1-thread steps"
        else:
            r = paired_ratios(times[base_key], times[name])
            base_name = "NumPy" if base_key == "numpy" else "NumPy 1 thread"
            ratio = f"{np.median(r):.3f} ({r.min():.3f}-{r.max():.3f}) of {base_name}"
        rows.append([label, threads, f"{t['median'] * 1e3:.2f}", f"{t['min'] * 1e3:.2f}-{t['max'] * 1e3:.2f}",
                     f"{flops / t['median'] / 1e9:.1f}", ratio, t["n"]])
    headers = ["step", "threads", "median ms", "min-max ms", "GFLOP/s (median)", "GFLOP/s ratio (paired median, range)",
               "runs"]
    table = markdown_table(headers, rows)

    par = paired_ratios(times["numpy"], times["parallel"])
    verdict = (f"`parallel` reaches {np.median(par):.0%} of NumPy/OpenBLAS's GFLOP/s with the same threads "
               f"(paired median over {par.size} rounds; range {par.min():.0%}-{par.max():.0%}); "
               f"target >= 50%: {'met' if np.median(par) >= 0.5 else 'NOT met'}.")
    unset = os.environ.get("MLSYS_BENCH_UNSET")
    env_note = (f"unset for this run: {unset}" if unset else
                "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE were not set (nothing to unset)")
    mr, nr = K.microkernel_tile()
    notes = [
        f"float32, n = {n} (2 n^3 = {flops / 1e9:.2f} GFLOP per multiply); results checked against float64 NumPy.",
        f"OpenBLAS {blas.get('version', '?')}, kernel `{blas.get('architecture', '?')}` (threadpoolctl), "
        f"{blas.get('num_threads', '?')} threads, threading layer {blas.get('threading_layer', '?')}; {env_note}.",
        f"Numba {mach['numba']} with {mach['numba_threads']} threads ({mach['threading_layer']} layer); "
        f"{mach['vector_bits']}-bit vectors ({mach['vector_note']}); micro-kernel tile {mr} x {nr}.",
        f"CPU: {mach['cpu']}, {mach['logical_cpus']} logical CPUs; load average before timing "
        f"{mach['load_avg'][0]} (1 min), {os.getloadavg()[0]:.2f} after; {load}.",
        f"Interleaved rounds: {args.rounds} for the fast steps, {args.slow_rounds} for naive and reorder (each "
        f"paired with a 1-thread NumPy run); {args.pause * 1e3:.0f} ms idle before each call.",
    ]
    text = "\n".join([f"## GEMM ladder, {n} x {n} float32", "", table, "", verdict, "",
                      *[f"- {x}" for x in notes], ""])
    print(text)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("# Benchmark: GEMM ladder vs NumPy/OpenBLAS\n\n"
                           "Written by `python bench/gemm_ladder.py --write`.\n\n" + text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
