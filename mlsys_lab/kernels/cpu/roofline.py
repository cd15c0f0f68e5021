"""The roofline model: measure this machine's two roofs, then place each kernel under them.

A kernel that does ``F`` flops and moves ``Q`` bytes to and from memory has *arithmetic intensity*
``I = F / Q`` (flop/byte). It cannot run faster than either roof:

    attainable GFLOP/s = min(peak GFLOP/s, I x bandwidth GB/s)

Low-intensity kernels (softmax, layer norm, elementwise: ~1 flop/byte) sit under the sloped memory roof,
so the way to speed them up is to move fewer bytes (fusion); GEMM (``I`` grows with ``n``) can reach the
flat compute roof, so there the work is keeping the arithmetic units busy (vectors, registers, threads).

The roofs are measured, not taken from a data sheet:

* :func:`measure_peak_gflops` -- every thread runs the GEMM micro-kernel on packed panels that stay in
  L1, so it measures multiply-add throughput with the vector width the kernels actually get;
* :func:`measure_bandwidth` -- a STREAM-like triad ``a = b + s c`` over arrays of a given total size,
  counted as STREAM does (two reads and one write per element, no write-allocate traffic). Small arrays
  measure a cache, arrays several times larger than the last-level cache measure memory.
"""

from __future__ import annotations

import time

import numba
import numpy as np
from numba import njit, prange

from . import gemm as _gemm
from ._checks import check_array, check_contiguous, check_same_dtype
from ._fastmath import FASTMATH
from ._jit import threads_for

__all__ = ["triad", "measure_bandwidth", "measure_peak_gflops", "attainable_gflops", "roofline_point"]

_TRIAD_CHUNK = 1 << 16


@njit(fastmath=FASTMATH, parallel=True, cache=True, nogil=True)
def _triad(a, b, c, s, chunk):
    n = a.size
    for t in prange((n + chunk - 1) // chunk):
        i0 = t * chunk
        i1 = min(n, i0 + chunk)
        av = a[i0:i1]
        bv = b[i0:i1]
        cv = c[i0:i1]
        for i in range(i1 - i0):
            av[i] = bv[i] + s * cv[i]


def triad(a: np.ndarray, b: np.ndarray, c: np.ndarray, s: float) -> None:
    """STREAM triad in place: ``a[:] = b + s * c`` for 1-D C-contiguous float arrays of one shape and dtype."""
    for name, x in (("a", a), ("b", b), ("c", c)):
        check_array(x, name, "triad", ndim=1)
        check_contiguous(x, name, "triad")
    check_same_dtype(a, b, "a and b", "triad")
    check_same_dtype(a, c, "a and c", "triad")
    if not a.shape == b.shape == c.shape:
        raise ValueError(f"triad: a, b, c must have one shape, got {a.shape}, {b.shape}, {c.shape}")
    with threads_for(a.size):
        _triad(a, b, c, a.dtype.type(s), _TRIAD_CHUNK)


def measure_bandwidth(total_bytes: int = 768 << 20, dtype=np.float32, repeats: int = 10) -> dict:
    """Triad bandwidth over three arrays of ``total_bytes`` together; returns GB/s (10^9 bytes/s).

    Returns ``{"best_gbs", "median_gbs", "min_gbs", "total_bytes", "n"}``. The arrays are written once
    before timing (so the pages exist) and the best of ``repeats`` is the bandwidth roof.
    """
    itemsize = np.dtype(dtype).itemsize
    n = max(1, int(total_bytes) // (3 * itemsize))
    a = np.zeros(n, dtype)
    b = np.ones(n, dtype)
    c = np.full(n, 2.0, dtype)
    triad(a, b, c, 3.0)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        triad(a, b, c, 3.0)
        times.append(time.perf_counter() - t)
    moved = 3 * n * itemsize
    times = np.array(times)
    return {"best_gbs": moved / times.min() / 1e9, "median_gbs": moved / np.median(times) / 1e9,
            "min_gbs": moved / times.max() / 1e9, "total_bytes": moved, "n": n}


@njit(parallel=True, cache=True, nogil=True)
def _peak(ap, bp, ct, kc, reps):
    for t in prange(ap.shape[0]):
        for _ in range(reps):
            _gemm._micro(kc, ap[t], bp[t], ct[t])


def measure_peak_gflops(seconds: float = 0.3, repeats: int = 5, threads: int | None = None) -> dict:
    """Multiply-add throughput of the GEMM micro-kernel on L1-resident panels, on every thread.

    Returns ``{"best_gflops", "median_gflops", "threads", "tile"}`` (float32, 2 flops per multiply-add).
    This is the compute roof the Numba kernels can reach on this machine; a hand-written assembly kernel
    (OpenBLAS) may get a little more.
    """
    nt = threads or numba.get_num_threads()
    mr, nr = _gemm.microkernel_tile()
    kc = 128                                             # panels of 4 KiB + 16 KiB: L1
    rng = np.random.default_rng(0)
    ap = rng.random((nt, kc, mr), dtype=np.float32)
    bp = rng.random((nt, kc, nr), dtype=np.float32)
    ct = np.zeros((nt, mr, nr), np.float32)
    flops_per_rep = 2.0 * mr * nr * kc * nt
    _peak(ap, bp, ct, kc, 10)
    t = time.perf_counter()
    _peak(ap, bp, ct, kc, 1000)
    reps = max(1, int(1000 * seconds / max(time.perf_counter() - t, 1e-9)))
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        _peak(ap, bp, ct, kc, reps)
        rates.append(flops_per_rep * reps / (time.perf_counter() - t) / 1e9)
    return {"best_gflops": max(rates), "median_gflops": float(np.median(rates)), "threads": nt,
            "tile": (mr, nr)}


def attainable_gflops(intensity, peak_gflops: float, bandwidth_gbs: float):
    """The roofline: ``min(peak, intensity * bandwidth)`` (works on scalars and arrays)."""
    return np.minimum(peak_gflops, np.asarray(intensity, dtype=np.float64) * bandwidth_gbs)


def roofline_point(flops: float, nbytes: float, seconds: float) -> dict:
    """Place one measured kernel run: ``{"intensity": flop/byte, "gflops": achieved, "gbs": achieved}``."""
    return {"intensity": flops / nbytes, "gflops": flops / seconds / 1e9, "gbs": nbytes / seconds / 1e9}
