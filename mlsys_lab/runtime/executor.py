"""Executors: run a plan's steps, one after another or several at once.

Both executors work on the same data: ``values``, a list with one slot per value of the plan (graph
inputs and constants filled in by the caller), and ``buffers``, a list with the planned array of each
slot (None for views, inputs and constants): the arena views, and the output buffers allocated for this
call. A step is ``values[out] = kernel(*[values[a] for a in args], out=buffers[out])``.

**Sequential.** The plan's order is topological, so running the steps in order respects every
dependency. This is what the memory plan assumes by default.

**Parallel.** A pool of worker threads and a ready queue, the design of TensorFlow's executor and
ONNX Runtime's parallel executor: each step has a counter of unfinished producers; steps whose counter is
zero are ready and go on the queue; a worker takes one, runs it, then decrements the counters of the
steps that wait for it and queues those that reach zero. A worker keeps one newly ready step for itself
(no queue round trip on a chain) and queues the rest for the other workers. Independent branches of the
graph therefore run at the same time, on different cores, *if* the kernels release the GIL (NumPy's
loops and BLAS do; Numba kernels compiled with ``nogil=True`` do).

Memory ordering: a worker writes its result into ``values`` and the buffer, then takes the lock to
update the counters; the worker that finds a counter at zero took the same lock afterwards, so it sees
those writes (a lock release happens-before the next acquire). No step ever reads a value whose producer
has not finished. The memory plan must be *parallel-safe* (``plan_memory(..., parallel=True)``): a buffer
is only reused by a step that the dependency graph orders after every use of its previous tenant.

Both record, if asked, one event per step: ``(step, thread, start_ns, end_ns, seq_start, seq_end)``
(``seq_*`` are numbers from one global counter, so the order of starts and ends across threads can be
checked without trusting clocks).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np

from ..graph.ir import GraphError
from .lowering import Plan

__all__ = ["SequentialExecutor", "ParallelExecutor", "KernelError", "EXECUTORS"]


class KernelError(GraphError):
    """A kernel failed or misbehaved while running a step; ``.node`` names the step's node."""


def _fail(step, e: BaseException) -> KernelError:
    return KernelError(f"node {step.name!r} ({step.op}, kernel {step.kernel.name}) failed: "
                       f"{type(e).__name__}: {e}", step.name)


def _check_result(step, result, buf):
    node = step.node
    if not isinstance(result, np.ndarray):
        raise KernelError(f"node {node.name!r}: kernel {step.kernel.name} returned {type(result).__name__}, "
                          f"not an ndarray", node.name)
    if result.shape != node.shape or result.dtype != node.dtype:
        raise KernelError(f"node {node.name!r}: kernel {step.kernel.name} returned "
                          f"{result.dtype}{list(result.shape)}, the node is {node.type_str()}", node.name)
    if buf is not None and not (result is buf or np.shares_memory(result, buf)):
        raise KernelError(f"node {node.name!r}: kernel {step.kernel.name} returned a new array instead of "
                          f"writing into out (the planned buffer)", node.name)


class SequentialExecutor:
    """Run the steps in plan order on the calling thread. ``check=True`` verifies every result's shape,
    dtype and that the kernel wrote into its buffer (slower; for tests and for writing kernels)."""

    name = "sequential"

    def __init__(self, plan: Plan, check: bool = False):
        self.plan = plan
        self.check = check
        self._program = [(st, st.kernel.call, st.args, st.out) for st in plan.steps]

    def run(self, values: list, buffers: list, events: list | None = None) -> None:
        clock = time.perf_counter_ns
        seq = itertools.count()
        for st, call, args, out in self._program:
            buf = buffers[out]
            if events is not None:
                s0, t0 = next(seq), clock()
            try:
                result = call(*[values[a] for a in args], out=buf)
            except Exception as e:
                raise _fail(st, e) from e
            if self.check:
                _check_result(st, result, buf)
            values[out] = result
            if events is not None:
                events.append((st.index, 0, t0, clock(), s0, next(seq)))

    def close(self) -> None:
        pass


@dataclass
class _Run:
    remaining: list
    pending: int
    values: list
    buffers: list
    events: list | None
    done: threading.Event = field(default_factory=threading.Event)
    active: int = 0
    error: BaseException | None = None


class ParallelExecutor:
    """Run independent steps at once on ``num_threads`` worker threads (see the module docstring).

    The threads start at the first run and stay (daemon threads) until :meth:`close`. One run at a time:
    a second call waits for the first. An exception in a kernel stops the run (no new steps start; the
    running ones finish) and is raised in the caller as a :class:`KernelError` naming the node.
    """

    name = "parallel"

    def __init__(self, plan: Plan, num_threads: int | None = None, check: bool = False):
        self.plan = plan
        self.check = check
        self.num_threads = int(num_threads or os.cpu_count() or 2)
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self._indegree = [len(st.deps) for st in plan.steps]
        self._roots = [st.index for st in plan.steps if not st.deps]
        self._run_lock = threading.Lock()
        # What the worker threads use lives in its own object: the threads hold it, not the executor, so
        # an executor nobody references is collected, and its finalizer stops the threads.
        self._shared = _Shared([(st, st.kernel.call, st.args, st.out) for st in plan.steps],
                               plan.dependents(), check)
        weakref.finalize(self, _stop_threads, self._shared)

    # -- threads ------------------------------------------------------------------------------------------
    def _start(self) -> None:
        sh = self._shared
        if sh.threads:
            return
        for k in range(self.num_threads):
            t = threading.Thread(target=_worker, args=(sh, k), name=f"mlsys-runtime-{k}", daemon=True)
            t.start()
            sh.threads.append(t)

    def close(self) -> None:
        """Stop the worker threads (a later run starts new ones)."""
        for t in _stop_threads(self._shared):
            t.join()

    # -- running ------------------------------------------------------------------------------------------
    def run(self, values: list, buffers: list, events: list | None = None) -> None:
        sh = self._shared
        if not sh.steps:
            return
        with self._run_lock:
            self._start()
            run = _Run(list(self._indegree), len(sh.steps), values, buffers, events)
            for s in self._roots:
                sh.queue.put((run, s))
            run.done.wait()
            if run.error is not None:
                with sh.lock:
                    while run.active:          # let running steps finish before the caller moves on
                        sh.idle.wait()
                raise run.error


class _Shared:
    """The state the worker threads of one :class:`ParallelExecutor` share."""

    def __init__(self, steps, dependents, check):
        self.steps = steps
        self.dependents = dependents
        self.check = check
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.seq = itertools.count()
        self.threads: list = []


def _stop_threads(sh: _Shared) -> list:
    threads, sh.threads = sh.threads, []
    for _ in threads:
        sh.queue.put(None)
    return threads


def _worker(sh: _Shared, tid: int) -> None:
    clock = time.perf_counter_ns
    q, lock, seq, steps, dependents, check = sh.queue, sh.lock, sh.seq, sh.steps, sh.dependents, sh.check
    while True:
        # Drop references to the last run before blocking, so that its arrays can be freed (or reused by
        # the plan's output cache) while this thread waits.
        item = run = values = buf = result = None
        item = q.get()
        if item is None:
            return
        run, s = item
        while s is not None:
            with lock:
                if run.error is not None:
                    break
                run.active += 1
            st, call, args, out = steps[s]
            values = run.values
            buf = run.buffers[out]
            s0, t0 = next(seq), clock()
            try:
                result = call(*[values[a] for a in args], out=buf)
                if check:
                    _check_result(st, result, buf)
            except Exception as e:
                err = e
                if not isinstance(e, KernelError):
                    err = _fail(st, e)
                    err.__cause__ = e
                with lock:
                    run.active -= 1
                    if run.error is None:
                        run.error = err
                    sh.idle.notify_all()
                run.done.set()
                break
            values[out] = result
            t1 = clock()
            ready = []
            with lock:
                if run.events is not None:
                    run.events.append((s, tid, t0, t1, s0, next(seq)))
                for d in dependents[s]:
                    run.remaining[d] -= 1
                    if run.remaining[d] == 0:
                        ready.append(d)
                run.pending -= 1
                run.active -= 1
                finished = run.pending == 0
                if run.error is not None:
                    sh.idle.notify_all()
            if finished:
                run.done.set()
                break
            for d in ready[1:]:
                q.put((run, d))  # for the other workers; this one goes on with the first
            s = ready[0] if ready else None


EXECUTORS = {"sequential": SequentialExecutor, "parallel": ParallelExecutor}
