"""Model warm-up: requests a model runs before it is declared ready.

The first executions of a model are slow: weights are paged in, caches and allocators are cold, a
JIT compiles its kernels. Triton's ``model_warmup`` runs synthetic requests on every instance while
the model loads, and the model only becomes ready (and so reachable, and counted by the server's
readiness) once they all succeed; if one fails, the model fails to load. Each entry::

    model_warmup [ { name: "zeros"  batch_size: 8  count: 2
                     inputs { key: "INPUT" value: { data_type: TYPE_FP32 dims: [ 64 ] zero_data: true } } } ]

gives, per input, ``zero_data: true``, ``random_data: true`` (seeded, so warm-up is reproducible) or
``input_data_file: "name"``, the raw row-major bytes of one sample read from ``<model>/warmup/name``
(the same sample fills every row of the batch). ``batch_size`` 0 means a request without a batch
dimension, allowed only for a model with ``max_batch_size: 0``; for a batching model it is 1.
Warm-up runs are not counted in the statistics.
"""

from __future__ import annotations

import asyncio

import numpy as np

from .config import numpy_dtype
from .errors import ConfigError, ServingError
from .request import InferenceRequest, validate_request

__all__ = ["warmup_requests", "run_warmup"]


def _sample(spec: dict, name: str, warm: str, model_dir) -> np.ndarray:
    dtype = numpy_dtype(spec["data_type"])
    dims = tuple(spec.get("dims", []))
    given = [k for k in ("zero_data", "random_data", "input_data_file") if spec.get(k)]
    if len(given) != 1:
        raise ConfigError(f"model_warmup '{warm}' input '{name}': set exactly one of zero_data, random_data, "
                          "input_data_file")
    if given[0] == "zero_data":
        return np.full(dims, b"", dtype=object) if dtype.kind == "O" else np.zeros(dims, dtype=dtype)
    if given[0] == "random_data":
        rng = np.random.default_rng(0)
        if dtype.kind == "O":
            return np.full(dims, b"warmup", dtype=object)
        if dtype.kind == "b":
            return rng.integers(0, 2, size=dims).astype(np.bool_)
        if dtype.kind in "iu":
            return rng.integers(0, 10, size=dims).astype(dtype)
        return rng.random(size=dims).astype(dtype)
    path = model_dir / "warmup" / spec["input_data_file"]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"model_warmup '{warm}' input '{name}': cannot read {path}: {exc}") from None
    if dtype.kind == "O":
        return np.full(dims, raw, dtype=object)
    n = int(np.prod(dims))
    if len(raw) != n * dtype.itemsize:
        raise ConfigError(f"model_warmup '{warm}' input '{name}': {path} has {len(raw)} bytes, one sample of "
                          f"dims {list(dims)} of {dtype} needs {n * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype).reshape(dims)


def warmup_requests(model) -> list[tuple[str, int, InferenceRequest]]:
    """``(name, count, request)`` for each ``model_warmup`` entry of ``model`` (a ModelVersion),
    checked against the model's config like a client's request."""
    cfg = model.config
    out = []
    for w in cfg.get("model_warmup", []):
        batch = max(1, w["batch_size"]) if cfg.max_batch_size else 0
        if not cfg.max_batch_size and w["batch_size"]:
            raise ConfigError(f"model_warmup '{w['name']}': batch_size must be 0 for a model without batching")
        inputs = {}
        for name, spec in w["inputs"].items():
            sample = _sample(spec, name, w["name"], model.model_dir)
            inputs[name] = np.repeat(sample[None], batch, axis=0) if batch else sample
        req = InferenceRequest(cfg.name, inputs, sequence_id=1, sequence_start=True, sequence_end=True)
        try:
            validate_request(cfg, req)
        except ServingError as exc:
            raise ConfigError(f"model_warmup '{w['name']}' does not fit model '{cfg.name}': {exc}") from None
        out.append((w["name"], w["count"], req))
    return out


async def run_warmup(model) -> int:
    """Run every warm-up request ``count`` times on every instance of ``model``; returns how many
    executions ran. A failure raises :class:`ConfigError` naming the warm-up and the instance."""
    requests = warmup_requests(model)
    if not requests:
        return 0
    loop = asyncio.get_running_loop()
    extras_for = getattr(model.scheduler, "extras_for_warmup", None)

    async def warm(instance):
        n = 0
        for name, count, req in requests:
            extra, extra_out = extras_for(1) if extras_for else (None, ())
            for _ in range(count):
                try:
                    await loop.run_in_executor(instance.executor, instance.execute_batch, [req], extra, extra_out)
                except ServingError as exc:
                    raise ConfigError(f"model_warmup '{name}' failed on instance {instance.name}: {exc}") from None
                n += 1
        return n

    return sum(await asyncio.gather(*(warm(i) for i in model.instances)))
