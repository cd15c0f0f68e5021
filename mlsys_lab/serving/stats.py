"""Per-model statistics, reported as Triton reports them at ``GET /v2/models/<m>/stats``.

What is counted, and how the numbers relate (the same rules as Triton's):

- ``success`` / ``fail``: one per request, with the request's total time in the server (``ns``, from
  arrival to the response being ready). A request counts once whether it ran alone or in a batch.
- ``queue``: per successful request, the time it waited in the scheduler's queue.
- ``compute_input`` / ``compute_infer`` / ``compute_output``: per successful request, the time the
  *batch it was part of* spent gathering inputs, executing and scattering outputs; a batch of 8
  requests charges its compute time to each of the 8.
- ``inference_count``: samples inferred successfully (a request of batch size 4 counts 4);
  ``execution_count``: model executions (one per batch). ``inference_count / execution_count`` is the
  average batch size the dynamic batcher achieved.
- ``batch_stats``: per executed batch size, how many executions had that size and their compute times.
  So ``sum(b * batch_stats[b].count) == inference_count`` and ``sum(batch_stats[b].count) ==
  execution_count`` whenever no execution failed.

So ``queue.count`` and each ``compute_*.count`` equal ``success.count`` (perf_analyzer relies on it).
Warm-up runs are not counted. All methods are called from the event loop's thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Duration", "ModelStats", "FAILURE_REASONS"]

#: Failure reasons, as the ``reason`` label of ``nv_inference_request_failure`` (Triton's names).
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")


@dataclass
class Duration:
    """A count and a cumulative time in nanoseconds (Triton's ``StatisticDuration``)."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += int(ns)

    def to_json(self) -> dict:
        return {"count": self.count, "ns": self.ns}


@dataclass
class _BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


class ModelStats:
    """Statistics of one model version."""

    def __init__(self, name: str, version: str):
        self.name = name
        self.version = version
        self.last_inference_ms = 0
        self.inference_count = 0
        self.execution_count = 0
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.batch: dict[int, _BatchStats] = {}
        self.failures_by_reason = dict.fromkeys(FAILURE_REASONS, 0)

    def record_success(self, batch_size: int, total_ns: int, queue_ns: int = 0, compute_input_ns: int = 0,
                       compute_infer_ns: int = 0, compute_output_ns: int = 0) -> None:
        """One successful request of ``batch_size`` samples (a non-batching model's request counts 1)."""
        self.success.add(total_ns)
        self.inference_count += max(1, batch_size)
        self.last_inference_ms = int(time.time() * 1000)
        self.queue.add(queue_ns)
        self.compute_input.add(compute_input_ns)
        self.compute_infer.add(compute_infer_ns)
        self.compute_output.add(compute_output_ns)

    def record_failure(self, total_ns: int, reason: str = "OTHER") -> None:
        """One failed request; ``reason`` is one of :data:`FAILURE_REASONS`."""
        self.fail.add(total_ns)
        self.failures_by_reason[reason] = self.failures_by_reason.get(reason, 0) + 1

    def record_execution(self, batch_size: int, compute_input_ns: int, compute_infer_ns: int,
                         compute_output_ns: int) -> None:
        """One model execution over a batch of ``batch_size`` samples."""
        self.execution_count += 1
        b = self.batch.setdefault(max(1, batch_size), _BatchStats())
        b.compute_input.add(compute_input_ns)
        b.compute_infer.add(compute_infer_ns)
        b.compute_output.add(compute_output_ns)

    def to_json(self) -> dict:
        """This version's entry of ``model_stats``, in Triton's layout."""
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.to_json(),
                "fail": self.fail.to_json(),
                "queue": self.queue.to_json(),
                "compute_input": self.compute_input.to_json(),
                "compute_infer": self.compute_infer.to_json(),
                "compute_output": self.compute_output.to_json(),
                "cache_hit": {"count": 0, "ns": 0},
                "cache_miss": {"count": 0, "ns": 0},
            },
            "response_stats": {},
            "batch_stats": [
                {"batch_size": size, "compute_input": b.compute_input.to_json(),
                 "compute_infer": b.compute_infer.to_json(), "compute_output": b.compute_output.to_json()}
                for size, b in sorted(self.batch.items())
            ],
            "memory_usage": [],
        }
