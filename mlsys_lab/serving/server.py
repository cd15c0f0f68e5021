"""The inference server: loads a model repository and answers requests; runs it over HTTP.

:class:`InferenceServer` is the protocol-independent core (Triton's "core"): it loads every model of
a repository (or those named in ``models``, with what their ensembles need), keeps each version's
scheduler and statistics, and exposes what the HTTP front end (:mod:`.http`) serves. It lives on
one asyncio event loop.

Ways to run it:

- ``python -m mlsys_lab serve [--model-repository DIR] [--http-port N] [--host H]``: the command
  line; it logs the models it loaded as a table, as Triton does, and shuts down cleanly on SIGINT or
  SIGTERM: it stops listening, answers every request it had already accepted, then unloads.
- :func:`serve`: the same from Python (blocking).
- :class:`ServerThread`: the server in a background thread, for notebooks and tests::

      with ServerThread(port=0) as srv:               # port 0: any free port
          client = tritonclient.http.InferenceServerClient(srv.url)

The GIL: model instances execute on their own threads and NumPy releases the GIL inside each
kernel, but an instance thread must take the GIL back between kernels (an MLP layer is a matrix
product, a bias add and an activation: three hand-backs). While the event loop's thread is busy in
Python (parsing and answering HTTP requests under load) a thread that wants the GIL back waits up to
the interpreter's *switch interval*, 5 ms by default, each time: a batch of 6 ms of NumPy work can take
45 ms (the convoy effect). ``gil_switch_interval`` (seconds) sets the interval while the server runs
and restores it at :meth:`~InferenceServer.stop`; :func:`serve` uses :data:`SERVE_GIL_SWITCH_INTERVAL`
(0.2 ms), :class:`InferenceServer` and :class:`ServerThread` leave it alone unless told.

The event loop: ``event_loop="auto"`` (the default of :func:`serve` and :class:`ServerThread`) runs
the server on uvloop, libuv's event loop for asyncio, when it is installed, else on asyncio's own;
``"asyncio"`` and ``"uvloop"`` choose. Everything the front end does between two batches is
event-loop work (read, parse, answer), so a cheaper loop is throughput: on ``digits_mlp`` at 16
clients uvloop answered 5 to 11% more requests per second than asyncio's loop in three runs of
``bench/serving_perf.py``, each measuring the two alternately.

Readiness (``/v2/health/ready``) is Triton's *strict* readiness: the server is ready when every model
it was asked to load is ready. A model that fails to load is reported UNAVAILABLE with the reason;
``serve`` exits with status 1 in that case unless ``exit_on_error=False``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from pathlib import Path

from .config import ModelConfig, load_config
from .errors import ConfigError, InvalidArgument, NotFound, ServingError, Unavailable
from .metrics import render_metrics
from .rate_limiter import RateLimiter
from .repository import READY, UNAVAILABLE, ModelVersion, scan_repository, select_versions
from .request import InferenceRequest
from .trace import TraceManager, TraceSettings

__all__ = ["InferenceServer", "ServerThread", "serve", "DEFAULT_MODEL_REPOSITORY", "SERVER_NAME",
           "EXTENSIONS", "SERVE_GIL_SWITCH_INTERVAL", "EVENT_LOOPS", "event_loop_factory"]

log = logging.getLogger("mlsys_lab.serving")

#: The example repository shipped in the package.
DEFAULT_MODEL_REPOSITORY = Path(__file__).resolve().parent / "model_repository"
SERVER_NAME = "mlsys_lab"
#: Protocol extensions this server implements, as listed by ``GET /v2``.
#: The GIL switch interval :func:`serve` runs with (seconds; Python's default is 0.005).
SERVE_GIL_SWITCH_INTERVAL = 0.0002
EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics", "sequence", "schedule_policy",
              "parameters", "trace"]


#: Values of ``event_loop`` (see the module docstring).
EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def event_loop_factory(event_loop: str = "auto"):
    """A function creating the event loop named by ``event_loop`` (one of :data:`EVENT_LOOPS`)."""
    if event_loop not in EVENT_LOOPS:
        raise ValueError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}, got {event_loop!r}")
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if event_loop == "uvloop":
                raise ValueError("event_loop='uvloop' needs the uvloop package (pip install uvloop)") from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mlsys-lab")
    except Exception:
        return "0.1.0"


class _ModelEntry:
    """A model folder: its config (or why it has none) and its loaded versions."""

    def __init__(self, name: str, model_dir: Path):
        self.name = name
        self.model_dir = model_dir
        self.config: ModelConfig | None = None
        self.versions: dict[int, ModelVersion] = {}
        self.reason = ""

    @property
    def ready_versions(self) -> list[int]:
        return sorted(v for v, mv in self.versions.items() if mv.state == READY)


class InferenceServer:
    """Loads a model repository and schedules inference requests (see the module docstring).

    ``models``: load only these (plus the models their ensembles use); ``None`` loads all.
    ``rate_limit``: ``"off"`` or ``"execution_count"``; ``rate_limit_resources``: ``{name: count}``.
    ``gil_switch_interval``: the interpreter's switch interval while the server runs (seconds; None
    leaves it alone), see the module docstring. ``trace_settings``: the global request-tracing
    settings at start (:mod:`.trace`; off by default), ``tracer`` collects the traces.
    """

    def __init__(self, model_repository: str | Path | None = None, *, models: list[str] | None = None,
                 rate_limit: str = "off", rate_limit_resources: dict[str, int] | None = None,
                 gil_switch_interval: float | None = None, trace_settings: TraceSettings | None = None):
        self.repository = Path(model_repository) if model_repository is not None else DEFAULT_MODEL_REPOSITORY
        self.requested_models = list(models) if models is not None else None
        self.rate_limiter = RateLimiter(rate_limit, rate_limit_resources)
        self._models: dict[str, _ModelEntry] = {}
        self.live = False
        self.stopping = False
        self.version = _version()
        self.gil_switch_interval = gil_switch_interval
        self._saved_switch_interval: float | None = None
        self.tracer = TraceManager(trace_settings)

    # ------------------------------------------------------------------ loading
    async def start(self) -> None:
        """Load the repository. Models that fail are kept as UNAVAILABLE with their reason."""
        if self.gil_switch_interval is not None and self._saved_switch_interval is None:
            self._saved_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.gil_switch_interval)
        found = scan_repository(self.repository)
        names = list(found)
        if self.requested_models is not None:
            unknown = [m for m in self.requested_models if m not in found]
            if unknown:
                raise ConfigError(f"model(s) {unknown} not found in {self.repository} (it has {names})")
            names = self._with_dependencies(self.requested_models, found)
        for name in names:
            entry = _ModelEntry(name, found[name])
            try:
                entry.config = load_config(found[name])
            except ServingError as exc:
                entry.reason = str(exc)
            self._models[name] = entry
        plain = [e for e in self._models.values() if e.config is not None and not e.config.is_ensemble]
        await asyncio.gather(*(self._load_entry(e) for e in plain))
        ensembles = [e for e in self._models.values() if e.config is not None and e.config.is_ensemble]
        while ensembles:
            progress = False
            for e in list(ensembles):
                deps = [s["model_name"] for s in e.config["ensemble_scheduling"]["step"]]
                if any(d in self._models and self._models[d] in ensembles for d in deps):
                    continue
                ensembles.remove(e)
                await self._load_entry(e)
                progress = True
            if not progress:
                for e in ensembles:
                    e.reason = f"ensemble '{e.name}' is part of a cycle of ensembles"
                break
        for e in self._models.values():
            if e.reason:
                log.error("failed to load '%s': %s", e.name, e.reason)
        self.live = True

    def _with_dependencies(self, wanted: list[str], found: dict[str, Path]) -> list[str]:
        out, todo = [], list(wanted)
        while todo:
            name = todo.pop()
            if name in out or name not in found:
                continue
            out.append(name)
            try:
                cfg = load_config(found[name])
            except ServingError:
                continue
            if cfg.is_ensemble:
                todo.extend(s["model_name"] for s in cfg["ensemble_scheduling"]["step"])
        return sorted(out)

    async def _load_entry(self, entry: _ModelEntry) -> None:
        try:
            versions = select_versions(entry.config, entry.model_dir)
        except ServingError as exc:
            entry.reason = str(exc)
            return
        for v in versions:
            mv = ModelVersion(entry.config, entry.model_dir, v, self.rate_limiter)
            entry.versions[v] = mv
            try:
                await mv.load(self._resolve_step)
                log.info("loaded '%s' version %d", entry.name, v)
            except Exception as exc:
                entry.reason = f"version {v}: {mv.reason}"
                log.debug("load failure of %s", entry.name, exc_info=exc)

    def _resolve_step(self, name: str, version: int) -> ModelVersion:
        entry = self._models.get(name)
        if entry is None:
            raise ConfigError(f"ensemble step model '{name}' is not in the repository")
        try:
            return self.model_version(name, str(version) if version > 0 else "")
        except ServingError as exc:
            raise ConfigError(f"ensemble step model '{name}' is not available: {exc}") from None

    async def stop(self) -> None:
        """Unload everything: each scheduler finishes what it has queued first. Ensembles go first,
        so that their steps can still reach the composing models."""
        self.stopping = True
        entries = sorted(self._models.values(), key=lambda e: not (e.config and e.config.is_ensemble))
        for ensembles_first in (True, False):
            await asyncio.gather(*(mv.unload() for e in entries
                                   if bool(e.config and e.config.is_ensemble) == ensembles_first
                                   for mv in e.versions.values()))
        self.live = False
        self.tracer.flush()
        if self._saved_switch_interval is not None:
            sys.setswitchinterval(self._saved_switch_interval)
            self._saved_switch_interval = None

    # ------------------------------------------------------------------ queries
    @property
    def ready(self) -> bool:
        """Strict readiness: live, not shutting down, every requested model ready."""
        if not self.live or self.stopping:
            return False
        return all(e.ready_versions and not e.reason for e in self._models.values())

    @property
    def model_names(self) -> list[str]:
        return sorted(self._models)

    def _entry(self, name: str) -> _ModelEntry:
        entry = self._models.get(name)
        if entry is None:
            raise NotFound(f"Request for unknown model: '{name}' is not found")
        return entry

    def trace_settings(self, model: str | None = None) -> dict:
        """The trace settings in force (globally, or for ``model``), in Triton's JSON form."""
        if model is not None:
            self._entry(model)
        return self.tracer.settings_for(model).to_json()

    def update_trace_settings(self, changes, model: str | None = None) -> dict:
        """Apply a trace-setting request (Triton's trace extension); returns the settings now in force."""
        if model is not None:
            self._entry(model)
        return self.tracer.update(changes, model).to_json()

    def model_version(self, name: str, version: str = "") -> ModelVersion:
        """The version that serves requests for ``name`` (``version`` "" = the highest ready one)."""
        entry = self._entry(name)
        if version:
            if not version.isdigit():
                raise InvalidArgument(f"model version must be a positive integer, got '{version}'")
            mv = entry.versions.get(int(version))
            if mv is None:
                raise NotFound(f"Request for unknown model: '{name}' version {int(version)} is not found")
            return mv
        ready = entry.ready_versions
        if not ready:
            why = f": {entry.reason}" if entry.reason else ""
            raise Unavailable(f"Request for unknown model: '{name}' has no available versions{why}")
        return entry.versions[ready[-1]]

    def model_config(self, name: str, version: str = "") -> ModelConfig:
        entry = self._entry(name)
        if entry.config is None:
            raise Unavailable(f"model '{name}' has no valid config: {entry.reason}")
        if version:
            self.model_version(name, version)
        return entry.config

    def model_metadata(self, name: str, version: str = "") -> dict:
        mv = self.model_version(name, version)
        if mv.state != READY:
            raise Unavailable(f"model '{name}' version {mv.version} is not ready")
        return mv.metadata([str(v) for v in self._entry(name).ready_versions])

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            return self.model_version(name, version).state == READY
        except Unavailable:
            return False

    def server_metadata(self) -> dict:
        return {"name": SERVER_NAME, "version": self.version, "extensions": list(EXTENSIONS)}

    def _versions(self, name: str | None, version: str) -> list[ModelVersion]:
        if name is None:
            return [mv for e in sorted(self._models.values(), key=lambda e: e.name)
                    for _, mv in sorted(e.versions.items()) if mv.state == READY]
        entry = self._entry(name)
        if version:
            return [self.model_version(name, version)]
        out = [mv for _, mv in sorted(entry.versions.items()) if mv.state == READY]
        if not out:
            raise Unavailable(f"Request for unknown model: '{name}' has no available versions")
        return out

    def model_statistics(self, name: str | None = None, version: str = "") -> dict:
        """Triton's statistics response for one model (all its ready versions, or one) or all."""
        return {"model_stats": [mv.stats.to_json() for mv in self._versions(name, version)]}

    def metrics_text(self) -> str:
        return render_metrics((mv.stats, mv.pending_count) for mv in self._versions(None, ""))

    def repository_index(self) -> list[dict]:
        """``POST /v2/repository/index``: every model folder with its state."""
        out = []
        for name in sorted(self._models):
            e = self._models[name]
            if not e.versions:
                out.append({"name": name, "state": UNAVAILABLE, "reason": e.reason})
            for v, mv in sorted(e.versions.items()):
                out.append({"name": name, "version": str(v), "state": mv.state, "reason": mv.reason})
        return out

    def model_table(self) -> str:
        """The models and their state as a text table, as Triton prints at start-up."""
        rows = [(r["name"], r.get("version", "-"), r["state"] if r["state"] != UNAVAILABLE
                 else f"UNAVAILABLE: {r['reason']}") for r in self.repository_index()]
        head = ("Model", "Version", "Status")
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
        return "\n".join([sep, fmt.format(*head), sep, *(fmt.format(*map(str, r)) for r in rows), sep])

    @property
    def failed_models(self) -> list[str]:
        return [n for n, e in sorted(self._models.items()) if e.reason]

    @property
    def pending_count(self) -> int:
        return sum(mv.pending_count for e in self._models.values() for mv in e.versions.values())

    async def infer(self, request: InferenceRequest) -> dict:
        """Run ``request`` on its model; returns every output of the model as arrays."""
        return await self.model_version(request.model_name, request.model_version).infer(request)


class ServerThread:
    """An :class:`InferenceServer` with its HTTP front end on a background thread's event loop.

    ``port=0`` picks a free port; after :meth:`start` (or entering the ``with`` block) ``port``,
    ``url`` (``"127.0.0.1:PORT"``, the form ``tritonclient`` wants) and ``http_url`` are set.
    Keyword arguments go to :class:`InferenceServer`; ``max_body_size`` to the HTTP front end;
    ``event_loop`` picks the loop (module docstring).
    """

    def __init__(self, model_repository: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 max_body_size: int | None = None, event_loop: str = "auto", **server_kwargs):
        self._loop_factory = event_loop_factory(event_loop)
        self.server = InferenceServer(model_repository, **server_kwargs)
        self.host = host
        self.port = port
        self.max_body_size = max_body_size
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._runner = None

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> "ServerThread":
        self._thread = threading.Thread(target=self._main, name="mlsys-lab-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("the server did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        with asyncio.Runner(loop_factory=self._loop_factory) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        from .http import DEFAULT_MAX_BODY_SIZE, start_http, stop_http

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
            self._runner, self.port = await start_http(self.server, self.host, self.port,
                                                       self.max_body_size or DEFAULT_MAX_BODY_SIZE)
        except BaseException as exc:
            self._error = exc
            self._started.set()
            await self.server.stop()
            return
        self._started.set()
        await self._stop.wait()
        await stop_http(self._runner)
        await self.server.stop()

    def call(self, coro, timeout: float | None = 60.0):
        """Run a coroutine on the server's loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Shut down as ``serve`` does on SIGTERM, and wait for the thread to end."""
        if self._thread is None:
            return
        if self.loop is not None and self._stop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(model_repository: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 8000,
          models: list[str] | None = None, rate_limit: str = "off",
          rate_limit_resources: dict[str, int] | None = None, max_body_size: int | None = None,
          exit_on_error: bool = True, echo=print,
          gil_switch_interval: float | None = SERVE_GIL_SWITCH_INTERVAL, event_loop: str = "auto",
          trace_settings: TraceSettings | None = None) -> int:
    """Run the server until SIGINT or SIGTERM (blocking); returns an exit status.

    ``echo`` receives the human-readable log lines (the model table, the address, shutdown);
    ``event_loop`` picks the loop (module docstring); ``trace_settings`` turns on request tracing."""
    with asyncio.Runner(loop_factory=event_loop_factory(event_loop)) as runner:
        return runner.run(_serve_main(model_repository, host, port, models, rate_limit, rate_limit_resources,
                                      max_body_size, exit_on_error, echo, gil_switch_interval, trace_settings))


async def _serve_main(model_repository, host, port, models, rate_limit, resources, max_body_size,
                      exit_on_error, echo, gil_switch_interval, trace_settings) -> int:
    from .http import DEFAULT_MAX_BODY_SIZE, start_http, stop_http

    server = InferenceServer(model_repository, models=models, rate_limit=rate_limit,
                             rate_limit_resources=resources, gil_switch_interval=gil_switch_interval,
                             trace_settings=trace_settings)
    echo(f"loading model repository {server.repository}")
    await server.start()
    echo(server.model_table())
    if server.failed_models and exit_on_error:
        echo(f"error: failed to load {', '.join(server.failed_models)}; exiting "
             "(pass --no-exit-on-error to serve the others)")
        await server.stop()
        return 1
    try:
        runner, bound = await start_http(server, host, port, max_body_size or DEFAULT_MAX_BODY_SIZE)
    except OSError as exc:
        echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}")
        await server.stop()
        return 1
    loop = asyncio.get_running_loop()
    loop_name = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    echo(f"Started HTTPService at {host}:{bound} (KServe v2 on the {loop_name} event loop; metrics at "
         f"http://{host}:{bound}/metrics)")
    stop = asyncio.Event()
    received = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda s=sig: (received.append(s), stop.set()))
    await stop.wait()
    name = signal.Signals(received[0]).name if received else "signal"
    echo(f"{name} received: no new connections; answering requests already accepted")
    server.stopping = True
    await stop_http(runner)
    await server.stop()
    echo("server stopped")
    return 0
