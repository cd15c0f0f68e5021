"""An inference request inside the server, and its check against the model's config.

The HTTP front end (:mod:`.http`) decodes the KServe v2 wire format into an
:class:`InferenceRequest`; :func:`validate_request` then checks it against the model's
:class:`~.config.ModelConfig` the way Triton does before the request may enter a scheduler: every
required input present and no unknown one, each with the declared datatype and a shape that matches
``dims`` (``-1`` matches any size), for a batching model (``max_batch_size > 0``) a leading batch
dimension of 1 to ``max_batch_size`` that all inputs share, and requested outputs that exist. Messages
follow Triton's wording so that they read the same to someone who knows Triton.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import ModelConfig
from .datatypes import numpy_to_wire
from .errors import InvalidArgument

__all__ = ["InferenceRequest", "RequestedOutput", "validate_request", "format_shape"]


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for; ``binary`` selects the binary tensor extension for it."""

    name: str
    binary: bool = False


@dataclass(eq=False)
class InferenceRequest:
    """One request: named input arrays plus the scheduling parameters of the KServe v2 protocol.

    ``outputs=None`` asks for every output. ``priority`` 0 means the model's default level;
    ``timeout_us`` 0 means the queue policy's default timeout. ``sequence_id`` (an int, or a str for
    string correlation IDs) 0/"" means "not part of a sequence". ``batch_size`` and ``arrival_ns``
    are filled in by the server.
    """

    model_name: str
    inputs: dict[str, np.ndarray]
    model_version: str = ""
    outputs: list[RequestedOutput] | None = None
    id: str = ""
    priority: int = 0
    timeout_us: int = 0
    sequence_id: int | str = 0
    sequence_start: bool = False
    sequence_end: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 0
    arrival_ns: int = field(default_factory=time.monotonic_ns)
    #: The request's :class:`~.trace.Trace` when it is traced, else None.
    trace: Any = field(default=None, repr=False)

    def shape_key(self) -> tuple:
        """What must be equal for two requests to share a batch: every input's non-batch shape."""
        start = 1 if self.batch_size else 0
        return tuple(sorted((k, v.shape[start:]) for k, v in self.inputs.items()))


def format_shape(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def _shape_matches(shape: tuple, dims: tuple) -> bool:
    return len(shape) == len(dims) and all(d == -1 or d == s for s, d in zip(shape, dims))


def validate_request(config: ModelConfig, request: InferenceRequest, *, extra_inputs=()) -> None:
    """Check ``request`` against ``config`` and set ``request.batch_size`` (0 for a model without
    batching). Raises :class:`InvalidArgument` naming the first problem. ``extra_inputs`` are names
    the scheduler supplies itself (sequence control inputs), which a client may not send."""
    model = config.name
    given = request.inputs
    expected = config.input_by_name
    for name in given:
        if name not in expected or name in extra_inputs:
            raise InvalidArgument(f"unexpected inference input '{name}' for model '{model}'")
    required = [t.name for t in config.inputs if not t.optional]
    missing = [n for n in required if n not in given]
    if missing:
        raise InvalidArgument(
            f"expected {len(required)} inputs but got {len(given)} inputs for model '{model}'. "
            f"Got input(s) {sorted(given)}, but missing required input(s) {missing}. "
            "Please provide all required input(s).")
    batching = config.max_batch_size > 0
    batch_size = None
    for name, array in given.items():
        spec = expected[name]
        got_type = numpy_to_wire(array.dtype)
        if got_type != spec.datatype:
            raise InvalidArgument(f"inference input '{name}' data-type is '{got_type}', but model "
                                  f"'{model}' expects '{spec.datatype}'")
        shape = array.shape
        if batching:
            if len(shape) < 1:
                raise InvalidArgument(f"input '{name}' for model '{model}' needs a batch dimension: "
                                      f"expected {format_shape((-1, *spec.dims))}, got {format_shape(shape)}")
            b = shape[0]
            if b < 1:
                raise InvalidArgument(f"inference request batch-size must be >= 1 for '{model}', "
                                      f"input '{name}' has shape {format_shape(shape)}")
            if b > config.max_batch_size:
                raise InvalidArgument(f"inference request batch-size must be <= {config.max_batch_size} "
                                      f"for '{model}', got {b}")
            if batch_size is None:
                batch_size = b
            elif b != batch_size:
                raise InvalidArgument(f"input '{name}' batch size {b} does not match the batch size "
                                      f"{batch_size} of the other inputs for '{model}'")
            inner, full = shape[1:], (-1, *spec.dims)
        else:
            inner, full = shape, spec.dims
        if not _shape_matches(inner, spec.dims):
            raise InvalidArgument(f"unexpected shape for input '{name}' for model '{model}'. "
                                  f"Expected {format_shape(full)}, got {format_shape(shape)}")
    if request.outputs is not None:
        seen = set()
        for out in request.outputs:
            if out.name not in config.output_by_name:
                raise InvalidArgument(f"unexpected inference output '{out.name}' for model '{model}'")
            if out.name in seen:
                raise InvalidArgument(f"output '{out.name}' is requested twice")
            seen.add(out.name)
    request.batch_size = (batch_size or 1) if batching else 0
