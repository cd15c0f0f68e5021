"""The sequence batcher: stateful models, whose requests belong to sequences.

Some models keep state from one request to the next: a streaming speech recogniser, a running
aggregate, a language model's cache. Every request of a sequence carries the same *correlation ID*
(``sequence_id`` parameter, a non-zero integer or a non-empty string); the first sets
``sequence_start``, the last ``sequence_end``. Triton's ``sequence_batching`` guarantees, and so does
this scheduler:

- the requests of one sequence execute one at a time, in the order they arrived, each after the
  previous one finished, so state is never read before it is written;
- requests of *different* sequences may share a batch (at most one request per sequence per batch),
  which is what makes stateful models fast;
- a request for a sequence that was never started, or that ended or timed out, fails (400) with
  "must specify the START flag on the first request of the sequence"; a request with correlation ID 0
  fails too; sequence requests have batch size 1;
- ``max_sequence_idle_microseconds`` (default 1 s): a sequence that receives no request for that
  long is released, its state dropped;
- a sequence holds a *slot* from its start to its end; when all slots are taken (``direct``:
  ``max_batch_size`` times the instance count; ``oldest``: ``max_candidate_sequences``), new
  sequences wait in a backlog until a slot frees.

Strategies: ``oldest { max_candidate_sequences preferred_batch_size max_queue_delay_microseconds
preserve_ordering }`` fills each batch with the requests of the sequences whose next request is
oldest, with the dynamic batcher's rule (:func:`~.batcher.plan_batch`). ``direct {
max_queue_delay_microseconds }`` is accepted and batched the same way (Triton's direct strategy also
pins each sequence to one slot of one instance, which matters for backends that keep state in
place; backends here keep no state of their own, see below).

State lives in the server, not in the model (Triton's *implicit state*): for each ``state { input_name
output_name data_type dims }`` the scheduler feeds the sequence's current state as input
``input_name`` and stores output ``output_name`` as the new state after the request executes (neither
is declared among the model's inputs and outputs, and the client never sees them). A sequence starts
from zeros (or ``initial_state { data_file }`` read from ``<model>/initial_state/``). So the model
itself stays a pure function, and any instance can run any sequence.

``control_input`` gives the model the flags as tensors, as in Triton: ``CONTROL_SEQUENCE_START``,
``_END``, ``_READY`` (with ``int32_false_true``, ``fp32_false_true`` or ``bool_false_true`` values) and
``CONTROL_SEQUENCE_CORRID`` (the correlation ID, with ``data_type``). Each has shape ``[batch, 1]``
(``[1]`` for a model without batching).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np

from .batcher import Scheduler, _Entry, plan_batch
from .config import numpy_dtype
from .errors import ConfigError, InvalidArgument

__all__ = ["SequenceBatcher"]

_CONTROL_KINDS = {"CONTROL_SEQUENCE_START": "start", "CONTROL_SEQUENCE_END": "end",
                  "CONTROL_SEQUENCE_READY": "ready", "CONTROL_SEQUENCE_CORRID": "corrid"}


class _Sequence:
    __slots__ = ("corr_id", "queue", "busy", "slot", "state", "last_ns", "ending")

    def __init__(self, corr_id):
        self.corr_id = corr_id
        self.queue: deque[_Entry] = deque()
        self.busy = False
        self.slot = False
        self.state: dict[str, np.ndarray] = {}
        self.last_ns = time.monotonic_ns()
        self.ending = False


class SequenceBatcher(Scheduler):
    """Scheduler for models with ``sequence_batching`` (see the module docstring)."""

    def __init__(self, model):
        super().__init__(model)
        cfg = self.config
        sb = cfg.sequence_batching
        self.mbs = cfg.max_batch_size
        self.idle_ns = sb["max_sequence_idle_microseconds"] * 1000
        if "oldest" in sb:
            o = sb["oldest"]
            self.capacity = o["max_candidate_sequences"]
            self.preferred = tuple(o["preferred_batch_size"])
            self.delay_ns = o["max_queue_delay_microseconds"] * 1000
            self.preserve_ordering = o["preserve_ordering"]
        else:
            d = sb["direct"]
            self.capacity = max(1, self.mbs) * len(self.instances)
            self.preferred = ()
            self.delay_ns = d["max_queue_delay_microseconds"] * 1000
        self.controls = []
        for ci in sb["control_input"]:
            c = ci["control"][0]
            kind = _CONTROL_KINDS[c["kind"]]
            if kind == "corrid":
                self.controls.append((ci["name"], kind, None, numpy_dtype(c["data_type"])))
            elif c.get("int32_false_true"):
                self.controls.append((ci["name"], kind, c["int32_false_true"], np.dtype(np.int32)))
            elif c.get("fp32_false_true"):
                self.controls.append((ci["name"], kind, c["fp32_false_true"], np.dtype(np.float32)))
            else:
                self.controls.append((ci["name"], kind, c["bool_false_true"], np.dtype(np.bool_)))
        self.states = [(st["input_name"], st["output_name"], numpy_dtype(st["data_type"]), tuple(st["dims"]),
                        self._initial_state(st)) for st in sb["state"]]
        self._sequences: dict[object, _Sequence] = {}
        self._backlog: deque[_Sequence] = deque()
        self._slots_used = 0
        self._pending = 0
        self._reaper: asyncio.Task | None = None

    def _initial_state(self, st: dict) -> np.ndarray:
        dtype, dims = numpy_dtype(st["data_type"]), tuple(st["dims"])
        init = st["initial_state"][0] if st["initial_state"] else {"zero_data": True}
        if init.get("data_file"):
            path = self.model.model_dir / "initial_state" / init["data_file"]
            try:
                data = np.fromfile(path, dtype=dtype)
            except OSError as exc:
                raise ConfigError(f"state {st['input_name']!r}: cannot read initial state {path}: {exc}") from None
            if data.size != int(np.prod(dims)):
                raise ConfigError(f"state {st['input_name']!r}: {path} holds {data.size} values, dims "
                                  f"{list(dims)} need {int(np.prod(dims))}")
            return data.reshape(dims)
        return np.zeros(dims, dtype=dtype)

    @property
    def control_names(self) -> tuple[str, ...]:
        return tuple(c[0] for c in self.controls)

    @property
    def pending_count(self) -> int:
        return self._pending

    @property
    def active_sequences(self) -> int:
        return len(self._sequences)

    def start(self) -> None:
        super().start()
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle())

    def _on_stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()

    # ---- queueing
    def _enqueue(self, request, future):
        name = self.model.name
        cid = request.sequence_id
        try:
            if cid == 0 or cid == "":
                raise InvalidArgument(f"inference request to model '{name}' must specify a non-zero or "
                                      "non-empty correlation ID")
            if request.batch_size > 1:
                raise InvalidArgument(f"inference request to model '{name}' with sequence batching must "
                                      f"have batch size 1, got {request.batch_size}")
            seq = self._sequences.get(cid)
            if not request.sequence_start and (seq is None or seq.ending):
                raise InvalidArgument(f"inference request for sequence {cid} to model '{name}' must specify "
                                      "the START flag on the first request of the sequence")
        except InvalidArgument:
            self.stats.record_failure(time.monotonic_ns() - request.arrival_ns, "OTHER")
            raise
        if seq is None:
            seq = _Sequence(cid)
            self._sequences[cid] = seq
            if self._slots_used < self.capacity:
                seq.slot = True
                self._slots_used += 1
            else:
                self._backlog.append(seq)
        seq.ending = bool(request.sequence_end)
        entry = _Entry(request, future)
        entry.sequence = seq
        seq.queue.append(entry)
        seq.last_ns = entry.enqueue_ns
        self._pending += 1

    def _ready(self):
        return [s for s in self._sequences.values() if s.slot and not s.busy and s.queue]

    def _has_work(self) -> bool:
        return any(s.slot and not s.busy and s.queue for s in self._sequences.values())

    def _select(self, now_ns):
        ready = self._ready()
        if not ready:
            return [], None
        ready.sort(key=lambda s: s.queue[0].enqueue_ns)
        if self.mbs == 0:
            chosen = ready[:1]
        else:
            heads = [s.queue[0] for s in ready[:self.mbs + 1]]
            d = plan_batch([e.size for e in heads], [e.key for e in heads], [e.enqueue_ns for e in heads],
                           now_ns, max_batch_size=self.mbs, preferred_batch_sizes=self.preferred,
                           max_queue_delay_ns=self.delay_ns)
            if not d.take:
                return [], now_ns + d.wait_ns
            chosen = ready[:d.take]
        entries = []
        for s in chosen:
            entries.append(s.queue.popleft())
            s.busy = True
        self._pending -= len(entries)
        return entries, None

    # ---- control inputs and state
    def _batch_extras(self, entries):
        batching = self.mbs > 0
        extra = {}
        for name, kind, values, dtype in self.controls:
            if kind == "corrid":
                vals = [e.request.sequence_id for e in entries]
                arr = np.array([v if not isinstance(v, str) else v.encode() for v in vals],
                               dtype=object if dtype.kind == "O" else dtype)
            else:
                flags = {"start": [e.request.sequence_start for e in entries],
                         "end": [e.request.sequence_end for e in entries],
                         "ready": [True] * len(entries)}[kind]
                arr = np.array([values[1] if f else values[0] for f in flags], dtype=dtype)
            extra[name] = arr.reshape((len(entries), 1) if batching else (1,))
        for in_name, _, dtype, dims, initial in self.states:
            per = []
            for e in entries:
                seq = e.sequence
                if e.request.sequence_start or in_name not in seq.state:
                    seq.state[in_name] = initial.copy()
                per.append(seq.state[in_name])
            extra[in_name] = np.stack(per) if batching else per[0]
        return extra, tuple(st[1] for st in self.states)

    def extras_for_warmup(self, n: int):
        """Control and state inputs for a warm-up batch of ``n`` one-request sequences."""
        from .request import InferenceRequest

        fake = []
        for i in range(n):
            r = InferenceRequest(self.model.name, {}, sequence_id=i + 1, sequence_start=True, sequence_end=True)
            e = _Entry.__new__(_Entry)
            e.request, e.sequence = r, _Sequence(i + 1)
            fake.append(e)
        return self._batch_extras(fake)

    def _on_batch_done(self, entries, results, error):
        now = time.monotonic_ns()
        batching = self.mbs > 0
        for i, e in enumerate(entries):
            seq = e.sequence
            seq.busy = False
            seq.last_ns = now
            if results is not None:
                for in_name, out_name, _, _, _ in self.states:
                    new = results[i].pop(out_name)
                    # Copy: the row is a view of the whole batch's output, which should not stay alive.
                    seq.state[in_name] = np.array(new[0] if batching else new)
            if e.request.sequence_end:
                seq.state.clear()
                if not seq.queue:
                    self._release(seq)

    def _release(self, seq: _Sequence) -> None:
        if self._sequences.get(seq.corr_id) is seq:
            del self._sequences[seq.corr_id]
        if seq.slot:
            seq.slot = False
            self._slots_used -= 1
        else:
            try:
                self._backlog.remove(seq)
            except ValueError:
                pass
        while self._backlog and self._slots_used < self.capacity:
            nxt = self._backlog.popleft()
            nxt.slot = True
            self._slots_used += 1
        self._event.set()

    async def _reap_idle(self) -> None:
        interval = min(max(self.idle_ns / 4e9, 0.001), 0.25)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic_ns()
            for seq in list(self._sequences.values()):
                if not seq.busy and not seq.queue and now - seq.last_ns > self.idle_ns:
                    self._release(seq)
