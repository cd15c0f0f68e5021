"""End to end: the mini-stack (data + nn + optim + autograd) learns the 8x8 digits.

Each training run is deterministic (seeded initialisation, split and loader) and takes a few
seconds on 2 cores.
"""

import contextlib

import numpy as np
import pytest

import mlsys_lab.functional as F
from mlsys_lab import Tensor, nn, no_grad, optim
from mlsys_lab.data import DataLoader, load_digits, train_test_split


@pytest.fixture(autouse=True)
def one_blas_thread():
    """The matrices here are tiny (at most 2048 x 144): a second BLAS thread does not help, and on a
    busy machine (CI running other jobs) the threads' hand-offs can make a run 10x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        limit = contextlib.nullcontext()
    else:
        limit = threadpool_limits(limits=1, user_api="blas")
    with limit:
        yield


def accuracy(model, x, y, batch_size=512):
    model.eval()
    correct = 0
    with no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size])
            correct += int((logits.data.argmax(axis=1) == y[i:i + batch_size]).sum())
    model.train()
    return correct / len(x)


def train(model, opt, loader, epochs, sched=None):
    losses = []
    for _ in range(epochs):
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
        losses.append(total / len(loader.x))
        if sched is not None:
            sched.step()
    return losses


def _mlp_run(seed=0, epochs=30):
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, seed=0)
    nn.init.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    warm = 2
    sched = optim.SequentialLR(opt, [optim.LinearLR(opt, start_factor=0.1, total_iters=warm),
                                     optim.CosineAnnealingLR(opt, T_max=epochs - warm)], milestones=[warm])
    loader = DataLoader(x_tr, y_tr, batch_size=32, shuffle=True, seed=seed)
    losses = train(model, opt, loader, epochs, sched)
    return model, losses, accuracy(model, x_te, y_te)


def test_mlp_reaches_95_percent():
    model, losses, acc = _mlp_run()
    print(f"MLP test accuracy: {acc:.4f}; loss {losses[0]:.3f} -> {losses[-1]:.4f}")
    assert losses[-1] < 0.25 * losses[0]
    assert acc >= 0.95


def test_cnn_reaches_95_percent():
    x, y = load_digits(flatten=False)                    # (N, 1, 8, 8)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, seed=0)
    nn.init.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 16 x 4 x 4
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 2 x 2
        nn.Flatten(), nn.Linear(128, 10),
    )
    epochs = 10
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = optim.CosineAnnealingLR(opt, T_max=epochs)
    loader = DataLoader(x_tr, y_tr, batch_size=32, shuffle=True, seed=0)
    losses = train(model, opt, loader, epochs, sched)
    acc = accuracy(model, x_te, y_te)
    print(f"CNN test accuracy: {acc:.4f}; loss {losses[0]:.3f} -> {losses[-1]:.4f}")
    assert acc >= 0.95


def test_training_is_deterministic():
    a, la, _ = _mlp_run(seed=3, epochs=4)
    b, lb, _ = _mlp_run(seed=3, epochs=4)
    assert la == lb
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)


def test_checkpoint_restores_predictions():
    model, _, acc = _mlp_run(seed=1, epochs=3)
    x, y = load_digits()
    restored = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    restored.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(restored(x).data, model(x).data)
    assert isinstance(restored(Tensor(x)), Tensor)
