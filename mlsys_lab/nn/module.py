"""``Module`` and ``Parameter``: the containers every layer is built from.

A module's parameters are the :class:`Parameter` objects among its attributes, its children the
:class:`Module` objects among its attributes, both in the order they were assigned. Names in
``named_parameters()`` and ``state_dict()`` are dotted paths, as in PyTorch: ``"0.weight"``,
``"encoder.fc1.bias"``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np

from ..autograd import Tensor

__all__ = ["Parameter", "Module", "StateDictKeyError"]


class StateDictKeyError(KeyError):
    """Missing or unexpected keys in ``load_state_dict`` (a KeyError whose message prints plainly)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (``requires_grad=True`` by default).

    ``Parameter(array)`` keeps the array's dtype (use float32 arrays for float32 weights).
    """

    def __init__(self, data, requires_grad: bool = True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype})"


class Module:
    """Base class of all layers and models.

    Subclasses assign their parameters and sub-modules as attributes in ``__init__`` (after
    ``super().__init__()``) and define ``forward``; calling the module calls ``forward``. NumPy
    arrays passed to a module are wrapped in a (non-trainable) Tensor first.
    """

    def __init__(self):
        self.training = True

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        args = tuple(Tensor(a) if isinstance(a, np.ndarray) else a for a in args)
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ structure
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """This module (name ``""``) and every sub-module, depth first."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(dotted_name, parameter)`` for every parameter, own ones first, each object once."""
        seen: set[int] = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, value in vars(mod).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{mod_name}.{name}" if mod_name else name), value

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def num_parameters(self) -> int:
        """Total number of scalar weights."""
        return sum(p.data.size for p in self.parameters())

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every sub-module and on this one (children first); returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (``.training``) here and in every sub-module; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) expects a bool, got {type(mode).__name__}")
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> "Module":
        """Evaluation mode: ``train(False)``. Layers such as Dropout behave differently."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (``grad = None``)."""
        for p in self.parameters():
            p.grad = None

    # ------------------------------------------------------------------ saving and loading
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """A copy of every parameter's array, by dotted name."""
        return OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays into the parameters (in place, cast to each parameter's dtype).

        Everything is checked before anything is copied. With ``strict=True`` (default) missing and
        unexpected keys raise a ``KeyError`` that lists them; a shape mismatch always raises a
        ``ValueError`` naming the key and both shapes. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict expects a dict of arrays, got {type(state_dict).__name__}")
        own = OrderedDict(self.named_parameters())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing key(s) {missing}")
            if unexpected:
                parts.append(f"unexpected key(s) {unexpected}")
            raise StateDictKeyError(f"error loading state_dict into {type(self).__name__}: "
                           + "; ".join(parts))
        arrays = {}
        for k, p in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            v = np.asarray(v.data if isinstance(v, Tensor) else v)
            if v.shape != p.data.shape:
                raise ValueError(f"size mismatch for {k!r}: the checkpoint has shape {v.shape}, "
                                 f"the model's parameter has shape {p.data.shape}")
            arrays[k] = v
        for k, v in arrays.items():
            own[k].data[...] = v
        return missing, unexpected

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """One line of settings shown inside ``Name(...)``; layers override it."""
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        extra = self.extra_repr()
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = [f"{type(self).__name__}(" + (extra if extra else "")]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"
