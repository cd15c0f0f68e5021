"""The KServe v2 (Open Inference) protocol's infer messages, with Triton's binary tensor extension.

A request body is JSON::

    {"id": "42",
     "parameters": {"sequence_id": 7, "sequence_start": true, "priority": 1, "timeout": 5000,
                    "binary_data_output": true},
     "inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [1, 64], "data": [0.0, ...]}],
     "outputs": [{"name": "LOGITS", "parameters": {"binary_data": true}}]}

``data`` is the tensor in row-major order, flat or nested; ``BYTES`` elements are strings.

**Binary tensor extension.** Sending arrays as JSON numbers is slow (a float becomes ~10 characters
to print and parse), so Triton lets a tensor travel as raw bytes after the JSON: the header
``Inference-Header-Content-Length: N`` says the first N bytes of the body are the JSON, and an input
with ``"parameters": {"binary_data_size": n}`` and no ``data`` takes the next n bytes, in the order
the inputs are listed (little-endian, row-major; ``BYTES`` elements as a 4-byte length then the
bytes). Outputs come back the same way when requested with ``"binary_data": true`` (per output) or
``"binary_data_output": true`` (request parameter, for all outputs): the response then carries
``Inference-Header-Content-Length`` and each binary output has ``"binary_data_size"`` instead of
``data``. This is what ``tritonclient`` sends with ``binary_data=True`` and what ``perf_analyzer``
uses.

Request parameters the server acts on: ``sequence_id`` (int or string), ``sequence_start``,
``sequence_end``, ``priority``, ``timeout`` (microseconds), ``binary_data_output``. Others are kept
in :attr:`InferenceRequest.parameters`. Every malformed message is an :class:`InvalidArgument` (400)
that says what is wrong and where.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .config import ModelConfig
from .datatypes import WIRE_TO_NUMPY, deserialize_bytes, serialize_bytes, wire_to_numpy
from .errors import InvalidArgument, Unsupported
from .request import InferenceRequest, RequestedOutput, format_shape

__all__ = ["decode_infer_request", "encode_infer_response", "parse_header_length", "HEADER_LENGTH"]

HEADER_LENGTH = "Inference-Header-Content-Length"


def parse_header_length(value: str | None, body_length: int) -> int | None:
    """Validate the ``Inference-Header-Content-Length`` header against the body's length."""
    if value is None:
        return None
    try:
        n = int(value.strip())
    except ValueError:
        raise InvalidArgument(f"{HEADER_LENGTH} must be an integer, got {value!r}") from None
    if n < 0 or n > body_length:
        raise InvalidArgument(f"{HEADER_LENGTH} is {n}, but the request body has {body_length} bytes")
    return n


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _param_bool(params: dict, key: str, where: str) -> bool:
    v = params.get(key, False)
    if not isinstance(v, bool):
        raise InvalidArgument(f"{where} parameter '{key}' must be true or false, got {v!r}")
    return v


def _param_uint(params: dict, key: str, where: str) -> int:
    v = params.get(key, 0)
    if not _is_int(v) or v < 0:
        raise InvalidArgument(f"{where} parameter '{key}' must be a non-negative integer, got {v!r}")
    return v


def _flatten_strings(data, name: str) -> list:
    out = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            out.append(item.encode("utf-8"))
        else:
            raise InvalidArgument(f"input '{name}': BYTES data must be strings, got {item!r}")
    return out


def _json_tensor(data, datatype: str, shape: tuple, name: str) -> np.ndarray:
    n = math.prod(shape)
    if datatype == "BYTES":
        flat = _flatten_strings(data, name)
        if len(flat) != n:
            raise InvalidArgument(f"unexpected number of elements for input '{name}': shape "
                                  f"{format_shape(shape)} needs {n}, the data has {len(flat)}")
        arr = np.empty(n, dtype=object)
        arr[:] = flat
        return arr.reshape(shape)
    if isinstance(data, (int, float)):
        data = [data]
    if not isinstance(data, list):
        raise InvalidArgument(f"input '{name}': 'data' must be a list of values, got {json.dumps(data)[:40]}")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"input '{name}': data is not a rectangular array of numbers ({exc})") from None
    kind = arr.dtype.kind
    dtype = WIRE_TO_NUMPY[datatype]
    if arr.size != n:
        raise InvalidArgument(f"unexpected number of elements for input '{name}': shape "
                              f"{format_shape(shape)} needs {n}, the data has {arr.size}")
    if n == 0:
        return np.zeros(shape, dtype=dtype)
    if dtype.kind == "b":
        ok = kind == "b"
    elif dtype.kind in "iu":
        ok = kind in "iu"
    else:
        ok = kind in "iuf"
    if not ok:
        want = {"b": "true/false values", "i": "integers", "u": "integers"}.get(dtype.kind, "numbers")
        raise InvalidArgument(f"input '{name}' has datatype {datatype}, so its data must be {want}; got "
                              f"{'strings' if kind in 'US' else 'null or mixed values' if kind == 'O' else arr.dtype.name + ' values'}")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            raise InvalidArgument(f"input '{name}': value {lo if lo < info.min else hi} is out of range for "
                                  f"{datatype} [{info.min}, {info.max}]")
    return arr.astype(dtype, copy=False).reshape(shape)


def decode_infer_request(body: bytes, header_length: int | None, model_name: str,
                         model_version: str = "") -> InferenceRequest:
    """Decode an infer request body (JSON, or JSON + binary tensors) into an :class:`InferenceRequest`.

    Checks the message's structure and that binary sizes and element counts match the shapes;
    checking against the model's config is :func:`~.request.validate_request`'s job."""
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        header, binary = body[:header_length], memoryview(body)[header_length:]
    try:
        msg = json.loads(header)
    except (ValueError, UnicodeDecodeError) as exc:
        hint = "" if header_length is not None or not body or body[:1] == b"{" else (
            f" (a binary body needs the {HEADER_LENGTH} header)")
        raise InvalidArgument(f"failed to parse the request JSON buffer: {exc}{hint}") from None
    if not isinstance(msg, dict):
        raise InvalidArgument("the request JSON must be an object")
    rid = msg.get("id", "")
    if not isinstance(rid, str):
        raise InvalidArgument(f"request 'id' must be a string, got {rid!r}")
    params = msg.get("parameters", {})
    if not isinstance(params, dict):
        raise InvalidArgument("request 'parameters' must be an object")
    inputs_json = msg.get("inputs")
    if inputs_json is None:
        raise InvalidArgument("Unable to find 'inputs' in the request JSON")
    if not isinstance(inputs_json, list) or not inputs_json:
        raise InvalidArgument("request 'inputs' must be a non-empty list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for i, spec in enumerate(inputs_json):
        if not isinstance(spec, dict):
            raise InvalidArgument(f"inputs[{i}] must be an object")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"inputs[{i}] needs a 'name' (a string)")
        if name in inputs:
            raise InvalidArgument(f"input '{name}' is given more than once")
        datatype = spec.get("datatype")
        if not isinstance(datatype, str):
            raise InvalidArgument(f"input '{name}' needs a 'datatype' (e.g. \"FP32\")")
        dtype = wire_to_numpy(datatype)
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise InvalidArgument(f"input '{name}' needs a 'shape': a list of non-negative integers, got "
                                  f"{shape!r}")
        shape = tuple(shape)
        iparams = spec.get("parameters", {})
        if not isinstance(iparams, dict):
            raise InvalidArgument(f"input '{name}': 'parameters' must be an object")
        if "shared_memory_region" in iparams:
            raise Unsupported(f"input '{name}': shared memory is not supported by this server")
        if "binary_data_size" in iparams:
            if "data" in spec:
                raise InvalidArgument(f"input '{name}' has both 'data' and binary_data_size")
            size = _param_uint(iparams, "binary_data_size", f"input '{name}'")
            if offset + size > len(binary):
                raise InvalidArgument(
                    f"input '{name}' has binary_data_size {size}, but only {len(binary) - offset} bytes of "
                    f"binary data remain after the JSON header" + ("" if header_length is not None else
                                                                   f" (no {HEADER_LENGTH} header was sent)"))
            chunk = binary[offset:offset + size]
            offset += size
            n = math.prod(shape)
            if dtype.kind == "O":
                arr = deserialize_bytes(chunk, n).reshape(shape)
            else:
                if size != n * dtype.itemsize:
                    raise InvalidArgument(f"input '{name}': shape {format_shape(shape)} of {datatype} needs "
                                          f"{n * dtype.itemsize} bytes, binary_data_size is {size}")
                # The wire is little-endian; a view of the body, no copy (read-only, like any input).
                arr = np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).reshape(shape)
                if not arr.dtype.isnative:
                    arr = arr.astype(dtype)
        elif "data" in spec:
            arr = _json_tensor(spec["data"], datatype, shape, name)
        else:
            raise InvalidArgument(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
        inputs[name] = arr
    if offset != len(binary):
        raise InvalidArgument(f"the request has {len(binary) - offset} bytes of binary data that no input "
                              "claims (check binary_data_size and the header length)")
    outputs = None
    binary_default = _param_bool(params, "binary_data_output", "request")
    if "outputs" in msg:
        outs = msg["outputs"]
        if not isinstance(outs, list):
            raise InvalidArgument("request 'outputs' must be a list")
        outputs = []
        for i, o in enumerate(outs):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise InvalidArgument(f"outputs[{i}] must be an object with a 'name'")
            oparams = o.get("parameters", {})
            if not isinstance(oparams, dict):
                raise InvalidArgument(f"output '{o['name']}': 'parameters' must be an object")
            if oparams.get("classification"):
                raise Unsupported(f"output '{o['name']}': the classification extension is not supported")
            if "shared_memory_region" in oparams:
                raise Unsupported(f"output '{o['name']}': shared memory is not supported by this server")
            binary_out = (_param_bool(oparams, "binary_data", f"output '{o['name']}'")
                          if "binary_data" in oparams else binary_default)
            outputs.append(RequestedOutput(o["name"], binary_out))
    seq_id = params.get("sequence_id", 0)
    if not (_is_int(seq_id) and seq_id >= 0) and not isinstance(seq_id, str):
        raise InvalidArgument(f"request parameter 'sequence_id' must be a non-negative integer or a string, "
                              f"got {seq_id!r}")
    return InferenceRequest(
        model_name=model_name, model_version=model_version, inputs=inputs, outputs=outputs, id=rid,
        priority=_param_uint(params, "priority", "request"), timeout_us=_param_uint(params, "timeout", "request"),
        sequence_id=seq_id, sequence_start=_param_bool(params, "sequence_start", "request"),
        sequence_end=_param_bool(params, "sequence_end", "request"),
        parameters={**params, "binary_data_output": binary_default})


def _to_json_data(arr: np.ndarray) -> list:
    flat = arr.reshape(-1)
    if flat.dtype.kind == "O":
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in flat]
    return flat.tolist()


def encode_infer_response(config: ModelConfig, request: InferenceRequest, outputs: dict[str, np.ndarray],
                          version: str) -> tuple[bytes, dict[str, str]]:
    """The response body and headers for ``outputs`` (all the model's outputs; only the requested
    ones are sent, in the order requested, or the config's order when none was named)."""
    wanted = request.outputs
    if wanted is None:
        binary = bool(request.parameters.get("binary_data_output", False))
        wanted = [RequestedOutput(t.name, binary) for t in config.outputs]
    entries, blobs = [], []
    for out in wanted:
        arr = outputs[out.name]
        spec = config.output_by_name[out.name]
        entry: dict[str, Any] = {"name": out.name, "datatype": spec.datatype, "shape": list(arr.shape)}
        if out.binary:
            raw = serialize_bytes(arr) if spec.datatype == "BYTES" else np.ascontiguousarray(
                arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = _to_json_data(arr)
        entries.append(entry)
    msg: dict[str, Any] = {"model_name": config.name, "model_version": version}
    if request.id:
        msg["id"] = request.id
    msg["outputs"] = entries
    header = json.dumps(msg, separators=(",", ":")).encode("utf-8")
    if blobs:
        return header + b"".join(blobs), {HEADER_LENGTH: str(len(header)),
                                          "Content-Type": "application/octet-stream"}
    return header, {"Content-Type": "application/json"}
