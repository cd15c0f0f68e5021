"""A minimal shuffling mini-batch loader over in-memory NumPy arrays."""

from __future__ import annotations

from numbers import Integral

import numpy as np

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over ``(x_batch, y_batch)`` pairs of NumPy arrays, one epoch per ``for`` loop.

    ``DataLoader(x, y, batch_size=32, shuffle=True, seed=0, drop_last=False)``

    - ``len(loader)`` is the number of batches in one epoch.
    - With ``shuffle=True`` every epoch (every new ``iter(loader)``) visits the samples in a new
      order, drawn from ``seed`` and the epoch number only: two loaders made with the same seed give
      the same batches, epoch after epoch. ``loader.epoch`` counts the epochs started so far, and
      ``loader.set_epoch(k)`` jumps to epoch ``k`` (e.g. when resuming).
    - ``drop_last=True`` drops the final batch when it is smaller than ``batch_size``.
    - ``y`` may be ``None``: then each batch is ``x_batch`` alone.

    Batches are NumPy arrays (copies, so they can be modified freely); wrap them in
    ``mlsys_lab.Tensor`` (or pass them straight to an ``nn`` module, which does it for you).
    """

    def __init__(self, x, y=None, batch_size: int = 32, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError("x must have at least one dimension (the sample axis), got a scalar")
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0:
                raise ValueError("y must have at least one dimension (the sample axis), got a scalar")
            if len(y) != len(x):
                raise ValueError(f"x and y must have the same number of samples, got len(x)={len(x)} "
                                 f"and len(y)={len(y)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, Integral):
            raise TypeError(f"batch_size must be a positive int, got {batch_size!r}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size}")
        if len(x) == 0:
            raise ValueError("the data set is empty (len(x) == 0)")
        if drop_last and batch_size > len(x):
            raise ValueError(f"batch_size={batch_size} is larger than the data set ({len(x)} samples) "
                             "and drop_last=True, so no batch would be produced")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` produce the order of epoch ``epoch`` (0-based)."""
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of epoch ``epoch``: a permutation when shuffling, else ``arange``."""
        n = len(self.x)
        if not self.shuffle:
            return np.arange(n)
        # One independent stream per (seed, epoch): no hidden state carried between epochs.
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def __iter__(self):
        idx = self.order(self.epoch)
        self.epoch += 1
        return self._batches(idx)

    def _batches(self, idx):
        b = self.batch_size
        for i in range(len(self)):
            j = idx[i * b:(i + 1) * b]
            if self.y is None:
                yield self.x[j]
            else:
                yield self.x[j], self.y[j]

    def __repr__(self) -> str:
        return (f"DataLoader(n={len(self.x)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last}, batches={len(self)})")
