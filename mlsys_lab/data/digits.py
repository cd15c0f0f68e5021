"""The 8x8 handwritten digits, shipped with the package (no download).

The data are the 1,797 images of the test set of the UCI "Optical Recognition of Handwritten Digits"
data set (E. Alpaydin and C. Kaynak, 1998; https://doi.org/10.24432/C50P49, licensed CC BY 4.0), in
the form bundled with scikit-learn as ``sklearn.datasets.load_digits``. Each image is an 8x8 grid of
counts 0..16 (how many pixels of a 4x4 block of the original 32x32 bitmap were set). See
``mlsys_lab/data/README.md``.
"""

from __future__ import annotations

from importlib import resources
from numbers import Integral, Real

import numpy as np

__all__ = ["load_digits", "train_test_split"]

_NUM_CLASSES = 10


def _raw():
    with resources.files(__package__).joinpath("digits.npz").open("rb") as f:
        with np.load(f) as d:
            return d["images"].copy(), d["labels"].copy()


def load_digits(flatten: bool = True, scale: bool = True, dtype=np.float32):
    """Load the 1,797 8x8 digit images and their labels.

    Parameters
    ----------
    flatten : bool
        ``True`` (default): ``x`` has shape ``(1797, 64)``, one row per image, ready for an MLP.
        ``False``: ``x`` has shape ``(1797, 1, 8, 8)`` (N, C, H, W), ready for ``nn.Conv2d``.
    scale : bool
        ``True`` (default) divides the 0..16 pixel counts by 16, so that ``x`` lies in ``[0, 1]``.
    dtype : NumPy float dtype of ``x`` (default float32).

    Returns
    -------
    x : ndarray of ``dtype``
    y : ndarray of int64, shape ``(1797,)``, the digit 0..9 of each image.

    Data: the UCI optical digits test set as bundled with scikit-learn (CC BY 4.0).
    """
    images, labels = _raw()
    x = images.astype(dtype)
    if scale:
        x /= x.dtype.type(16)
    x = x.reshape(len(x), 64) if flatten else x.reshape(len(x), 1, 8, 8)
    return x, labels.astype(np.int64)


def train_test_split(x, y, test_size=0.25, seed: int = 0, stratify: bool = True, shuffle: bool = True):
    """Split ``x`` and ``y`` into a training and a test set, reproducibly.

    ``test_size`` is a fraction in (0, 1) or a number of samples. ``stratify=True`` (default) keeps
    the class proportions of ``y`` in both parts (each class is split on its own, and the rounding is
    spread so that the test set has exactly the requested size). The same ``seed`` always gives the
    same split. Returns ``x_train, x_test, y_train, y_test`` (scikit-learn's order); the rows of each
    part come in a seeded random order (``shuffle=False`` keeps the original order inside each part).
    """
    x = np.asarray(x)
    y = np.asarray(y)
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x and y must have the same length, got len(x)={n} and len(y)={len(y)}")
    if isinstance(test_size, bool) or not isinstance(test_size, Real):
        raise TypeError(f"test_size must be a float in (0, 1) or an int, got {test_size!r}")
    if isinstance(test_size, Integral):
        n_test = int(test_size)
    else:
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size as a fraction must lie in (0, 1), got {test_size}")
        n_test = int(np.ceil(test_size * n))
    if not 0 < n_test < n:
        raise ValueError(f"test_size={test_size!r} leaves {n_test} of {n} samples for the test set; "
                         "both parts must be non-empty")
    rng = np.random.default_rng(seed)
    if not stratify:
        perm = rng.permutation(n)
        test_idx, train_idx = perm[:n_test], perm[n_test:]
    else:
        classes, y_idx = np.unique(y, return_inverse=True)
        counts = np.bincount(y_idx)
        if counts.min() < 2:
            raise ValueError(f"stratify=True needs at least 2 samples of every class; class "
                             f"{classes[counts.argmin()]!r} has {counts.min()}")
        # Ideal share of each class in the test set; floor it, then hand the remaining samples to
        # the classes with the largest remainders (largest-remainder rounding).
        ideal = counts * (n_test / n)
        per_class = np.floor(ideal).astype(int)
        order = np.argsort(-(ideal - per_class), kind="stable")
        per_class[order[: n_test - per_class.sum()]] += 1
        test_parts, train_parts = [], []
        for c in range(len(classes)):
            idx = np.flatnonzero(y_idx == c)
            idx = idx[rng.permutation(len(idx))]
            test_parts.append(idx[: per_class[c]])
            train_parts.append(idx[per_class[c]:])
        test_idx = np.concatenate(test_parts)
        train_idx = np.concatenate(train_parts)
    if shuffle:
        test_idx = test_idx[rng.permutation(len(test_idx))]
        train_idx = train_idx[rng.permutation(len(train_idx))]
    else:
        test_idx, train_idx = np.sort(test_idx), np.sort(train_idx)
    return x[train_idx], x[test_idx], y[train_idx], y[test_idx]
