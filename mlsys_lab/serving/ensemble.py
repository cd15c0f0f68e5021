"""Ensembles: a model that is a DAG of other models (``platform: "ensemble"``).

An ensemble wires models together by tensor name, with no code::

    platform: "ensemble"
    input [ { name: "IMAGE" data_type: TYPE_UINT8 dims: [ 8, 8 ] } ]
    output [ { name: "LOGITS" data_type: TYPE_FP32 dims: [ 10 ] } ]
    ensemble_scheduling { step [
      { model_name: "digits_preprocess" model_version: -1
        input_map { key: "IMAGE" value: "IMAGE" }          # the step model's input <- ensemble tensor
        output_map { key: "INPUT" value: "pixels" } },     # the step model's output -> ensemble tensor
      { model_name: "digits_mlp" model_version: -1
        input_map { key: "INPUT" value: "pixels" }
        output_map { key: "LOGITS" value: "LOGITS" } } ] }

Tensors are the ensemble's inputs and every step output; a step runs as soon as all the tensors it
reads exist, so independent steps run at the same time, and each step is an ordinary request to its
model, which therefore batches it with that model's other traffic (the reason to put preprocessing
in an ensemble step rather than in the client: it runs next to the model, batched, without another
network round trip). ``model_version: -1`` means the latest version.

:func:`check_ensemble` validates the wiring when the ensemble loads: every step input mapped from a
tensor that exists, no tensor produced twice, datatypes that agree, no cycle, every ensemble output
produced, and composing models whose ``max_batch_size`` is at least the ensemble's. An ensemble
counts requests and inferences in its statistics, with zero queue and compute time and no executions
of its own: those belong to its composing models.
"""

from __future__ import annotations

import asyncio
import time

from .config import ModelConfig
from .errors import ConfigError, InternalError, ServingError
from .request import InferenceRequest, RequestedOutput

__all__ = ["check_ensemble", "EnsembleScheduler"]


def check_ensemble(config: ModelConfig, composing: list[ModelConfig]) -> list[int]:
    """Validate the ensemble ``config`` whose i-th step runs the model ``composing[i]``; return the
    steps in an order in which each one's inputs exist before it runs (raises :class:`ConfigError`)."""
    name = config.name
    steps = config["ensemble_scheduling"]["step"]

    def fail(msg):
        return ConfigError(f"ensemble '{name}': {msg}")

    dtype_of = {t.name: (t.datatype, "ensemble input") for t in config.inputs}
    producer: dict[str, int] = {}
    for i, (step, cfg) in enumerate(zip(steps, composing)):
        label = f"step {i} (model '{cfg.name}')"
        for model_in in step["input_map"]:
            if model_in not in cfg.input_by_name:
                raise fail(f"{label}: input_map key '{model_in}' is not an input of '{cfg.name}' "
                           f"(inputs: {', '.join(cfg.input_by_name)})")
        missing = [t.name for t in cfg.inputs if not t.optional and t.name not in step["input_map"]]
        if missing:
            raise fail(f"{label}: input_map does not feed required input(s) {missing}")
        for model_out, tensor in step["output_map"].items():
            if model_out not in cfg.output_by_name:
                raise fail(f"{label}: output_map key '{model_out}' is not an output of '{cfg.name}' "
                           f"(outputs: {', '.join(cfg.output_by_name)})")
            if tensor in dtype_of:
                raise fail(f"{label}: tensor '{tensor}' is already {dtype_of[tensor][1]}; each tensor must "
                           "have exactly one producer")
            dtype_of[tensor] = (cfg.output_by_name[model_out].datatype, f"produced by {label}")
            producer[tensor] = i
        if config.max_batch_size > 0 and cfg.max_batch_size < config.max_batch_size:
            raise fail(f"{label}: max_batch_size {cfg.max_batch_size} is smaller than the ensemble's "
                       f"{config.max_batch_size}")
    for i, (step, cfg) in enumerate(zip(steps, composing)):
        for model_in, tensor in step["input_map"].items():
            if tensor not in dtype_of:
                raise fail(f"step {i} (model '{cfg.name}') reads tensor '{tensor}', which is neither an "
                           "ensemble input nor any step's output")
            want, got = cfg.input_by_name[model_in].datatype, dtype_of[tensor][0]
            if want != got:
                raise fail(f"step {i} (model '{cfg.name}') input '{model_in}' is {want}, but tensor "
                           f"'{tensor}' ({dtype_of[tensor][1]}) is {got}")
    for out in config.outputs:
        if out.name not in producer:
            raise fail(f"output '{out.name}' is produced by no step")
        if dtype_of[out.name][0] != out.datatype:
            raise fail(f"output '{out.name}' is declared {out.datatype} but {dtype_of[out.name][1]} "
                       f"gives {dtype_of[out.name][0]}")
    available = {t.name for t in config.inputs}
    order, remaining = [], list(range(len(steps)))
    while remaining:
        ready = [i for i in remaining if set(steps[i]["input_map"].values()) <= available]
        if not ready:
            waits = {i: sorted(set(steps[i]["input_map"].values()) - available) for i in remaining}
            raise fail(f"steps {remaining} wait on each other (a cycle): they need {waits}")
        for i in ready:
            order.append(i)
            remaining.remove(i)
            available |= set(steps[i]["output_map"].values())
    return order


class EnsembleScheduler:
    """Runs an ensemble's DAG for each request; ``steps`` pairs each step's config with the
    :class:`~.repository.ModelVersion` it calls."""

    preserve_ordering = False

    def __init__(self, model, step_models: list):
        self.model = model
        self.config = model.config
        self.stats = model.stats
        self.steps = self.config["ensemble_scheduling"]["step"]
        self.step_models = step_models
        check_ensemble(self.config, [m.config for m in step_models])
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending_count(self) -> int:
        return 0

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        await self._idle.wait()

    async def _run_step(self, i: int, tensors: dict, request: InferenceRequest) -> dict:
        step, target = self.steps[i], self.step_models[i]
        sub = InferenceRequest(
            model_name=target.name, model_version=target.version,
            inputs={model_in: tensors[t] for model_in, t in step["input_map"].items()},
            outputs=[RequestedOutput(o) for o in step["output_map"]], id=request.id,
            priority=request.priority, timeout_us=request.timeout_us, sequence_id=request.sequence_id,
            sequence_start=request.sequence_start, sequence_end=request.sequence_end)
        if request.trace is not None:
            sub.trace = request.trace.child(target.name, int(target.version))
        try:
            return await target.infer(sub)
        except ServingError as exc:
            raise type(exc)(f"in ensemble '{self.model.name}', step {i} (model '{target.name}'): "
                            f"{exc.message}") from None
        finally:
            if sub.trace is not None:
                sub.trace.finish()

    async def infer(self, request: InferenceRequest) -> dict:
        self._inflight += 1
        self._idle.clear()
        tensors = dict(request.inputs)
        remaining = list(range(len(self.steps)))
        running: dict[asyncio.Task, int] = {}
        try:
            while remaining or running:
                for i in list(remaining):
                    if all(t in tensors for t in self.steps[i]["input_map"].values()):
                        remaining.remove(i)
                        running[asyncio.ensure_future(self._run_step(i, tensors, request))] = i
                if not running:
                    raise InternalError(f"ensemble '{self.model.name}' cannot make progress")
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    i = running.pop(task)
                    outputs = task.result()
                    for model_out, t in self.steps[i]["output_map"].items():
                        tensors[t] = outputs[model_out]
        except BaseException as exc:
            for task in running:
                task.cancel()
            if isinstance(exc, ServingError):
                self.stats.record_failure(time.monotonic_ns() - request.arrival_ns,
                                          "BACKEND" if isinstance(exc, InternalError) else "OTHER")
            raise
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()
        # Queue and compute are counted (so every model's counts agree: queue.count == success.count, as
        # perf_analyzer expects) with zero time: the time is spent, and counted, in the composing models.
        self.stats.record_success(request.batch_size, time.monotonic_ns() - request.arrival_ns)
        return {t.name: tensors[t.name] for t in self.config.outputs}
