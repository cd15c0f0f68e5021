"""The mlp backend computes act(x W0^T + b0) ... W_last^T + b_last whatever layout it computes in, and the
server's GIL switch interval is set while it runs and restored after."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import pytest

from mlsys_lab.serving import DEFAULT_MODEL_REPOSITORY, InferenceServer, load_config
from mlsys_lab.serving.model import MLPBackend, generate_mlp_weights, load_mlp_weights


def reference(x, weights, biases):
    h = x.astype(np.float64)
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w.T.astype(np.float64) + b
        if i < len(weights) - 1:
            h = np.maximum(h, 0)
    return h


@pytest.mark.parametrize("batch", [1, 2, 5, 16])
def test_digits_mlp_matches_the_layer_formula(batch):
    model_dir = DEFAULT_MODEL_REPOSITORY / "digits_mlp"
    backend = MLPBackend(load_config(model_dir), model_dir, 1, "t", {})
    weights, biases = load_mlp_weights(model_dir / "1" / "model.npz")
    x = np.random.default_rng(batch).random((batch, 64), dtype=np.float32)
    x.setflags(write=False)                       # inputs may be read-only views of a request body
    out = backend.execute({"INPUT": x})["LOGITS"]
    assert out.shape == (batch, 10) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, reference(x, weights, biases), rtol=1e-4, atol=1e-5)


def test_generated_weights_match_the_layer_formula():
    model_dir = DEFAULT_MODEL_REPOSITORY / "mlp_large"
    config = load_config(model_dir)
    backend = MLPBackend(config, model_dir, 1, "t", {})
    weights, biases = generate_mlp_weights([2048] * 5, 0)
    x = np.random.default_rng(0).random((3, 2048), dtype=np.float32)
    np.testing.assert_allclose(backend.execute({"INPUT": x})["OUTPUT"], reference(x, weights, biases),
                               rtol=1e-3, atol=1e-4)


def test_server_sets_and_restores_the_gil_switch_interval(tmp_path):
    before = sys.getswitchinterval()

    async def body():
        server = InferenceServer(DEFAULT_MODEL_REPOSITORY, models=["digits_mlp"], gil_switch_interval=0.0003)
        await server.start()
        during = sys.getswitchinterval()
        await server.stop()
        return during

    during = asyncio.run(body())
    assert during == pytest.approx(0.0003) and sys.getswitchinterval() == before
