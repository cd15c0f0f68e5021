"""Bundled data sets and a mini-batch loader (NumPy only; no downloads).

>>> from mlsys_lab.data import load_digits, train_test_split, DataLoader
>>> x, y = load_digits()                       # (1797, 64) float32 in [0, 1], int64 labels
>>> x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, seed=0)
>>> loader = DataLoader(x_tr, y_tr, batch_size=64, shuffle=True, seed=0)
"""

from .digits import load_digits, train_test_split
from .loader import DataLoader

__all__ = ["load_digits", "train_test_split", "DataLoader"]
