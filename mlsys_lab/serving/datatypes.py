"""Tensor data types under their three names: Triton's config (``TYPE_FP32``), the KServe v2 wire
protocol (``FP32``) and NumPy (``float32``).

``BYTES`` tensors (``TYPE_STRING`` in a config) are NumPy ``object`` arrays of ``bytes``; on the wire
their binary form is, per element, a 4-byte little-endian length followed by the bytes (the layout
``tritonclient.utils.serialize_byte_tensor`` writes).
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import InvalidArgument

__all__ = ["CONFIG_TO_WIRE", "WIRE_TO_CONFIG", "WIRE_TO_NUMPY", "config_to_wire", "wire_to_numpy",
           "numpy_to_wire", "serialize_bytes", "deserialize_bytes", "element_size"]

#: Triton config data type -> KServe v2 datatype.
CONFIG_TO_WIRE = {
    "TYPE_BOOL": "BOOL",
    "TYPE_UINT8": "UINT8", "TYPE_UINT16": "UINT16", "TYPE_UINT32": "UINT32", "TYPE_UINT64": "UINT64",
    "TYPE_INT8": "INT8", "TYPE_INT16": "INT16", "TYPE_INT32": "INT32", "TYPE_INT64": "INT64",
    "TYPE_FP16": "FP16", "TYPE_FP32": "FP32", "TYPE_FP64": "FP64",
    "TYPE_STRING": "BYTES",
}
WIRE_TO_CONFIG = {v: k for k, v in CONFIG_TO_WIRE.items()}

#: KServe v2 datatype -> NumPy dtype (BYTES are object arrays of bytes).
WIRE_TO_NUMPY = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8), "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_NUMPY_TO_WIRE = {v: k for k, v in WIRE_TO_NUMPY.items() if k != "BYTES"}


def config_to_wire(data_type: str) -> str:
    """``"TYPE_FP32"`` -> ``"FP32"``."""
    return CONFIG_TO_WIRE[data_type]


def wire_to_numpy(datatype: str) -> np.dtype:
    """``"FP32"`` -> ``dtype('float32')``; an unknown name is an :class:`InvalidArgument`."""
    try:
        return WIRE_TO_NUMPY[datatype]
    except (KeyError, TypeError):
        raise InvalidArgument(f"unsupported datatype {datatype!r}; expected one of "
                              f"{', '.join(WIRE_TO_NUMPY)}") from None


def numpy_to_wire(dtype) -> str:
    """``dtype('float32')`` -> ``"FP32"``; object and bytes/str arrays are ``"BYTES"``."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return "BYTES"
    try:
        return _NUMPY_TO_WIRE[dtype]
    except KeyError:
        raise InvalidArgument(f"NumPy dtype {dtype} has no KServe v2 datatype") from None


def element_size(datatype: str) -> int | None:
    """Bytes per element of a fixed-size datatype; ``None`` for ``BYTES``."""
    dt = wire_to_numpy(datatype)
    return None if dt.kind == "O" else dt.itemsize


def serialize_bytes(array: np.ndarray) -> bytes:
    """The binary form of a BYTES tensor: each element (row-major) as <uint32 length><bytes>."""
    parts = []
    for item in array.reshape(-1):
        b = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def deserialize_bytes(buffer: bytes | memoryview, count: int) -> np.ndarray:
    """Read ``count`` length-prefixed elements from ``buffer``; the buffer must hold exactly them."""
    out = np.empty(count, dtype=object)
    view = memoryview(buffer)
    pos = 0
    for i in range(count):
        if pos + 4 > len(view):
            raise InvalidArgument(f"BYTES tensor data ends after {i} of {count} elements")
        (n,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if pos + n > len(view):
            raise InvalidArgument(f"BYTES element {i} claims {n} bytes but only {len(view) - pos} remain")
        out[i] = bytes(view[pos:pos + n])
        pos += n
    if pos != len(view):
        raise InvalidArgument(f"BYTES tensor data has {len(view) - pos} bytes after its {count} elements")
    return out
