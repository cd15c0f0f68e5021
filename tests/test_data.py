"""The bundled digits, the seeded split and the shuffling loader."""

import numpy as np
import pytest

from mlsys_lab.data import DataLoader, load_digits, train_test_split


def test_load_digits_flat():
    x, y = load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    assert np.all(np.bincount(y) >= 174)
    np.testing.assert_array_equal(np.round(x * 16), x * 16)  # counts 0..16, scaled exactly


def test_load_digits_images_and_options():
    x, y = load_digits(flatten=False)
    assert x.shape == (1797, 1, 8, 8)
    xf, _ = load_digits()
    np.testing.assert_array_equal(x.reshape(1797, 64), xf)
    raw, _ = load_digits(scale=False, dtype=np.float64)
    assert raw.dtype == np.float64 and raw.max() == 16.0
    # every digit has its own mean image: a quick sanity check that labels match images
    means = np.stack([xf[y == k].mean(0) for k in range(10)])
    nearest = np.argmin(((xf[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).mean() > 0.85


def test_split_sizes_and_reproducible():
    x, y = load_digits()
    a = train_test_split(x, y, test_size=0.25, seed=3)
    b = train_test_split(x, y, test_size=0.25, seed=3)
    c = train_test_split(x, y, test_size=0.25, seed=4)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[3], c[3])
    x_tr, x_te, y_tr, y_te = a
    assert len(x_te) == len(y_te) == 450 and len(x_tr) == len(y_tr) == 1347
    # disjoint and complete: every image appears exactly once
    both = np.concatenate([x_tr, x_te])
    assert len(np.unique(both, axis=0)) == len(np.unique(x, axis=0))
    assert sorted(np.concatenate([y_tr, y_te]).tolist()) == sorted(y.tolist())


def test_split_stratified():
    x, y = load_digits()
    _, _, y_tr, y_te = train_test_split(x, y, test_size=0.2, seed=0, stratify=True)
    frac = np.bincount(y_te, minlength=10) / np.bincount(y, minlength=10)
    assert np.all(np.abs(frac - 0.2) < 0.01)
    assert len(y_te) == int(np.ceil(0.2 * 1797))


def test_split_int_size_and_no_shuffle():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=3, seed=0, stratify=False, shuffle=False)
    assert len(y_te) == 3 and np.all(np.diff(y_te) > 0) and np.all(np.diff(y_tr) > 0)
    np.testing.assert_array_equal(x_te[:, 0], 2 * y_te)  # rows stay paired


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(test_size=1.5), ValueError, r"\(0, 1\)"),
    (dict(test_size=0), ValueError, "non-empty"),
    (dict(test_size="a"), TypeError, "test_size"),
])
def test_split_errors(kwargs, exc, match):
    x, y = np.zeros((10, 2)), np.arange(10) % 2
    with pytest.raises(exc, match=match):
        train_test_split(x, y, **kwargs)


def test_split_length_mismatch_and_tiny_class():
    with pytest.raises(ValueError, match=r"len\(x\)=10 and len\(y\)=9"):
        train_test_split(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="at least 2 samples"):
        train_test_split(np.zeros((5, 2)), np.array([0, 0, 1, 1, 2]), test_size=2)


def test_loader_batches_cover_each_epoch_once():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10)
    loader = DataLoader(x, y, batch_size=4, shuffle=True, seed=1)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], yb)   # x and y stay paired
    assert not np.array_equal(seen, np.arange(10))    # shuffled


def test_loader_reshuffles_each_epoch_deterministically():
    x = np.arange(50)
    a = DataLoader(x, batch_size=50, seed=7)
    b = DataLoader(x, batch_size=50, seed=7)
    ea = [next(iter(a)) for _ in range(3)]
    eb = [next(iter(b)) for _ in range(3)]
    for u, v in zip(ea, eb):
        np.testing.assert_array_equal(u, v)           # same seed: same order, epoch by epoch
    assert not np.array_equal(ea[0], ea[1])           # a new order each epoch
    assert a.epoch == 3
    a.set_epoch(1)
    np.testing.assert_array_equal(next(iter(a)), ea[1])
    c = DataLoader(x, batch_size=50, seed=8)
    assert not np.array_equal(next(iter(c)), ea[0])


def test_loader_no_shuffle_and_drop_last():
    x = np.arange(10)
    loader = DataLoader(x, None, batch_size=3, shuffle=False, drop_last=True)
    assert len(loader) == 3
    np.testing.assert_array_equal(np.concatenate(list(loader)), np.arange(9))
    assert len(DataLoader(x, batch_size=3, drop_last=False)) == 4
    assert "batches=3" in repr(loader)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(batch_size=0), ValueError, "positive"),
    (dict(batch_size=-2), ValueError, "positive"),
    (dict(batch_size=2.5), TypeError, "positive int"),
    (dict(batch_size=True), TypeError, "positive int"),
    (dict(batch_size=20, drop_last=True), ValueError, "no batch"),
])
def test_loader_bad_batch_size(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DataLoader(np.zeros((10, 2)), np.zeros(10), **kwargs)


def test_loader_length_mismatch():
    with pytest.raises(ValueError, match=r"len\(x\)=10 and len\(y\)=8"):
        DataLoader(np.zeros((10, 2)), np.zeros(8), batch_size=2)
