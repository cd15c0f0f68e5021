"""Checks for Lab 6 (a batching inference server): one function per exercise.

The exercises are the core of a dynamic batcher, the piece of Triton Inference Server (and of
:mod:`mlsys_lab.serving`) that turns requests arriving one at a time into batches:

* ``gather(requests)``: the inputs of several requests as one batch, plus each request's batch size;
* ``scatter(outputs, sizes)``: a batch's outputs cut back into one piece per request;
* ``plan_batch(sizes, arrivals_ns, now_ns, *, max_batch_size, preferred=(), max_delay_ns=0)``:
  Triton's decision rule, send ``take`` requests now or wait ``wait_ns``;
* ``batching_loop(batcher)``: the coroutine that serves a queue with that rule.

Ground truth never comes from a reference answer. ``gather`` and ``scatter`` are compared with
NumPy's own ``concatenate`` and slicing, request by request. ``plan_batch`` is compared with the rule
written down here declaratively, over prefix sums of the queue, and with hand-worked stories whose
answers are spelled out. ``batching_loop`` is run against a fake model on an event loop of its own (in
a separate thread, so that the check works inside Jupyter, whose own loop is already running), with
requests whose answers identify them, so that a response given to the wrong request shows.

A wrong answer raises ``AssertionError`` naming the case, what was expected and what came back, with a
hint where the mistake is a common one; a right one prints ``✓ <exercise> passed``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from . import assert_array_close, call_student, report_pass

__all__ = ["check_gather", "check_scatter", "check_plan_batch", "check_batching_loop", "expected_plan"]


# ---------------------------------------------------------------------------------------- helpers ----

def _requests(rng, sizes, inner=((3,), (2, 2)), dtypes=(np.float32, np.int64)) -> list[dict]:
    """Requests with two inputs each; every row is unique so misplaced rows show."""
    out = []
    for i, b in enumerate(sizes):
        req = {}
        for j, (shape, dtype) in enumerate(zip(inner, dtypes)):
            base = 1000 * (i + 1) + 100 * j
            arr = (base + np.arange(b * int(np.prod(shape)))).reshape((b, *shape))
            req[f"IN{j}"] = (arr + rng.random(arr.shape) * 0.5).astype(dtype) if dtype == np.float32 \
                else arr.astype(dtype)
        out.append(req)
    return out


def _as_dict(value, what: str) -> dict:
    if value is None:
        raise AssertionError(f"{what}: your function returned None (did you forget `return`?)")
    if not isinstance(value, dict):
        raise AssertionError(f"{what}: expected a dict {{input name: array}}, got {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------------------- gather ----

def check_gather(gather: Callable, seed: int = 0) -> None:
    """Check ``gather(requests) -> (batch, sizes)``.

    ``requests`` is a list of dicts ``{input name: array}``, each array with the request's batch size
    as its first dimension; ``batch`` maps each input name to the requests' arrays joined along that
    first dimension, in request order; ``sizes`` lists each request's batch size.
    """
    rng = np.random.default_rng(seed)
    cases = [[1], [1, 1], [1, 1, 1, 1], [3], [2, 1, 4], [1, 5, 1, 2, 1]]
    cases += [[int(s) for s in rng.integers(1, 5, size=int(rng.integers(2, 7)))] for _ in range(3)]
    for sizes in cases:
        reqs = _requests(rng, sizes)
        what = f"gather of {len(sizes)} requests with batch sizes {sizes}"
        result = call_student(gather, what, [dict(r) for r in reqs])
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise AssertionError(f"{what}: expected a pair (batch, sizes), got {type(result).__name__}")
        batch, got_sizes = result
        batch = _as_dict(batch, what + ": batch")
        if sorted(batch) != ["IN0", "IN1"]:
            raise AssertionError(f"{what}: the batch must have the requests' inputs IN0 and IN1, got "
                                 f"{sorted(batch)}")
        for name in ("IN0", "IN1"):
            expected = np.concatenate([r[name] for r in reqs], axis=0)
            arr = batch[name]
            hint = None
            if isinstance(arr, np.ndarray) and arr.ndim == expected.ndim + 1:
                hint = "np.stack adds a new axis; requests already have a batch axis, so join along it " \
                       "(np.concatenate along axis 0)"
            elif isinstance(arr, np.ndarray) and arr.shape[0] == len(sizes) and sum(sizes) != len(sizes):
                hint = "a request of batch size b brings b rows, not one"
            assert_array_close(arr, expected, f"{what}: batch[{name!r}]", rtol=0, atol=0, hint=hint)
            if isinstance(arr, np.ndarray) and arr.dtype != expected.dtype:
                raise AssertionError(f"{what}: batch[{name!r}] has dtype {arr.dtype}, the requests sent "
                                     f"{expected.dtype}")
        got = list(got_sizes) if isinstance(got_sizes, (list, tuple, np.ndarray)) else got_sizes
        if got != sizes:
            hint = " (one entry per request: its batch size, the first dimension of its arrays)"
            raise AssertionError(f"{what}: expected sizes {sizes}, got {got!r}{hint}")
    report_pass("gather", len(cases))


# ---------------------------------------------------------------------------------------- scatter ----

def check_scatter(scatter: Callable, seed: int = 0) -> None:
    """Check ``scatter(outputs, sizes) -> list of dicts``.

    ``outputs`` maps output names to arrays whose first dimension is ``sum(sizes)``; request ``i`` gets
    ``{name: rows of request i}``, the rows after those of requests ``0 .. i-1``.
    """
    rng = np.random.default_rng(seed)
    cases = [[1], [1, 1], [2, 2], [3, 1], [1, 3], [2, 1, 4], [1, 1, 1, 1, 1, 1, 1, 1], [5, 1, 2, 1]]
    cases += [[int(s) for s in rng.integers(1, 5, size=int(rng.integers(2, 7)))] for _ in range(3)]
    for sizes in cases:
        total = sum(sizes)
        rows = np.arange(total * 3, dtype=np.float32).reshape(total, 3)
        outputs = {"OUT": rows + rng.random((total, 3)).astype(np.float32),
                   "LABEL": np.arange(total, dtype=np.int32) * 7}
        what = f"scatter with sizes {sizes}"
        result = call_student(scatter, what, {k: v.copy() for k, v in outputs.items()}, list(sizes))
        if result is None:
            raise AssertionError(f"{what}: your function returned None (did you forget `return`?)")
        result = list(result)
        if len(result) != len(sizes):
            raise AssertionError(f"{what}: expected one result per request ({len(sizes)}), got {len(result)}")
        start = 0
        for i, (b, got) in enumerate(zip(sizes, result)):
            got = _as_dict(got, f"{what}: request {i}")
            if sorted(got) != ["LABEL", "OUT"]:
                raise AssertionError(f"{what}: request {i} must get every output (LABEL, OUT), got {sorted(got)}")
            for name, arr in outputs.items():
                expected = arr[start:start + b]
                hint = None
                g = got[name]
                if isinstance(g, np.ndarray) and g.shape == expected.shape and i > 0 and \
                        np.array_equal(g, arr[i * b: i * b + b]) and not np.array_equal(g, expected):
                    hint = "request i starts after the rows of all earlier requests (sum of their sizes), " \
                           "not at i * its own size"
                elif isinstance(g, np.ndarray) and g.shape[:1] != (b,):
                    hint = f"request {i} sent {b} row(s), so it must get {b} row(s) back"
                assert_array_close(g, expected, f"{what}: request {i}, output {name!r}", rtol=0, atol=0, hint=hint)
            start += b
    report_pass("scatter", len(cases))


# ------------------------------------------------------------------------------------- plan_batch ----

def expected_plan(sizes, arrivals_ns, now_ns, *, max_batch_size, preferred=(), max_delay_ns=0):
    """The rule of the exercise, written over prefix sums of the queue (the check's ground truth).

    ``fit``: the longest prefix of the queue whose total fits in ``max_batch_size`` (at least the head).
    ``best``: the longest prefix within ``fit`` whose total is a preferred size, or, if none is reached
    before the total would pass the largest preferred size, the prefix just before it passes.
    """
    if len(sizes) == 0:
        return 0, None
    totals = list(itertools.accumulate(sizes))                   # totals[i]: first i + 1 requests
    fit = max([1] + [i + 1 for i, t in enumerate(totals) if t <= max_batch_size])
    cap = max(preferred) if preferred else max_batch_size
    hits = [i + 1 for i in range(fit) if totals[i] in set(preferred)]
    passes = [i for i in range(1, fit) if totals[i] > cap]           # prefixes of i+1 that pass the cap
    best = 0
    if passes and (not hits or hits[0] > passes[0]):
        best = passes[0]                                             # stop before passing the cap
    best = max([best] + hits)
    grow = fit < len(sizes) or totals[fit - 1] >= cap
    waited = now_ns - min(arrivals_ns[:fit])
    exceeded = max_delay_ns > 0 and waited >= max_delay_ns
    if best and not exceeded:
        return best, None
    if grow:   # the batch cannot grow: the next request does not fit, or it reached the largest preferred size
        return fit, None
    if exceeded or max_delay_ns == 0:
        return fit, None
    return 0, max_delay_ns - waited


_MS = 1_000_000


def _stories():
    """Hand-worked cases: (description, sizes, arrivals (ms), now (ms), config, expected (take, wait ms))."""
    return [
        ("an empty queue", [], [], 0, dict(max_batch_size=8), (0, None)),
        ("one request, no delay configured: send it", [1], [0], 0, dict(max_batch_size=8), (1, None)),
        ("5 requests, max 8, no delay: send all", [1] * 5, [0, 1, 2, 3, 4], 4, dict(max_batch_size=8), (5, None)),
        ("12 requests, max 8: a full batch of 8", [1] * 12, list(range(12)), 12, dict(max_batch_size=8), (8, None)),
        ("3 requests, max 8, delay 10 ms, oldest waited 4 ms: wait 6 ms more", [1] * 3, [0, 2, 3], 4,
         dict(max_batch_size=8, max_delay_ns=10 * _MS), (0, 6)),
        ("3 requests, delay 10 ms, oldest waited 10 ms: send what is there", [1] * 3, [0, 2, 3], 10,
         dict(max_batch_size=8, max_delay_ns=10 * _MS), (3, None)),
        ("8 requests = max, delay 10 ms: the batch cannot grow, send at once", [1] * 8, list(range(8)), 8,
         dict(max_batch_size=8, max_delay_ns=10 * _MS), (8, None)),
        ("5 requests, preferred [4]: send the preferred 4 at once", [1] * 5, list(range(5)), 5,
         dict(max_batch_size=8, preferred=(4,), max_delay_ns=10 * _MS), (4, None)),
        ("3 requests, preferred [4], delay 10 ms, waited 1 ms: wait 9 ms", [1] * 3, [0, 0, 1], 1,
         dict(max_batch_size=8, preferred=(4,), max_delay_ns=10 * _MS), (0, 9)),
        ("7 requests, preferred [2, 4, 6]: the largest preferred size that the queue fills, 6", [1] * 7,
         list(range(7)), 7, dict(max_batch_size=8, preferred=(2, 4, 6), max_delay_ns=10 * _MS), (6, None)),
        ("request sizes [3, 3, 3], max 8, no delay: two requests (6), the third does not fit", [3, 3, 3],
         [0, 0, 0], 0, dict(max_batch_size=8), (2, None)),
        ("request sizes [2, 2, 3], preferred [4], delay 5 ms: 2 + 2 = 4 is preferred", [2, 2, 3], [0, 1, 2], 2,
         dict(max_batch_size=8, preferred=(4,), max_delay_ns=5 * _MS), (2, None)),
        ("request sizes [3, 2], preferred [4], delay 5 ms: 3 + 2 would pass 4 before reaching it, send the 3",
         [3, 2], [0, 1], 1, dict(max_batch_size=8, preferred=(4,), max_delay_ns=5 * _MS), (1, None)),
        ("5 requests, preferred [4], delay 10 ms, oldest waited 12 ms: past the delay, send all 5", [1] * 5,
         [0, 1, 2, 3, 4], 12, dict(max_batch_size=8, preferred=(4,), max_delay_ns=10 * _MS), (5, None)),
        ("the delay counts from the oldest request, not the newest", [1, 1], [0, 9], 10,
         dict(max_batch_size=8, max_delay_ns=10 * _MS), (2, None)),
    ]


def _check_decision(got, expected, what, hint=None) -> None:
    suffix = f"\n  hint: {hint}" if hint else ""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise AssertionError(f"{what}: expected a pair (take, wait_ns), got {got!r}{suffix}")
    take, wait = got
    e_take, e_wait = expected
    if int(take) != e_take:
        raise AssertionError(f"{what}: expected take={e_take}, got take={take}{suffix}")
    if e_wait is None:
        if wait is not None:
            raise AssertionError(f"{what}: take={e_take} with wait_ns=None expected, got wait_ns={wait!r}{suffix}")
    elif wait is None or abs(int(wait) - e_wait) > 0:
        raise AssertionError(f"{what}: expected to wait {e_wait} ns, got wait_ns={wait!r}{suffix}")


def _plan_hint(got, case_cfg, sizes, arrivals, now) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return None
    take = got[0]
    if case_cfg.get("max_delay_ns", 0) == 0 and take == 0 and sizes:
        return "with max_delay_ns == 0 nothing ever waits: send what is queued"
    if take and sum(sizes[:int(take)]) > case_cfg["max_batch_size"]:
        return "a batch may never hold more than max_batch_size samples (sizes, not requests)"
    return None


def check_plan_batch(plan_batch: Callable, seed: int = 0) -> None:
    """Check ``plan_batch(sizes, arrivals_ns, now_ns, *, max_batch_size, preferred=(), max_delay_ns=0)``.

    It returns ``(take, None)`` to send the first ``take`` queued requests now, or ``(0, wait_ns)`` to
    wait that long before asking again (``(0, None)`` for an empty queue). Ground truth: the stories of
    :func:`_stories`, then random queues against :func:`expected_plan`.
    """
    n = 0
    for text, sizes, arrivals, now, cfg, (take, wait_ms) in _stories():
        arr_ns = [a * _MS for a in arrivals]
        expected = (take, None if wait_ms is None else wait_ms * _MS)
        assert expected == expected_plan(sizes, arr_ns, now * _MS, **cfg), text   # the stories agree with the rule
        what = f"plan_batch: {text} (sizes={sizes}, {cfg})"
        got = call_student(plan_batch, what, list(sizes), list(arr_ns), now * _MS, **cfg)
        _check_decision(got, expected, what, _plan_hint(got, cfg, sizes, arr_ns, now))
        n += 1
    rng = np.random.default_rng(seed)
    for _ in range(300):
        max_b = int(rng.choice([4, 8, 16]))
        k = int(rng.integers(0, 12))
        sizes = [int(s) for s in rng.choice([1, 1, 1, 2, 3], size=k)]
        arrivals = sorted(int(a) for a in rng.integers(0, 20 * _MS, size=k))
        now = (arrivals[-1] if arrivals else 0) + int(rng.integers(0, 15 * _MS))
        pref = tuple(sorted({int(p) for p in rng.integers(1, max_b + 1, size=int(rng.integers(0, 3)))}))
        delay = int(rng.choice([0, 5 * _MS, 10 * _MS, 30 * _MS]))
        cfg = dict(max_batch_size=max_b, preferred=pref, max_delay_ns=delay)
        expected = expected_plan(sizes, arrivals, now, **cfg)
        what = (f"plan_batch(sizes={sizes}, arrivals_ns={arrivals}, now_ns={now}, max_batch_size={max_b}, "
                f"preferred={pref}, max_delay_ns={delay})")
        got = call_student(plan_batch, what, list(sizes), list(arrivals), now, **cfg)
        _check_decision(got, expected, what, _plan_hint(got, cfg, sizes, arrivals, now))
        n += 1
    report_pass("plan_batch", n)


# ---------------------------------------------------------------------------------- batching_loop ----

class _Request:
    def __init__(self, inputs: dict):
        self.inputs = inputs
        self.size = len(next(iter(inputs.values())))
        self.arrival_ns = time.monotonic_ns()
        self.future = asyncio.get_running_loop().create_future()


class _Batcher:
    """What the check hands to the student's loop: the same attributes as the lab's ``MiniBatcher``."""

    def __init__(self, execute, max_batch_size, preferred=(), max_delay_ns=0):
        self.execute = execute
        self.max_batch_size = max_batch_size
        self.preferred = tuple(preferred)
        self.max_delay_ns = max_delay_ns
        self.queue: deque = deque()
        self.wakeup = asyncio.Event()
        self.stopping = False

    async def infer(self, inputs: dict) -> dict:
        req = _Request(inputs)
        self.queue.append(req)
        self.wakeup.set()
        return await req.future

    def stop(self) -> None:
        self.stopping = True
        self.wakeup.set()


class _FakeModel:
    """``Y = 2 X + 1`` with a fixed execution time; records every batch's sample count."""

    def __init__(self, seconds: float, fail_on: Callable[[np.ndarray], bool] | None = None):
        self.seconds = seconds
        self.batches: list[int] = []
        self.fail_on = fail_on

    async def __call__(self, inputs: dict) -> dict:
        x = inputs["X"]
        self.batches.append(int(x.shape[0]))
        await asyncio.sleep(self.seconds)
        if self.fail_on is not None and self.fail_on(x):
            raise RuntimeError("model failed on this batch")
        return {"Y": 2 * x + 1}


def _run_in_thread(coro_fn, timeout: float):
    """Run ``coro_fn()`` on a fresh event loop in its own thread (Jupyter's loop is already running)."""
    box: dict = {}

    def main():
        try:
            box["value"] = asyncio.run(asyncio.wait_for(coro_fn(), timeout))
        except BaseException as exc:   # noqa: BLE001 - handed to the caller
            box["error"] = exc

    t = threading.Thread(target=main, daemon=True)
    t.start()
    t.join(timeout + 5)
    if t.is_alive():
        raise AssertionError(f"the scenario did not finish within {timeout + 5:.0f} s (is your loop blocking "
                             "the event loop, e.g. with time.sleep?)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


async def _scenario(loop_fn, what: str, batcher: _Batcher, clients, timeout: float):
    """Start the student's loop, run the client coroutines, stop, and wait for the loop to return."""
    task = asyncio.get_running_loop().create_task(loop_fn(batcher))
    answered = asyncio.ensure_future(asyncio.gather(*clients, return_exceptions=True))
    try:
        done, _ = await asyncio.wait({task, answered}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done and answered not in done:
            exc = task.exception()
            if isinstance(exc, NotImplementedError):
                raise exc
            if exc is not None:
                raise AssertionError(f"{what}: your loop raised {type(exc).__name__}: {exc}") from exc
            raise AssertionError(f"{what}: your loop returned before every request was answered (it must "
                                 "only return when `stopping` is set and the queue is empty)")
        if not done:
            raise AssertionError(f"{what}: not every request was answered within {timeout:.1f} s (does the "
                                 "loop wait for `wakeup`, with a timeout when plan_batch says to wait?)")
        results = answered.result()
        batcher.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), 2.0)
        except asyncio.TimeoutError:
            raise AssertionError(f"{what}: after stop() with an empty queue your loop must return, but it "
                                 "kept running (check `batcher.stopping` when the queue is empty)") from None
        except NotImplementedError:
            raise
        except Exception as exc:
            raise AssertionError(f"{what}: your loop raised {type(exc).__name__}: {exc}") from exc
        return results
    finally:
        for t in (task, answered):
            if not t.done():
                t.cancel()
                try:
                    await t
                except BaseException:   # noqa: BLE001 - it was cancelled
                    pass


def _check_answers(what, inputs, results):
    for i, (x, r) in enumerate(zip(inputs, results)):
        if isinstance(r, NotImplementedError):
            raise r
        if isinstance(r, BaseException):
            raise AssertionError(f"{what}: request {i} failed with {type(r).__name__}: {r}")
        r = _as_dict(r, f"{what}: the response to request {i}")
        if "Y" not in r:
            raise AssertionError(f"{what}: the response to request {i} has no output 'Y' (got {sorted(r)})")
        assert_array_close(r["Y"], 2 * x + 1, f"{what}: the response to request {i}", rtol=0, atol=0,
                           hint="each request must get the rows computed from its own inputs: scatter the "
                                "outputs in the order the requests were gathered")


def check_batching_loop(batching_loop: Callable) -> None:
    """Check ``async batching_loop(batcher)`` against a fake model, in six scenarios.

    ``batcher`` has ``queue`` (a deque of requests with ``inputs``, ``size``, ``arrival_ns`` and
    ``future``), ``wakeup`` (an ``asyncio.Event`` set whenever a request arrives or ``stop()`` is
    called), ``stopping``, ``execute`` (an ``async`` function from batched inputs to batched outputs),
    ``max_batch_size``, ``preferred`` and ``max_delay_ns``. The loop serves requests with
    ``plan_batch``, ``gather`` and ``scatter`` until ``stopping`` is set and the queue is empty.
    """
    def xs(sizes, start=0):
        return [np.arange(start + 100 * i, start + 100 * i + b, dtype=np.float32).reshape(b, 1)
                for i, b in enumerate(sizes)]

    # 1. A burst: 20 requests queued at once, max 8, no delay -> batches of 8, 8, 4, answers to the right requests.
    what = "scenario 1 (20 requests at once, max_batch_size=8, no delay)"

    async def s1():
        model = _FakeModel(0.01)
        b = _Batcher(model, 8)
        inputs = xs([1] * 20)
        res = await _scenario(batching_loop, what, b, [b.infer({"X": x}) for x in inputs], 5.0)
        return inputs, res, model.batches

    inputs, res, batches = _run_in_thread(s1, 10.0)
    _check_answers(what, inputs, res)
    if batches != [8, 8, 4]:
        raise AssertionError(f"{what}: expected batches of [8, 8, 4] samples, the model saw {batches}"
                             + ("\n  hint: send `take` requests, as plan_batch decided, not the whole queue"
                                if batches and max(batches) > 8 else ""))

    # 2. Lumpy requests: sizes [3, 3, 3], max 8 -> batches of 6 and 3 samples.
    what = "scenario 2 (requests of 3 samples each, max_batch_size=8, no delay)"

    async def s2():
        model = _FakeModel(0.01)
        b = _Batcher(model, 8)
        inputs = xs([3, 3, 3])
        res = await _scenario(batching_loop, what, b, [b.infer({"X": x}) for x in inputs], 5.0)
        return inputs, res, model.batches

    inputs, res, batches = _run_in_thread(s2, 10.0)
    _check_answers(what, inputs, res)
    if batches != [6, 3]:
        raise AssertionError(f"{what}: expected batches of [6, 3] samples, the model saw {batches}")

    # 3. A lone request with a queue delay: sent when the delay runs out, not before, not never.
    what = "scenario 3 (one request, preferred=(4,), max_delay_ns=60 ms)"

    async def s3():
        model = _FakeModel(0.001)
        b = _Batcher(model, 8, preferred=(4,), max_delay_ns=60 * _MS)
        x = xs([1])[0]
        t0 = time.perf_counter()

        async def client():
            r = await b.infer({"X": x})
            return r, time.perf_counter() - t0

        res = await _scenario(batching_loop, what, b, [client()], 5.0)
        return x, res, model.batches

    x, res, batches = _run_in_thread(s3, 10.0)
    if isinstance(res[0], BaseException):
        _check_answers(what, [x], res)
    (r, elapsed), = res
    _check_answers(what, [x], [r])
    if elapsed < 0.050:
        raise AssertionError(f"{what}: answered after {elapsed * 1e3:.0f} ms; with no preferred batch "
                             "possible the request must wait for its queue delay (60 ms)")
    if elapsed > 1.0:
        raise AssertionError(f"{what}: answered only after {elapsed * 1e3:.0f} ms; the delay is 60 ms")

    # 4. Requests trickling in until a preferred size forms: sent as one batch, long before the delay.
    what = "scenario 4 (4 requests 5 ms apart, preferred=(4,), max_delay_ns=2 s)"

    async def s4():
        model = _FakeModel(0.001)
        b = _Batcher(model, 8, preferred=(4,), max_delay_ns=2000 * _MS)
        inputs = xs([1] * 4)
        t0 = time.perf_counter()

        async def client(i, x):
            await asyncio.sleep(0.005 * i)
            return await b.infer({"X": x})

        res = await _scenario(batching_loop, what, b, [client(i, x) for i, x in enumerate(inputs)], 5.0)
        return inputs, res, model.batches, time.perf_counter() - t0

    inputs, res, batches, elapsed = _run_in_thread(s4, 10.0)
    _check_answers(what, inputs, res)
    if batches != [4]:
        raise AssertionError(f"{what}: expected one batch of 4, the model saw {batches}"
                             + ("\n  hint: while plan_batch says wait, wait for `wakeup` (a new request) or "
                                "the timeout, whichever comes first, then ask plan_batch again"
                                if len(batches) > 1 else ""))
    if elapsed > 1.0:
        raise AssertionError(f"{what}: took {elapsed:.2f} s; a new request must wake the loop up")

    # 5. Closed loop: 8 clients send one request after another while the model is busy -> batches form.
    what = "scenario 5 (8 clients, 5 requests each, a model that takes 20 ms, no delay)"

    async def s5():
        model = _FakeModel(0.02)
        b = _Batcher(model, 8)
        inputs = [xs([1] * 5, start=10_000 * c) for c in range(8)]

        async def client(c):
            out = []
            for x in inputs[c]:
                out.append(await b.infer({"X": x}))
            return out

        res = await _scenario(batching_loop, what, b, [client(c) for c in range(8)], 10.0)
        return inputs, res, model.batches

    inputs, res, batches = _run_in_thread(s5, 15.0)
    for c in range(8):
        if isinstance(res[c], BaseException):
            _check_answers(what, [inputs[c][0]], [res[c]])
        _check_answers(f"{what}, client {c}", inputs[c], res[c])
    if sum(batches) != 40 or max(batches) < 4:
        raise AssertionError(f"{what}: the model saw batches {batches}; requests that arrive while the model "
                             "is busy should be batched together")

    # 6. A batch whose execution fails: its requests get the error, the loop keeps serving.
    what = "scenario 6 (the model raises on one batch)"

    async def s6():
        model = _FakeModel(0.005, fail_on=lambda x: bool((x == 666).any()))
        b = _Batcher(model, 8)
        bad = np.array([[666.0]], dtype=np.float32)
        good = xs([1])[0]

        async def later():
            await asyncio.sleep(0.05)
            return await b.infer({"X": good})

        res = await _scenario(batching_loop, what, b, [b.infer({"X": bad}), later()], 5.0)
        return good, res

    good, res = _run_in_thread(s6, 10.0)
    if isinstance(res[0], NotImplementedError):
        raise res[0]
    if not isinstance(res[0], RuntimeError) or "model failed" not in str(res[0]):
        raise AssertionError(f"{what}: the request in the failing batch must get the model's exception "
                             f"(future.set_exception), got {res[0]!r}")
    _check_answers(what + ", the request after it", [good], [res[1]])
    report_pass("batching loop", 6)
