"""Parameter initialisation with an explicit, seedable random generator.

Every layer draws its initial weights from a NumPy ``Generator``: the one passed as ``rng=``, or else
this module's generator, which is seeded with 0 when the package is imported and re-seeded by
:func:`manual_seed`. So ``nn.init.manual_seed(0); model = build()`` always gives the same weights.

The default for ``Linear`` and ``Conv2d`` is PyTorch's: weights from
``kaiming_uniform(a=sqrt(5))``, which is the uniform distribution on
``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, and biases from the same interval.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["manual_seed", "get_rng", "calculate_fan_in_and_fan_out", "calculate_gain",
           "uniform_", "normal_", "zeros_", "ones_", "kaiming_uniform_", "kaiming_normal_",
           "xavier_uniform_", "xavier_normal_"]

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Re-seed the module-level generator used when no ``rng=`` is given; returns it."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def get_rng(rng: np.random.Generator | int | None = None) -> np.random.Generator:
    """``rng`` itself if it is a Generator, a new Generator if it is an int seed, else the module's."""
    if rng is None:
        return _rng
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def _array(t) -> np.ndarray:
    a = getattr(t, "data", t)
    if not isinstance(a, np.ndarray):
        raise TypeError(f"expected an ndarray or a Tensor/Parameter, got {type(t).__name__}")
    return a


def calculate_fan_in_and_fan_out(t) -> tuple[int, int]:
    """``fan_in = shape[1] * receptive field``, ``fan_out = shape[0] * receptive field`` (PyTorch's
    convention for a weight of shape ``(out, in, *kernel)``)."""
    shape = _array(t).shape
    if len(shape) < 2:
        raise ValueError(f"fan in/out need a weight with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table, for the common cases)."""
    if nonlinearity in ("linear", "identity", "sigmoid", "conv1d", "conv2d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def uniform_(t, low: float = 0.0, high: float = 1.0, rng=None):
    """Fill ``t`` in place from U(low, high); returns ``t``."""
    a = _array(t)
    a[...] = get_rng(rng).uniform(low, high, size=a.shape)
    return t


def normal_(t, mean: float = 0.0, std: float = 1.0, rng=None):
    a = _array(t)
    a[...] = get_rng(rng).normal(mean, std, size=a.shape)
    return t


def zeros_(t):
    _array(t)[...] = 0
    return t


def ones_(t):
    _array(t)[...] = 1
    return t


def kaiming_uniform_(t, a: float = 0.0, nonlinearity: str = "leaky_relu", rng=None):
    """He/Kaiming uniform: U(-b, b) with ``b = gain * sqrt(3 / fan_in)``. With PyTorch's
    layer default ``a = sqrt(5)`` this is ``b = 1 / sqrt(fan_in)``."""
    fan_in, _ = calculate_fan_in_and_fan_out(t)
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan_in)
    return uniform_(t, -bound, bound, rng)


def kaiming_normal_(t, a: float = 0.0, nonlinearity: str = "leaky_relu", rng=None):
    fan_in, _ = calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan_in), rng)


def xavier_uniform_(t, gain: float = 1.0, rng=None):
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, rng)


def xavier_normal_(t, gain: float = 1.0, rng=None):
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)
