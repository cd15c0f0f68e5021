"""Model instances: ``instance_group { count: N }`` copies of a model that execute at the same time.

Each instance owns one backend object and one worker thread, and executes one batch at a time, so a
model with ``count: 2`` can run two batches at once. NumPy releases the GIL inside its kernels
(matrix products, elementwise loops over large arrays), so two instances really do overlap on two
cores; Python-level work in a backend does not.

An instance executes a batch in three timed phases, the ones Triton reports:

- *compute input*: gather the requests' inputs into one array per input (``np.concatenate`` along
  the batch dimension; a batch of one request is passed through without a copy) and apply
  ``reshape``;
- *compute infer*: the backend's ``execute``;
- *compute output*: check each output (present, datatype, leading size) and slice it back into one
  view per request.

Which instance runs next, and when, is decided by the scheduler together with the
:mod:`rate limiter <.rate_limiter>`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ModelConfig, numpy_dtype
from .errors import InternalError, ServingError
from .model import Backend, create_backend
from .request import InferenceRequest, format_shape

__all__ = ["ModelInstance", "BatchTimings", "create_instances"]


@dataclass
class BatchTimings:
    """Nanoseconds spent in each phase of one execution."""

    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0


class ModelInstance:
    """One copy of a model, with its own worker thread.

    ``resources`` (``{name: count}``) and ``priority`` come from the instance group's
    ``rate_limiter``; ``busy`` and ``vtime`` belong to the rate limiter.
    """

    def __init__(self, config: ModelConfig, model_dir: Path, version: int, name: str, group: dict,
                 shared: dict):
        self.config = config
        self.name = name
        self.model_name = config.name
        rl = group.get("rate_limiter") or {}
        self.resources = {r["name"]: int(r["count"]) for r in rl.get("resources", [])}
        self.global_resources = {r["name"] for r in rl.get("resources", []) if r.get("global")}
        self.priority = max(1, int(rl.get("priority", 0)))
        self.busy = False
        self.vtime = 0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"instance-{name}")
        self.backend: Backend | None = None
        self._model_dir, self._version, self._shared = Path(model_dir), version, shared

    def load(self) -> None:
        """Create the backend (called in the instance's own thread, so loading can overlap)."""
        self.backend = create_backend(self.config, self._model_dir, self._version, self.name, self._shared)

    def execute_batch(self, requests: list[InferenceRequest], extra_inputs: dict[str, np.ndarray] | None = None,
                      extra_outputs: tuple[str, ...] = ()) -> tuple[list[dict[str, np.ndarray]], BatchTimings]:
        """Execute ``requests`` as one batch (runs in this instance's thread).

        ``extra_inputs`` are already-batched tensors the scheduler adds (sequence control inputs and
        state); ``extra_outputs`` names outputs beyond the config's that the backend must return
        (sequence state). Returns one ``{output name: array}`` per request, and the timings. A backend
        that raises, or returns something that does not fit the config, fails the whole batch with an
        :class:`InternalError`.
        """
        cfg = self.config
        batching = cfg.max_batch_size > 0
        t0 = time.monotonic_ns()
        if len(requests) == 1:
            inputs = dict(requests[0].inputs)
        else:
            inputs = {name: np.concatenate([r.inputs[name] for r in requests], axis=0)
                      for name in requests[0].inputs}
        if extra_inputs:
            inputs.update(extra_inputs)
        for name, arr in list(inputs.items()):
            spec = cfg.input_by_name.get(name)
            if spec is not None and spec.reshape is not None:
                inputs[name] = arr.reshape(((arr.shape[0],) if batching else ()) + spec.reshape)
        total = sum(r.batch_size for r in requests) if batching else None
        t1 = time.monotonic_ns()
        try:
            outputs = self.backend.execute(inputs)
        except ServingError:
            raise
        except Exception as exc:
            raise InternalError(f"model '{cfg.name}' (instance {self.name}) failed: "
                                f"{type(exc).__name__}: {exc}") from exc
        t2 = time.monotonic_ns()
        if not isinstance(outputs, dict):
            raise InternalError(f"model '{cfg.name}' returned {type(outputs).__name__}, expected a dict of arrays")
        checked = {}
        for spec in cfg.outputs:
            checked[spec.name] = self._check_output(outputs, spec.name, numpy_dtype(spec.data_type),
                                                    spec.reshape, spec.dims, total)
        for name in extra_outputs:
            checked[name] = self._check_output(outputs, name, None, None, None, total)
        if batching:
            results, start = [], 0
            for r in requests:
                stop = start + r.batch_size
                results.append({k: v[start:stop] for k, v in checked.items()})
                start = stop
        else:
            results = [checked]
        t3 = time.monotonic_ns()
        for r in requests:
            if r.trace is not None:
                for name, ns in (("COMPUTE_START", t0), ("COMPUTE_INPUT_END", t1), ("COMPUTE_OUTPUT_START", t2),
                                 ("COMPUTE_END", t3)):
                    r.trace.stamp(name, ns)
        return results, BatchTimings(t1 - t0, t2 - t1, t3 - t2)

    def _check_output(self, outputs, name, dtype, reshape, dims, total):
        cfg = self.config
        if name not in outputs:
            raise InternalError(f"model '{cfg.name}' did not produce output '{name}'")
        arr = outputs[name]
        if not isinstance(arr, np.ndarray):
            arr = np.asarray(arr)
        if dtype is not None and arr.dtype != dtype:
            if dtype.kind == "O" or not np.can_cast(arr.dtype, dtype, casting="same_kind"):
                raise InternalError(f"model '{cfg.name}' output '{name}' has dtype {arr.dtype}, the config "
                                    f"declares {dtype}")
            arr = arr.astype(dtype)
        lead = (total,) if total is not None else ()
        if total is not None and (arr.ndim == 0 or arr.shape[0] != total):
            raise InternalError(f"model '{cfg.name}' output '{name}' has shape {format_shape(arr.shape)}; "
                                f"its first dimension must be the batch size {total}")
        if dims is not None:
            if reshape is not None:
                arr = arr.reshape(lead + tuple(dims))
            inner = arr.shape[len(lead):]
            if len(inner) != len(dims) or any(d != -1 and d != s for s, d in zip(inner, dims)):
                raise InternalError(f"model '{cfg.name}' output '{name}' has shape {format_shape(arr.shape)}, "
                                    f"the config declares {format_shape((-1, *dims) if lead else dims)}")
        return arr

    def close(self) -> None:
        if self.backend is not None:
            try:
                self.backend.close()
            finally:
                self.backend = None
        self.executor.shutdown(wait=False)


def create_instances(config: ModelConfig, model_dir: Path, version: int) -> list[ModelInstance]:
    """One :class:`ModelInstance` per ``count`` of each instance group (not loaded yet).

    Instance names follow Triton: ``<group name>_<index>``, e.g. ``digits_mlp_0_1``.
    """
    shared: dict = {}
    instances = []
    for group in config.instance_groups:
        for i in range(group["count"]):
            instances.append(ModelInstance(config, model_dir, version, f"{group['name']}_{i}", group, shared))
    return instances
