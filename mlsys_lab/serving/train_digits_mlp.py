"""Train the example repository's ``digits_mlp`` with the mini-stack and write its weight file.

The model is Lab 1's classifier: ``nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))``
trained on the bundled 8x8 digits (75% train split, seed 0) with ``optim.AdamW`` for 20 epochs,
every seed fixed, so running this again reproduces the shipped file (up to the last bits of
floating-point rounding on a different BLAS). Usage::

    python -m mlsys_lab.serving.train_digits_mlp [--out PATH]

It prints the test accuracy and writes ``model_repository/digits_mlp/1/model.npz`` in the ``mlp``
backend's format (``weight_0, bias_0, weight_1, bias_1``, float32, no pickle).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "model_repository" / "digits_mlp" / "1" / "model.npz"


def train(epochs: int = 20, seed: int = 0):
    """Train and return ``(model, test accuracy)``."""
    from mlsys_lab import Tensor, nn, optim
    import mlsys_lab.functional as F
    from mlsys_lab.data import DataLoader, load_digits, train_test_split

    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, seed=seed)
    loader = DataLoader(x_tr, y_tr, batch_size=64, shuffle=True, seed=seed)
    nn.init.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(model(Tensor(xb)), yb).backward()
            opt.step()
    acc = float((model(Tensor(x_te)).data.argmax(axis=1) == y_te).mean())
    return model, acc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT, help=f"weight file to write (default {OUT})")
    args = p.parse_args(argv)
    from .model import save_mlp_weights

    model, acc = train()
    layers = [m for m in model.children() if hasattr(m, "weight")]
    save_mlp_weights(args.out, [m.weight.data.astype(np.float32) for m in layers],
                     [m.bias.data.astype(np.float32) for m in layers])
    print(f"test accuracy {acc:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
