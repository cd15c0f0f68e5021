"""Learning-rate schedules with PyTorch's names and semantics (``torch.optim.lr_scheduler``).

Use them exactly like PyTorch's: build the scheduler after the optimizer (this sets the first
learning rate), then call ``scheduler.step()`` once per epoch (or per iteration), **after**
``optimizer.step()``::

    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = optim.SequentialLR(opt, [optim.LinearLR(opt, start_factor=0.1, total_iters=5),
                                     optim.CosineAnnealingLR(opt, T_max=45)], milestones=[5])
    for epoch in range(50):
        train_one_epoch(...)           # uses opt.lr == sched.get_last_lr()[0]
        sched.step()

Like PyTorch's, ``step()`` updates ``group["lr"]`` *recursively* from its current value (so
schedulers can be chained and outside changes to the learning rate are respected); each class
also documents its closed form, ``closed_form_lr(epoch)``, which gives the same numbers when the
scheduler acts alone.
"""

from __future__ import annotations

import math
from bisect import bisect_right

from .optimizers import Optimizer

__all__ = ["LRScheduler", "StepLR", "LinearLR", "CosineAnnealingLR", "SequentialLR"]


class LRScheduler:
    """Base class. ``last_epoch`` counts the ``step()`` calls (0 right after construction);
    ``base_lrs`` are the groups' learning rates when the first scheduler was attached
    (``group["initial_lr"]``); ``get_last_lr()`` returns the learning rate of each group."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an mlsys_lab.optim.Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for g in optimizer.param_groups:
                g.setdefault("initial_lr", g["lr"])
        else:
            for i, g in enumerate(optimizer.param_groups):
                if "initial_lr" not in g:
                    raise KeyError(f"param_groups[{i}] has no 'initial_lr': last_epoch={last_epoch} "
                                   "is only for resuming a scheduler that was already stepped")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The learning rates for ``self.last_epoch``, computed from the groups' current ones."""
        raise NotImplementedError

    def closed_form_lr(self, epoch: int) -> list[float]:
        """The learning rates at ``epoch`` from ``base_lrs`` alone (the scheduler acting alone)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rate of each parameter group, as last set by this scheduler."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and write the new learning rates into the optimizer."""
        self._step_count += 1
        self._update_lr(None)

    def _update_lr(self, epoch: int | None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:  # used by SequentialLR to (re)start a scheduler at a milestone
            self.last_epoch = epoch
            values = self.closed_form_lr(epoch)
        for g, lr in zip(self.optimizer.param_groups, values, strict=True):
            g["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def _groups_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if not k.startswith("_") and k not in ("optimizer", "base_lrs")]
        return f"{type(self).__name__}(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    Closed form: ``lr(e) = base_lr * gamma ** (e // step_size)``.
    """

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if int(step_size) != step_size or step_size <= 0:
            raise ValueError(f"step_size must be a positive int, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._groups_lr()
        return [lr * self.gamma for lr in self._groups_lr()]

    def closed_form_lr(self, epoch):
        return [b * self.gamma ** (epoch // self.step_size) for b in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale the learning rate by a factor going linearly from ``start_factor`` (epoch 0) to
    ``end_factor`` (epoch ``total_iters`` and after): linear warm-up when ``start_factor < 1``.

    Closed form: ``lr(e) = base_lr * (start + (end - start) * min(e, total_iters) / total_iters)``.
    """

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        if not 0 < start_factor <= 1:
            raise ValueError(f"start_factor must lie in (0, 1], got {start_factor}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"end_factor must lie in [0, 1], got {end_factor}")
        if int(total_iters) != total_iters or total_iters <= 0:
            raise ValueError(f"total_iters must be a positive int, got {total_iters!r}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = int(total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        e, s, f = self.last_epoch, self.start_factor, self.end_factor
        if e == 0:
            return [lr * s for lr in self._groups_lr()]
        if self._is_initial or e > self.total_iters:
            return self._groups_lr()
        # ratio of factor(e) to factor(e - 1)
        ratio = 1.0 + (f - s) / (self.total_iters * s + (e - 1) * (f - s))
        return [lr * ratio for lr in self._groups_lr()]

    def closed_form_lr(self, epoch):
        s, f, n = self.start_factor, self.end_factor, self.total_iters
        return [b * (s + (f - s) * min(n, epoch) / n) for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base learning rate down to ``eta_min`` over ``T_max`` epochs
    (no restarts: after ``T_max`` the cosine continues and the rate rises again, as in PyTorch).

    Closed form: ``lr(e) = eta_min + (base_lr - eta_min) * (1 + cos(pi * e / T_max)) / 2``.
    """

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        if int(T_max) != T_max or T_max <= 0:
            raise ValueError(f"T_max must be a positive int, got {T_max!r}")
        self.T_max = int(T_max)
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        e, T, lo = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._groups_lr()
        if self._step_count == 1 and e > 0:  # resumed with last_epoch >= 0
            return self.closed_form_lr(e)
        if (e - 1 - T) % (2 * T) == 0:  # the trough: the recursive ratio below would be 0/0
            return [lr + (b - lo) * (1 - math.cos(math.pi / T)) / 2
                    for lr, b in zip(self._groups_lr(), self.base_lrs)]
        ratio = (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T))
        return [ratio * (lr - lo) + lo for lr in self._groups_lr()]

    def closed_form_lr(self, epoch):
        c = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return [self.eta_min + (b - self.eta_min) * c for b in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run ``schedulers[0]`` until ``milestones[0]``, then ``schedulers[1]`` (restarted at its epoch 0)
    until ``milestones[1]``, and so on. The usual use: linear warm-up, then cosine decay::

        warm = LinearLR(opt, start_factor=0.1, total_iters=5)
        cos = CosineAnnealingLR(opt, T_max=epochs - 5)
        sched = SequentialLR(opt, [warm, cos], milestones=[5])
    """

    def __init__(self, optimizer, schedulers, milestones, last_epoch: int = -1):
        schedulers, milestones = list(schedulers), list(milestones)
        if not schedulers:
            raise ValueError("SequentialLR needs at least one scheduler")
        for i, s in enumerate(schedulers):
            if not isinstance(s, LRScheduler):
                raise TypeError(f"schedulers[{i}] is a {type(s).__name__}, not an LRScheduler")
            if s.optimizer is not optimizer:
                raise ValueError(f"schedulers[{i}] ({type(s).__name__}) belongs to a different optimizer")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR needs one milestone fewer than schedulers, got "
                             f"{len(schedulers)} schedulers and {len(milestones)} milestones")
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {milestones}")
        self.optimizer = optimizer
        self._schedulers = schedulers
        self.milestones = milestones
        self.last_epoch = last_epoch + 1
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        # Each scheduler's constructor already took a step: undo them, restart from the base rates.
        for g in optimizer.param_groups:
            g["lr"] = g["initial_lr"]
        for s in schedulers:
            s.last_epoch -= 1
        idx = bisect_right(milestones, 0)
        schedulers[idx]._initial_step()
        self._last_lr = schedulers[idx].get_last_lr()

    @property
    def schedulers(self):
        return list(self._schedulers)

    def step(self) -> None:
        self.last_epoch += 1
        idx = bisect_right(self.milestones, self.last_epoch)
        s = self._schedulers[idx]
        if idx > 0 and self.milestones[idx - 1] == self.last_epoch:
            s._update_lr(0)  # the next scheduler starts at its own epoch 0 (closed form)
        else:
            s.step()
        self._last_lr = s.get_last_lr()
