"""CSAPP chapter 5 in Numba: the ``combine`` ladder, measured in cycles per element (CPE).

``combine`` folds a vector with one operation: ``dest[0] = data[0] OP data[1] OP ... OP data[n-1]`` with
``OP`` = ``"add"`` (identity 0) or ``"mul"`` (identity 1), as in Bryant & O'Hallaron's *Computer Systems:
A Programmer's Perspective*, section 5.4 onwards. Each version removes one obstacle:

=============  ===================================================================================
combine1_O0    ``combine1`` compiled with LLVM's optimiser off (``optnone``), like ``gcc -O0``
combine1       naive: the loop test calls ``vec_length`` every iteration, each element comes from the
               bounds-checking ``get_vec_element``, and the running result lives in ``dest[0]``
combine2       code motion: ``vec_length`` hoisted out of the loop
combine3       direct access to the data, no bounds check
combine4       the running result in a local variable (a register) instead of ``dest[0]`` in memory
unroll2x1      2 x 1 loop unrolling: two elements per iteration, one accumulator
unroll4x1      4 x 1 unrolling
unroll2x2      2 x 2: two accumulators (even and odd elements), combined at the end
unroll4x4      4 x 4: four accumulators
unroll8x8      8 x 8: eight accumulators
unroll2x1a     2 x 1a, reassociation: ``acc = acc OP (x[i] OP x[i+1])``
unroll8x1a     8 x 1a: a tree of eight elements per step, then one ``OP`` into the accumulator
=============  ===================================================================================

Why the numbers come out as they do. At ``-O0`` every variable lives in memory and every helper is a
call: over a hundred cycles per element. With optimisation, LLVM inlines the helpers, hoists
``vec_length`` and drops the bounds check it can prove true, so ``combine1``-``combine3`` already run like
``combine4`` -- the code motion CSAPP does by hand, the compiler now does by itself. (``combine1``-
``combine3`` still *store* ``dest[0]`` every iteration, because ``dest`` might alias ``data``, but the value
is forwarded in a register, so the stores cost bandwidth, not latency.) What remains is the chain: every
``OP`` needs the previous result, so the loop runs at one element per *latency* of the operation (the
CPE of ``combine4`` *is* the latency of a floating-point add or multiply): **latency-bound**. ``k``
accumulators give ``k`` independent chains, and reassociation shortens the chain to one ``OP`` per ``k``
elements; with more chains in flight than latency x functional units, the loop becomes
**throughput-bound**. Floating point is not associative, so the compiler may not do that for you (Numba
compiles these functions without ``fastmath``); integer ``+`` and ``*`` are associative, and there LLVM
reassociates and vectorises even ``combine4`` by itself.
"""

from __future__ import annotations

import time

import numba
import numpy as np
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import overload

from ._checks import check_array

__all__ = ["COMBINE_LADDER", "BOUND", "OPS", "fold", "measure_cpe", "estimate_clock_ghz"] + [
    "combine1_O0", "combine1", "combine2", "combine3", "combine4", "unroll2x1", "unroll4x1", "unroll2x2", "unroll4x4",
    "unroll8x8", "unroll2x1a", "unroll8x1a"]

OPS = ("add", "mul")
_DTYPES = (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.int32))


def _op(a, b, op):
    raise NotImplementedError("only callable from Numba code")


@overload(_op, inline="always")
def _op_impl(a, b, op):
    if not isinstance(op, types.StringLiteral):
        raise TypingError("combine: op must be a literal 'add' or 'mul'")
    if op.literal_value == "add":
        return lambda a, b, op: a + b
    if op.literal_value == "mul":
        return lambda a, b, op: a * b
    raise TypingError(f"combine: unknown op {op.literal_value!r}")


def _ident(data, op):
    raise NotImplementedError("only callable from Numba code")


@overload(_ident, inline="always")
def _ident_impl(data, op):
    if not isinstance(op, types.StringLiteral):
        raise TypingError("combine: op must be a literal 'add' or 'mul'")
    one = op.literal_value == "mul"
    return lambda data, op: data.dtype.type(1 if one else 0)


@njit(cache=True, nogil=True, inline="always")
def vec_length(v):
    """CSAPP's ``vec_length``: the number of elements."""
    return v.size


@njit(cache=True, nogil=True, inline="always")
def get_vec_element(v, i):
    """CSAPP's ``get_vec_element``, returning ``(ok, value)``: ``(False, 0)`` when ``i`` is out of bounds."""
    if i < 0 or i >= v.size:
        return False, v.dtype.type(0)
    return True, v[i]


@njit(cache=True, nogil=True)
def combine1(data, dest, op):
    numba.literally(op)
    dest[0] = _ident(data, op)
    i = 0
    while i < vec_length(data):
        ok, val = get_vec_element(data, i)
        dest[0] = _op(dest[0], val, op)
        i += 1


@njit(cache=True, nogil=True, _dbg_optnone=True)
def combine1_O0(data, dest, op):
    """combine1's code, compiled with LLVM's optimisations off (``optnone``), like ``gcc -O0``."""
    numba.literally(op)
    dest[0] = _ident(data, op)
    i = 0
    while i < vec_length(data):
        ok, val = get_vec_element(data, i)
        dest[0] = _op(dest[0], val, op)
        i += 1


@njit(cache=True, nogil=True)
def combine2(data, dest, op):
    numba.literally(op)
    length = vec_length(data)
    dest[0] = _ident(data, op)
    for i in range(length):
        ok, val = get_vec_element(data, i)
        dest[0] = _op(dest[0], val, op)


@njit(cache=True, nogil=True)
def combine3(data, dest, op):
    numba.literally(op)
    length = vec_length(data)
    dest[0] = _ident(data, op)
    for i in range(length):
        dest[0] = _op(dest[0], data[i], op)


@njit(cache=True, nogil=True)
def combine4(data, dest, op):
    numba.literally(op)
    acc = _ident(data, op)
    for i in range(data.size):
        acc = _op(acc, data[i], op)
    dest[0] = acc


@njit(cache=True, nogil=True)
def unroll2x1(data, dest, op):
    numba.literally(op)
    n = data.size
    limit = n - n % 2
    acc = _ident(data, op)
    for i in range(0, limit, 2):
        acc = _op(_op(acc, data[i], op), data[i + 1], op)
    for i in range(limit, n):
        acc = _op(acc, data[i], op)
    dest[0] = acc


@njit(cache=True, nogil=True)
def unroll4x1(data, dest, op):
    numba.literally(op)
    n = data.size
    limit = n - n % 4
    acc = _ident(data, op)
    for i in range(0, limit, 4):
        acc = _op(_op(_op(_op(acc, data[i], op), data[i + 1], op), data[i + 2], op), data[i + 3], op)
    for i in range(limit, n):
        acc = _op(acc, data[i], op)
    dest[0] = acc


@njit(cache=True, nogil=True)
def unroll2x2(data, dest, op):
    numba.literally(op)
    n = data.size
    limit = n - n % 2
    acc0 = _ident(data, op)
    acc1 = _ident(data, op)
    for i in range(0, limit, 2):
        acc0 = _op(acc0, data[i], op)
        acc1 = _op(acc1, data[i + 1], op)
    for i in range(limit, n):
        acc0 = _op(acc0, data[i], op)
    dest[0] = _op(acc0, acc1, op)


@njit(cache=True, nogil=True)
def unroll4x4(data, dest, op):
    numba.literally(op)
    n = data.size
    limit = n - n % 4
    acc0 = acc1 = acc2 = acc3 = _ident(data, op)
    for i in range(0, limit, 4):
        acc0 = _op(acc0, data[i], op)
        acc1 = _op(acc1, data[i + 1], op)
        acc2 = _op(acc2, data[i + 2], op)
        acc3 = _op(acc3, data[i + 3], op)
    for i in range(limit, n):
        acc0 = _op(acc0, data[i], op)
    dest[0] = _op(_op(acc0, acc1, op), _op(acc2, acc3, op), op)


@njit(cache=True, nogil=True)
def unroll8x8(data, dest, op):
    numba.literally(op)
    n = data.size
    limit = n - n % 8
    acc0 = acc1 = acc2 = acc3 = acc4 = acc5 = acc6 = acc7 = _ident(data, op)
    for i in range(0, limit, 8):
        acc0 = _op(acc0, data[i], op)
        acc1 = _op(acc1, data[i + 1], op)
        acc2 = _op(acc2, data[i + 2], op)
        acc3 = _op(acc3, data[i + 3], op)
        acc4 = _op(acc4, data[i + 4], op)
        acc5 = _op(acc5, data[i + 5], op)
        acc6 = _op(acc6, data[i + 6], op)
        acc7 = _op(acc7, data[i + 7], op)
    for i in range(limit, n):
        acc0 = _op(acc0, data[i], op)
    acc0 = _op(_op(acc0, acc1, op), _op(acc2, acc3, op), op)
    acc4 = _op(_op(acc4, acc5, op), _op(acc6, acc7, op), op)
    dest[0] = _op(acc0, acc4, op)


@njit(cache=True, nogil=True)
def unroll2x1a(data, dest, op):
    numba.literally(op)
    n = data.size
    limit = n - n % 2
    acc = _ident(data, op)
    for i in range(0, limit, 2):
        acc = _op(acc, _op(data[i], data[i + 1], op), op)
    for i in range(limit, n):
        acc = _op(acc, data[i], op)
    dest[0] = acc


@njit(cache=True, nogil=True)
def unroll8x1a(data, dest, op):
    numba.literally(op)
    n = data.size
    limit = n - n % 8
    acc = _ident(data, op)
    for i in range(0, limit, 8):
        t0 = _op(_op(data[i], data[i + 1], op), _op(data[i + 2], data[i + 3], op), op)
        t1 = _op(_op(data[i + 4], data[i + 5], op), _op(data[i + 6], data[i + 7], op), op)
        acc = _op(acc, _op(t0, t1, op), op)
    for i in range(limit, n):
        acc = _op(acc, data[i], op)
    dest[0] = acc


#: The ladder in the chapter's order: name -> (function, what changed). Each function is
#: ``fn(data, dest, op)`` with ``op`` a compile-time constant string; from Python, call the entries of
#: :data:`BOUND` (or :func:`fold`), where ``op`` is already fixed.
COMBINE_LADDER = {
    "combine1_O0": (combine1_O0, "combine1 compiled without optimisation (like gcc -O0)"),
    "combine1": (combine1, "naive: vec_length() in the loop test, bounds-checked get, result in *dest"),
    "combine2": (combine2, "code motion: vec_length() hoisted"),
    "combine3": (combine3, "direct data access, no bounds check"),
    "combine4": (combine4, "accumulate in a local variable, not in *dest"),
    "unroll2x1": (unroll2x1, "2x1 loop unrolling"),
    "unroll4x1": (unroll4x1, "4x1 loop unrolling"),
    "unroll2x2": (unroll2x2, "2x2: two accumulators"),
    "unroll4x4": (unroll4x4, "4x4: four accumulators"),
    "unroll8x8": (unroll8x8, "8x8: eight accumulators"),
    "unroll2x1a": (unroll2x1a, "2x1a: reassociation, acc OP (x[i] OP x[i+1])"),
    "unroll8x1a": (unroll8x1a, "8x1a: reassociation over 8 elements"),
}


def _bind(fn, op):
    # A Python string passed to a Numba function is typed as a plain string, and matching it to the
    # version compiled for that literal goes through a slow path (milliseconds per call). Inside this
    # wrapper ``op`` is a constant, so the call is resolved once, at compile time.
    @njit(cache=True, nogil=True)
    def run(data, dest):
        fn(data, dest, op)
    return run


#: ``BOUND[(name, op)](data, dest)``: the ladder's functions with ``op`` fixed, cheap to call from Python.
BOUND = {(name, op): _bind(fn, op) for name, (fn, _) in COMBINE_LADDER.items() for op in ("add", "mul")}


def fold(data: np.ndarray, op: str = "add", version: str = "combine4"):
    """Fold ``data`` with ``op`` ("add" or "mul") using one version of the ladder; returns a NumPy scalar.

    ``data``: 1-D C-contiguous float64, float32, int64 or int32 array (integers wrap on overflow, like C).
    Floating-point results depend on the version: reassociating versions add in a different order.
    Raises TypeError/ValueError for another dtype, shape or layout, or an unknown ``op``/``version``.
    """
    check_array(data, "data", "fold", dtypes=_DTYPES, ndim=1)
    if not data.flags.c_contiguous:
        raise ValueError(f"fold: data must be C-contiguous, got strides {data.strides}")
    if op not in OPS:
        raise ValueError(f"fold: op must be one of {OPS}, got {op!r}")
    if version not in COMBINE_LADDER:
        raise ValueError(f"fold: unknown version {version!r}; one of {list(COMBINE_LADDER)}")
    dest = np.empty(1, data.dtype)
    BOUND[(version, op)](data, dest)
    return dest[0]


# ------------------------------------------------------------------------------------------------
# Measuring cycles per element


@njit(cache=True, nogil=True)
def _imul_chain(n, x):
    for _ in range(n):
        # multiply (3 cycles) then xor (1 cycle), each waiting for the last: 4 cycles per iteration.
        # (A plain x = x * C chain would be folded by the compiler: integer multiplication is associative.)
        x = (x * 6364136223846793005) ^ (x >> 29)
    return x


def estimate_clock_ghz(n: int = 20_000_000, repeats: int = 5) -> float:
    """Estimate the core's clock in GHz from a chain of dependent 64-bit integer operations.

    Each step is a multiply (``imul``: 3 cycles latency on x86-64 cores since Intel Sandy Bridge and AMD
    Zen) followed by an xor (1 cycle) that needs its result, so ``n`` steps take ``4 n`` cycles; the best of
    ``repeats`` timings gives the clock the core actually ran at (turbo included). On other architectures
    the estimate is only indicative.
    """
    _imul_chain(10, 1)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        _imul_chain(n, 12345)
        best = min(best, time.perf_counter() - t)
    return 4 * n / best / 1e9


def measure_cpe(version: str, data: np.ndarray, op: str = "add", repeats: int = 7,
                ghz: float | None = None) -> dict:
    """Time one combine version on ``data`` and return ns and cycles per element.

    Returns ``{"ns_per_element": best, "median_ns_per_element": median, "cpe": best * ghz,
    "ghz": ghz}`` with ``ghz`` from :func:`estimate_clock_ghz` unless given. The best of ``repeats``
    runs approximates the undisturbed time (the CSAPP convention).
    """
    fn = BOUND[(version, op)]
    dest = np.empty(1, data.dtype)
    fn(data, dest)  # compile / warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(data, dest)
        times.append(time.perf_counter() - t)
    if ghz is None:
        ghz = estimate_clock_ghz()
    best = min(times) / data.size * 1e9
    return {"ns_per_element": best, "median_ns_per_element": float(np.median(times)) / data.size * 1e9,
            "cpe": best * ghz, "ghz": ghz}
