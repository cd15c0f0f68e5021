"""Prometheus metrics with Triton's names, rendered from the same counters as the statistics.

``GET /metrics`` answers the Prometheus text exposition format (version 0.0.4). Every series carries
the labels ``model`` and ``version``, as Triton's do, and counts what :mod:`.stats` counts, so the two
views never disagree:

=========================================  =========  ==============================================
metric                                     type       value
=========================================  =========  ==============================================
``nv_inference_request_success``           counter    successful requests
``nv_inference_request_failure``           counter    failed requests, by ``reason`` (REJECTED:
                                                      queue full or timed out; BACKEND: the model
                                                      raised; OTHER: the request was invalid)
``nv_inference_count``                     counter    samples inferred (batch sizes summed)
``nv_inference_exec_count``                counter    model executions (batches)
``nv_inference_request_duration_us``       counter    cumulative request time, successful requests
``nv_inference_queue_duration_us``         counter    cumulative queue time
``nv_inference_compute_input_duration_us`` counter    cumulative input-gathering time
``nv_inference_compute_infer_duration_us`` counter    cumulative execution time
``nv_inference_compute_output_duration_us`` counter   cumulative output-scattering time
``nv_inference_pending_request_count``     gauge      requests waiting in the scheduler now
=========================================  =========  ==============================================

Triton's counters have no ``_total`` suffix, so this module writes the format itself rather than
through ``prometheus_client`` (which would add one).
"""

from __future__ import annotations

from typing import Iterable

from .stats import ModelStats

__all__ = ["render_metrics", "METRICS"]

#: (name, type, help) in the order they are written.
METRICS = [
    ("nv_inference_request_success", "counter",
     "Number of successful inference requests, all batch sizes"),
    ("nv_inference_request_failure", "counter", "Number of failed inference requests, all batch sizes"),
    ("nv_inference_count", "counter", "Number of inferences performed (does not include cached requests)"),
    ("nv_inference_exec_count", "counter",
     "Number of model executions performed (does not include cached requests)"),
    ("nv_inference_request_duration_us", "counter",
     "Cumulative inference request duration in microseconds (includes cached requests)"),
    ("nv_inference_queue_duration_us", "counter", "Cumulative inference queuing duration in microseconds"),
    ("nv_inference_compute_input_duration_us", "counter",
     "Cumulative compute input duration in microseconds (does not include cached requests)"),
    ("nv_inference_compute_infer_duration_us", "counter",
     "Cumulative compute inference duration in microseconds (does not include cached requests)"),
    ("nv_inference_compute_output_duration_us", "counter",
     "Cumulative inference compute output duration in microseconds (does not include cached requests)"),
    ("nv_inference_pending_request_count", "gauge",
     "Instantaneous number of pending requests awaiting execution per-model."),
]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(models: Iterable[tuple[ModelStats, int]]) -> str:
    """The exposition text for ``(stats, pending_request_count)`` of each loaded model version."""
    models = list(models)
    lines = []
    for name, kind, help_text in METRICS:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for stats, pending in models:
            labels = f'model="{_escape(stats.name)}",version="{_escape(stats.version)}"'
            if name == "nv_inference_request_failure":
                for reason, count in stats.failures_by_reason.items():
                    lines.append(f'{name}{{{labels},reason="{reason}"}} {count}')
                continue
            value = {
                "nv_inference_request_success": stats.success.count,
                "nv_inference_count": stats.inference_count,
                "nv_inference_exec_count": stats.execution_count,
                "nv_inference_request_duration_us": stats.success.ns // 1000,
                "nv_inference_queue_duration_us": stats.queue.ns // 1000,
                "nv_inference_compute_input_duration_us": stats.compute_input.ns // 1000,
                "nv_inference_compute_infer_duration_us": stats.compute_infer.ns // 1000,
                "nv_inference_compute_output_duration_us": stats.compute_output.ns // 1000,
                "nv_inference_pending_request_count": pending,
            }[name]
            lines.append(f"{name}{{{labels}}} {value}")
    return "\n".join(lines) + "\n"
