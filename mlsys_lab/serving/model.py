"""Backends: the code that executes a model on one batch of inputs.

A model's config names its backend (``backend: "mlp"``); each model *instance* (see
:mod:`.instances`) holds one backend object and calls ``execute`` on whole batches: every input
arrives with its batch dimension first (for a model with ``max_batch_size > 0``) and every output
must come back with the same leading size. Inputs may be read-only views of the request body; a
backend must not write into them. Two backends ship with the server:

``mlp``
    A multi-layer perceptron in NumPy: ``y = act(x W0^T + b0) ... W_last^T + b_last``. Its weights
    come from ``<version>/model.npz`` (or ``default_model_filename``), read with
    ``allow_pickle=False`` so a weight file cannot run code: arrays ``weight_0, bias_0, weight_1,
    bias_1, ...`` with ``weight_i`` of shape ``(out, in)`` as in PyTorch and :class:`mlsys_lab.nn.Linear`.
    Config ``parameters``: ``activation`` (``relu`` (default), ``tanh``, ``gelu`` (tanh
    approximation) or ``none``, between layers), and, instead of a file, ``generate_layer_sizes`` (e.g. ``"2048,2048,2048"``)
    with ``generate_seed`` to draw the weights from a seed at load time (how the benchmark's
    weight-bound model avoids shipping tens of MB). Exactly one input and one output.

``numpy``
    Python code in ``<version>/model.py`` (like Triton's Python backend, with a batched API): the file
    defines ``class Model`` with an optional ``initialize(self, args)`` (``args``: ``model_config``
    (the config as a dict), ``model_name``, ``model_version``, ``model_instance_name``,
    ``model_repository`` (the model's folder), ``parameters``), ``execute(self, inputs) -> outputs``
    on dicts of arrays, and an optional ``finalize(self)``. Loading a repository runs its code: serve
    only repositories you trust, as with Triton.

Inference runs on plain NumPy rather than the autograd ``Tensor``: serving needs no graph for
backward, and one ``matmul`` per layer is what the weight-bound benchmark should measure.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from .config import ModelConfig, numpy_dtype
from .errors import ConfigError

__all__ = ["Backend", "MLPBackend", "NumpyBackend", "BACKENDS", "create_backend", "load_mlp_weights",
           "save_mlp_weights", "generate_mlp_weights"]


class Backend:
    """Base class: one object per model instance."""

    def __init__(self, config: ModelConfig, model_dir: Path, version: int, instance_name: str,
                 shared: dict):
        self.config = config
        self.model_dir = Path(model_dir)
        self.version = version
        self.version_dir = self.model_dir / str(version)
        self.instance_name = instance_name

    def execute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds (called once, when the model unloads)."""


# -------------------------------------------------------------------------------------------------- mlp

def save_mlp_weights(path, weights: list[np.ndarray], biases: list[np.ndarray]) -> None:
    """Write an ``mlp`` backend weight file: ``weight_i`` of shape ``(out, in)``, ``bias_i`` ``(out,)``."""
    arrays = {}
    for i, (w, b) in enumerate(zip(weights, biases)):
        arrays[f"weight_{i}"] = np.ascontiguousarray(w)
        arrays[f"bias_{i}"] = np.ascontiguousarray(b)
    np.savez(path, **arrays)


def load_mlp_weights(path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read an ``mlp`` weight file (``allow_pickle=False``) and check that the layers chain."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read MLP weights: {exc}") from None
    n = sum(1 for k in arrays if k.startswith("weight_"))
    expected = {f"{kind}_{i}" for i in range(n) for kind in ("weight", "bias")}
    if n == 0 or set(arrays) != expected:
        raise ConfigError(f"{path}: expected arrays weight_0, bias_0, ..., weight_{max(n - 1, 0)}, "
                          f"bias_{max(n - 1, 0)}, got {sorted(arrays)}")
    weights = [arrays[f"weight_{i}"] for i in range(n)]
    biases = [arrays[f"bias_{i}"] for i in range(n)]
    for i, (w, b) in enumerate(zip(weights, biases)):
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ConfigError(f"{path}: layer {i}: weight {w.shape} and bias {b.shape} do not form a layer")
        if i and w.shape[1] != weights[i - 1].shape[0]:
            raise ConfigError(f"{path}: layer {i} takes {w.shape[1]} features but layer {i - 1} gives "
                              f"{weights[i - 1].shape[0]}")
    return weights, biases


def generate_mlp_weights(sizes: list[int], seed: int, dtype=np.float32):
    """Weights for layers ``sizes[0] -> sizes[1] -> ...`` drawn from ``seed`` (uniform, scale
    ``1/sqrt(fan_in)``, PyTorch's default for Linear)."""
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(dtype))
        biases.append(rng.uniform(-bound, bound, size=fan_out).astype(dtype))
    return weights, biases


def _gelu(x):
    """GELU with the tanh approximation (torch's ``approximate="tanh"``): NumPy has no erf."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0, out=x),
    "tanh": lambda x: np.tanh(x, out=x),
    "gelu": _gelu,
    "none": lambda x: x,
}


class MLPBackend(Backend):
    """See the module docstring. Weights are shared by the instances of one model version."""

    def __init__(self, config, model_dir, version, instance_name, shared):
        super().__init__(config, model_dir, version, instance_name, shared)
        if len(config.inputs) != 1 or len(config.outputs) != 1:
            raise ConfigError(f"model '{config.name}': the mlp backend takes exactly one input and one output")
        params = config.parameters
        act = params.get("activation", "relu")
        if act not in _ACTIVATIONS:
            raise ConfigError(f"model '{config.name}': activation {act!r} is not one of {sorted(_ACTIVATIONS)}")
        self.activation = _ACTIVATIONS[act]
        self.input = config.inputs[0]
        self.output = config.outputs[0]
        with shared.setdefault("lock", threading.Lock()):
            if "layers" not in shared:
                shared["layers"] = self._load(config, params)
        self.layers = shared["layers"]
        n_in = int(np.prod(self.input.reshape or self.input.dims))
        n_out = int(np.prod(self.output.reshape or self.output.dims))
        if self.layers[0][0].shape[1] != n_in or self.layers[-1][0].shape[0] != n_out:
            raise ConfigError(f"model '{config.name}': the weights map {self.layers[0][0].shape[1]} features "
                              f"to {self.layers[-1][0].shape[0]}, but the config declares input dims "
                              f"{list(self.input.dims)} and output dims {list(self.output.dims)}")

    def _load(self, config, params):
        dtype = numpy_dtype(self.input.data_type)
        if dtype.kind != "f":
            raise ConfigError(f"model '{config.name}': the mlp backend needs a floating-point input")
        if "generate_layer_sizes" in params:
            try:
                sizes = [int(s) for s in params["generate_layer_sizes"].split(",")]
                seed = int(params.get("generate_seed", "0"))
            except ValueError:
                raise ConfigError(f"model '{config.name}': generate_layer_sizes must be comma-separated "
                                  "integers and generate_seed an integer") from None
            if len(sizes) < 2 or min(sizes) < 1:
                raise ConfigError(f"model '{config.name}': generate_layer_sizes needs at least two sizes")
            weights, biases = generate_mlp_weights(sizes, seed, dtype)
        else:
            filename = config.get("default_model_filename") or "model.npz"
            path = self.version_dir / filename
            if not path.is_file():
                raise ConfigError(f"model '{config.name}': no weight file {path} (and no "
                                  "generate_layer_sizes parameter)")
            weights, biases = load_mlp_weights(path)
        # Keep W as (out, in), contiguous, and the bias as a column: execute() works feature-major.
        return [(np.ascontiguousarray(w, dtype=dtype), b.astype(dtype).reshape(-1, 1))
                for w, b in zip(weights, biases)]

    def execute(self, inputs):
        # Feature-major: the activations travel as h^T (features x batch) and each layer is
        # h^T <- W @ h^T, so the weight matrix is GEMM's first operand and the batch its narrow N.
        # For the small batches a server forms this is OpenBLAS's faster orientation: on a
        # 2048x2048 float32 layer (SkylakeX kernel, 1 thread) batch 16 takes 1.7 ms this way and
        # 2.4 ms as x @ W^T, which packs the whole weight matrix as the B panel on every call.
        # At batch 1 both are the same matrix-vector product.
        x = inputs[self.input.name]
        batch = x.shape[0] if self.config.max_batch_size else None
        h = np.ascontiguousarray(x.reshape(batch if batch is not None else 1, -1).T)
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            h = w @ h
            h += b
            if i < last:
                h = self.activation(h)
        out_dims = self.output.reshape or self.output.dims
        shape = ((batch,) if batch is not None else ()) + tuple(out_dims)
        return {self.output.name: np.ascontiguousarray(h.T).reshape(shape)}


# ------------------------------------------------------------------------------------------------ numpy

_module_lock = threading.Lock()


class NumpyBackend(Backend):
    """See the module docstring: runs ``class Model`` from ``<version>/model.py``."""

    def __init__(self, config, model_dir, version, instance_name, shared):
        super().__init__(config, model_dir, version, instance_name, shared)
        filename = config.get("default_model_filename") or "model.py"
        path = self.version_dir / filename
        with _module_lock:
            if "module" not in shared:
                shared["module"] = self._import(path, config.name, version)
        cls = getattr(shared["module"], "Model", None)
        if cls is None or not callable(getattr(cls, "execute", None)):
            raise ConfigError(f"{path}: must define class Model with an execute(self, inputs) method")
        self.model = cls()
        init = getattr(self.model, "initialize", None)
        if init is not None:
            init({"model_config": config.to_dict(), "model_name": config.name, "model_version": str(version),
                  "model_instance_name": instance_name, "model_repository": str(self.model_dir),
                  "parameters": config.parameters})

    @staticmethod
    def _import(path: Path, name: str, version: int):
        if not path.is_file():
            raise ConfigError(f"model '{name}': no {path}")
        mod_name = f"_mlsys_lab_model_{name}_{version}_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise ConfigError(f"{path}: failed to import: {type(exc).__name__}: {exc}") from exc
        return module

    def execute(self, inputs):
        return self.model.execute(inputs)

    def close(self):
        fin = getattr(self.model, "finalize", None)
        if fin is not None:
            fin()


#: Backend name (the config's ``backend`` field) -> class.
BACKENDS: dict[str, type[Backend]] = {"mlp": MLPBackend, "numpy": NumpyBackend}


def create_backend(config: ModelConfig, model_dir: Path, version: int, instance_name: str,
                   shared: dict) -> Backend:
    """Instantiate ``config.backend`` for one instance; ``shared`` is common to a version's instances."""
    try:
        cls = BACKENDS[config.backend]
    except KeyError:
        raise ConfigError(f"model '{config.name}': unknown backend {config.backend!r}; this server has "
                          f"{', '.join(sorted(BACKENDS))} (and platform \"ensemble\")") from None
    return cls(config, model_dir, version, instance_name, shared)
