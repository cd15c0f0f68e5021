"""Helpers to build small model repositories, for the tests and the lab.

:func:`write_model` writes a model folder; :data:`PROBE_MODEL` is a ``numpy``-backend model that
makes scheduling visible: ``Y = 2 X + 1`` per row, and ``ACTIVE``, how many executions of the model
(over all its instances) were running when this one started. An optional input ``DELAY_MS`` makes
the execution sleep that long (the largest value in the batch), on top of the ``delay_ms``
parameter. :func:`probe_config` writes its config with the scheduling options under test::

    write_model(repo, "probe", probe_config("probe", dynamic_batching="max_queue_delay_microseconds: 0"),
                PROBE_MODEL)
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["write_model", "probe_config", "copy_example_models", "PROBE_MODEL"]

PROBE_MODEL = '''\
import threading
import time

import numpy as np

_lock = threading.Lock()
_active = 0


class Model:
    def initialize(self, args):
        self.delay = float(args["parameters"].get("delay_ms", "0")) / 1000.0

    def execute(self, inputs):
        global _active
        with _lock:
            _active += 1
            active = _active
        try:
            delay = self.delay
            if "DELAY_MS" in inputs:
                delay += float(inputs["DELAY_MS"].max()) / 1000.0
            if delay:
                time.sleep(delay)
            x = inputs["X"]
            return {"Y": (2 * x + 1).astype(np.float32),
                    "ACTIVE": np.full((len(x), 1), active, dtype=np.int32)}
        finally:
            with _lock:
                _active -= 1
'''


def write_model(repo: str | Path, name: str, config: str, model_py: str | None = None, version: int = 1,
                files: dict[str, bytes] | None = None) -> Path:
    """Write ``<repo>/<name>/config.pbtxt`` and ``<version>/model.py`` (if given); ``files`` maps
    paths relative to the model folder to contents. Returns the model folder."""
    folder = Path(repo) / name
    (folder / str(version)).mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(config)
    if model_py is not None:
        (folder / str(version) / "model.py").write_text(model_py)
    for rel, data in (files or {}).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def probe_config(name: str = "probe", *, max_batch_size: int = 8, dynamic_batching: str | None = "",
                 instances: int = 1, delay_ms: float = 0, extra: str = "", rate_limiter: str = "") -> str:
    """Config text for :data:`PROBE_MODEL`: ``dynamic_batching`` is the body of the
    ``dynamic_batching { }`` block (``None``: no dynamic batching); ``rate_limiter`` the body of the
    instance group's ``rate_limiter { }``; ``extra`` more top-level fields."""
    batching = f"dynamic_batching {{ {dynamic_batching} }}" if dynamic_batching is not None else ""
    limiter = f"rate_limiter {{ {rate_limiter} }}" if rate_limiter else ""
    return f"""
name: "{name}"
backend: "numpy"
max_batch_size: {max_batch_size}
input [
  {{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "DELAY_MS" data_type: TYPE_INT32 dims: [ 1 ] optional: true }}
]
output [
  {{ name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "ACTIVE" data_type: TYPE_INT32 dims: [ 1 ] }}
]
parameters {{ key: "delay_ms" value: {{ string_value: "{delay_ms}" }} }}
instance_group [ {{ count: {instances} kind: KIND_CPU {limiter} }} ]
{batching}
{extra}
"""


def copy_example_models(repo: str | Path, names: list[str]) -> None:
    """Copy models of the shipped example repository into ``repo``."""
    from .server import DEFAULT_MODEL_REPOSITORY

    for name in names:
        shutil.copytree(DEFAULT_MODEL_REPOSITORY / name, Path(repo) / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
