"""Checks for Lab 4 (Numba CPU kernels): one function per exercise.

Each ``check_*`` takes the student's function, calls it on fixed awkward cases (lengths and shapes that
are not multiples of the unrolling factor or the tile size, one element, empty) and on seeded random
ones, and compares the result with ground truth computed here without any reference answer:

* sums come from ``math.fsum`` (exactly rounded) or from integer-valued data whose sums are exact;
* matrix products from NumPy in float64, with an error bound that grows with the length of the dot
  product (a float32 kernel may round differently from NumPy, but not by more than that);
* reductions from ``np.sum`` with the same ``axis`` and ``keepdims``;
* softmax and the running maximum and sum of the online softmax from their definitions, in float64.

How the checks see mistakes that Numba would otherwise hide
-----------------------------------------------------------
* **Reads and writes past the end.** Numba does not check bounds: an unrolled loop or a tile that runs
  past the edge of an array silently reads whatever lies behind it, or overwrites it. Every array a
  kernel receives here is a window in the middle of a larger buffer. Behind the inputs lies NaN, so a
  read past the end poisons the result; around the outputs lies a sentinel value, so a write past the
  end shows. Guards are large enough for the mistakes students make (a missing ``min`` at the edge).
* **How many accumulators.** Floating-point addition is not associative, so *how* a sum was grouped
  shows in its rounding. :func:`check_sum_4x4` adds a vector built so that four separate running sums
  (one per lane ``i % 4``) get the exact answer and other groupings do not, and says which grouping
  the student's kernel used.
* **Compiled or not.** The kernel exercises ask for Numba functions; the checks say so when a plain
  Python function is passed.

A wrong answer raises ``AssertionError`` naming the case, the expected and the returned values, with a
hint when the result matches a common mistake; a correct one prints ``✓ <exercise> passed``. A function
that is still the student copy's stub raises ``NotImplementedError``, which the checks let through.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from . import assert_array_close, call_student, report_pass

__all__ = [
    "check_sum_4x4",
    "check_gemm_ikj",
    "check_gemm_blocked",
    "check_reduce_sum",
    "check_online_update",
    "check_softmax_online",
]

#: Guard elements around every array handed to a kernel.
GUARD = 4096
#: What the memory around an output holds before the call: any write past its edges changes it.
SENTINEL = -7777.0


def _require_njit(fn: Callable, name: str) -> None:
    from numba.core.dispatcher import Dispatcher

    if not isinstance(fn, Dispatcher):
        raise AssertionError(
            f"{name}: expected a Numba-compiled function, got {type(fn).__name__} "
            f"{getattr(fn, '__name__', '')!r}: decorate it with @njit (from numba import njit)")


def _window(x: np.ndarray, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """``x`` copied into the middle of a flat buffer with ``GUARD`` elements of ``fill`` on each side.

    Returns ``(view, buffer)``; the view has ``x``'s shape and dtype and is C-contiguous.
    """
    buf = np.full(x.size + 2 * GUARD, fill, dtype=x.dtype)
    view = buf[GUARD:GUARD + x.size].reshape(x.shape)
    view[...] = x
    return view, buf


def _guard_intact(buf: np.ndarray, size: int, fill: float) -> tuple[int, int]:
    """Number of guard elements changed before and after the window."""
    def changed(part):
        return int(np.sum(~np.isnan(part))) if np.isnan(fill) else int(np.sum(part != fill))
    return changed(buf[:GUARD]), changed(buf[GUARD + size:])


def _check_guards(what: str, bufs: dict, hint: str) -> None:
    """``bufs``: name -> (buffer, window size, fill, "input"/"output")."""
    for name, (buf, size, fill, role) in bufs.items():
        before, after = _guard_intact(buf, size, fill)
        if before or after:
            where = "before" if before else "after"
            raise AssertionError(
                f"{what}: your kernel wrote outside the {role} `{name}`: {before + after} element(s) of "
                f"the memory {where} it changed. Numba does not check bounds, so a write past the edge "
                f"overwrites whatever lies there.\n  hint: {hint}")


# ------------------------------------------------------------------------------------ combine 4x4 ----

def _lanes(x: np.ndarray, k: int) -> float:
    """``k`` running sums over lanes ``i % k`` (Python floats, in order), combined as a balanced tree."""
    acc = [0.0] * k
    for i, v in enumerate(x.tolist()):
        acc[i % k] += v
    while len(acc) > 1:
        acc = [acc[i] + acc[i + 1] for i in range(0, len(acc), 2)]
    return acc[0]


def _reassociated(x: np.ndarray, k: int) -> float:
    """CSAPP's k x 1a: ``acc = acc + (tree sum of k consecutive elements)``."""
    acc, vals = 0.0, x.tolist()
    for i in range(0, len(vals) - len(vals) % k, k):
        group = vals[i:i + k]
        while len(group) > 1:
            group = [group[j] + group[j + 1] for j in range(0, len(group), 2)]
        acc += group[0]
    for v in vals[len(vals) - len(vals) % k:]:
        acc += v
    return acc


def _grouping_hint(got: float, x: np.ndarray) -> str:
    candidates = [
        (_lanes(x, 1), "a single running sum (one dependency chain): keep four, one per lane i % 4"),
        (_lanes(x, 2), "two accumulators (2 x 2): use four, acc0 for x[0], x[4], ..., acc1 for x[1], x[5], ..."),
        (_lanes(x, 8), "eight accumulators (8 x 8): this exercise asks for four"),
        (_reassociated(x, 4), "reassociation, acc + ((x[i] + x[i+1]) + (x[i+2] + x[i+3])) (CSAPP's 4 x 1a): "
                              "a different transformation; keep four separate accumulators"),
        (_reassociated(x, 2), "reassociation, acc + (x[i] + x[i+1]) (CSAPP's 2 x 1a): keep four separate "
                              "accumulators"),
    ]
    for value, words in candidates:
        if got == value:
            return f"your sum rounds exactly like {words}"
    return ("accumulator j must add up x[j], x[j + 4], x[j + 8], ... in that order, and the four are "
            "combined at the end (compiled without fastmath, which would let the compiler regroup them)")


def check_sum_4x4(sum_4x4: Callable, seed: int = 0) -> None:
    """Check ``sum_4x4(x) -> float``: the sum of a 1-D float64 array with four accumulators (CSAPP's 4 x 4).

    Accumulator ``j`` adds ``x[j], x[j + 4], x[j + 8], ...``; the ``n % 4`` elements left over after the
    last full group of four are added by a remainder loop; the four sums are combined at the end. Values
    are compared with ``math.fsum``; two inputs with heavy cancellation check the grouping itself.
    """
    _require_njit(sum_4x4, "sum_4x4")
    rng = np.random.default_rng(seed)
    lengths = list(range(0, 14)) + [31, 64, 257, 1001]
    cases = [(f"random normal, n={n}", rng.standard_normal(n)) for n in lengths]
    cases += [("ones, n=7", np.ones(7)), ("arange, n=10", np.arange(10.0)), ("one element, n=1", np.array([2.5]))]
    big = 2.0 ** 53                      # adding 1 to it is lost to rounding
    pattern = np.array([big, 1.0, 1.0, 1.0, -big, 1.0, 1.0, 1.0])
    signature = [("cancellation test 1", np.tile(pattern, 2)),
                 ("cancellation test 2", np.concatenate([np.tile([big, 2.0, 1.0, 3.0], 3), np.tile([-big, 1.0, 2.0, 0.5], 3)]))]
    for name, x in cases + signature:
        n = x.size
        view, buf = _window(x.astype(np.float64), np.nan)
        what = f"sum_4x4 on {name}"
        got = call_student(sum_4x4, what, view)
        _check_guards(what, {"x": (buf, n, np.nan, "input")},
                      "a kernel that sums must not write into its input")
        if not isinstance(got, (float, np.floating, int, np.integer)):
            raise AssertionError(f"{what}: expected a float, got {type(got).__name__}"
                                 + (" (did you forget `return`?)" if got is None else ""))
        got = float(got)
        if math.isnan(got):
            raise AssertionError(
                f"{what}: the result is NaN. Here the memory after x is filled with NaN, so your loop read "
                f"past the end of x.\n  hint: the unrolled loop must stop at the last full group of four "
                f"(n - n % 4); a remainder loop adds the last n % 4 elements one at a time")
        if name.startswith("cancellation"):
            exact = math.fsum(x)
            want = _lanes(x, 4)
            assert want == exact          # built so that four lanes get the exact answer
            if got != want:
                raise AssertionError(
                    f"{what}: expected exactly {want!r}, got {got!r}. This input has values of 2**53, where "
                    f"adding 1.0 is lost to rounding, arranged so that four accumulators (one per lane i % 4) "
                    f"never mix the big values with the small ones.\n  hint: {_grouping_hint(got, x)}")
            continue
        exact = math.fsum(x)
        tol = 1e-14 * (n + 1) * float(np.sum(np.abs(x))) + 1e-300
        if abs(got - exact) > tol:
            hint = "compare with the loops in CSAPP's combine6 (4 x 4): four sums, a remainder loop, one combine"
            rem = n % 4
            if rem and abs(got - math.fsum(x[:n - rem])) <= tol:
                hint = (f"the last {rem} element(s) were left out: after the unrolled loop stops at "
                        f"n - n % 4, a remainder loop must add them")
            elif n and abs(got - exact - x[0]) <= tol:
                hint = "the first element was added twice (do the accumulators start at 0.0?)"
            raise AssertionError(f"{what}: expected {exact!r}, got {got!r} (error {abs(got - exact):.3g})"
                                 f"\n  hint: {hint}")
    report_pass("sum with four accumulators", len(cases) + len(signature))


# ------------------------------------------------------------------------------------------- GEMM ----

_GEMM_SHAPES = [(1, 1, 1), (1, 5, 1), (3, 1, 4), (2, 3, 5), (7, 5, 3), (5, 7, 9), (16, 16, 16),
                (17, 9, 33), (33, 31, 17), (0, 3, 4), (3, 0, 4), (3, 4, 0)]


def _gemm_case(rng, m, k, n):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    return a, b, c0


def _run_gemm(fn, what, a, b, c0, *extra, tile_hint: str):
    """Call ``fn(a, b, c, *extra)`` on guarded windows; return the new c as float64."""
    av, abuf = _window(a, np.nan)
    bv, bbuf = _window(b, np.nan)
    cv, cbuf = _window(c0, SENTINEL)
    call_student(fn, what, av, bv, cv, *extra)
    _check_guards(what, {"a": (abuf, a.size, np.nan, "input"), "b": (bbuf, b.size, np.nan, "input"),
                         "c": (cbuf, c0.size, SENTINEL, "output")}, tile_hint)
    if not (np.array_equal(av, a) and np.array_equal(bv, b)):
        raise AssertionError(f"{what}: your kernel changed a or b; it may only write into c")
    return cv.astype(np.float64)


def _compare_gemm(got, a, b, c0, what, hint_edges: str | None = None, bs: int | None = None):
    a64, b64, c64 = a.astype(np.float64), b.astype(np.float64), c0.astype(np.float64)
    expected = c64 + a64 @ b64
    k = a.shape[1]
    bound = float(np.max((k + 2) * np.finfo(np.float32).eps * (np.abs(c64) + np.abs(a64) @ np.abs(b64)),
                         initial=0.0)) + 1e-30
    hint = None
    if np.isnan(got).any():
        hint = ("the result has NaN: here the memory after a and b is filled with NaN, so your kernel read past "
                "the end of a or b" + (f" ({hint_edges})" if hint_edges else ""))
    elif got.shape == expected.shape and got.size and np.allclose(got, a64 @ b64, atol=bound, rtol=0) \
            and not np.allclose(c64, 0):
        hint = "c was overwritten: the kernel must add into c (C += A @ B), as BLAS does with beta = 1"
    elif got.size and np.allclose(got, c64, atol=bound, rtol=0) and k:
        hint = "c is unchanged: did the loops run at all (check their ranges)?"
    elif bs is not None and got.size:
        m, n = got.shape
        wrong = np.abs(got - expected) > bound
        edge = np.zeros_like(wrong)
        edge[m - m % bs:, :] = True
        edge[:, n - n % bs:] = True
        if (m % bs or n % bs) and not (wrong & ~edge).any():
            hint = (f"only the last partial tile is wrong (m={m}, n={n} are not multiples of bs={bs}): "
                    f"{hint_edges}")
        elif k % bs and wrong.all():
            hint = f"every element is wrong and k={k} is not a multiple of bs={bs}: {hint_edges}"
    if hint is None and np.isnan(got).any():
        hint = "NaN in the result"
    if np.isnan(got).any():
        raise AssertionError(f"{what}: your result contains NaN\n  hint: {hint}")
    assert_array_close(got, expected, what, rtol=0, atol=bound, hint=hint)


def check_gemm_ikj(gemm_ikj: Callable, seed: int = 0) -> None:
    """Check ``gemm_ikj(a, b, c)``: ``c += a @ b`` in place for float32 ``a (m, k)``, ``b (k, n)``, ``c (m, n)``.

    The loops run in ``i, k, j`` order (the check cannot see the order, only the result: the notebook
    times it). Shapes include size-1 and size-0 dimensions and non-square ones; ``c`` starts non-zero.
    """
    _require_njit(gemm_ikj, "gemm_ikj")
    rng = np.random.default_rng(seed)
    shapes = _GEMM_SHAPES + [tuple(int(s) for s in rng.integers(1, 12, size=3)) for _ in range(3)]
    for m, k, n in shapes:
        a, b, c0 = _gemm_case(rng, m, k, n)
        what = f"gemm_ikj with a.shape={a.shape}, b.shape={b.shape}"
        got = _run_gemm(gemm_ikj, what, a, b, c0,
                        tile_hint="loop i over the rows of a (m), k over the columns of a, j over the columns of b (n)")
        _compare_gemm(got, a, b, c0, what,
                      hint_edges="i runs over range(m), p over range(k) and j over range(n); a is (m, k), b is (k, n)")
    report_pass("GEMM in (i, k, j) order", len(shapes))


def check_gemm_blocked(gemm_blocked: Callable, seed: int = 0) -> None:
    """Check ``gemm_blocked(a, b, c, bs)``: ``c += a @ b`` with the loops tiled ``bs x bs x bs``.

    Shapes are mostly *not* multiples of ``bs`` (the last tile in each direction is partial), and ``bs``
    ranges from 1 to larger than the matrices. Reads and writes past the edges are caught by guards.
    """
    _require_njit(gemm_blocked, "gemm_blocked")
    rng = np.random.default_rng(seed)
    cases = [((8, 8, 8), 4), ((9, 9, 9), 4), ((7, 5, 3), 2), ((5, 7, 9), 4), ((17, 9, 33), 8), ((33, 31, 17), 16),
             ((13, 27, 11), 5), ((16, 16, 16), 3), ((1, 1, 1), 4), ((3, 1, 4), 2), ((2, 3, 5), 64), ((12, 12, 12), 1),
             ((0, 3, 4), 2), ((3, 0, 4), 2), ((3, 4, 0), 2), ((40, 37, 29), 32)]
    for (m, k, n), bs in cases:
        a, b, c0 = _gemm_case(rng, m, k, n)
        what = f"gemm_blocked with a.shape={a.shape}, b.shape={b.shape}, bs={bs}"
        edge = ("each tile must end at min(start + bs, size): the last tile in each direction is shorter "
                "when the size is not a multiple of bs")
        got = _run_gemm(gemm_blocked, what, a, b, c0, bs, tile_hint=edge)
        _compare_gemm(got, a, b, c0, what, hint_edges=edge, bs=bs)
    report_pass("blocked GEMM", len(cases))


# ------------------------------------------------------------------------------------- reduce_sum ----

_REDUCE_CASES = [  # (shape, axis, keepdims)
    ((5,), None, False), ((5,), 0, True), ((3, 4), 0, False), ((3, 4), 1, True), ((3, 4), -1, False),
    ((3, 4), (0, 1), True), ((2, 3, 4), (0, 2), False), ((2, 3, 4), (2, 0), True), ((2, 3, 4), (-1, 0), False),
    ((2, 3, 4), 1, True), ((2, 1, 3), 1, False), ((2, 3, 4), None, True), ((4, 0, 3), 1, False),
    ((4, 0, 3), (0, 2), True), ((2, 3, 4, 5), (1, 3), False), ((2, 3, 4, 5), (3, 1), True),
    ((2, 3, 4, 5), (0,), False), ((2, 3, 4, 5), -3, True), ((1, 1), (0, 1), False), ((), None, False),
    ((3, 2, 4), (), False),
]


def check_reduce_sum(reduce_sum: Callable, seed: int = 0) -> None:
    """Check ``reduce_sum(x, axis=None, keepdims=False)`` against ``np.sum`` on float64 arrays.

    ``axis`` is None, an int or a tuple of ints (negative ones count from the end, any order); with
    ``keepdims`` the reduced axes stay as size 1. Shapes include size-0 and size-1 axes and a 0-d array;
    ``axis=()`` reduces nothing. The input must not be modified.
    """
    rng = np.random.default_rng(seed)
    for shape, axis, keepdims in _REDUCE_CASES:
        x = rng.standard_normal(shape)
        if not x.ndim:
            x = np.asarray(x)
        before = x.copy()
        what = f"reduce_sum(x of shape {shape}, axis={axis!r}, keepdims={keepdims})"
        try:
            got = call_student(reduce_sum, what, x, axis=axis, keepdims=keepdims)
        except AssertionError as exc:
            negative = any(a < 0 for a in (axis if isinstance(axis, tuple) else (axis,)) if a is not None)
            if negative and exc.__cause__ is not None:
                raise AssertionError(f"{exc}\n  hint: negative axes count from the end: axis -1 is the last "
                                     f"one (normalise with a % x.ndim before comparing axes)") from exc
            raise
        expected = np.sum(before, axis=axis, keepdims=keepdims)
        if not np.array_equal(x, before):
            raise AssertionError(f"{what}: your function modified its input x")
        hint = None
        if got is not None and np.shape(got) != np.shape(expected):
            hint = ("with keepdims=True every reduced axis stays, with size 1" if keepdims else
                    "the result has the kept axes, in their original order, and nothing else")
        elif got is not None and np.shape(got) == np.shape(expected) and not np.allclose(got, expected):
            hint = ("put the kept axes first and the reduced axes last (x.transpose(kept + reduced)), make the "
                    "result contiguous, and view it as (M, R): M = product of the kept sizes, R = product of "
                    "the reduced sizes; negative axes count from the end")
        assert_array_close(got, np.asarray(expected), what, rtol=1e-12, atol=1e-12, hint=hint)
    report_pass("reduce_sum over any axes", len(_REDUCE_CASES))


# --------------------------------------------------------------------------------- online softmax ----

def _stats(values) -> tuple[float, float]:
    """(max, sum of exp(x - max)) of a non-empty list of floats, from the definition."""
    m = max(values)
    return m, math.fsum(math.exp(v - m) for v in values)


def _online_streams(rng):
    """Named lists of blocks, fed to the update one block at a time."""
    return [
        ("one block", [rng.standard_normal(5)]),
        ("single elements", [np.array([v]) for v in rng.standard_normal(6)]),
        ("maximum grows in every block", [np.array([0.0, 1.0]), np.array([3.0, 2.5, 4.0]), np.array([9.0]),
                                          np.array([20.0, 19.0])]),
        ("maximum never grows after the first block", [np.array([5.0, -1.0]), np.array([1.0, 2.0, 0.0]),
                                                       np.array([-3.0])]),
        ("large values (exp would overflow)", [np.array([700.0, 710.0]), np.array([750.0]),
                                              np.array([800.0, 799.0, 760.0])]),
        ("very negative values (exp would underflow to 0)", [np.array([-1000.0, -1001.0]), np.array([-1002.0]),
                                                             np.array([-999.0, -1000.5])]),
        ("an empty block after the first", [np.array([1.0, 2.0]), np.array([]), np.array([3.0])]),
        ("random blocks", [rng.standard_normal(int(s)) * 4 for s in (7, 1, 16, 3, 9)]),
    ]


def _update_mistakes(m, d, xs):
    """What common wrong updates return, for hints."""
    if not xs.size:
        return []
    mx = max(m, float(xs.max()))
    terms_new = math.fsum(math.exp(v - mx) for v in xs)
    with np.errstate(all="ignore"):
        return [
            ((mx, d + terms_new), "when the maximum grows from m to m_new, every term already in d was "
                                  "exp(x - m) and must become exp(x - m_new): multiply d by exp(m - m_new)"),
            ((mx, float(np.float64(d) * np.exp(np.float64(mx - m))) + terms_new),
             "the correction factor is exp(m - m_new), which is at most 1; exp(m_new - m) is its inverse"),
            ((mx, d * math.exp(m - mx) if m > -math.inf else 0.0),
             "the new block's terms exp(x - m_new) were not added to d"),
            ((m, d), "nothing changed: return the updated pair (m_new, d_new)"),
        ]


def check_online_update(online_update: Callable, seed: int = 0) -> None:
    """Check ``online_update(m, d, xs) -> (m_new, d_new)``: fold one block of a row into its running stats.

    ``m`` is the maximum of the elements seen so far and ``d = sum(exp(x - m))`` over them; the first
    call gets ``m = -inf, d = 0.0`` and a non-empty block. ``xs`` is a 1-D float64 array. After every
    block the pair must equal the maximum and the sum of exponentials of everything seen, computed from
    the definition: whatever the order in which the maximum grows, with values whose exponentials would
    overflow or underflow.
    """
    _require_njit(online_update, "online_update")
    rng = np.random.default_rng(seed)
    streams = _online_streams(rng)
    calls = 0
    for name, blocks in streams:
        m, d, seen = -math.inf, 0.0, []
        for step, xs in enumerate(blocks):
            xs = np.ascontiguousarray(xs, dtype=np.float64)
            what = f"online_update on '{name}', block {step} (values {np.round(xs, 3).tolist()}) after m={m!r}, d={d!r}"
            got = call_student(online_update, what, m, d, xs)
            calls += 1
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise AssertionError(f"{what}: expected a pair (m_new, d_new), got {type(got).__name__}"
                                     + (" (did you forget `return`?)" if got is None else ""))
            seen.extend(xs.tolist())
            want_m, want_d = _stats(seen)
            gm, gd = float(got[0]), float(got[1])
            ok = gm == want_m and math.isfinite(gd) and abs(gd - want_d) <= 1e-12 * max(1.0, want_d)
            if not ok:
                hint = "m_new = max(m, max(xs)); d_new = d * exp(m - m_new) + sum(exp(xs - m_new))"
                for (wm, wd), words in _update_mistakes(m, d, xs):
                    if gm == wm and (gd == wd or (math.isfinite(wd) and abs(gd - wd) <= 1e-12 * max(1.0, abs(wd)))):
                        hint = words
                        break
                if gm < m:
                    hint = "the running maximum can never decrease: m_new = max(m, max(xs))"
                if not math.isfinite(gd):
                    hint = ("d is not finite: every exponential must be of a value <= 0, exp(x - m_new) and "
                            "exp(m - m_new), which is why the maximum is subtracted first")
                raise AssertionError(f"{what}: expected (m, d) = ({want_m!r}, {want_d!r}), got ({gm!r}, {gd!r})"
                                     f"\n  hint: {hint}")
            m, d = want_m, want_d          # the next block starts from the exact state
    report_pass("online softmax update", calls)


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def check_softmax_online(softmax_online: Callable, seed: int = 0) -> None:
    """Check ``softmax_online(x2, out, block)``: softmax of each row of float64 ``x2`` (R, C) into ``out``.

    Each row is read block by block (``block`` elements, the last block shorter when ``C`` is not a
    multiple), its running maximum and sum updated once per block, then ``out`` written. Rows include a
    maximum that grows from block to block, huge and very negative values; ``C`` and ``block`` include
    1 and sizes that do not divide each other; ``R`` includes 0.
    """
    _require_njit(softmax_online, "softmax_online")
    rng = np.random.default_rng(seed)
    cases = [((3, 8), 4), ((3, 10), 4), ((2, 17), 16), ((4, 5), 1), ((2, 1), 4), ((1, 100), 7), ((5, 64), 64),
             ((2, 30), 64), ((0, 5), 4), ((3, 33), 8)]
    for (r, c), block in cases:
        x = rng.standard_normal((r, c)) * 3
        if r >= 2:
            x[1] = np.arange(c, dtype=np.float64) * 2.0      # the maximum grows in every block
        if r >= 3:
            x[2] = x[2] - 1000.0                             # exp(x) alone would underflow to 0
        if r >= 4:
            x[3] = x[3] + 800.0                              # exp(x) alone would overflow
        xv, xbuf = _window(x, np.nan)
        out0 = np.zeros((r, c))
        ov, obuf = _window(out0, SENTINEL)
        what = f"softmax_online(x2 of shape {(r, c)}, out, block={block})"
        edge = (f"every loop over a row stays within range(n); the last block of a row is shorter when the row "
                f"length ({c}) is not a multiple of block ({block}): loop over range(0, n, block) and end each "
                f"block at min(start + block, n)")
        try:
            call_student(softmax_online, what, xv, ov, block)
        except AssertionError as exc:
            if isinstance(exc.__cause__, ZeroDivisionError):
                raise AssertionError(
                    f"{exc}\n  hint: d came out 0, so every exp(x - m) underflowed: m must be the row's maximum "
                    f"(start from m = -inf), so that the largest term is exp(0) = 1") from exc
            raise
        _check_guards(what, {"x2": (xbuf, x.size, np.nan, "input"), "out": (obuf, out0.size, SENTINEL, "output")},
                      edge)
        if not np.array_equal(xv, x):
            raise AssertionError(f"{what}: your kernel changed x2; it may only write into out")
        expected = _softmax_rows(x)
        got = np.array(ov)
        hint = None
        if np.isnan(got).any():
            hint = ("NaN in the result: either a read past the end of a row (here the memory after x2 is NaN) or "
                    "an exponential of a positive number that overflowed: " + edge)
        elif got.size and np.allclose(got.sum(axis=1), 1.0) and c % block:
            hint = edge
        elif got.size and not np.allclose(got.sum(axis=1), 1.0):
            hint = ("rows do not sum to 1: out[i, j] = exp(x[i, j] - m) / d with the final m and d of row i; "
                    + (edge if c % block else "every block must go through online_update"))
        assert_array_close(got, expected, what, rtol=1e-10, atol=1e-15, hint=hint)
    report_pass("online softmax kernel", len(cases))
