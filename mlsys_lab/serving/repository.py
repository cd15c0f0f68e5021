"""The model repository on disk, and the loaded model versions it becomes.

Triton's layout, which this server reads::

    <repository>/
      <model name>/
        config.pbtxt            # or config.json; see mlsys_lab.serving.config
        1/                      # a version: a folder named by a positive integer
          model.npz             # what the backend reads (model.py for the numpy backend)
        2/ ...
        warmup/                 # optional: files for model_warmup input_data_file
        initial_state/          # optional: files for sequence_batching state initial_state

Which versions are served follows ``version_policy``: ``latest { num_versions: n }`` (default n = 1),
``all {}``, or ``specific { versions: [...] }``. A request without a version goes to the highest
version served. Folders whose name starts with ``.`` or ``_`` are ignored.

A :class:`ModelVersion` is one loaded version: its instances, its scheduler (a dynamic batcher, the
default scheduler, a sequence batcher or an ensemble) and its statistics. It is ready only once its
instances are loaded and its warm-up requests succeeded.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from .batcher import DynamicBatcher
from .config import ModelConfig
from .ensemble import EnsembleScheduler
from .errors import ConfigError, InvalidArgument, ServingError, Unavailable
from .instances import create_instances
from .request import InferenceRequest, validate_request
from .sequence import SequenceBatcher
from .stats import ModelStats
from .warmup import run_warmup

__all__ = ["ModelVersion", "scan_repository", "select_versions", "READY", "UNAVAILABLE", "LOADING",
           "UNLOADING"]

READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"


def scan_repository(path: str | Path) -> dict[str, Path]:
    """``{model name: folder}`` for every model folder in the repository (sorted by name)."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"model repository {path} is not a folder")
    return {p.name: p for p in sorted(path.iterdir())
            if p.is_dir() and not p.name.startswith((".", "_"))}


def select_versions(config: ModelConfig, model_dir: Path) -> list[int]:
    """The versions to serve, ascending, per the config's ``version_policy``."""
    present = sorted(int(p.name) for p in model_dir.iterdir()
                     if p.is_dir() and p.name.isdigit() and int(p.name) > 0 and str(int(p.name)) == p.name)
    policy = config["version_policy"]
    if "all" in policy:
        chosen = present
    elif "specific" in policy:
        wanted = sorted(set(policy["specific"]["versions"]))
        missing = [v for v in wanted if v not in present]
        if missing:
            raise ConfigError(f"model '{config.name}': version_policy asks for version(s) {missing}, which "
                              f"have no folder in {model_dir}")
        chosen = wanted
    else:
        chosen = present[-policy["latest"]["num_versions"]:]
    if not chosen:
        raise ConfigError(f"model '{config.name}': no version folder (e.g. {model_dir / '1'}) to serve")
    return chosen


class ModelVersion:
    """One loaded version of a model. ``state`` is LOADING, READY, UNLOADING or UNAVAILABLE
    (``reason`` then says why)."""

    def __init__(self, config: ModelConfig, model_dir: Path, version: int, rate_limiter):
        self.config = config
        self.name = config.name
        self.model_dir = Path(model_dir)
        self.version = str(version)
        self.rate_limiter = rate_limiter
        self.stats = ModelStats(self.name, self.version)
        self.state = LOADING
        self.reason = ""
        self.instances = []
        self.scheduler = None

    def __repr__(self) -> str:
        return f"ModelVersion({self.name!r}, version={self.version}, state={self.state})"

    async def load(self, resolve=None) -> None:
        """Create instances (each in its own thread), build the scheduler, warm up, start.

        ``resolve(name, version)`` finds a loaded :class:`ModelVersion` (for an ensemble's steps)."""
        loop = asyncio.get_running_loop()
        try:
            if self.config.is_ensemble:
                steps = self.config["ensemble_scheduling"]["step"]
                self.scheduler = EnsembleScheduler(self, [resolve(s["model_name"], s["model_version"])
                                                          for s in steps])
            else:
                self.instances = create_instances(self.config, self.model_dir, int(self.version))
                await asyncio.gather(*(loop.run_in_executor(i.executor, i.load) for i in self.instances))
                self.rate_limiter.register(self.instances)
                if self.config.sequence_batching is not None:
                    self.scheduler = SequenceBatcher(self)
                else:
                    self.scheduler = DynamicBatcher(self)
                await run_warmup(self)
            self.scheduler.start()
            self.state = READY
        except Exception as exc:
            self.state = UNAVAILABLE
            self.reason = str(exc) if isinstance(exc, ServingError) else f"{type(exc).__name__}: {exc}"
            self._close_instances()
            raise

    async def unload(self) -> None:
        """Stop taking requests, finish the queued ones, release the instances."""
        if self.state != READY:
            return
        self.state = UNLOADING
        await self.scheduler.stop()
        self._close_instances()
        self.state = UNAVAILABLE
        self.reason = "unloaded"

    def _close_instances(self) -> None:
        for inst in self.instances:
            try:
                inst.close()
            except Exception:
                pass

    @property
    def pending_count(self) -> int:
        return self.scheduler.pending_count if self.scheduler is not None else 0

    async def infer(self, request: InferenceRequest) -> dict:
        """Validate ``request`` against the config, schedule it, return every output of the model."""
        trace = request.trace
        if trace is not None:
            trace.stamp("REQUEST_START")
        if self.state != READY:
            raise Unavailable(f"model '{self.name}' version {self.version} is not ready ({self.state.lower()}"
                              + (f": {self.reason}" if self.reason else "") + ")")
        try:
            validate_request(self.config, request)
        except InvalidArgument:
            self.record_invalid(request)
            raise
        try:
            return await self.scheduler.infer(request)
        finally:
            if trace is not None:
                trace.stamp("REQUEST_END")

    def record_invalid(self, request_or_arrival) -> None:
        """Count a request rejected before it reached the scheduler (reason OTHER)."""
        arrival = getattr(request_or_arrival, "arrival_ns", request_or_arrival)
        self.stats.record_failure(time.monotonic_ns() - arrival, "OTHER")

    def metadata(self, versions: list[str]) -> dict:
        """The KServe v2 model metadata response."""
        batch = [-1] if self.config.max_batch_size > 0 else []
        return {
            "name": self.name,
            "versions": versions,
            "platform": self.config.platform,
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": batch + list(t.dims)}
                       for t in self.config.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": batch + list(t.dims)}
                        for t in self.config.outputs],
        }

