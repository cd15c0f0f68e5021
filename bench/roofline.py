#!/usr/bin/env python
"""This machine's roofline, measured, with every CPU kernel of mlsys_lab placed under it.

Two roofs, measured in this run: the compute roof (``measure_peak_gflops``: the GEMM micro-kernel on
L1-resident panels on every thread; NumPy's sgemm is shown next to it) and the memory roof
(``measure_bandwidth``: a STREAM-like triad over arrays much larger than the last-level cache; a triad over
48 MiB, the size of the kernels' working sets here, is recorded too). Then each kernel runs on its
benchmark size, back to back (like the triad), and gets a point: arithmetic intensity = flops / bytes
(with the *minimum* bytes the operation must move: inputs read once, output written once) and achieved
GFLOP/s at its median time. "Of roof" is achieved / min(peak, intensity x bandwidth).

Flops are counted the usual way for each operation, with ``exp`` counted as one: GEMM 2 n^3; softmax 5
per element (max, subtract, exp, add, scale); layer norm 8; GELU 8; sum 1; triad 2. NumPy and the Numba
kernels of one operation share the intensity (same flops, same minimum bytes); NumPy's extra passes over
memory are why its point sits lower.

    python bench/roofline.py            # print the table
    python bench/roofline.py --write    # ... and write bench/results/roofline.md and roofline.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import mlsys_lab.kernels.cpu as K  # noqa: E402
from mlsys_lab.kernels.cpu.timing import (OtherLoad, blas_info, machine_info, markdown_table, sample,  # noqa: E402
                                          summarize)

RESULTS = Path(__file__).resolve().parent / "results" / "roofline.md"
RESULTS_JSON = RESULTS.with_suffix(".json")


def kernels(n_gemm: int, rows: int, cols: int):
    """name -> (callable, flops, minimum bytes, size label, group)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n_gemm, n_gemm), dtype=np.float32)
    b = rng.standard_normal((n_gemm, n_gemm), dtype=np.float32)
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    out = np.empty_like(x)
    w, bias = np.ones(cols, np.float32), np.zeros(cols, np.float32)
    tn = 1 << 24
    ta, tb, tc = np.zeros(tn, np.float32), np.ones(tn, np.float32), np.ones(tn, np.float32)
    e = x.size
    gemm_f, gemm_b, gsize = 2.0 * n_gemm ** 3, 3 * 4.0 * n_gemm ** 2, f"{n_gemm}^3"
    xsize = f"{rows}x{cols}"
    return {
        "gemm: NumPy (OpenBLAS)": (lambda: a @ b, gemm_f, gemm_b, gsize, "gemm"),
        "gemm: 1 naive": (lambda: K.gemm_naive(a, b), gemm_f, gemm_b, gsize, "slow"),
        "gemm: 2 reorder": (lambda: K.gemm_reorder(a, b), gemm_f, gemm_b, gsize, "gemm"),
        "gemm: 3 blocked": (lambda: K.gemm_blocked(a, b), gemm_f, gemm_b, gsize, "gemm"),
        "gemm: 4 packed": (lambda: K.gemm_packed(a, b), gemm_f, gemm_b, gsize, "gemm"),
        "gemm: 5 parallel": (lambda: K.gemm_parallel(a, b), gemm_f, gemm_b, gsize, "gemm"),
        "softmax: NumPy": (lambda: K.softmax_numpy(x), 5.0 * e, 8.0 * e, xsize, "mem"),
        "softmax: three_pass, out=": (lambda: K.softmax_three_pass(x, out), 5.0 * e, 8.0 * e, xsize, "mem"),
        "softmax: online, out=": (lambda: K.softmax_online(x, out), 5.0 * e, 8.0 * e, xsize, "mem"),
        "layernorm: NumPy": (lambda: K.layernorm_numpy(x, w, bias), 8.0 * e, 8.0 * e, xsize, "mem"),
        "layernorm: fused, out=": (lambda: K.layernorm(x, w, bias, out=out), 8.0 * e, 8.0 * e, xsize, "mem"),
        "gelu_tanh: NumPy": (lambda: K.gelu_tanh_numpy(x), 8.0 * e, 8.0 * e, xsize, "mem"),
        "gelu_tanh: fused, out=": (lambda: K.gelu_tanh(x, out=out), 8.0 * e, 8.0 * e, xsize, "mem"),
        "sum: NumPy": (lambda: x.sum(), 1.0 * e, 4.0 * e, xsize, "mem"),
        "sum: reduce_sum": (lambda: K.reduce_sum(x), 1.0 * e, 4.0 * e, xsize, "mem"),
        "triad (STREAM)": (lambda: K.triad(ta, tb, tc, 3.0), 2.0 * tn, 12.0 * tn, f"3 x {tn}", "mem"),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gemm-n", type=int, default=1024)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--dram-mib", type=int, default=1536, help="triad size for the memory roof (MiB, 3 arrays)")
    ap.add_argument("--write", action="store_true", help="also write bench/results/roofline.md and .json")
    args = ap.parse_args(argv)

    mach = machine_info()
    with OtherLoad() as load:
        peak = K.measure_peak_gflops(seconds=0.3)
        dram = K.measure_bandwidth(args.dram_mib << 20)
        cache = K.measure_bandwidth(48 << 20, repeats=20)
        ks = kernels(args.gemm_n, args.rows, args.cols)
        times = {}
        for name, (fn, *_, group) in ks.items():    # back to back, like the roofs themselves
            times.update(sample({name: fn}, rounds=1 if group == "slow" else args.rounds,
                                warmup=0 if group == "slow" else 1))
    blas = blas_info() or {}

    rows, points = [], []
    for name, (_, flops, nbytes, size, _) in ks.items():
        t = summarize(times[name])
        ai = flops / nbytes
        gflops = flops / t["median"] / 1e9
        roof = float(K.attainable_gflops(ai, peak["best_gflops"], dram["best_gbs"]))
        rows.append([name, size, f"{ai:.3g}", f"{t['median'] * 1e3:.2f}", f"{gflops:.1f}",
                     f"{nbytes / t['median'] / 1e9:.1f}", f"{roof:.1f}", f"{gflops / roof:.0%}"])
        points.append({"kernel": name, "size": size, "intensity": ai, "gflops": gflops,
                       "gbs": nbytes / t["median"] / 1e9, "median_s": t["median"], "min_s": t["min"],
                       "max_s": t["max"], "runs": t["n"]})
    table = markdown_table(["kernel", "size", "flop/byte", "median ms", "GFLOP/s", "GB/s (min. bytes)",
                            "roof GFLOP/s", "of roof"], rows)
    roofs = markdown_table(["roof", "measured", "how"], [
        ["compute", f"{peak['best_gflops']:.0f} GFLOP/s (median {peak['median_gflops']:.0f})",
         f"GEMM micro-kernel {peak['tile'][0]}x{peak['tile'][1]} on L1-resident panels, {peak['threads']} threads"],
        ["memory", f"{dram['best_gbs']:.1f} GB/s (median {dram['median_gbs']:.1f})",
         f"triad over {dram['total_bytes'] / 2**20:.0f} MiB"],
        ["cache-sized triad", f"{cache['best_gbs']:.1f} GB/s (median {cache['median_gbs']:.1f})",
         "triad over 48 MiB (recorded, not used as the roof)"],
        ["ridge point", f"{peak['best_gflops'] / dram['best_gbs']:.1f} flop/byte",
         "kernels left of it are memory-bound"],
    ])
    notes = [
        f"CPU: {mach['cpu']}, {mach['logical_cpus']} logical CPUs, {mach['vector_bits']}-bit vectors; Numba "
        f"{mach['numba']} ({mach['numba_threads']} threads); OpenBLAS `{blas.get('architecture', '?')}` "
        f"{blas.get('num_threads', '?')} threads.",
        "Back to back, a kernel's 16-32 MiB working set stays in this CPU's last-level cache, so memory-bound "
        "kernels can pass the memory roof (over 100% \"of roof\"); the cache-sized triad is their practical "
        "roof here. The GEMM steps are compared with the compute roof.",
        f"Each kernel timed back to back ({args.rounds} runs after a warm-up; naive: 1 run), like the triad; "
        "the Numba kernels write into a preallocated output (`out=`), the NumPy versions allocate as they do.",
        f"Load average {mach['load_avg'][0]} before, {os.getloadavg()[0]:.2f} after; {load}.",
    ]
    text = "\n".join(["## Roofline of this machine", "", roofs, "", table, "", *[f"- {x}" for x in notes], ""])
    print(text)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("# Benchmark: roofline\n\nWritten by `python bench/roofline.py --write` "
                           "(points also in `roofline.json`, for the plot).\n\n" + text)
        RESULTS_JSON.write_text(json.dumps({
            "peak_gflops": peak["best_gflops"], "bandwidth_gbs": dram["best_gbs"],
            "cache_triad_gbs": cache["best_gbs"], "machine": mach, "points": points}, indent=1, default=str))
        print(f"wrote {RESULTS} and {RESULTS_JSON.name}")


if __name__ == "__main__":
    main()
