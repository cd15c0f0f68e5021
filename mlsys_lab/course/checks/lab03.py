"""Checks for Lab 3 (the runtime: memory planning and scheduling): one function per exercise.

The exercises work on a plan written as plain Python data, so that the checks can build any case they
like: ``steps`` is a list of ``(out, inputs)`` pairs in execution order (step ``k`` reads the values named
in ``inputs`` and writes the value ``out``; a name no step writes is a graph input), ``outputs`` names the
values the plan returns, ``sizes`` maps each computed value to its size in bytes, and ``deps[s]`` lists the
steps that step ``s`` waits for.

Each ``check_*`` calls the student's function on hand-made awkward cases (a value read twice by one step,
an output that later steps also read, a value nobody reads, a gap that is too small, two independent
steps that must run at the same time) and on seeded random plans, and tests the result against ground
truth that does not come from a reference answer:

* liveness from its definition: at every step, the set of values that were written at or before it and
  are still needed at or after it (read again, or returned);
* the lower bound by brute force: the bytes of the values live at each step, summed step by step;
* a placement against the two properties that define it: values live at the same time never share a
  byte, and each value sits at the lowest offset of the smallest gap that fits it among the values
  already placed that it conflicts with (best fit), or right above them if no gap fits;
* a parallel executor by watching it run instrumented steps on real threads: every step once, each after
  all its dependencies finished, never more than ``num_threads`` at once, two independent ready steps at
  the same time (a barrier that only opens when both arrive), nothing still running or left behind
  when it returns;
* a critical path against every path of the graph, enumerated one by one.

A wrong answer raises ``AssertionError`` naming the case, the value or step involved, what was expected
and, when the answer matches a common mistake, a hint. A correct one prints ``✓ <exercise> passed``.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from typing import Callable

import numpy as np

from . import call_student, report_pass

__all__ = [
    "check_live_intervals",
    "check_peak_live_bytes",
    "check_place_best_fit",
    "check_run_parallel",
    "check_critical_path",
    "random_program",
    "liveness_by_definition",
]


# ------------------------------------------------------------------------------------- test plans ----

def random_program(rng, n_steps: int | None = None):
    """A random plan: ``(steps, outputs)`` with graph inputs ``x0, x1`` and computed values ``t0, t1, ...``.

    Each step reads one to three earlier values (inputs included, sometimes the same value twice); one to
    three computed values are outputs (the last step's always), so some values are read by nobody and
    some outputs are also read by later steps.
    """
    n = int(rng.integers(3, 16)) if n_steps is None else n_steps
    names = ["x0", "x1"]
    steps = []
    for k in range(n):
        recent = names[-4:]
        reads = []
        for _ in range(int(rng.integers(1, 4))):
            pool = recent if rng.random() < 0.6 else names  # mostly recent values: chains, with long jumps
            reads.append(pool[int(rng.integers(0, len(pool)))])
        out = f"t{k}"
        steps.append((out, reads))
        names.append(out)
    computed = [s[0] for s in steps]
    extra = [computed[int(i)] for i in rng.integers(0, n, size=int(rng.integers(0, 3)))]
    outputs = list(dict.fromkeys([computed[-1]] + extra))
    return steps, outputs


def liveness_by_definition(steps, outputs) -> dict:
    """``{value: (first, last)}``, from the set of values live at each step.

    A value is live at step ``t`` if a step at or before ``t`` wrote it and it is still needed at ``t``:
    written at ``t``, read at ``t`` or later, or returned (outputs stay live until step ``len(steps)``,
    when the plan returns). Graph inputs belong to the caller and get no interval.
    """
    n = len(steps)
    written = {out: k for k, (out, _) in enumerate(steps)}
    reads = {v: [k for k, (_, ins) in enumerate(steps) if v in ins] for v in written}
    returned = set(outputs)
    live_at = [set() for _ in range(n + 1)]
    for t in range(n + 1):
        for v, k in written.items():
            if k <= t and (k == t or any(r >= t for r in reads[v]) or v in returned):
                live_at[t].add(v)
    return {v: (min(t for t in range(n + 1) if v in live_at[t]), max(t for t in range(n + 1) if v in live_at[t]))
            for v in written}


def _copy_steps(steps):
    return [(out, list(ins)) for out, ins in steps]


def _describe_program(steps, outputs) -> str:
    lines = [f"    step {k}: {out} = f({', '.join(ins)})" for k, (out, ins) in enumerate(steps)]
    return "\n".join(lines) + f"\n    outputs: {', '.join(outputs)}"


# ----------------------------------------------------------------------------------- Exercise 1 ----

_LIVENESS_CASES = [  # (name, steps, outputs)
    ("a chain", [("a", ["x"]), ("b", ["a"]), ("c", ["b"])], ["c"]),
    ("a value read twice by one step, then again later",
     [("a", ["x"]), ("b", ["a", "a"]), ("c", ["a", "b"])], ["c"]),
    ("a value nobody reads", [("a", ["x"]), ("unused", ["a"]), ("b", ["a"])], ["b"]),
    ("an output that a later step also reads", [("a", ["x"]), ("b", ["a"]), ("c", ["b"])], ["a", "c"]),
    ("a value read long after it was written",
     [("a", ["x"]), ("b", ["x"]), ("c", ["b"]), ("d", ["c", "y"]), ("e", ["d", "a"])], ["e"]),
]


def _as_interval(got, v, what):
    try:
        first, last = got
        if not all(isinstance(i, (int, np.integer)) for i in (first, last)):
            raise TypeError
        return int(first), int(last)
    except (TypeError, ValueError):
        raise AssertionError(f"{what}: the interval of {v!r} should be a pair of ints (first, last), got "
                             f"{got!r}") from None


def _liveness_hint(v, got, exp, steps, outputs) -> str | None:
    n = len(steps)
    reads = [k for k, (_, ins) in enumerate(steps) if v in ins]
    if v in outputs:
        if got[1] in (n - 1, max(reads, default=exp[0])) and got[1] != n:
            return (f"{v!r} is an output: it must survive until the plan returns it, after the last step, so "
                    f"its interval ends at len(steps) = {n}")
    if got[0] != exp[0]:
        return f"a value becomes live at the step that writes it ({v!r} is written by step {exp[0]})"
    if reads and got[1] == min(reads) and min(reads) != max(reads):
        return f"{v!r} is read at steps {reads}: it stays live until its last reader, not its first"
    if not reads and v not in outputs:
        return f"{v!r} is read by nobody: it is live only at the step that writes it, ({exp[0]}, {exp[0]})"
    return None


def check_live_intervals(live_intervals: Callable, seed: int = 0) -> None:
    """Check ``live_intervals(steps, outputs) -> {value: (first, last)}``.

    ``first`` is the step that writes the value, ``last`` the last step that reads it (``len(steps)`` for an
    output, which the caller reads after the last step; ``first`` for a value nobody reads). Graph inputs
    get no interval. Ground truth: :func:`liveness_by_definition`.
    """
    rng = np.random.default_rng(seed)
    cases = list(_LIVENESS_CASES)
    cases += [(f"random plan #{i}", *random_program(rng)) for i in range(25)]
    for name, steps, outputs in cases:
        what = f"live_intervals on {name}:\n{_describe_program(steps, outputs)}\n "
        got = call_student(live_intervals, what, _copy_steps(steps), list(outputs))
        expected = liveness_by_definition(steps, outputs)
        if got is None:
            raise AssertionError(f"{what} your function returned None (did you forget `return`?)")
        if not isinstance(got, dict):
            raise AssertionError(f"{what} expected a dict {{value: (first, last)}}, got {type(got).__name__}")
        for v in got:
            if v not in expected:
                raise AssertionError(f"{what} {v!r} is a graph input (no step writes it): its memory belongs "
                                     f"to the caller, so it gets no interval")
        for v, exp in expected.items():
            if v not in got:
                raise AssertionError(f"{what} {v!r} (written by step {exp[0]}) has no interval")
            iv = _as_interval(got[v], v, what)
            if iv != exp:
                hint = _liveness_hint(v, iv, exp, steps, outputs)
                raise AssertionError(f"{what} the interval of {v!r} should be {exp}, got {iv}"
                                     + (f"\n  hint: {hint}" if hint else ""))
    report_pass("live intervals", len(cases))


# ----------------------------------------------------------------------------------- Exercise 2 ----

def _live_bytes_by_step(intervals, sizes) -> list:
    if not intervals:
        return []
    end = max(last for _, last in intervals.values())
    return [sum(sizes[v] for v, (a, b) in intervals.items() if a <= t <= b) for t in range(end + 1)]


def _random_sizes(rng, names) -> dict:
    return {v: int(rng.choice([4, 40, 64, 100, 256, 1000, 1024, 4096])) * int(rng.integers(1, 4)) for v in names}


def check_peak_live_bytes(peak_live_bytes: Callable, seed: int = 0) -> None:
    """Check ``peak_live_bytes(intervals, sizes) -> int``: the largest total size of the values live at
    one step (intervals include both ends). Ground truth: the live bytes of every step, one by one."""
    rng = np.random.default_rng(seed)
    cases = [
        ("two values that touch at one step", {"a": (0, 1), "b": (1, 2)}, {"a": 100, "b": 10}),
        ("values that never meet", {"a": (0, 0), "b": (1, 1), "c": (2, 2)}, {"a": 30, "b": 50, "c": 20}),
        ("one value", {"a": (3, 3)}, {"a": 7}),
        ("no values at all", {}, {}),
        ("an output alive to the end", {"a": (0, 4), "b": (1, 2), "c": (2, 3), "d": (3, 4)},
         {"a": 8, "b": 64, "c": 64, "d": 16}),
    ]
    for i in range(15):
        steps, outputs = random_program(rng)
        iv = liveness_by_definition(steps, outputs)
        cases.append((f"random plan #{i}", iv, _random_sizes(rng, iv)))
    for i in range(10):  # random intervals, not necessarily from a plan
        names = [f"v{j}" for j in range(int(rng.integers(1, 12)))]
        iv = {}
        for v in names:
            a = int(rng.integers(0, 10))
            iv[v] = (a, a + int(rng.integers(0, 6)))
        cases.append((f"random intervals #{i}", iv, _random_sizes(rng, names)))
    for name, iv, sizes in cases:
        curve = _live_bytes_by_step(iv, sizes)
        expected = max(curve, default=0)
        what = f"peak_live_bytes on {name}, intervals {iv}, sizes {sizes}"
        got = call_student(peak_live_bytes, what, dict(iv), dict(sizes))
        if got is None:
            raise AssertionError(f"{what}: your function returned None (did you forget `return`?)")
        if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
            raise AssertionError(f"{what}: expected an int (bytes), got {type(got).__name__} {got!r}")
        if got != expected:
            half_open = max(_live_bytes_by_step({v: (a, b - 1) for v, (a, b) in iv.items() if b > a}, sizes),
                            default=0)
            hint = None
            if got == sum(sizes[v] for v in iv) and got != expected:
                hint = "that is the naive total, every value in its own buffer: count only the values live " \
                       "at the same step, and take the largest such total"
            elif got == half_open:
                hint = "intervals include both ends: a value is still live at its last step (it is read " \
                       "there), so a value that ends at step t and one that starts at t are live together"
            elif got in range(len(curve)) and got != expected:
                hint = "return the number of bytes, not the step where they peak"
            steps_text = ", ".join(f"step {t}: {b}" for t, b in enumerate(curve))
            raise AssertionError(f"{what}: expected {expected} bytes, got {got}\n  live bytes per step: "
                                 f"{steps_text}" + (f"\n  hint: {hint}" if hint else ""))
    report_pass("peak live bytes", len(cases))


# ----------------------------------------------------------------------------------- Exercise 3 ----

def _conflict(iv, u, v) -> bool:
    (a0, a1), (b0, b1) = iv[u], iv[v]
    return not (a1 < b0 or b1 < a0)


def _gaps(busy):
    """Gaps ``(offset, size)`` between the busy ranges (sorted, possibly overlapping), and the top."""
    gaps, top = [], 0
    for lo, hi in sorted(busy):
        if lo > top:
            gaps.append((top, lo - top))
        top = max(top, hi)
    return gaps, top


_FIRST_VS_BEST = (  # first fit puts x at 0, best fit at 100, which leaves the 50-byte gap for y
    {"d": (0, 1), "a": (0, 5), "e": (0, 1), "b": (0, 5), "x": (3, 5), "y": (3, 5)},
    {"d": 50, "a": 50, "e": 30, "b": 70, "x": 25, "y": 45},
    ["d", "a", "e", "b", "x", "y"],
    200,
)
_NESTED_BUSY = (  # e sits inside a's range; c conflicts with both and with b: the top is 100, not 40
    {"a": (0, 2), "e": (3, 5), "b": (3, 5), "c": (2, 3)},
    {"a": 100, "e": 20, "b": 20, "c": 30},
    ["a", "e", "b", "c"],
    130,
)
_DISJOINT = ({"a": (0, 0), "b": (1, 1), "c": (2, 2)}, {"a": 64, "b": 128, "c": 32}, ["b", "a", "c"], 128)


def check_place_best_fit(place_best_fit: Callable, seed: int = 0) -> None:
    """Check ``place_best_fit(intervals, sizes, order) -> {value: offset}``.

    Values are placed one at a time in ``order``. Each goes to the lowest offset of the smallest gap, among
    the memory ranges of the values already placed whose lifetimes overlap its own, that is large enough
    (a gap starts at 0 or at the end of a busy range), or, if none is, right above the highest of those
    ranges (offset 0 when it conflicts with nothing). Checked: offsets are non-negative ints; values live
    at the same time never share a byte; every offset is the best-fit one given the offsets before it.
    """
    rng = np.random.default_rng(seed)
    cases = [("a gap that best fit keeps for a larger value", *_FIRST_VS_BEST),
             ("busy ranges that overlap each other", *_NESTED_BUSY),
             ("lifetimes that never overlap", *_DISJOINT)]
    for i in range(24):
        steps, outputs = random_program(rng, int(rng.integers(4, 20)))
        iv = liveness_by_definition(steps, outputs)
        sizes = _random_sizes(rng, iv)
        names = list(iv)
        kind = i % 3
        if kind == 0:
            order, how = sorted(names, key=lambda v: (-sizes[v], iv[v][0])), "largest first"
        elif kind == 1:
            order, how = sorted(names, key=lambda v: (iv[v][0], -sizes[v])), "by first step"
        else:
            order, how = [names[j] for j in rng.permutation(len(names))], "random order"
        cases.append((f"random plan #{i} ({how})", iv, sizes, order, None))
    for name, iv, sizes, order, arena in cases:
        what = f"place_best_fit on {name}"
        detail = "\n  " + "\n  ".join(f"{v}: live {iv[v]}, {sizes[v]} bytes" for v in order)
        got = call_student(place_best_fit, what, dict(iv), dict(sizes), list(order))
        if got is None:
            raise AssertionError(f"{what}: your function returned None (did you forget `return`?)")
        if not isinstance(got, dict):
            raise AssertionError(f"{what}: expected a dict {{value: offset}}, got {type(got).__name__}")
        if set(got) != set(order):
            missing, extra = sorted(set(order) - set(got)), sorted(set(got) - set(order))
            raise AssertionError(f"{what}: expected an offset for each of {order}"
                                 + (f"; missing {missing}" if missing else "")
                                 + (f"; unexpected {extra}" if extra else ""))
        for v, off in got.items():
            if not isinstance(off, (int, np.integer)) or isinstance(off, bool) or off < 0:
                raise AssertionError(f"{what}: the offset of {v!r} should be a non-negative int, got {off!r}")
        # 1. Correctness: values live together never share memory.
        for u, v in itertools.combinations(order, 2):
            if _conflict(iv, u, v):
                ru, rv = (got[u], got[u] + sizes[u]), (got[v], got[v] + sizes[v])
                if ru[0] < rv[1] and rv[0] < ru[1]:
                    both = (max(iv[u][0], iv[v][0]), min(iv[u][1], iv[v][1]))
                    raise AssertionError(
                        f"{what}: {u!r} at [{ru[0]}, {ru[1]}) and {v!r} at [{rv[0]}, {rv[1]}) share bytes, but "
                        f"both are live at steps {both[0]}..{both[1]}: one would overwrite the other{detail}\n"
                        f"  hint: busy ranges can overlap each other (two values that are never live together "
                        f"may share memory); walk them sorted by offset and keep the highest end seen so far")
        # 2. Best fit, value by value, given the offsets chosen before it.
        for k, v in enumerate(order):
            busy = [(got[u], got[u] + sizes[u]) for u in order[:k] if _conflict(iv, u, v)]
            gaps, top = _gaps(busy)
            fits = [g for g in gaps if g[1] >= sizes[v]]
            expected = min(fits, key=lambda g: (g[1], g[0]))[0] if fits else top
            if got[v] != expected:
                busy_text = ", ".join(f"[{lo}, {hi})" for lo, hi in sorted(busy)) or "none"
                gaps_text = ", ".join(f"{s} bytes at {o}" for o, s in gaps) or "none"
                if fits:
                    why = (f"gaps that fit it: {', '.join(f'{s} bytes at {o}' for o, s in fits)}; best fit takes "
                           f"the smallest (the lowest offset among equal ones), at {expected}")
                    if got[v] == fits[0][0] and fits[0][0] != expected:
                        why += " (offset " + str(got[v]) + " is the first gap that fits: that is first fit)"
                elif not busy:
                    why = "none of the values placed before it is live at the same time, so it goes at offset 0"
                    if got[v] > top:
                        why += (" (the top of the values it conflicts with, not of the whole arena: memory "
                                "used only at other steps is free while it lives)")
                else:
                    why = f"no gap fits it, so it goes right above the busy ranges, at {top}"
                    if got[v] > top:
                        why += (" (the top of the ranges it conflicts with, not of the whole arena: memory "
                                "above them is free while it lives)")
                raise AssertionError(
                    f"{what}: {v!r} ({sizes[v]} bytes, live {iv[v]}) is at offset {got[v]}, expected {expected}.\n"
                    f"  Placed before it and live at the same time: {busy_text}; gaps between them: "
                    f"{gaps_text}; {why}{detail}")
        if arena is not None:  # hand-made cases: the arena best fit reaches, worked out by hand
            used = max(got[v] + sizes[v] for v in order)
            assert used == arena, f"{what}: the arena should be {arena} bytes, got {used}{detail}"
    report_pass("best-fit placement", len(cases))


# ----------------------------------------------------------------------------------- Exercise 4 ----

class _Recorder:
    """``run_step`` for the student's executor: records what happens, never raises in their threads."""

    def __init__(self, deps, num_threads, barrier_steps=(), sleep=None, barrier_timeout=3.0):
        self.deps = deps
        self.num_threads = num_threads
        self.lock = threading.Lock()
        self.seq = itertools.count()
        self.start = {}
        self.end = {}
        self.runs = [0] * len(deps)
        self.active = 0
        self.max_active = 0
        self.early = []          # (step, dependency not finished)
        self.barrier_steps = set(barrier_steps)
        self.barrier_timeout = barrier_timeout
        self.barrier = threading.Barrier(len(self.barrier_steps), timeout=barrier_timeout) if barrier_steps else None
        self.barrier_broken = []
        self.sleep = sleep or (lambda s: 0.0005 * (1 + s % 3))

    def __call__(self, s):
        with self.lock:
            self.runs[s] += 1
            self.start.setdefault(s, next(self.seq))
            for d in self.deps[s]:
                if d not in self.end:
                    self.early.append((s, d))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        if self.barrier is not None and s in self.barrier_steps:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                with self.lock:
                    self.barrier_broken.append(s)
        time.sleep(self.sleep(s))
        with self.lock:
            self.end[s] = next(self.seq)
            self.active -= 1


def _run_student(run_parallel, deps, recorder, num_threads, what, timeout):
    """Run the student's executor on a thread of its own, so that a deadlock becomes a clear failure."""
    before = set(threading.enumerate())
    box = {}

    def target():
        try:
            run_parallel([list(d) for d in deps], recorder, num_threads)
        except BaseException as e:  # noqa: BLE001 - reported in the caller's thread
            box["error"] = e
        with recorder.lock:
            box["started_at_return"] = set(recorder.start)
            box["ended_at_return"] = set(recorder.end)

    runner = threading.Thread(target=target, name="lab03-check-runner", daemon=True)
    runner.start()
    runner.join(timeout)
    if runner.is_alive():
        with recorder.lock:
            ran = sorted(recorder.end)
            stuck = sorted(s for s in range(len(deps)) if s not in recorder.start)
        raise AssertionError(
            f"{what}: run_parallel did not return within {timeout:.0f} s (deadlock?). Steps finished: {ran}; "
            f"never started: {stuck}.\n  hint: when a step finishes, decrement the counter of each step that "
            f"waits for it and queue those that reach zero; when every step has finished, tell each worker to "
            f"stop (e.g. put one None per worker on the queue) and return"
            + (" (a plan with no steps is done before it starts)" if not deps else ""))
    if "error" in box:
        e = box["error"]
        if isinstance(e, NotImplementedError):
            raise e
        raise AssertionError(f"{what}: your function raised {type(e).__name__}: {e}") from e

    def threads_left(grace: float = 2.0) -> list:
        """Threads the call started that are still alive (after giving them a moment to stop)."""
        deadline = time.monotonic() + grace
        while True:
            left = [t for t in threading.enumerate() if t not in before and t is not runner and t.is_alive()]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.01)

    return box, threads_left


def _dag_cases(rng):
    cases = [
        ("two independent chains joined at the end", [[], [], [0], [1], [2, 3]], 2, (0, 1)),
        ("a chain of 40 steps", [[]] + [[k] for k in range(39)], 2, ()),
        ("one step fanning out to 8, joined by one", [[]] + [[0]] * 8 + [list(range(1, 9))], 2, (),
         lambda s: 0.004),                # slow steps: a thread per step would show as 8 at once
        ("a diamond", [[], [0], [0], [1, 2]], 3, ()),
        ("a plan with no steps", [], 2, ()),
        ("a single step", [[]], 2, ()),
        ("six independent steps on one thread", [[] for _ in range(6)], 1, ()),
        ("six independent steps on three threads", [[] for _ in range(6)], 3, (0, 1, 2)),
    ]
    for i in range(8):
        n = int(rng.integers(3, 18))
        deps = []
        for s in range(n):
            k = int(rng.integers(0, min(s, 3) + 1))
            deps.append(sorted({int(d) for d in rng.choice(s, size=k, replace=False)}) if s and k else [])
        cases.append((f"random graph #{i}", deps, int(rng.integers(1, 5)), ()))
    return [case if len(case) == 5 else (*case, None) for case in cases]


def check_run_parallel(run_parallel: Callable, seed: int = 0, timeout: float = 10.0) -> None:
    """Check ``run_parallel(deps, run_step, num_threads)``: run ``run_step(s)`` for every step ``s`` on up to
    ``num_threads`` worker threads, each step after all the steps in ``deps[s]`` have finished, and return
    once every step has finished (with the worker threads stopped).

    The check's ``run_step`` records, under a lock, when each step starts and ends (from one global
    counter, so no clock is trusted) and which steps were running at the same time; for some cases it
    makes independent steps wait at a barrier that opens only when all of them have arrived, which a
    sequential executor can never pass.
    """
    rng = np.random.default_rng(seed)
    cases = _dag_cases(rng)
    for name, deps, threads, together, sleep in cases:
        what = f"run_parallel on {name} (deps={deps}, num_threads={threads})"
        rec = _Recorder(deps, threads, together, sleep=sleep, barrier_timeout=min(2.0, timeout / 4))
        box, threads_left = _run_student(run_parallel, deps, rec, threads, what, timeout)
        everything = set(range(len(deps)))
        if box["ended_at_return"] != everything:
            running = sorted(box["started_at_return"] - box["ended_at_return"])
            not_started = sorted(everything - box["started_at_return"])
            raise AssertionError(
                f"{what}: run_parallel returned before every step had finished: "
                + "; ".join(x for x in (f"steps {running} were still running" if running else "",
                                        f"steps {not_started} had not started" if not_started else "") if x)
                + "\n  hint: an empty queue does not mean the work is done (a worker may be running the last "
                  "step, and it may make others ready); count finished steps and wait until all have finished")
        for s in range(len(deps)):
            if rec.runs[s] > 1:
                raise AssertionError(f"{what}: step {s} ran {rec.runs[s]} times (each step must run once: queue "
                                     f"a step when its counter reaches zero, which happens exactly once)")
        if rec.early:
            s, d = rec.early[0]
            raise AssertionError(f"{what}: step {s} started before step {d}, which it depends on, had finished\n"
                                 f"  hint: a step is ready only when its count of unfinished dependencies is "
                                 f"zero; only ready steps go on the queue")
        if rec.max_active > threads:
            raise AssertionError(f"{what}: {rec.max_active} steps ran at the same time with num_threads={threads}"
                                 f"\n  hint: start num_threads workers that take ready steps from a queue, "
                                 f"rather than a thread per step")
        if rec.barrier_broken:
            raise AssertionError(
                f"{what}: steps {sorted(rec.barrier_steps)} are independent and ready at the start, but they never "
                f"ran at the same time (each waited {rec.barrier_timeout:g} s for the other(s))\n  hint: with "
                f"num_threads={threads}, start that many worker threads, each taking ready steps from a shared "
                f"queue, so that independent steps run at once")
        left = threads_left()
        if left:
            raise AssertionError(f"{what}: {len(left)} thread(s) started by run_parallel were still running after "
                                 f"it returned: {[t.name for t in left]}\n  hint: tell each worker to stop (one "
                                 f"None per worker on the queue) and join the threads before returning")
    report_pass("parallel executor", len(cases))


# ----------------------------------------------------------------------------------- Exercise 5 ----

def _all_paths(deps):
    """Every path from a step with no dependencies to a step nothing depends on (exponential: small graphs)."""
    n = len(deps)
    dependents = [[] for _ in range(n)]
    for s, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(s)

    def extend(path):
        last = path[-1]
        if not dependents[last]:
            yield path
        for t in dependents[last]:
            yield from extend(path + [t])

    for s in range(n):
        if not deps[s]:
            yield from extend([s])


def check_critical_path(critical_path: Callable, seed: int = 0) -> None:
    """Check ``critical_path(deps, durations) -> (length, path)``.

    ``length`` is the largest total duration of a chain of steps each of which depends on the one before
    (the span: no schedule on any number of threads finishes sooner); ``path`` is such a chain, a list of
    steps from one that depends on nothing to one that nothing depends on. Ground truth: every path of the
    graph, enumerated.
    """
    rng = np.random.default_rng(seed)
    cases = [
        ("two branches of different lengths", [[], [0], [1], [], [3], [2, 4]], [1.0, 5.0, 1.0, 2.0, 2.0, 1.0]),
        ("a single step", [[]], [3.0]),
        ("independent steps", [[], [], []], [1.0, 4.0, 2.0]),
        ("a long chain of short steps next to one long step", [[], [0], [1], [2], [], [3, 4]],
         [1.0, 1.0, 1.0, 1.0, 3.5, 0.5]),
        ("a diamond with a heavy side", [[], [0], [0], [1, 2]], [1.0, 1.0, 6.0, 1.0]),
    ]
    for i in range(20):
        n = int(rng.integers(2, 12))
        deps = []
        for s in range(n):
            k = int(rng.integers(0, min(s, 3) + 1))
            deps.append(sorted({int(d) for d in rng.choice(s, size=k, replace=False)}) if s and k else [])
        cases.append((f"random graph #{i}", deps, [float(d) for d in np.round(rng.uniform(0.1, 5.0, n), 3)]))
    for name, deps, durations in cases:
        what = f"critical_path on {name} (deps={deps}, durations={durations})"
        got = call_student(critical_path, what, [list(d) for d in deps], list(durations))
        if got is None:
            raise AssertionError(f"{what}: your function returned None (did you forget `return`?)")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise AssertionError(f"{what}: expected a pair (length, path), got {got!r}")
        length, path = got
        paths = list(_all_paths(deps))
        best = max(sum(durations[s] for s in p) for p in paths)
        if not isinstance(length, (int, float, np.floating, np.integer)) or not math.isclose(
                float(length), best, rel_tol=1e-9, abs_tol=1e-12):
            hint = None
            if isinstance(length, (int, float, np.floating, np.integer)):
                length = float(length)
                if math.isclose(length, sum(durations)) and not math.isclose(best, sum(durations)):
                    hint = "that is the total work: steps on different branches can run at the same time, so " \
                           "only the durations along one chain add up"
                elif math.isclose(length, max(durations)):
                    hint = "that is the longest single step: a step cannot start before its dependencies " \
                           "finish, so durations add up along a chain"
                elif math.isclose(length, max(len(p) for p in paths)):
                    hint = "that counts steps; weigh each step by its duration"
                elif length < best:
                    hint = "a step finishes at (the latest finish among its dependencies) + its own duration"
            best_path = max(paths, key=lambda p: sum(durations[s] for s in p))
            raise AssertionError(f"{what}: the critical path is {best:g} long (e.g. steps {best_path}), got "
                                 f"{length!r}" + (f"\n  hint: {hint}" if hint else ""))
        try:
            path = [int(s) for s in path]
        except (TypeError, ValueError):
            raise AssertionError(f"{what}: path should be a list of step indices, got {path!r}") from None
        if not path or any(not 0 <= s < len(deps) for s in path):
            raise AssertionError(f"{what}: path {path} should be a non-empty list of steps 0..{len(deps) - 1}")
        for a, b in zip(path, path[1:]):
            if a not in deps[b]:
                rev = " (it looks reversed: list it from the first step to the last)" if b in deps[a] else ""
                raise AssertionError(f"{what}: path {path} is not a chain: step {b} does not depend on step "
                                     f"{a}{rev}")
        if deps[path[0]] or any(path[-1] in d for d in deps):
            raise AssertionError(f"{what}: path {path} should start at a step that depends on nothing and end at "
                                 f"one that nothing depends on")
        total = sum(durations[s] for s in path)
        if not math.isclose(total, best, rel_tol=1e-9, abs_tol=1e-12):
            raise AssertionError(f"{what}: the durations along path {path} add up to {total:g}, not to the "
                                 f"length {best:g}: return the chain that gives the length")
    report_pass("critical path", len(cases))
