"""Optimizers and learning-rate schedules (PyTorch's names, update rules and semantics).

>>> from mlsys_lab import optim
>>> opt = optim.AdamW(model.parameters(), lr=1e-3)          # doctest: +SKIP
>>> sched = optim.CosineAnnealingLR(opt, T_max=20)           # doctest: +SKIP
>>> for epoch in range(20):                                  # doctest: +SKIP
...     for xb, yb in loader:
...         opt.zero_grad(); F.cross_entropy(model(xb), yb).backward(); opt.step()
...     sched.step()
"""

from .optimizers import SGD, Adam, AdamW, Optimizer
from . import schedules
from . import schedules as lr_scheduler  # PyTorch's module name: optim.lr_scheduler.StepLR
from .schedules import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR, StepLR

__all__ = ["schedules", "lr_scheduler", "Optimizer", "SGD", "Adam", "AdamW", "LRScheduler", "StepLR", "LinearLR",
           "CosineAnnealingLR", "SequentialLR"]
