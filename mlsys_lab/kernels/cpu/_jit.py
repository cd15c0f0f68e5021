"""How the CPU kernels are compiled: the two Numba/LLVM settings they rely on, in one place.

Both settings are process-wide in Numba, which is why they live here and why the package applies them
when it is imported (``mlsys_lab.kernels.cpu`` imports this module before it defines any kernel).

**Vector width.** LLVM's tuning for recent Intel server cores says "prefer 256-bit vectors" even where
AVX-512 exists (a choice made when the first AVX-512 chips lowered their clock under 512-bit code). Its
vectorisers then emit 8-wide ``ymm`` code, half of what the hardware can do per instruction, while
OpenBLAS uses 16-wide ``zmm`` registers by hand. On a CPU with AVX-512 we therefore hand Numba the host's
feature list plus ``-prefer-256-bit`` (the same as setting ``NUMBA_CPU_FEATURES`` yourself). Numba builds
its LLVM target machine once, at the first compilation in the process, so this only works if nothing was
compiled with Numba before ``mlsys_lab.kernels.cpu`` was imported; :func:`vector_info` says what happened.
Set ``MLSYS_LAB_WIDE_VECTORS=0`` to leave Numba's defaults alone; a ``NUMBA_CPU_NAME`` or
``NUMBA_CPU_FEATURES`` of your own is always respected.

**SLP vectorisation.** Numba runs LLVM's loop vectoriser but switches its superword-level-parallelism
(SLP) vectoriser off. The register-blocked GEMM micro-kernel is straight-line code on many scalar
accumulators; only SLP packs those into vector registers, so that one kernel is compiled inside
:func:`slp_vectorize`.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numba
from llvmlite import binding as _ll
from numba.core import config as _config
from numba.core.registry import cpu_target as _cpu_target

_HOST_FEATURES = _ll.get_host_cpu_features()
#: True when the CPU has AVX-512 (the GEMM micro-kernel tile is chosen from this).
HAS_AVX512 = bool(_HOST_FEATURES.get("avx512f", False))
HAS_AVX2 = bool(_HOST_FEATURES.get("avx2", False))

_slp_lock = threading.Lock()


def _configure() -> tuple[bool, str]:
    """Ask for 512-bit vectors where that is possible; return (requested, why)."""
    if os.environ.get("MLSYS_LAB_WIDE_VECTORS", "1").strip() == "0":
        return False, "MLSYS_LAB_WIDE_VECTORS=0: Numba's default vector width"
    if _config.CPU_FEATURES is not None or _config.CPU_NAME is not None:
        return False, "NUMBA_CPU_NAME/NUMBA_CPU_FEATURES set by the user: left as they are"
    if not HAS_AVX512:
        return False, "no AVX-512 on this CPU: Numba's default vector width"
    if "_toplevel_target_context" in _cpu_target.__dict__:
        return False, ("Numba compiled code before mlsys_lab.kernels.cpu was imported, so LLVM's target "
                       "is fixed: 256-bit vectors preferred (import mlsys_lab.kernels.cpu first)")
    _config.CPU_FEATURES = _HOST_FEATURES.flatten() + ",-prefer-256-bit"
    return True, "AVX-512 present: LLVM asked for 512-bit vectors (-prefer-256-bit)"


_WIDE_REQUESTED, _WIDE_REASON = _configure()


@contextmanager
def slp_vectorize():
    """Compile the Numba functions first called (or compiled) inside this block with LLVM's SLP vectoriser on."""
    with _slp_lock:
        old = _config.SLP_VECTORIZE
        _config.SLP_VECTORIZE = 1
        try:
            yield
        finally:
            _config.SLP_VECTORIZE = old


#: Below this much work (elements, or multiply-adds for GEMM) the parallel kernels run on one thread: waking
#: a second thread costs microseconds on an idle machine and milliseconds when the cores are busy.
PARALLEL_MIN_WORK = 1 << 17


@contextmanager
def threads_for(work: int, chunksize: int = 0):
    """Context for calling a Numba parallel kernel on ``work`` elements (or multiply-adds).

    Small work runs on one thread. ``chunksize`` > 0 hands the ``prange`` iterations out ``chunksize`` at
    a time to whichever thread is free (dynamic scheduling), so that a thread delayed by another process
    does not hold everyone up; 0 keeps Numba's static split (one equal share per thread).
    """
    old = numba.get_num_threads()
    small = work < PARALLEL_MIN_WORK
    if small:
        numba.set_num_threads(1)
    try:
        if chunksize and not small:
            with numba.parallel_chunksize(chunksize):
                yield
        else:
            yield
    finally:
        if small:
            numba.set_num_threads(old)


def vector_info() -> dict:
    """What the CPU offers and what Numba's LLVM was told to use.

    Returns a dict with ``cpu`` (LLVM's name for the host), ``avx2``, ``avx512`` (host features),
    ``wide_vectors`` (True when 512-bit vectors were requested), ``vector_bits`` (the widest vectors the
    kernels can be expected to use: 512, 256 or 128) and ``note`` (why).
    """
    features = getattr(_cpu_target.target_context.codegen(), "_tm_features", "") or ""
    prefers_256 = "-prefer-256-bit" not in features
    if HAS_AVX512:
        bits = 256 if prefers_256 else 512
    elif HAS_AVX2:
        bits = 256
    else:
        bits = 128
    return {
        "cpu": _ll.get_host_cpu_name(),
        "avx2": HAS_AVX2,
        "avx512": HAS_AVX512,
        "wide_vectors": _WIDE_REQUESTED and not prefers_256,
        "vector_bits": bits,
        "note": _WIDE_REASON,
    }
