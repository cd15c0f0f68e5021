#!/usr/bin/env python
"""CSAPP chapter 5's combine ladder in Numba: cycles per element (CPE) for each version, + and *, double and long.

Every version folds the same vector (default 2^16 elements: 512 KiB of float64, which stays in the L2
cache, so the loop, not memory, sets the pace) with ``+`` and with ``*``. The clock is estimated from a
chain of dependent integer multiplies of known latency (``estimate_clock_ghz``), and CPE = ns per element x
GHz. Each cell is the best of ``--repeats`` runs (the CSAPP convention: the undisturbed time); the
versions run in turn within each round so that load hits them alike, and the table also gives the median.

What to look for: ``combine1_O0`` (no optimisation) against ``combine1`` shows what the compiler does
by itself (inlining, code motion, register forwarding: ``combine1``-``combine4`` come out alike).
``combine4`` with doubles is *latency-bound* (CPE = the latency of one add or multiply); more
accumulators (``unroll2x2``, ``4x4``, ``8x8``) or reassociation (``2x1a``, ``8x1a``) break the chain until
the loop is *throughput-bound*. With integers LLVM reassociates (and vectorises) by itself, so even
``combine4`` is fast.

    python bench/combine_cpe.py            # print the table
    python bench/combine_cpe.py --write    # ... and write bench/results/combine_cpe.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import mlsys_lab.kernels.cpu as K  # noqa: E402
from mlsys_lab.kernels.cpu import combine  # noqa: E402
from mlsys_lab.kernels.cpu.timing import OtherLoad, machine_info, markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "combine_cpe.md"
COLUMNS = [("float64", "add"), ("float64", "mul"), ("int64", "add"), ("int64", "mul")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1 << 16, help="elements (default 65536)")
    ap.add_argument("--repeats", type=int, default=15, help="rounds; each cell keeps the best")
    ap.add_argument("--write", action="store_true", help="also write bench/results/combine_cpe.md")
    args = ap.parse_args(argv)

    data = {"float64": np.ones(args.n, np.float64), "int64": np.ones(args.n, np.int64)}
    for version in K.COMBINE_LADDER:            # compile everything, check the answers
        for dt, op in COLUMNS:
            got = K.fold(data[dt], op, version)
            assert got == (args.n if op == "add" else 1), (version, dt, op, got)
    mach = machine_info()
    ghz_before = K.estimate_clock_ghz()
    with OtherLoad() as load:
        times = {(v, dt, op): [] for v in K.COMBINE_LADDER for dt, op in COLUMNS}
        dest = {dt: np.empty(1, d.dtype) for dt, d in data.items()}
        for _ in range(args.repeats):
            for (v, dt, op), ts in times.items():
                fn = combine.BOUND[(v, op)]
                t = time.perf_counter()
                fn(data[dt], dest[dt])
                ts.append(time.perf_counter() - t)
    ghz = max(ghz_before, K.estimate_clock_ghz())

    rows = []
    for v, (fn, what) in K.COMBINE_LADDER.items():
        cells = []
        for dt, op in COLUMNS:
            ts = np.array(times[(v, dt, op)]) / args.n * 1e9
            cells.append(f"{ts.min() * ghz:.2f} ({np.median(ts) * ghz:.2f})")
        rows.append([f"`{v}`", what, *cells])
    headers = ["version", "what changed", *[f"{'double' if dt == 'float64' else 'long'} {'+' if op == 'add' else '*'}"
                                            for dt, op in COLUMNS]]
    table = markdown_table(headers, rows)
    notes = [
        f"Cycles per element: best (median) of {args.repeats} runs over {args.n} elements, at an estimated "
        f"{ghz:.2f} GHz (dependent imul + xor chain, 4 cycles per step).",
        "double = float64, long = int64; Numba compiles these without fastmath, so floating-point "
        "operations are not reassociated or vectorised unless the source does it.",
        f"Numba {mach['numba']}; CPU: {mach['cpu']}, {mach['logical_cpus']} logical CPUs; load average "
        f"{mach['load_avg'][0]} before, {os.getloadavg()[0]:.2f} after; {load}.",
    ]
    text = "\n".join([f"## combine: cycles per element, n = {args.n}", "", table, "",
                      *[f"- {x}" for x in notes], ""])
    print(text)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("# Benchmark: CSAPP combine ladder, cycles per element\n\n"
                           "Written by `python bench/combine_cpe.py --write`.\n\n" + text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
