"""Model configuration with Triton's field names and meanings: ``config.pbtxt`` (or ``config.json``).

Triton describes a model in ``<repository>/<model>/config.pbtxt``, a ``ModelConfig`` protobuf message
written in protobuf's *text format*::

    name: "digits_mlp"
    backend: "mlp"
    max_batch_size: 64
    input [ { name: "INPUT"  data_type: TYPE_FP32  dims: [ 64 ] } ]
    output [ { name: "LOGITS"  data_type: TYPE_FP32  dims: [ 10 ] } ]
    dynamic_batching { preferred_batch_size: [ 16, 32 ]  max_queue_delay_microseconds: 200 }
    instance_group [ { count: 2  kind: KIND_CPU } ]

This module reads that format with a small hand-written parser (no protobuf dependency) and checks it
against a schema of the part of Triton's ``model_config.proto`` that this server implements, so that a
misspelt field, a string where a number belongs or a field given twice is an error naming the file,
line and field, as it is in Triton. A ``config.json`` holding the same message in JSON (the form
``GET /v2/models/<m>/config`` returns) is accepted instead of ``config.pbtxt``.

The text format, as far as configs use it: ``field: value`` for scalars (numbers, ``"strings"`` or
``'strings'``, enum names such as ``TYPE_FP32``, ``true``/``false``); ``field { ... }`` or
``field: { ... }`` (or ``< ... >``) for a message; a repeated field either written once per element or
as a list ``field: [ a, b ]`` / ``field [ { ... }, { ... } ]``; a map written as repeated
``field { key: "k" value: ... }``; ``#`` starts a comment; ``,`` and ``;`` between fields are optional.

:func:`load_config` returns a :class:`ModelConfig`: ``.to_dict()`` is the normalised message in
Triton's JSON form (defaults filled in, e.g. ``instance_group``, ``version_policy`` and the
``default_queue_policy`` of ``dynamic_batching``), and typed properties give the parts the scheduler
uses.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .datatypes import CONFIG_TO_WIRE, WIRE_TO_NUMPY
from .errors import ConfigError

__all__ = ["parse_pbtxt", "load_config", "config_from_text", "config_from_dict", "ModelConfig",
           "TensorConfig", "QueuePolicy", "ConfigError", "SCHEMA"]

# --------------------------------------------------------------------------------------------------
# Text-format tokenizer and parser: text -> nested lists of fields, no schema yet.
# --------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?)
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}\[\]<>:,;])
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b",
            "f": "\f", "v": "\v", "?": "?"}


@dataclass(frozen=True)
class _Tok:
    kind: str      # "string", "number", "ident", "punct", "eof"
    text: str
    line: int
    col: int


@dataclass
class _Scalar:
    kind: str      # "string", "number" or "ident"
    value: Any     # decoded str for strings, the source text otherwise
    line: int


@dataclass
class _Message:
    fields: list   # [(name, value, line)], value = _Scalar | _Message | list of those
    line: int


def _unescape(body: str, line: int, where: str) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(chr(int(m.group(), 8)))
            i += 1 + len(m.group())
        elif nxt in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            if not m:
                raise ConfigError(f"{where}:{line}: bad \\x escape in string")
            out.append(chr(int(m.group(), 16)))
            i += 2 + len(m.group())
        else:
            raise ConfigError(f"{where}:{line}: unknown escape \\{nxt} in string")
    return "".join(out)


def _tokenize(text: str, where: str) -> list[_Tok]:
    toks, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ConfigError(f"{where}:{line}:{pos - line_start + 1}: unexpected character "
                              f"{text[pos]!r}")
        kind = m.lastgroup
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), line, pos - line_start + 1))
        newlines = m.group().count("\n")
        if newlines:
            line += newlines
            line_start = m.start() + m.group().rfind("\n") + 1
        pos = m.end()
    toks.append(_Tok("eof", "", line, pos - line_start + 1))
    return toks


class _Parser:
    def __init__(self, text: str, where: str):
        self.toks = _tokenize(text, where)
        self.i = 0
        self.where = where

    def error(self, tok: _Tok, msg: str) -> ConfigError:
        got = "end of file" if tok.kind == "eof" else repr(tok.text)
        return ConfigError(f"{self.where}:{tok.line}:{tok.col}: {msg}, got {got}")

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.peek().kind == "punct" and self.peek().text == text:
            self.i += 1
            return True
        return False

    def message(self, close: str | None, line: int) -> _Message:
        fields = []
        while True:
            tok = self.peek()
            if close is None and tok.kind == "eof":
                return _Message(fields, line)
            if close is not None and tok.kind == "punct" and tok.text == close:
                self.take()
                return _Message(fields, line)
            if tok.kind != "ident":
                raise self.error(tok, "expected a field name" + (f" or {close!r}" if close else ""))
            self.take()
            colon = self.accept(":")
            value = self.value(colon, tok)
            fields.append((tok.text, value, tok.line))
            if not self.accept(","):
                self.accept(";")

    def value(self, colon: bool, name: _Tok):
        tok = self.peek()
        if tok.kind == "punct" and tok.text in "{<":
            self.take()
            return self.message("}" if tok.text == "{" else ">", tok.line)
        if tok.kind == "punct" and tok.text == "[":
            self.take()
            items = []
            if self.accept("]"):
                return items
            while True:
                t = self.peek()
                if t.kind == "punct" and t.text in "{<":
                    self.take()
                    items.append(self.message("}" if t.text == "{" else ">", t.line))
                else:
                    items.append(self.scalar())
                if self.accept("]"):
                    return items
                if not self.accept(","):
                    raise self.error(self.peek(), f"expected ',' or ']' in the list of {name.text!r}")
        if not colon:
            raise self.error(tok, f"expected ':' or '{{' after field name {name.text!r}")
        return self.scalar()

    def scalar(self) -> _Scalar:
        tok = self.take()
        if tok.kind == "string":
            # Adjacent string literals concatenate, as in C and protobuf.
            parts = [_unescape(tok.text[1:-1], tok.line, self.where)]
            while self.peek().kind == "string":
                t = self.take()
                parts.append(_unescape(t.text[1:-1], t.line, self.where))
            return _Scalar("string", "".join(parts), tok.line)
        if tok.kind in ("number", "ident"):
            return _Scalar(tok.kind, tok.text, tok.line)
        raise self.error(tok, "expected a value")


def parse_pbtxt(text: str, where: str = "config.pbtxt") -> _Message:
    """Parse protobuf text format into an untyped tree (see the module docstring for the syntax).

    The result still needs a schema to know which fields repeat; :func:`config_from_text` applies
    Triton's. Syntax errors raise :class:`ConfigError` naming ``where``, the line and the column.
    """
    p = _Parser(text, where)
    return p.message(None, 1)


# --------------------------------------------------------------------------------------------------
# Schema: the part of Triton's model_config.proto this server implements.
# A field is (type, repeated). Types: "string", "int", "uint", "float", "bool", "enum:<Enum>",
# "msg:<Message>", "map:<key type>:<value type>".
# --------------------------------------------------------------------------------------------------

ENUMS = {
    "DataType": ["TYPE_INVALID", *CONFIG_TO_WIRE, "TYPE_BF16"],
    "Format": ["FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW"],
    "Kind": ["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"],
    "TimeoutAction": ["REJECT", "DELAY"],
    "ControlKind": ["CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_READY", "CONTROL_SEQUENCE_END",
                    "CONTROL_SEQUENCE_CORRID"],
}

_R = True   # repeated
SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "ModelConfig": {
        "name": ("string", False), "platform": ("string", False), "backend": ("string", False),
        "version_policy": ("msg:ModelVersionPolicy", False), "max_batch_size": ("int", False),
        "input": ("msg:ModelInput", _R), "output": ("msg:ModelOutput", _R),
        "instance_group": ("msg:ModelInstanceGroup", _R), "default_model_filename": ("string", False),
        "dynamic_batching": ("msg:ModelDynamicBatching", False),
        "sequence_batching": ("msg:ModelSequenceBatching", False),
        "ensemble_scheduling": ("msg:ModelEnsembling", False),
        "parameters": ("map:string:msg:ModelParameter", False),
        "model_warmup": ("msg:ModelWarmup", _R),
        "model_transaction_policy": ("msg:ModelTransactionPolicy", False),
    },
    "ModelVersionPolicy": {"latest": ("msg:Latest", False), "all": ("msg:All", False),
                           "specific": ("msg:Specific", False)},
    "Latest": {"num_versions": ("uint", False)},
    "All": {},
    "Specific": {"versions": ("int", _R)},
    "ModelTensorReshape": {"shape": ("int", _R)},
    "ModelInput": {
        "name": ("string", False), "data_type": ("enum:DataType", False), "format": ("enum:Format", False),
        "dims": ("int", _R), "reshape": ("msg:ModelTensorReshape", False),
        "is_shape_tensor": ("bool", False), "allow_ragged_batch": ("bool", False),
        "optional": ("bool", False),
    },
    "ModelOutput": {
        "name": ("string", False), "data_type": ("enum:DataType", False), "dims": ("int", _R),
        "reshape": ("msg:ModelTensorReshape", False), "label_filename": ("string", False),
        "is_shape_tensor": ("bool", False),
    },
    "ModelInstanceGroup": {
        "name": ("string", False), "kind": ("enum:Kind", False), "count": ("int", False),
        "gpus": ("int", _R), "rate_limiter": ("msg:ModelRateLimiter", False),
    },
    "ModelRateLimiter": {"resources": ("msg:Resource", _R), "priority": ("uint", False)},
    "Resource": {"name": ("string", False), "global": ("bool", False), "count": ("uint", False)},
    "ModelQueuePolicy": {
        "timeout_action": ("enum:TimeoutAction", False), "default_timeout_microseconds": ("uint", False),
        "allow_timeout_override": ("bool", False), "max_queue_size": ("uint", False),
    },
    "ModelDynamicBatching": {
        "preferred_batch_size": ("int", _R), "max_queue_delay_microseconds": ("uint", False),
        "preserve_ordering": ("bool", False), "priority_levels": ("uint", False),
        "default_priority_level": ("uint", False), "default_queue_policy": ("msg:ModelQueuePolicy", False),
        "priority_queue_policy": ("map:uint:msg:ModelQueuePolicy", False),
    },
    "StrategyDirect": {"max_queue_delay_microseconds": ("uint", False),
                       "minimum_slot_utilization": ("float", False)},
    "StrategyOldest": {"max_candidate_sequences": ("int", False), "preferred_batch_size": ("int", _R),
                       "max_queue_delay_microseconds": ("uint", False), "preserve_ordering": ("bool", False)},
    "Control": {"kind": ("enum:ControlKind", False), "int32_false_true": ("int", _R),
                "fp32_false_true": ("float", _R), "bool_false_true": ("bool", _R),
                "data_type": ("enum:DataType", False)},
    "ControlInput": {"name": ("string", False), "control": ("msg:Control", _R)},
    "InitialState": {"data_type": ("enum:DataType", False), "dims": ("int", _R),
                     "zero_data": ("bool", False), "data_file": ("string", False), "name": ("string", False)},
    "State": {"input_name": ("string", False), "output_name": ("string", False),
              "data_type": ("enum:DataType", False), "dims": ("int", _R),
              "initial_state": ("msg:InitialState", _R)},
    "ModelSequenceBatching": {
        "direct": ("msg:StrategyDirect", False), "oldest": ("msg:StrategyOldest", False),
        "max_sequence_idle_microseconds": ("uint", False), "control_input": ("msg:ControlInput", _R),
        "state": ("msg:State", _R),
    },
    "Step": {"model_name": ("string", False), "model_version": ("int", False),
             "input_map": ("map:string:string", False), "output_map": ("map:string:string", False)},
    "ModelEnsembling": {"step": ("msg:Step", _R)},
    "ModelParameter": {"string_value": ("string", False)},
    "WarmupInput": {"data_type": ("enum:DataType", False), "dims": ("int", _R),
                    "zero_data": ("bool", False), "random_data": ("bool", False),
                    "input_data_file": ("string", False)},
    "ModelWarmup": {"name": ("string", False), "batch_size": ("uint", False),
                    "inputs": ("map:string:msg:WarmupInput", False), "count": ("uint", False)},
    "ModelTransactionPolicy": {"decoupled": ("bool", False)},
}

_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
_BOOL_WORDS = {"true": True, "True": True, "t": True, "1": True,
               "false": False, "False": False, "f": False, "0": False}


def _close_match(name: str, options) -> str:
    import difflib

    m = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {m[0]!r}?)" if m else ""


class _Converter:
    """Turns an untyped tree (text format) or a JSON object into typed plain Python values."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, line: int | None, path: str, msg: str) -> ConfigError:
        loc = f"{self.where}:{line}" if line else self.where
        return ConfigError(f"{loc}: {path}: {msg}")

    # ---- text format
    def message(self, node: _Message, type_name: str, path: str) -> dict:
        schema = SCHEMA[type_name]
        out: dict[str, Any] = {}
        for name, value, line in node.fields:
            fpath = f"{path}.{name}" if path else name
            if name not in schema:
                raise self.fail(line, fpath, f"unknown field of {type_name}"
                                + _close_match(name, schema))
            ftype, repeated = schema[name]
            if ftype.startswith("map:"):
                entries = value if isinstance(value, list) else [value]
                mapping = out.setdefault(name, {})
                for entry in entries:
                    k, v = self.map_entry(entry, ftype, fpath, line)
                    if k in mapping:
                        raise self.fail(line, fpath, f"key {k!r} given twice")
                    mapping[k] = v
                continue
            if isinstance(value, list):
                if not repeated:
                    raise self.fail(line, fpath, "is not a repeated field; a list is not allowed here")
                items = [self.value(v, ftype, fpath, line) for v in value]
            else:
                items = [self.value(value, ftype, fpath, line)]
            if repeated:
                out.setdefault(name, []).extend(items)
            else:
                if name in out:
                    raise self.fail(line, fpath, "non-repeated field given more than once")
                out[name] = items[0]
        return out

    def map_entry(self, entry, ftype: str, path: str, line: int):
        _, key_type, value_type = ftype.split(":", 2)
        if not isinstance(entry, _Message):
            raise self.fail(line, path, "a map entry must be written as { key: ... value: ... }")
        key = value = None
        for name, v, ln in entry.fields:
            if name == "key":
                key = self.value(v, key_type, path + ".key", ln)
            elif name == "value":
                value = self.value(v, value_type, path + ".value", ln)
            else:
                raise self.fail(ln, path, f"unexpected field {name!r} in a map entry (only key and value)")
        if key is None or value is None:
            raise self.fail(line, path, "a map entry needs both key and value")
        return (str(key), value)

    def value(self, v, ftype: str, path: str, line: int):
        if ftype.startswith("msg:"):
            if not isinstance(v, _Message):
                raise self.fail(line, path, f"expected a message {{ ... }}, got {self.show(v)}")
            return self.message(v, ftype[4:], path)
        if isinstance(v, _Message):
            raise self.fail(v.line, path, f"expected a {self.kind_name(ftype)}, got a message")
        line = v.line
        if ftype == "string":
            if v.kind != "string":
                raise self.fail(line, path, f"expected a quoted string, got {v.value}")
            return v.value
        if ftype in ("int", "uint"):
            if v.kind != "number" or not re.fullmatch(r"[-+]?(?:0[xX][0-9a-fA-F]+|\d+)", v.value):
                raise self.fail(line, path, f"expected an integer, got {self.show(v)}")
            return self.check_int(int(v.value, 0), ftype, path, line)
        if ftype == "float":
            if v.kind == "number":
                return float(v.value.rstrip("fF")) if "x" not in v.value.lower() else float(int(v.value, 0))
            if v.kind == "ident" and v.value.lstrip("-").lower() in ("inf", "infinity", "nan"):
                return float(v.value)
            raise self.fail(line, path, f"expected a number, got {self.show(v)}")
        if ftype == "bool":
            if v.kind in ("ident", "number") and v.value in _BOOL_WORDS:
                return _BOOL_WORDS[v.value]
            raise self.fail(line, path, f"expected true or false, got {self.show(v)}")
        if ftype.startswith("enum:"):
            options = ENUMS[ftype[5:]]
            if v.kind == "ident" and v.value in options:
                return v.value
            hint = _close_match(str(v.value), options) if v.kind == "ident" else ""
            raise self.fail(line, path, f"expected one of {', '.join(options)}, got {self.show(v)}"
                            + hint)
        raise AssertionError(ftype)

    def check_int(self, n: int, ftype: str, path: str, line):
        lo = 0 if ftype == "uint" else -_INT64_MAX - 1
        hi = _UINT64_MAX if ftype == "uint" else _INT64_MAX
        if not lo <= n <= hi:
            what = "a non-negative integer" if ftype == "uint" and n < 0 else "an integer in range"
            raise self.fail(line, path, f"expected {what}, got {n}")
        return n

    @staticmethod
    def show(v) -> str:
        if isinstance(v, _Message):
            return "a message"
        return repr(v.value) if v.kind == "string" else v.value

    @staticmethod
    def kind_name(ftype: str) -> str:
        return {"string": "string", "int": "integer", "uint": "non-negative integer", "float": "number",
                "bool": "boolean"}.get(ftype, ftype.split(":", 1)[-1] + " value")

    # ---- JSON
    def json_message(self, obj, type_name: str, path: str) -> dict:
        if not isinstance(obj, dict):
            raise self.fail(None, path or type_name, f"expected an object, got {type(obj).__name__}")
        schema = SCHEMA[type_name]
        out = {}
        for name, value in obj.items():
            fpath = f"{path}.{name}" if path else name
            if name not in schema:
                raise self.fail(None, fpath, f"unknown field of {type_name}" + _close_match(name, schema))
            ftype, repeated = schema[name]
            if ftype.startswith("map:"):
                _, key_type, value_type = ftype.split(":", 2)
                if not isinstance(value, dict):
                    raise self.fail(None, fpath, "expected an object (a map)")
                out[name] = {str(self.json_value(k, key_type, fpath)): self.json_value(v, value_type, fpath)
                             for k, v in value.items()}
            elif repeated:
                if not isinstance(value, list):
                    raise self.fail(None, fpath, "expected a list")
                out[name] = [self.json_value(v, ftype, fpath) for v in value]
            else:
                out[name] = self.json_value(value, ftype, fpath)
        return out

    def json_value(self, v, ftype: str, path: str):
        if ftype.startswith("msg:"):
            return self.json_message(v, ftype[4:], path)
        if ftype == "string":
            if not isinstance(v, str):
                raise self.fail(None, path, f"expected a string, got {v!r}")
            return v
        if ftype in ("int", "uint"):
            # protobuf's JSON mapping writes 64-bit integers as strings.
            if isinstance(v, str) and re.fullmatch(r"-?\d+", v):
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(None, path, f"expected an integer, got {v!r}")
            return self.check_int(v, ftype, path, None)
        if ftype == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.fail(None, path, f"expected a number, got {v!r}")
            return float(v)
        if ftype == "bool":
            if not isinstance(v, bool):
                raise self.fail(None, path, f"expected true or false, got {v!r}")
            return v
        if ftype.startswith("enum:"):
            options = ENUMS[ftype[5:]]
            if v not in options:
                raise self.fail(None, path, f"expected one of {', '.join(options)}, got {v!r}")
            return v
        raise AssertionError(ftype)


# --------------------------------------------------------------------------------------------------
# Normalisation (Triton's defaults) and validation.
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorConfig:
    """One input or output: ``dims`` exclude the batch dimension; ``-1`` is any size."""

    name: str
    data_type: str          # "TYPE_FP32"
    datatype: str           # "FP32" (the wire name)
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None
    optional: bool = False


@dataclass(frozen=True)
class QueuePolicy:
    """A ``ModelQueuePolicy``: see :mod:`mlsys_lab.serving.batcher` for what each field does."""

    timeout_action: str = "REJECT"
    default_timeout_microseconds: int = 0
    allow_timeout_override: bool = False
    max_queue_size: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "QueuePolicy":
        return cls(d.get("timeout_action", "REJECT"), int(d.get("default_timeout_microseconds", 0)),
                   bool(d.get("allow_timeout_override", False)), int(d.get("max_queue_size", 0)))


def _queue_policy_dict(d: dict | None) -> dict:
    d = dict(d or {})
    d.setdefault("timeout_action", "REJECT")
    d.setdefault("default_timeout_microseconds", 0)
    d.setdefault("allow_timeout_override", False)
    d.setdefault("max_queue_size", 0)
    return d


def _normalise(cfg: dict, where: str, model_name: str | None) -> dict:
    def fail(msg):
        return ConfigError(f"{where}: {msg}")

    cfg = copy.deepcopy(cfg)
    if model_name is not None:
        if cfg.get("name", model_name) != model_name:
            raise fail(f"name {cfg['name']!r} does not match its folder {model_name!r}; "
                       "Triton requires the folder to be named after the model")
        cfg["name"] = model_name
    if not cfg.get("name"):
        raise fail("the model has no name")
    name = cfg["name"]
    is_ensemble = cfg.get("platform") == "ensemble"
    if not is_ensemble and not cfg.get("backend"):
        raise fail("set backend (e.g. \"mlp\" or \"numpy\"), or platform: \"ensemble\"")
    if cfg.get("platform") not in (None, "", "ensemble"):
        raise fail(f"platform {cfg['platform']!r} is not supported; use backend, or platform: \"ensemble\"")
    cfg.setdefault("platform", "")
    cfg.setdefault("backend", "")
    cfg.setdefault("max_batch_size", 0)
    mbs = cfg["max_batch_size"]
    if mbs < 0:
        raise fail(f"max_batch_size must be >= 0, got {mbs}")
    vp = cfg.setdefault("version_policy", {"latest": {"num_versions": 1}})
    if len(vp) != 1:
        raise fail("version_policy must set exactly one of latest, all, specific")
    if "latest" in vp:
        vp["latest"].setdefault("num_versions", 1)
        if vp["latest"]["num_versions"] < 1:
            raise fail("version_policy.latest.num_versions must be >= 1")
    if "specific" in vp:
        vp["specific"].setdefault("versions", [])

    for kind in ("input", "output"):
        seen = set()
        tensors = cfg.setdefault(kind, [])
        if not tensors:
            raise fail(f"the model declares no {kind}")
        for i, t in enumerate(tensors):
            tpath = f"{kind}[{i}]"
            if not t.get("name"):
                raise fail(f"{tpath} has no name")
            if t["name"] in seen:
                raise fail(f"{kind} {t['name']!r} is declared twice")
            seen.add(t["name"])
            dt = t.get("data_type", "TYPE_INVALID")
            if dt not in CONFIG_TO_WIRE:
                raise fail(f"{kind} {t['name']!r}: data_type {dt} is not supported; use one of "
                           f"{', '.join(CONFIG_TO_WIRE)}")
            if "dims" not in t:
                raise fail(f"{kind} {t['name']!r} has no dims")
            for d in t["dims"]:
                if d == 0 or d < -1:
                    raise fail(f"{kind} {t['name']!r}: dims must be positive or -1, got {t['dims']}")
            if "reshape" in t:
                shape = t["reshape"].setdefault("shape", [])
                if -1 in t["dims"] or -1 in shape:
                    raise fail(f"{kind} {t['name']!r}: reshape needs fixed dims")
                n_dims, n_shape = 1, 1
                for d in t["dims"]:
                    n_dims *= d
                for d in shape:
                    n_shape *= d
                if n_dims != n_shape:
                    raise fail(f"{kind} {t['name']!r}: reshape {shape} has {n_shape} elements but dims "
                               f"{t['dims']} have {n_dims}")
            if kind == "input":
                t.setdefault("format", "FORMAT_NONE")
                t.setdefault("optional", False)
                t.setdefault("allow_ragged_batch", False)
                t.setdefault("is_shape_tensor", False)
                if t["allow_ragged_batch"] or t["is_shape_tensor"]:
                    raise fail(f"input {t['name']!r}: ragged batches and shape tensors are not supported")
            else:
                t.setdefault("label_filename", "")
                t.setdefault("is_shape_tensor", False)

    if is_ensemble:
        if "ensemble_scheduling" not in cfg or not cfg["ensemble_scheduling"].get("step"):
            raise fail("an ensemble needs ensemble_scheduling with at least one step")
        for key in ("dynamic_batching", "sequence_batching", "instance_group", "model_warmup"):
            if key in cfg:
                raise fail(f"an ensemble cannot set {key}: its composing models are scheduled instead")
        for i, step in enumerate(cfg["ensemble_scheduling"]["step"]):
            if not step.get("model_name"):
                raise fail(f"ensemble_scheduling.step[{i}] has no model_name")
            step.setdefault("model_version", -1)
            step.setdefault("input_map", {})
            step.setdefault("output_map", {})
    else:
        if "ensemble_scheduling" in cfg:
            raise fail("ensemble_scheduling needs platform: \"ensemble\"")
        groups = cfg.setdefault("instance_group", [{}])
        for i, g in enumerate(groups):
            g.setdefault("name", f"{name}_{i}")
            g.setdefault("kind", "KIND_CPU")
            g.setdefault("count", 1)
            if g["kind"] == "KIND_AUTO":
                g["kind"] = "KIND_CPU"   # no GPUs here: Triton's auto kind also falls back to the CPU
            if g["kind"] not in ("KIND_CPU", "KIND_MODEL"):
                raise fail(f"instance_group {g['name']!r}: kind {g['kind']} is not supported; this "
                           "server runs models on the CPU (use KIND_CPU)")
            if g["count"] < 1:
                raise fail(f"instance_group {g['name']!r}: count must be >= 1, got {g['count']}")
            rl = g.get("rate_limiter")
            if rl is not None:
                rl.setdefault("resources", [])
                rl.setdefault("priority", 0)
                for r in rl["resources"]:
                    if not r.get("name"):
                        raise fail(f"instance_group {g['name']!r}: a rate_limiter resource has no name")
                    r.setdefault("global", False)
                    r.setdefault("count", 0)

    if "dynamic_batching" in cfg and "sequence_batching" in cfg:
        raise fail("dynamic_batching and sequence_batching cannot both be set")
    db = cfg.get("dynamic_batching")
    if db is not None:
        if mbs == 0:
            raise fail("dynamic_batching needs max_batch_size > 0")
        db.setdefault("preferred_batch_size", [])
        for p in db["preferred_batch_size"]:
            if not 1 <= p <= mbs:
                raise fail(f"dynamic_batching.preferred_batch_size {p} must lie in [1, max_batch_size={mbs}]")
        db.setdefault("max_queue_delay_microseconds", 0)
        db.setdefault("preserve_ordering", False)
        db.setdefault("priority_levels", 0)
        db.setdefault("default_priority_level", 0)
        db["default_queue_policy"] = _queue_policy_dict(db.get("default_queue_policy"))
        levels = db["priority_levels"]
        if levels:
            if not 1 <= db["default_priority_level"] <= levels:
                raise fail(f"dynamic_batching.default_priority_level must lie in [1, priority_levels="
                           f"{levels}], got {db['default_priority_level']}")
        elif db["default_priority_level"]:
            raise fail("dynamic_batching.default_priority_level needs priority_levels > 0")
        pqp = db.setdefault("priority_queue_policy", {})
        for key in list(pqp):
            if not key.isdigit() or not 1 <= int(key) <= max(levels, 0):
                raise fail(f"dynamic_batching.priority_queue_policy key {key} is not a priority level "
                           f"in [1, {levels}]")
            pqp[key] = _queue_policy_dict(pqp[key])

    sb = cfg.get("sequence_batching")
    if sb is not None:
        if "direct" in sb and "oldest" in sb:
            raise fail("sequence_batching sets both direct and oldest; choose one strategy")
        if "oldest" not in sb:
            sb.setdefault("direct", {})
            sb["direct"].setdefault("max_queue_delay_microseconds", 0)
            sb["direct"].setdefault("minimum_slot_utilization", 0.0)
        else:
            o = sb["oldest"]
            o.setdefault("max_candidate_sequences", 0)
            o.setdefault("preferred_batch_size", [])
            o.setdefault("max_queue_delay_microseconds", 0)
            o.setdefault("preserve_ordering", False)
            if o["max_candidate_sequences"] < 1:
                raise fail("sequence_batching.oldest.max_candidate_sequences must be >= 1")
            for p in o["preferred_batch_size"]:
                if not 1 <= p <= max(mbs, 1):
                    raise fail(f"sequence_batching.oldest.preferred_batch_size {p} must lie in "
                               f"[1, max_batch_size={mbs}]")
        sb.setdefault("max_sequence_idle_microseconds", 1_000_000)
        sb.setdefault("control_input", [])
        sb.setdefault("state", [])
        input_names = {t["name"] for t in cfg["input"]}
        for ci in sb["control_input"]:
            if not ci.get("name"):
                raise fail("a sequence_batching.control_input has no name")
            if ci["name"] in input_names:
                raise fail(f"control input {ci['name']!r} must not also be declared as an input")
            if len(ci.get("control", [])) != 1:
                raise fail(f"control input {ci['name']!r} needs exactly one control")
            c = ci["control"][0]
            if "kind" not in c:
                raise fail(f"control input {ci['name']!r}: control has no kind")
            if c["kind"] == "CONTROL_SEQUENCE_CORRID":
                if c.get("data_type") not in ("TYPE_UINT64", "TYPE_INT64", "TYPE_UINT32", "TYPE_INT32",
                                              "TYPE_STRING"):
                    raise fail(f"control input {ci['name']!r}: CONTROL_SEQUENCE_CORRID needs data_type "
                               "TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 or TYPE_STRING")
            else:
                given = [k for k in ("int32_false_true", "fp32_false_true", "bool_false_true") if c.get(k)]
                if len(given) != 1 or len(c[given[0]]) != 2:
                    raise fail(f"control input {ci['name']!r}: set exactly one of int32_false_true, "
                               "fp32_false_true, bool_false_true, with two values (false, true)")
        for st in sb["state"]:
            for key in ("input_name", "output_name", "data_type"):
                if not st.get(key):
                    raise fail(f"a sequence_batching.state has no {key}")
            if st["data_type"] not in CONFIG_TO_WIRE:
                raise fail(f"state {st['input_name']!r}: data_type {st['data_type']} is not supported")
            st.setdefault("dims", [])
            if any(d < 1 for d in st["dims"]):
                raise fail(f"state {st['input_name']!r}: dims must be positive")
            st.setdefault("initial_state", [])

    for i, w in enumerate(cfg.get("model_warmup", [])):
        w.setdefault("name", f"warmup_{i}")
        w.setdefault("batch_size", 0)
        w.setdefault("count", 1)
        w.setdefault("inputs", {})
        if mbs and w["batch_size"] > mbs:
            raise fail(f"model_warmup {w['name']!r}: batch_size {w['batch_size']} exceeds max_batch_size {mbs}")
    mtp = cfg.get("model_transaction_policy")
    if mtp and mtp.get("decoupled"):
        raise fail("decoupled models (model_transaction_policy.decoupled) are not supported")
    cfg.setdefault("parameters", {})
    return cfg


class ModelConfig:
    """A normalised, validated model config.

    ``to_dict()`` gives the message in Triton's JSON form (what ``/v2/models/<m>/config`` returns);
    the properties give typed views of the parts the server schedules by.
    """

    def __init__(self, cfg: dict):
        self._cfg = cfg
        self.inputs = [self._tensor(t) for t in cfg["input"]]
        self.outputs = [self._tensor(t) for t in cfg["output"]]
        self.input_by_name = {t.name: t for t in self.inputs}
        self.output_by_name = {t.name: t for t in self.outputs}

    @staticmethod
    def _tensor(t: dict) -> TensorConfig:
        reshape = t.get("reshape")
        return TensorConfig(t["name"], t["data_type"], CONFIG_TO_WIRE[t["data_type"]], tuple(t["dims"]),
                            tuple(reshape["shape"]) if reshape is not None else None,
                            bool(t.get("optional", False)))

    def to_dict(self) -> dict:
        return copy.deepcopy(self._cfg)

    def __getitem__(self, key):
        return self._cfg[key]

    def get(self, key, default=None):
        return self._cfg.get(key, default)

    @property
    def name(self) -> str:
        return self._cfg["name"]

    @property
    def backend(self) -> str:
        return self._cfg["backend"]

    @property
    def platform(self) -> str:
        """``"ensemble"`` for ensembles; otherwise the backend name (what model metadata reports)."""
        return self._cfg["platform"] or self._cfg["backend"]

    @property
    def is_ensemble(self) -> bool:
        return self._cfg["platform"] == "ensemble"

    @property
    def max_batch_size(self) -> int:
        return self._cfg["max_batch_size"]

    @property
    def dynamic_batching(self) -> dict | None:
        return self._cfg.get("dynamic_batching")

    @property
    def sequence_batching(self) -> dict | None:
        return self._cfg.get("sequence_batching")

    @property
    def instance_groups(self) -> list[dict]:
        return self._cfg.get("instance_group", [])

    @property
    def parameters(self) -> dict[str, str]:
        """``parameters`` as ``{key: string_value}``."""
        return {k: v.get("string_value", "") for k, v in self._cfg.get("parameters", {}).items()}

    def __repr__(self) -> str:
        return f"ModelConfig(name={self.name!r}, platform={self.platform!r}, max_batch_size={self.max_batch_size})"


def config_from_text(text: str, where: str = "config.pbtxt", model_name: str | None = None) -> ModelConfig:
    """Parse a ``config.pbtxt`` text; ``model_name`` (the folder's name) fills in or checks ``name``."""
    tree = parse_pbtxt(text, where)
    return ModelConfig(_normalise(_Converter(where).message(tree, "ModelConfig", ""), where, model_name))


def config_from_dict(obj: dict, where: str = "config.json", model_name: str | None = None) -> ModelConfig:
    """Build a config from its JSON form (e.g. ``json.load`` of a ``config.json``)."""
    return ModelConfig(_normalise(_Converter(where).json_message(obj, "ModelConfig", ""), where, model_name))


def load_config(model_dir: str | Path) -> ModelConfig:
    """Read ``<model_dir>/config.pbtxt`` (or ``config.json``); the folder name is the model's name."""
    model_dir = Path(model_dir)
    pbtxt, js = model_dir / "config.pbtxt", model_dir / "config.json"
    if pbtxt.is_file() and js.is_file():
        raise ConfigError(f"{model_dir}: has both config.pbtxt and config.json; keep one")
    if pbtxt.is_file():
        return config_from_text(pbtxt.read_text(encoding="utf-8"), str(pbtxt), model_dir.name)
    if js.is_file():
        try:
            obj = json.loads(js.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{js}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        return config_from_dict(obj, str(js), model_dir.name)
    raise ConfigError(f"{model_dir}: no config.pbtxt or config.json")


def numpy_dtype(data_type: str):
    """``"TYPE_FP32"`` -> ``dtype('float32')``."""
    return WIRE_TO_NUMPY[CONFIG_TO_WIRE[data_type]]
