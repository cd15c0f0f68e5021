"""Graphs that the Lab 3 notebook, the runtime's tests and ``bench/runtime_bench.py`` compile.

* :func:`mlp_training_step`: the Lab 1 MLP's training step (forward, loss, backward) as one graph,
  traced from eager code and differentiated by the graph layer (``trace`` + ``grad``).
* :func:`gelu_tanh_graph`: GELU's tanh form as a chain of elementwise ops (traced), and, optimised, one
  ``fused_elementwise`` node.
* :func:`two_branch_graph`: two independent chains of matrix products that meet at the end, built by
  hand with the IR API: the graph on which a parallel executor can keep two cores busy.
* :func:`random_graph`: a random well-formed graph of elementwise, reduction, view and matmul ops (for
  property tests of the memory planner and the executors).
"""

from __future__ import annotations

import math

import numpy as np

from ..graph.ir import Graph

__all__ = ["MLP_SIZES", "make_mlp", "mlp_training_step", "gelu_tanh_graph", "two_branch_graph", "random_graph"]

#: The Lab 1 MLP: 64 inputs (8x8 digits), two hidden layers of 256, 10 classes.
MLP_SIZES = (64, 256, 256, 10)


def make_mlp(sizes=MLP_SIZES, seed: int = 0):
    """``nn.Sequential`` of Linear layers with ReLU between them, initialised from ``seed``."""
    from .. import nn

    nn.init.manual_seed(seed)
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def mlp_training_step(model=None, batch: int = 256, sizes=MLP_SIZES, seed: int = 0) -> Graph:
    """The training step of an MLP as one graph: inputs ``x`` (batch, in), ``y`` (batch,) int64, then the
    parameters (kind ``"param"``, named as ``model.named_parameters()``); outputs the mean cross-entropy
    loss and one gradient per parameter, in that order (``graph.meta["grads"]`` maps names to indices)."""
    from .. import functional as F
    from ..graph import grad, trace

    model = model if model is not None else make_mlp(sizes, seed)
    n_in = model[0].in_features
    x = np.zeros((batch, n_in), np.float32)
    y = np.zeros(batch, np.int64)

    def loss_fn(x, y):
        return F.cross_entropy(model(x), y)

    fwd = trace(loss_fn, x, y, params="input", module=model, name="mlp_loss")
    return grad(fwd, name="mlp_train_step")


_K = math.sqrt(2 / math.pi)


def gelu_tanh_graph(n: int = 1 << 22, fused: bool = False, dtype=np.float32) -> Graph:
    """``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x*x*x)))`` on a vector of ``n`` elements, traced
    from eager code (9 elementwise ops). ``fused=True`` returns it after ``mlsys_lab.graph.optimize``:
    one ``fused_elementwise`` node."""
    from ..autograd import Tensor
    from ..graph import optimize, trace

    def gelu_tanh(x):  # x * x * x rather than x ** 3: NumPy's float32 power is a slow scalar loop
        return 0.5 * x * (1.0 + (_K * (x + 0.044715 * (x * x * x))).tanh())

    x = Tensor(np.zeros(min(n, 8), dtype))          # trace on a small example, then fix the shape
    g = trace(gelu_tanh, x, name="gelu_tanh")
    from ..graph.shapes import infer_shapes

    g = infer_shapes(g, {g.inputs[0].name: (n,)})
    g.name = "gelu_tanh"
    return optimize(g) if fused else g


def two_branch_graph(n: int = 512, depth: int = 3, dtype=np.float32) -> Graph:
    """``x`` (n, n) feeds two independent branches, each ``depth`` times ``h = tanh(h @ W)`` with its own
    weights; the result is their sum. Inputs: ``x``, then ``a0..``, ``b0..`` (the weights)."""
    g = Graph("two_branches")
    x = g.input("x", (n, n), dtype)
    wa = [g.input(f"a{k}", (n, n), dtype, kind="param") for k in range(depth)]
    wb = [g.input(f"b{k}", (n, n), dtype, kind="param") for k in range(depth)]
    ha = hb = x
    for k in range(depth):
        ha = g.add_node("tanh", [g.add_node("matmul", [ha, wa[k]], name=f"a_matmul{k}")], name=f"a_tanh{k}")
        hb = g.add_node("tanh", [g.add_node("matmul", [hb, wb[k]], name=f"b_matmul{k}")], name=f"b_tanh{k}")
    g.set_outputs([g.add_node("add", [ha, hb], name="join")])
    return g


def two_branch_inputs(n: int = 512, depth: int = 3, seed: int = 0, dtype=np.float32) -> list:
    """Inputs for :func:`two_branch_graph` (weights scaled so that the activations stay O(1))."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n)).astype(dtype)
    ws = [(rng.standard_normal((n, n)) / math.sqrt(n)).astype(dtype) for _ in range(2 * depth)]
    return [x] + ws


_UNARY = ("neg", "exp", "tanh", "relu", "sigmoid")
_BINARY = ("add", "sub", "mul")


def random_graph(seed: int, n_ops: int = 20, size: int = 6) -> tuple:
    """A random graph and matching inputs: ``(graph, inputs)``.

    Values are (size, size) float64 matrices or (size,) vectors; ops are drawn from unary and binary
    elementwise ops (with broadcasting), sums, transposes, reshapes and matmuls, reading random earlier
    values, so the graph has branches, long-lived values, views and in-place opportunities. One to three
    random values are outputs. ``exp`` is applied to a ``tanh`` so nothing overflows.
    """
    rng = np.random.default_rng(seed)
    g = Graph(f"random_{seed}")
    vals = [g.input("x0", (size, size), np.float64), g.input("x1", (size, size), np.float64),
            g.input("v", (size,), np.float64)]
    for _ in range(n_ops):
        kind = rng.integers(0, 7)
        a = vals[rng.integers(0, len(vals))]
        if kind == 0:
            op = _UNARY[rng.integers(0, len(_UNARY))]
            if op == "exp":
                a = g.add_node("tanh", [a])
            vals.append(g.add_node(op, [a]))
        elif kind in (1, 2):
            b = vals[rng.integers(0, len(vals))]
            if len(np.broadcast_shapes(a.shape, b.shape)) > 2:
                continue
            vals.append(g.add_node(_BINARY[rng.integers(0, len(_BINARY))], [a, b]))
        elif kind == 3 and a.shape == (size, size):
            vals.append(g.add_node("sum", [a], {"axis": (int(rng.integers(0, 2)),), "keepdims": False}))
        elif kind == 4 and a.shape == (size, size):
            vals.append(g.add_node("transpose", [a], {"axes": (1, 0)}))
        elif kind == 5 and a.shape in ((size, size), (size,)):
            shape = (size * size,) if len(a.shape) == 2 else (size, 1)
            r = g.add_node("reshape", [a], {"shape": shape})
            if len(shape) == 1:
                r = g.add_node("reshape", [g.add_node("neg", [r])], {"shape": (size, size)})
            vals.append(r)
        elif kind == 6 and a.shape == (size, size):
            b = vals[rng.integers(0, len(vals))]
            if b.shape == (size, size):
                vals.append(g.add_node("tanh", [g.add_node("matmul", [a, b])]))
    computed = [v for v in vals if v.op != "input"] or vals
    k = int(rng.integers(1, 4))
    outs = [computed[-1]] + [computed[int(i)] for i in rng.integers(0, len(computed), k - 1)]
    g.set_outputs(outs)
    inputs = [rng.standard_normal(v.shape) for v in g.inputs]
    return g, inputs
