"""Request tracing, as Triton's trace extension does it (level ``TIMESTAMPS``).

A traced request collects named timestamps (nanoseconds of ``time.monotonic_ns()``, the clock of the
statistics) as it crosses the server, in this order:

=======================  ===========================================================================
``HTTP_RECV_START``      the front end starts handling the request (its headers have been parsed)
``HTTP_RECV_END``        its body has been read
``REQUEST_START``        the model's version takes it (before the check against the config)
``QUEUE_START``          it enters the scheduler's queue
``COMPUTE_START``        the batch holding it starts on an instance (gathering the inputs)
``COMPUTE_INPUT_END``    the batch's inputs are gathered; the backend starts
``COMPUTE_OUTPUT_START`` the backend has returned
``COMPUTE_END``          the outputs are checked and split per request
``REQUEST_END``          the model's outputs are back in the front end
``HTTP_SEND_START``      the front end starts writing the response
``HTTP_SEND_END``        the response has been handed to the kernel
=======================  ===========================================================================

Tracing every request costs about 10 µs of event-loop time per request (``digits_mlp`` at 16
clients: 8,000 requests/s untraced, 7,200 traced), so keep ``trace_rate`` high under load.

Requests in one batch share the four ``COMPUTE_*`` timestamps. An ensemble's request is traced as a
whole, and each step's request gets its own trace whose ``parent_id`` is the ensemble's ``id``.

Settings follow Triton's names and string values: ``trace_level`` (``["OFF"]`` or
``["TIMESTAMPS"]``; ``TENSORS`` is not implemented), ``trace_rate`` (trace every n-th request, counted
per model), ``trace_count`` (how many traces are still to be collected; ``-1``: no limit),
``log_frequency`` (write a file every n traces; ``0``: only when the server stops) and ``trace_file``.
They are global, and a model may override any of them (``/v2/models/{m}/trace/setting``). Unlike
Triton, ``trace_file`` can only be set when the server starts (``--trace-config triton,file=PATH``):
a client of the HTTP API should not choose where the server writes files.

Output (Triton's JSON schema): for each trace an object ``{"id", "model_name", "model_version",
"request_id"[, "parent_id"]}`` followed by ``{"id", "timestamps": [{"name", "ns"}, ...]}``. With
``log_frequency`` n > 0 every n traces go to ``<trace_file>.0``, ``<trace_file>.1``, ...; what is left
when the server stops goes to the next such file (or to ``<trace_file>`` itself when n is 0: then
the file is written even when it holds no trace).
:attr:`TraceManager.collected` keeps every finished trace in memory as well (the last
:data:`MAX_KEPT` of them), for notebooks and tests.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import InvalidArgument

__all__ = ["Trace", "TraceSettings", "TraceManager", "TIMESTAMP_NAMES", "MAX_KEPT", "parse_trace_config"]

TIMESTAMP_NAMES = ("HTTP_RECV_START", "HTTP_RECV_END", "REQUEST_START", "QUEUE_START", "COMPUTE_START",
                   "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END", "HTTP_SEND_START",
                   "HTTP_SEND_END")
#: Finished traces kept in memory (the oldest are dropped first; files get every one).
MAX_KEPT = 100_000
_LEVELS = ("OFF", "TIMESTAMPS")


class Trace:
    """The timestamps of one request (see the module docstring)."""

    __slots__ = ("id", "model_name", "model_version", "request_id", "parent_id", "timestamps", "_manager")

    def __init__(self, manager: "TraceManager", trace_id: int, model_name: str, model_version: int,
                 request_id: str = "", parent_id: int | None = None):
        self._manager = manager
        self.id = trace_id
        self.model_name = model_name
        self.model_version = model_version
        self.request_id = request_id
        self.parent_id = parent_id
        self.timestamps: list[tuple[str, int]] = []

    def stamp(self, name: str, ns: int | None = None) -> None:
        self.timestamps.append((name, time.monotonic_ns() if ns is None else ns))

    def child(self, model_name: str, model_version: int) -> "Trace":
        """The trace of a request this one makes (an ensemble's step); always collected."""
        return Trace(self._manager, self._manager.next_id(), model_name, model_version, self.request_id, self.id)

    def finish(self) -> None:
        """Hand the trace to its manager (once; later calls do nothing)."""
        if self._manager is not None:
            manager, self._manager = self._manager, None
            manager.collect(self)

    def to_json(self) -> list[dict]:
        head = {"id": self.id, "model_name": self.model_name, "model_version": self.model_version,
                "request_id": self.request_id}
        if self.parent_id is not None:
            head["parent_id"] = self.parent_id
        return [head, {"id": self.id, "timestamps": [{"name": n, "ns": ns} for n, ns in self.timestamps]}]

    def ns(self, name: str) -> int | None:
        """The (first) timestamp called ``name``, or None."""
        return next((ns for n, ns in self.timestamps if n == name), None)


@dataclass(frozen=True)
class TraceSettings:
    """One set of trace settings (global, or a model's)."""

    trace_file: str = ""
    trace_level: tuple[str, ...] = ("OFF",)
    trace_rate: int = 1000
    trace_count: int = -1
    log_frequency: int = 0

    @property
    def enabled(self) -> bool:
        return "TIMESTAMPS" in self.trace_level and self.trace_count != 0

    def to_json(self) -> dict:
        """Triton's form: every value a string, ``trace_level`` a list of strings."""
        return {"trace_file": self.trace_file, "trace_level": list(self.trace_level),
                "trace_rate": str(self.trace_rate), "trace_count": str(self.trace_count),
                "log_frequency": str(self.log_frequency)}

    def updated(self, changes: dict, *, allow_file: bool = False) -> "TraceSettings":
        """These settings with ``changes`` (Triton's names; values as strings, numbers or lists)
        applied; a value of None resets the setting to its default. Raises InvalidArgument naming
        the setting for anything else."""
        if not isinstance(changes, dict):
            raise InvalidArgument("trace settings must be a JSON object of setting name to value")
        new = {}
        default = TraceSettings()
        for key, value in changes.items():
            if key not in _PARSERS:
                raise InvalidArgument(f"unknown trace setting '{key}'; expected one of {', '.join(_PARSERS)}")
            if key == "trace_file" and not allow_file:
                raise InvalidArgument("trace_file can only be set when the server starts "
                                      "(--trace-config triton,file=PATH)")
            new[key] = getattr(default, key) if value is None else _PARSERS[key](key, value)
        return replace(self, **new)


def _one(key: str, value):
    if isinstance(value, list):
        if len(value) != 1:
            raise InvalidArgument(f"trace setting '{key}' takes one value, got {value!r}")
        value = value[0]
    return value


def _integer(minimum: int):
    def parse(key: str, value) -> int:
        value = _one(key, value)
        try:
            number = int(value) if not isinstance(value, (bool, float)) else None
        except (TypeError, ValueError):
            number = None
        if number is None or number < minimum:
            raise InvalidArgument(f"trace setting '{key}' must be an integer >= {minimum}, got {value!r}")
        return number
    return parse


def _level(key: str, value) -> tuple[str, ...]:
    levels = value if isinstance(value, list) else [value]
    if not levels or not all(isinstance(v, str) for v in levels):
        raise InvalidArgument(f"trace setting 'trace_level' must be a list of strings, got {value!r}")
    if "TENSORS" in levels:
        raise InvalidArgument("trace level TENSORS is not supported by this server (TIMESTAMPS and OFF are)")
    unknown = [v for v in levels if v not in _LEVELS]
    if unknown:
        raise InvalidArgument(f"unknown trace level {unknown[0]!r}; expected OFF or TIMESTAMPS")
    if "TIMESTAMPS" in levels:
        return ("TIMESTAMPS",)
    return ("OFF",)


def _file(key: str, value) -> str:
    value = _one(key, value)
    if not isinstance(value, str):
        raise InvalidArgument(f"trace setting 'trace_file' must be a string, got {value!r}")
    return value


_PARSERS = {"trace_file": _file, "trace_level": _level, "trace_rate": _integer(1), "trace_count": _integer(-1),
            "log_frequency": _integer(0)}


def parse_trace_config(items: list[str]) -> TraceSettings:
    """Triton's ``--trace-config`` values (``level=TIMESTAMPS``, ``rate=100``, ``count=100``,
    ``mode=triton``, ``triton,file=PATH``, ``triton,log-frequency=50``) as settings; ValueError
    naming the item otherwise."""
    names = {"level": "trace_level", "rate": "trace_rate", "count": "trace_count",
             "file": "trace_file", "log-frequency": "log_frequency"}
    changes: dict = {}
    for item in items:
        mode, _, setting = item.rpartition(",")
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise ValueError(f"--trace-config {item!r}: expected SETTING=VALUE or triton,SETTING=VALUE")
        if mode not in ("", "triton"):
            raise ValueError(f"--trace-config {item!r}: only the 'triton' trace mode is supported")
        if key == "mode":
            if value != "triton":
                raise ValueError(f"--trace-config {item!r}: only the 'triton' trace mode is supported")
            continue
        if key not in names:
            raise ValueError(f"--trace-config {item!r}: unknown setting {key!r}; expected level, rate, count, "
                             "mode, triton,file or triton,log-frequency")
        if key in ("file", "log-frequency") and mode != "triton":
            raise ValueError(f"--trace-config {item!r}: {key} is a setting of the triton mode: "
                             f"write triton,{key}=...")
        changes.setdefault(names[key], []).append(value)
    try:
        return TraceSettings().updated({k: (v if k == "trace_level" else v[-1]) for k, v in changes.items()},
                                       allow_file=True)
    except InvalidArgument as exc:
        raise ValueError(f"--trace-config: {exc.message}") from None


class TraceManager:
    """Decides which requests are traced, collects finished traces and writes them to files."""

    def __init__(self, settings: TraceSettings | None = None):
        self.settings = settings or TraceSettings()
        self.model_settings: dict[str, dict] = {}     # a model's overrides, by setting name
        self._effective: dict[str, TraceSettings] = {}  # settings_for(model), cached: asked per request
        self._counts: dict[str, int] = {}              # requests seen per model, for trace_rate
        self._ids = itertools.count(1)
        self.collected: deque[Trace] = deque(maxlen=MAX_KEPT)
        self._unwritten: list[Trace] = []
        self._file_index = 0

    def next_id(self) -> int:
        return next(self._ids)

    # ---- settings
    def settings_for(self, model: str | None = None) -> TraceSettings:
        if model is None or model not in self.model_settings:
            return self.settings
        settings = self._effective.get(model)
        if settings is None:
            settings = self._effective[model] = replace(self.settings, **self.model_settings[model])
        return settings

    def update(self, changes: dict, model: str | None = None) -> TraceSettings:
        """Apply Triton's trace-setting request; returns the settings now in force for ``model``.
        For a model, an empty request removes its overrides and a None value removes one."""
        if model is None:
            self.settings = self.settings.updated(changes)
        elif not changes:
            self.model_settings.pop(model, None)
        else:
            self.settings_for(model).updated(changes)                 # validates
            overrides = dict(self.model_settings.get(model, {}))
            for key, value in changes.items():
                if value is None:
                    overrides.pop(key, None)
                else:
                    overrides[key] = getattr(TraceSettings().updated({key: value}), key)
            self.model_settings[model] = overrides
        self._effective.clear()
        return self.settings_for(model)

    # ---- tracing
    def sample(self, model_name: str, model_version: int, request_id: str = "") -> Trace | None:
        """A new trace if this request is to be traced (every ``trace_rate``-th of its model's,
        while ``trace_count`` lasts), else None."""
        settings = self.settings_for(model_name)
        if not settings.enabled:
            return None
        seen = self._counts.get(model_name, 0)
        self._counts[model_name] = seen + 1
        if seen % settings.trace_rate:
            return None
        if settings.trace_count > 0:
            self._spend(model_name, settings.trace_count - 1)
        return Trace(self, self.next_id(), model_name, model_version, request_id)

    def _spend(self, model_name: str, remaining: int) -> None:
        self._effective.clear()
        if "trace_count" in self.model_settings.get(model_name, {}):
            self.model_settings[model_name]["trace_count"] = remaining
        else:
            self.settings = replace(self.settings, trace_count=remaining)

    def collect(self, trace: Trace) -> None:
        self.collected.append(trace)
        settings = self.settings_for(trace.model_name)
        if not settings.trace_file:
            return
        self._unwritten.append(trace)
        if settings.log_frequency and len(self._unwritten) >= settings.log_frequency:
            self._write(settings, numbered=True)

    def flush(self) -> None:
        """Write the traces not yet written (called when the server stops). With ``log_frequency``
        0 the file is written even if it holds no trace, so that it always says the server ran."""
        if not self.settings.trace_file:
            return
        if self._unwritten or not self.settings.log_frequency:
            self._write(self.settings, numbered=bool(self.settings.log_frequency))

    def _write(self, settings: TraceSettings, numbered: bool) -> None:
        path = Path(settings.trace_file)
        if numbered:
            path = path.with_name(f"{path.name}.{self._file_index}")
            self._file_index += 1
        entries = [entry for trace in self._unwritten for entry in trace.to_json()]
        path.write_text(json.dumps(entries, indent=1) + "\n")
        self._unwritten = []
