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

__all__ = ["sample", "summarize", "paired_ratios", "machine_info", "blas_info", "markdown_table", "OtherLoad"]


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


class OtherLoad:
    """Measures how much CPU *other* processes used while a block ran (Linux; elsewhere ``None``).

    ``with OtherLoad() as load: ...`` then ``load.cores`` is the average number of cores busy with other
    work during the block (busy time of all CPUs from ``/proc/stat`` minus this process's own CPU time,
    divided by the wall time), and ``str(load)`` says it in words for a results table.
    """

    def __init__(self):
        self.cores = None
        self.seconds = 0.0

    @staticmethod
    def _busy_seconds():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")   # all but idle and iowait

    @staticmethod
    def _own_seconds():
        t = os.times()
        return t.user + t.system

    def __enter__(self):
        try:
            self._b0, self._o0, self._t0 = self._busy_seconds(), self._own_seconds(), time.perf_counter()
        except (OSError, ValueError):
            self._b0 = None
        return self

    def __exit__(self, *exc):
        if self._b0 is not None:
            try:
                busy = self._busy_seconds() - self._b0
            except (OSError, ValueError):
                return False
            self.seconds = time.perf_counter() - self._t0
            self.cores = max(0.0, busy - (self._own_seconds() - self._o0)) / max(self.seconds, 1e-9)
        return False

    def __str__(self):
        if self.cores is None:
            return "load from other processes: not measured"
        return (f"other processes kept {self.cores:.2f} of {os.cpu_count()} cores busy on average during "
                f"the {self.seconds:.1f} s of timing")


def markdown_table(headers, rows) -> str:
    """A GitHub-flavoured Markdown table (first column left-aligned, the others right-aligned)."""
    def cell(x):
        return str(x).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
