"""Optimizers that update parameters in place: SGD, Adam, AdamW (PyTorch's update rules).

An optimizer only touches ``param.data`` and ``param.grad`` (NumPy arrays), so it works with any
object that has those two attributes, ``mlsys_lab.nn.Parameter`` included. Every update is written
in place (``out=``) so that a step allocates as little as possible; the formulas are given in each
class's docstring and match ``torch.optim`` on the same inputs.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Base class: holds ``param_groups`` and per-parameter ``state``.

    ``params`` is an iterable of parameters, or of dicts ``{"params": [...], "lr": ..., ...}`` (one
    parameter group each, like PyTorch; options missing from a group take the optimizer's defaults).
    ``optimizer.lr`` reads the learning rate of the first group and sets that of every group;
    schedulers in :mod:`mlsys_lab.optim.schedules` change ``group["lr"]`` as PyTorch's do.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict[int, dict] = {}  # id(param) -> state of that parameter
        if hasattr(params, "data") and hasattr(params, "grad"):
            raise TypeError("params must be an iterable of parameters (e.g. model.parameters()), "
                            "got a single parameter; wrap it in a list")
        if isinstance(params, dict):
            raise TypeError("params must be an iterable of parameters or of parameter-group dicts, "
                            "got a dict; wrap it in a list")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: list[dict] = []
        seen: set[int] = set()
        for g in groups:
            if not isinstance(g, dict):
                raise TypeError("params must be all parameters or all dicts, not a mixture")
            if "params" not in g:
                raise ValueError("a parameter group dict needs a 'params' entry")
            ps = g["params"]
            ps = [ps] if hasattr(ps, "data") and hasattr(ps, "grad") else list(ps)
            for p in ps:
                if not (hasattr(p, "data") and hasattr(p, "grad")):
                    raise TypeError(f"optimizer can only update objects with .data and .grad "
                                    f"(e.g. nn.Parameter), got {type(p).__name__}")
                if id(p) in seen:
                    raise ValueError("a parameter appears more than once in the optimizer's params")
                seen.add(id(p))
            unknown = set(g) - set(self.defaults) - {"params"}
            if unknown:
                raise ValueError(f"unknown option(s) {sorted(unknown)} for {type(self).__name__}; "
                                 f"known: {sorted(self.defaults)}")
            group = {**self.defaults, **g, "params": ps}
            self._check_group(group)
            self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        lr = group.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, Real) or lr < 0:
            raise ValueError(f"invalid learning rate: {lr!r} (must be a number >= 0)")

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for g in self.param_groups:
            g["lr"] = value

    def parameters(self):
        for g in self.param_groups:
            yield from g["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: ``p.grad = None`` (default, as PyTorch), or fill them with zeros."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def step(self) -> None:
        """Update every parameter that has a gradient (parameters whose ``grad`` is None are skipped)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = np.asarray(p.grad)
                if g.shape != p.data.shape:
                    raise ValueError(f"gradient shape {g.shape} does not match parameter shape "
                                     f"{p.data.shape}")
                self._update(p.data, g, self.state.setdefault(id(p), {}), group)

    def _update(self, w: np.ndarray, g: np.ndarray, state: dict, group: dict) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
            lines.append(f"  group {i}: {len(g['params'])} params, {opts}")
        return "\n".join(lines + [")"])


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    With gradient :math:`g`, weight decay :math:`\lambda`, momentum :math:`\mu`, dampening
    :math:`\tau`::

        g = g + weight_decay * w                    (L2 penalty, added to the gradient)
        b = g                                       (first step)
        b = momentum * b + (1 - dampening) * g      (later steps)
        d = g + momentum * b  if nesterov else b    (d = g when momentum == 0)
        w = w - lr * d
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check_group(self, group):
        super()._check_group(group)
        if group["momentum"] < 0:
            raise ValueError(f"invalid momentum value: {group['momentum']} (must be >= 0)")
        if group["weight_decay"] < 0:
            raise ValueError(f"invalid weight_decay value: {group['weight_decay']} (must be >= 0)")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")

    def _update(self, w, g, state, group):
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd != 0:
            g = g + wd * w  # new array: never modify p.grad itself
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= mu
                buf += (1 - group["dampening"]) * g
            if group["nesterov"]:
                g = g + mu * buf
            else:
                g = buf
        if g is w:  # not possible today, but keep the in-place update safe
            g = g.copy()
        w -= lr * g


class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam``: weight decay is an **L2 penalty added to the gradient**.

    At step :math:`t` (1-based)::

        g = g + weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        (amsgrad: v_max = max(v_max, v), and v_max replaces v below)
        w = w - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    With Adam the decay is divided by :math:`\sqrt{v}` like the rest of the gradient, so weights
    with large gradients are decayed less; :class:`AdamW` decouples it.
    """

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    def _check_group(self, group):
        super()._check_group(group)
        b1, b2 = group["betas"]
        if not 0.0 <= b1 < 1.0:
            raise ValueError(f"invalid beta parameter at index 0: {b1} (must be in [0, 1))")
        if not 0.0 <= b2 < 1.0:
            raise ValueError(f"invalid beta parameter at index 1: {b2} (must be in [0, 1))")
        if group["eps"] < 0:
            raise ValueError(f"invalid epsilon value: {group['eps']} (must be >= 0)")
        if group["weight_decay"] < 0:
            raise ValueError(f"invalid weight_decay value: {group['weight_decay']} (must be >= 0)")

    def _update(self, w, g, state, group):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(w)
            state["exp_avg_sq"] = np.zeros_like(w)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(w)
        state["step"] += 1
        t = state["step"]
        if wd != 0:
            if self._decoupled:
                w *= 1 - lr * wd        # AdamW: shrink the weights, independent of the gradient
            else:
                g = g + wd * w          # Adam: L2 penalty enters the moment estimates
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step_size = lr / (1 - b1 ** t)
        denom = np.sqrt(v)
        denom /= math.sqrt(1 - b2 ** t)
        denom += eps
        np.divide(m, denom, out=denom)
        denom *= step_size
        w -= denom


class AdamW(Adam):
    r"""AdamW, as ``torch.optim.AdamW``: **decoupled** weight decay (default ``weight_decay=1e-2``).

    Before the Adam update, the weights shrink by a factor that does not depend on the gradient::

        w = w * (1 - lr * weight_decay)
        (then the Adam update of :class:`Adam` with weight_decay = 0)
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)
