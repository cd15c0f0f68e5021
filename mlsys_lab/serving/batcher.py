"""Schedulers that queue requests and hand batches to model instances; the dynamic batcher.

Why batch: a model's weights must stream through the cache hierarchy once per execution whatever the
batch size, so for a weight-bound model (an MLP at batch 1 is a row of matrix-vector products) eight
requests executed together cost little more than one. The dynamic batcher builds those batches out
of requests that arrive one at a time, trading a bounded wait in the queue for throughput.

Triton's semantics, as configured in ``dynamic_batching { ... }``:

``max_batch_size`` (model level)
    The most samples one execution may hold. A request of batch size *b* counts *b*.
``preferred_batch_size: [ ... ]``
    Batch sizes worth sending at once. When the queue can fill one exactly, the batch goes at once,
    the largest such size. Without preferred sizes, ``max_batch_size`` plays their part.
``max_queue_delay_microseconds``
    How long the oldest request may wait for a better batch. When no preferred size can be formed
    the batcher waits until that delay has passed, then sends the largest batch it can (up to
    ``max_batch_size``). 0 (default): send whatever is queued as soon as an instance is free.
``preserve_ordering``
    Responses leave in the order the requests arrived even when several instances finish batches
    out of order.
``priority_levels``, ``default_priority_level``
    Levels 1 (highest) to ``priority_levels``; a request's ``priority`` parameter picks its level (0,
    or a level above ``priority_levels``, means the default level, as in Triton). Batches are filled
    from the highest level first.
``default_queue_policy`` / ``priority_queue_policy { key: level value: { ... } }``
    Per level: ``max_queue_size`` (0 = unbounded; a request arriving at a full queue is rejected at
    once with 503 "Exceeds maximum queue size"); ``default_timeout_microseconds`` (0 = none; how long a
    request may wait in the queue); ``allow_timeout_override`` (a request's ``timeout`` parameter
    may shorten its timeout, never lengthen it); ``timeout_action``: ``REJECT`` answers a request
    that timed out with 503 "Request timeout expired", ``DELAY`` moves it behind the requests of its
    level that have not timed out (it still runs, later).

A batch is only formed when an instance is free (see :mod:`.rate_limiter`): while every instance
is busy, requests accumulate and the next batch is naturally larger, which is where batching pays
under load. Requests in one batch must have the same non-batch shape for every input; a request of a
different shape closes the batch. Without ``dynamic_batching`` a model gets Triton's default
scheduler: each request executes on its own, in arrival order.

:func:`plan_batch` is the decision rule on its own, a pure function, so that it can be studied (and
rewritten in the lab) without a server. Timing uses the event loop's timers, whose resolution is
about a millisecond on Linux, so delays below that are rounded up.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Hashable, Sequence

from .config import QueuePolicy
from .errors import InternalError, ServingError, Unavailable
from .request import InferenceRequest

__all__ = ["BatchDecision", "plan_batch", "Scheduler", "DynamicBatcher"]


@dataclass(frozen=True)
class BatchDecision:
    """``take`` requests from the head of the queue now, or (``take == 0``) wait ``wait_ns`` and ask
    again. ``reason`` says which rule decided: ``"preferred"``, ``"full"``, ``"delay"``,
    ``"waiting"`` or ``"empty"``."""

    take: int
    wait_ns: int | None = None
    reason: str = ""


def plan_batch(batch_sizes: Sequence[int], shape_keys: Sequence[Hashable], arrivals_ns: Sequence[int],
               now_ns: int, *, max_batch_size: int, preferred_batch_sizes: Sequence[int] = (),
               max_queue_delay_ns: int = 0) -> BatchDecision:
    """Decide the next batch from the queued requests, in queue order (Triton's rule).

    ``batch_sizes[i]``, ``shape_keys[i]`` and ``arrivals_ns[i]`` describe the i-th queued request.
    Walk the queue adding requests while the batch stays within ``max_batch_size`` and the shapes
    agree, remembering the longest prefix whose size is a preferred batch size, or, if the next
    request would push the batch past the largest preferred size before any was hit, the prefix up to
    there. Then:

    1. a remembered prefix is sent at once, unless the oldest request has waited past the delay;
    2. a batch that cannot grow (the next request does not fit, or it reached the largest preferred
       size) is sent at once;
    3. with a zero delay, or once the oldest request in the batch has waited ``max_queue_delay_ns``,
       whatever was collected is sent;
    4. otherwise wait until the delay of the oldest request runs out.
    """
    if not batch_sizes:
        return BatchDecision(0, None, "empty")
    preferred = set(preferred_batch_sizes)
    max_preferred = max(preferred) if preferred else max_batch_size
    pending = count = best = 0
    send_now = False
    oldest = None
    for size, key, arrival in zip(batch_sizes, shape_keys, arrivals_ns):
        if count:
            if pending + size > max_preferred and best == 0:
                best = count
            if pending + size > max_batch_size or key != shape_keys[0]:
                send_now = True
                break
        pending += size
        count += 1
        oldest = arrival if oldest is None else min(oldest, arrival)
        if pending in preferred:
            best = count
    waited = now_ns - oldest
    delay_exceeded = max_queue_delay_ns != 0 and waited >= max_queue_delay_ns
    if best and not delay_exceeded:
        return BatchDecision(best, None, "preferred")
    if send_now or pending >= max_preferred:
        return BatchDecision(count, None, "full")
    if delay_exceeded or max_queue_delay_ns == 0:
        return BatchDecision(count, None, "delay")
    return BatchDecision(0, max_queue_delay_ns - waited, "waiting")


class _Entry:
    """A queued request with its future and queue bookkeeping."""

    __slots__ = ("request", "future", "enqueue_ns", "deadline_ns", "size", "key", "level", "sequence")

    def __init__(self, request: InferenceRequest, future: asyncio.Future, level: int = 0):
        self.request = request
        self.future = future
        self.enqueue_ns = time.monotonic_ns()
        self.deadline_ns: int | None = None
        self.size = max(1, request.batch_size)
        self.key = request.shape_key()
        self.level = level
        self.sequence = None


class Scheduler:
    """The machinery every scheduler shares: a loop that waits for a free instance, asks the
    subclass for a batch (:meth:`_select`), executes it in the instance's thread, records statistics
    and answers the requests (in arrival order when ``preserve_ordering``).

    ``model`` is the :class:`~.repository.ModelVersion` being scheduled (its ``config``, ``stats``,
    ``instances`` and ``rate_limiter``). Everything but the execution itself runs on the event
    loop's thread, so the queues need no locks.
    """

    preserve_ordering = False

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.stats = model.stats
        self.instances = model.instances
        self.rate_limiter = model.rate_limiter
        self._event = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._inflight: set[asyncio.Task] = set()
        self._stopping = False
        self._batch_seq = itertools.count()
        self._next_deliver = 0
        self._finished: dict[int, tuple] = {}

    # ---- to be provided by subclasses
    def _enqueue(self, entry_request: InferenceRequest, future: asyncio.Future) -> None:
        raise NotImplementedError

    def _has_work(self) -> bool:
        raise NotImplementedError

    def _select(self, now_ns: int) -> tuple[list[_Entry], int | None]:
        """Remove and return the next batch, or ``([], wake_ns)`` to wait (``None``: until poked)."""
        raise NotImplementedError

    def _batch_extras(self, entries: list[_Entry]):
        """Extra batched inputs and extra output names for this batch (sequence control and state)."""
        return None, ()

    def _on_batch_done(self, entries: list[_Entry], results, error) -> None:
        """Called on the loop's thread when a batch finished, before the requests are answered."""

    def _on_stop(self) -> None:
        """Called when :meth:`stop` begins (cancel the subclass's timers)."""

    @property
    def pending_count(self) -> int:
        """Requests waiting in the queue (not yet executing)."""
        raise NotImplementedError

    # ---- life cycle
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"scheduler-{self.model.name}")

    async def stop(self) -> None:
        """Stop accepting requests, finish the queued ones, and wait for executions to end."""
        self._stopping = True
        self._event.set()
        self._on_stop()
        if self._task is not None:
            await self._task
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def infer(self, request: InferenceRequest) -> dict:
        """Queue ``request`` (already validated) and wait for its outputs (all of the model's)."""
        if self._stopping:
            raise Unavailable(f"model '{self.model.name}' is unloading; request rejected")
        future = asyncio.get_running_loop().create_future()
        if request.trace is not None:
            request.trace.stamp("QUEUE_START")
        self._enqueue(request, future)
        self._event.set()
        return await future

    # ---- the loop
    async def _wait(self, wake_ns: int | None) -> None:
        if wake_ns is None:
            await self._event.wait()
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, (wake_ns - time.monotonic_ns()) / 1e9)
        handle = loop.call_later(delay, self._event.set)
        try:
            await self._event.wait()
        finally:
            handle.cancel()

    async def _run(self) -> None:
        while True:
            self._event.clear()
            if not self._has_work():
                if self._stopping:
                    return
                await self._wait(None)
                continue
            instance = await self.rate_limiter.acquire(self.instances)
            entries: list[_Entry] = []
            while True:
                self._event.clear()
                entries, wake_ns = self._select(time.monotonic_ns())
                if entries or not self._has_work():
                    break
                await self._wait(wake_ns)
            if not entries:
                self.rate_limiter.release(instance)
                continue
            self._submit(instance, entries, next(self._batch_seq))

    def _submit(self, instance, entries: list[_Entry], seq: int) -> None:
        """Hand the batch to the instance's thread now, and answer its requests when it is done.

        The hand-off happens here, synchronously, rather than in the task that waits for the result:
        a new task runs only after the callbacks already queued on the loop, and when a batch ends
        those are its requests' responses (~0.1 ms each). Submitting first lets the next batch
        execute while the previous one's responses are being written.
        """
        loop = asyncio.get_running_loop()
        dispatch_ns = time.monotonic_ns()
        try:
            extra_inputs, extra_outputs = self._batch_extras(entries)
            execution = loop.run_in_executor(instance.executor, instance.execute_batch,
                                             [e.request for e in entries], extra_inputs, extra_outputs)
        except Exception as exc:   # answered by _finish, like a batch whose execution failed
            execution = loop.create_future()
            execution.set_exception(exc)
        task = loop.create_task(self._finish(instance, entries, seq, execution, dispatch_ns))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _finish(self, instance, entries: list[_Entry], seq: int, execution: asyncio.Future,
                      dispatch_ns: int) -> None:
        results = timings = error = None
        try:
            results, timings = await execution
        except ServingError as exc:
            error = exc
        except Exception as exc:   # a bug in the scheduler itself must not lose the requests
            error = InternalError(f"model '{self.model.name}': {type(exc).__name__}: {exc}")
        finally:
            self.rate_limiter.release(instance)
        if error is None:
            size = sum(e.size for e in entries)
            self.stats.record_execution(size, timings.compute_input_ns, timings.compute_infer_ns,
                                        timings.compute_output_ns)
        try:
            self._on_batch_done(entries, results, error)
        except Exception as exc:
            error = InternalError(f"model '{self.model.name}': {type(exc).__name__}: {exc}")
        if self.preserve_ordering:
            self._finished[seq] = (entries, results, error, timings, dispatch_ns)
            while self._next_deliver in self._finished:
                self._deliver(*self._finished.pop(self._next_deliver))
                self._next_deliver += 1
        else:
            self._deliver(entries, results, error, timings, dispatch_ns)
        self._event.set()

    def _deliver(self, entries, results, error, timings, dispatch_ns) -> None:
        now = time.monotonic_ns()
        for i, e in enumerate(entries):
            total = now - e.request.arrival_ns
            if error is not None:
                self.stats.record_failure(total, "BACKEND" if isinstance(error, InternalError) else "OTHER")
                if not e.future.done():
                    e.future.set_exception(error)
            else:
                self.stats.record_success(e.request.batch_size, total, dispatch_ns - e.enqueue_ns,
                                          timings.compute_input_ns, timings.compute_infer_ns,
                                          timings.compute_output_ns)
                if not e.future.done():
                    e.future.set_result(results[i])

    def _reject(self, entry: _Entry, error: ServingError, reason: str = "REJECTED") -> None:
        self.stats.record_failure(time.monotonic_ns() - entry.request.arrival_ns, reason)
        if not entry.future.done():
            entry.future.set_exception(error)


class DynamicBatcher(Scheduler):
    """Triton's dynamic batcher (``dynamic_batching``), or its default scheduler when the config has
    no ``dynamic_batching`` (one request per execution, no queue policy). See the module docstring."""

    def __init__(self, model):
        super().__init__(model)
        db = self.config.dynamic_batching
        self.batching = db is not None
        if db is not None:
            self.levels = max(1, db["priority_levels"])
            self.default_level = db["default_priority_level"] or 1
            self.priorities_enabled = db["priority_levels"] > 0
            default = QueuePolicy.from_dict(db["default_queue_policy"])
            self.policies = [QueuePolicy.from_dict(db["priority_queue_policy"][str(lv)])
                             if str(lv) in db["priority_queue_policy"] else default
                             for lv in range(1, self.levels + 1)]
            self.max_queue_delay_ns = db["max_queue_delay_microseconds"] * 1000
            self.preferred = tuple(db["preferred_batch_size"])
            self.preserve_ordering = db["preserve_ordering"]
        else:
            self.levels, self.default_level, self.priorities_enabled = 1, 1, False
            self.policies = [QueuePolicy()]
            self.max_queue_delay_ns, self.preferred = 0, ()
        self.max_batch_size = max(1, self.config.max_batch_size)
        self._queues = [deque() for _ in range(self.levels)]
        self._delayed = [deque() for _ in range(self.levels)]
        self._n_deadlines = 0
        self._next_deadline: int | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending_count(self) -> int:
        return sum(map(len, self._queues)) + sum(map(len, self._delayed))

    def _level(self, request: InferenceRequest) -> int:
        p = request.priority
        if not self.priorities_enabled or p == 0 or p > self.levels:
            p = self.default_level
        return p - 1

    def _enqueue(self, request, future):
        level = self._level(request)
        policy = self.policies[level]
        entry = _Entry(request, future, level)
        queued = len(self._queues[level]) + len(self._delayed[level])
        if policy.max_queue_size and queued >= policy.max_queue_size:
            self.stats.record_failure(time.monotonic_ns() - request.arrival_ns, "REJECTED")
            raise Unavailable(f"Exceeds maximum queue size: model '{self.model.name}' already has {queued} "
                              f"requests queued at priority level {level + 1} (max_queue_size "
                              f"{policy.max_queue_size})")
        timeout_us = policy.default_timeout_microseconds
        if policy.allow_timeout_override and request.timeout_us and (
                timeout_us == 0 or request.timeout_us < timeout_us):
            timeout_us = request.timeout_us
        if timeout_us and self.batching:
            entry.deadline_ns = entry.enqueue_ns + timeout_us * 1000
            self._n_deadlines += 1
            if self._next_deadline is None or entry.deadline_ns < self._next_deadline:
                self._next_deadline = entry.deadline_ns
                self._arm_timer()
        self._queues[level].append(entry)

    def _has_work(self) -> bool:
        return any(self._queues) or any(self._delayed)

    def _arm_timer(self) -> None:
        # Timeouts fire on their own timer, not in the batching loop, because that loop may be
        # waiting for a free instance while requests time out in the queue.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._next_deadline is not None:
            delay = max(0.0, (self._next_deadline - time.monotonic_ns()) / 1e9)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_stop(self) -> None:
        # Queued requests still run while stopping; only their timeout timer goes.
        pass

    def _on_timer(self) -> None:
        self._timer = None
        self._expire(time.monotonic_ns())
        self._event.set()

    def _expire(self, now: int) -> None:
        """Apply the queue policies' timeouts: REJECT answers 503, DELAY moves the request back."""
        if not self._n_deadlines or self._next_deadline is None or now < self._next_deadline:
            return
        nxt = None
        for level, queue in enumerate(self._queues):
            if not any(e.deadline_ns is not None and e.deadline_ns <= now for e in queue):
                for e in queue:
                    if e.deadline_ns is not None and (nxt is None or e.deadline_ns < nxt):
                        nxt = e.deadline_ns
                continue
            keep = deque()
            for e in queue:
                if e.deadline_ns is not None and e.deadline_ns <= now:
                    self._n_deadlines -= 1
                    e.deadline_ns = None
                    if self.policies[level].timeout_action == "DELAY":
                        self._delayed[level].append(e)
                    else:
                        self._reject(e, Unavailable(
                            f"Request timeout expired: request waited more than its queue timeout in "
                            f"model '{self.model.name}'"))
                else:
                    keep.append(e)
                    if e.deadline_ns is not None and (nxt is None or e.deadline_ns < nxt):
                        nxt = e.deadline_ns
            self._queues[level] = keep
        self._next_deadline = nxt
        self._arm_timer()

    def _ordered(self):
        return itertools.chain.from_iterable(
            itertools.chain(q, d) for q, d in zip(self._queues, self._delayed))

    def _pop(self, n: int) -> list[_Entry]:
        out = []
        for q, d in zip(self._queues, self._delayed):
            for dq in (q, d):
                while dq and len(out) < n:
                    e = dq.popleft()
                    if e.deadline_ns is not None:
                        self._n_deadlines -= 1
                    out.append(e)
            if len(out) == n:
                break
        return out

    def _select(self, now_ns):
        self._expire(now_ns)
        if not self._has_work():
            return [], None
        if not self.batching:
            return self._pop(1), None
        # Each request holds at least one sample, so the batch never reaches past this many.
        head = list(itertools.islice(self._ordered(), self.max_batch_size + 1))
        decision = plan_batch([e.size for e in head], [e.key for e in head], [e.enqueue_ns for e in head],
                              now_ns, max_batch_size=self.max_batch_size,
                              preferred_batch_sizes=self.preferred, max_queue_delay_ns=self.max_queue_delay_ns)
        if decision.take:
            return self._pop(decision.take), None
        wake = now_ns + decision.wait_ns
        if self._next_deadline is not None:
            wake = min(wake, self._next_deadline)
        return [], wake

