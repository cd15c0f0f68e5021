"""Basic layers: Linear, activations, Flatten, Dropout, Sequential."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from . import init
from .module import Module, Parameter

__all__ = ["Linear", "ReLU", "GELU", "Tanh", "Sigmoid", "Identity", "Flatten", "Dropout", "Sequential"]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class Linear(Module):
    """``y = x @ weight.T + bias``, with ``weight`` of shape ``(out_features, in_features)`` (as PyTorch).

    Initialisation (PyTorch's default): ``weight`` and ``bias`` uniform on
    ``[-1/sqrt(in_features), 1/sqrt(in_features)]``, drawn from ``rng`` (a Generator or int seed) or
    from the generator of :mod:`mlsys_lab.nn.init`. ``x`` may have any number of leading dimensions.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32,
                 rng=None):
        super().__init__()
        self.in_features = _check_positive_int("in_features", in_features)
        self.out_features = _check_positive_int("out_features", out_features)
        rng = init.get_rng(rng)
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        if bias:
            self.bias = Parameter(np.empty(out_features, dtype=dtype))
            bound = 1.0 / math.sqrt(in_features)
            init.uniform_(self.bias, -bound, bound, rng=rng)
        else:
            self.bias = None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) expects inputs whose last "
                             f"dimension is {self.in_features}, got shape {tuple(x.shape)}")
        # F.linear is x @ weight.T + bias recorded as one node with a hand-written backward
        # (dx = g @ W, dW = g.T @ x, db = g summed over the batch): the same numbers as composing
        # the three ops, with one graph node instead of three.
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class ReLU(Module):
    """``max(x, 0)`` elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class GELU(Module):
    """Gaussian error linear unit, ``x * Phi(x)``; ``approximate="tanh"`` uses the tanh formula."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Flatten(Module):
    """Merge dimensions ``start_dim`` .. last into one: ``(N, C, H, W) -> (N, C*H*W)`` by default."""

    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x: Tensor) -> Tensor:
        shape = tuple(x.shape)
        d = self.start_dim if self.start_dim >= 0 else len(shape) + self.start_dim
        if not 0 <= d < max(len(shape), 1):
            raise ValueError(f"Flatten(start_dim={self.start_dim}) needs an input with more than "
                             f"{self.start_dim} dimensions, got shape {shape}")
        return x.reshape(shape[:d] + (int(np.prod(shape[d:])),))

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}"


class Dropout(Module):
    """In training mode, zero each element with probability ``p`` and scale the rest by ``1/(1-p)``;
    in evaluation mode (``model.eval()``), the identity."""

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = p
        self._rng = init.get_rng(rng)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = self._rng.random(x.shape) >= self.p
        return x * (keep / (1.0 - self.p)).astype(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Sequential(Module):
    """Apply modules one after the other: ``Sequential(Linear(64, 32), ReLU(), Linear(32, 10))``.

    Children are named ``"0"``, ``"1"``, ... (or by the keys of an ``OrderedDict`` passed alone);
    ``seq[i]``, ``seq[a:b]``, ``len(seq)``, ``iter(seq)`` and ``seq.append(m)`` work as for a list.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, m in items:
            self._add(name, m)

    def _add(self, name: str, m: Module) -> None:
        if not isinstance(m, Module):
            raise TypeError(f"Sequential takes Modules, got {type(m).__name__} for entry {name!r}")
        setattr(self, name, m)

    def append(self, m: Module) -> "Sequential":
        self._add(str(len(self)), m)
        return self

    def __len__(self) -> int:
        return sum(1 for _ in self.children())

    def __iter__(self):
        return self.children()

    def __getitem__(self, idx):
        mods = list(self.named_children())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(mods[idx]))
        return mods[idx][1]

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x
