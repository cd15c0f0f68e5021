"""Honest timing helpers for the benchmarks and the lab: interleaved runs, medians, ranges, paired ratios.

A timing on a shared machine is a sample from a noisy distribution. So:

* :func:`sample` runs the candidates **interleaved** (round-robin, the order rotating every round), so a
  burst of background load or a clock change hits all of them alike instead of one;
* :func:`summarize` reports the median with the min-max range (and p10-p90), never a single number;
* :func:`paired_ratios` divides times taken in the *same round*, which cancels slow drifts.

:func:`machine_info` and :func:`blas_info` record what the numbers were measured on (CPU, load average,
threads, vector width, OpenBLAS kernel), and :func:`markdown_table` formats the results.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

__all__ = ["sample", "summarize", "paired_ratios", "machine_info", "blas_info", "markdown_table"]


def sample(fns: dict, rounds: int = 10, warmup: int = 1, pause: float = 0.0) -> dict:
    """Time each zero-argument callable in ``fns`` ``rounds`` times, interleaved; returns name -> seconds.

    ``warmup`` untimed calls of each come first (compilation, caches, page faults). In round ``r`` the
    callables run in the dict's order rotated by ``r``. ``pause`` seconds of sleep before each timed call
    let spinning worker threads of the previous candidate (OpenBLAS, OpenMP) go idle.
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    out = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if pause:
                time.sleep(pause)
            t = time.perf_counter()
            fns[name]()
            out[name].append(time.perf_counter() - t)
    return {name: np.array(v) for name, v in out.items()}


def summarize(times) -> dict:
    """``{"median", "min", "max", "p10", "p90", "n"}`` of a sequence of times (seconds)."""
    t = np.asarray(times, dtype=np.float64)
    return {"median": float(np.median(t)), "min": float(t.min()), "max": float(t.max()),
            "p10": float(np.percentile(t, 10)), "p90": float(np.percentile(t, 90)), "n": int(t.size)}


def paired_ratios(base, other) -> np.ndarray:
    """``base[i] / other[i]`` for times taken in the same round: > 1 means ``other`` was faster."""
    return np.asarray(base, dtype=np.float64) / np.asarray(other, dtype=np.float64)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model, logical CPUs, 1-minute load average, Numba threads and threading layer, vector width."""
    import numba

    from ._jit import vector_info

    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = "not started"
    vec = vector_info()
    return {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "load_avg": tuple(round(x, 2) for x in load),
            "numba": numba.__version__, "numpy": np.__version__, "numba_threads": numba.get_num_threads(),
            "threading_layer": layer, "vector_bits": vec["vector_bits"], "vector_note": vec["note"]}


def blas_info() -> dict | None:
    """NumPy's BLAS as ``threadpoolctl`` reports it (``internal_api``, ``version``, ``architecture`` = the
    kernel OpenBLAS selected, ``num_threads``), or None when threadpoolctl is not installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    blas = [d for d in threadpool_info() if d.get("user_api") == "blas"]
    numpy_blas = [d for d in blas if "numpy" in d.get("filepath", "")] or blas
    return numpy_blas[0] if numpy_blas else None


def markdown_table(headers, rows) -> str:
    """A GitHub-flavoured Markdown table (first column left-aligned, the others right-aligned)."""
    def cell(x):
        return str(x).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
