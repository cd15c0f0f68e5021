"""Symbolic reverse-mode autodiff: from a forward graph, build the graph that also computes gradients.

Eager autograd (Lab 1) differentiates *values*: it records what happened and replays it backwards, every
step. Graph-mode frameworks (TensorFlow 1, JAX's ``grad``, XLA, ``torch.compile``'s AOTAutograd)
differentiate the *program*: they build the backward computation once, as more nodes in the same graph,
so that one training step (forward, loss, backward, update) is one graph the compiler can optimise as a
whole (fuse the elementwise tails of the backward pass, plan its memory, schedule it in parallel).

:func:`grad` walks the forward graph in reverse topological order and, for each node on a path from a
differentiated input to the output, calls that op's rule in :data:`VJP_RULES`:
``rule(b, node, g) -> one gradient node (or None) per input``, where ``g`` is the node holding
d(output)/d(node) and ``b`` adds nodes to the graph. Gradients of a node used several times are summed
with ``add`` nodes. The rules emit the same arithmetic as the eager ``backward`` functions (the same ops,
in the same order), so the two agree to rounding; ops whose derivative has no short expression in other
ops get a dedicated gradient op (``relu_grad``, ``gelu_grad``, ``max_grad``, ``cross_entropy_grad``,
``getitem_grad``), as in TensorFlow and XLA.

    fwd = trace(loss_fn, x, y, params="input", module=model)   # outputs: [loss]
    step = grad(fwd)                                           # outputs: [loss, d loss/d param, ...]
    step = sgd_update(step, lr=0.1)                            # outputs: [loss, new param, ...]
"""

from __future__ import annotations

import numpy as np

from .ir import Graph, GraphError, Node

__all__ = ["grad", "sgd_update", "VJP_RULES", "Builder"]


class Builder:
    """Adds nodes to a graph with a compact call syntax: ``b("mul", x, y)``, ``b("sum", x, axis=(0,),
    keepdims=False)``, ``b.const(2.0, like=x)``. Shape and dtype are inferred."""

    def __init__(self, graph: Graph):
        self.graph = graph

    def __call__(self, op: str, *inputs: Node, **attrs) -> Node:
        return self.graph.add_node(op, inputs, attrs)

    def const(self, value, like: Node) -> Node:
        """A 0-d constant with ``like``'s dtype (a Python number in eager mode is lifted the same way)."""
        return self.graph.constant(np.asarray(value, dtype=like.dtype))

    def sum_to(self, g: Node, shape) -> Node:
        """``g`` summed down to ``shape`` (the backward of broadcasting); ``g`` itself if it already fits."""
        shape = tuple(shape)
        return g if g.shape == shape else self("sum_to", g, shape=shape)

    def reshape(self, x: Node, shape) -> Node:
        shape = tuple(shape)
        return x if x.shape == shape else self("reshape", x, shape=shape)

    def t(self, x: Node) -> Node:
        """Swap the last two axes."""
        axes = tuple(range(len(x.shape) - 2)) + (len(x.shape) - 1, len(x.shape) - 2)
        return self("transpose", x, axes=axes)


# ----------------------------------------------------------------------------------------------------------
# Rules: rule(b, node, g) -> list with one gradient node (or None) per input of node
# ----------------------------------------------------------------------------------------------------------

def _add(b, n, g):
    x, y = n.inputs
    return [b.sum_to(g, x.shape), b.sum_to(g, y.shape)]


def _sub(b, n, g):
    x, y = n.inputs
    return [b.sum_to(g, x.shape), b.sum_to(b("neg", g), y.shape)]


def _mul(b, n, g):
    x, y = n.inputs
    return [b.sum_to(b("mul", g, y), x.shape), b.sum_to(b("mul", g, x), y.shape)]


def _div(b, n, g):
    x, y = n.inputs
    g_over_y = b("div", g, y)
    return [b.sum_to(g_over_y, x.shape), b.sum_to(b("mul", b("neg", g_over_y), n), y.shape)]


def _pow(b, n, g):
    # d/da a**b = b * a**(b-1); d/db a**b = a**b * log(a) (valid for positive bases)
    x, y = n.inputs
    ga = b("mul", b("mul", g, y), b("pow", x, b("sub", y, b.const(1, like=y))))
    gb = b("mul", g, b("mul", n, b("log", x)))
    return [b.sum_to(ga, x.shape), b.sum_to(gb, y.shape)]


def _pow_scalar(b, n, g):
    (x,) = n.inputs
    p = n.attrs["exponent"]
    if p == 0:
        return [b("broadcast_to", b.const(0, like=x), shape=x.shape)]
    if p == 2:  # eager mode's special case: g * (2 * x)
        return [b("mul", g, b("mul", b.const(2, like=x), x))]
    return [b("mul", g, b("mul", b.const(p, like=x), b("pow_scalar", x, exponent=p - 1)))]


def _tanh(b, n, g):  # g * (1 - y*y)
    return [b("mul", g, b("sub", b.const(1, like=n), b("mul", n, n)))]


def _sigmoid(b, n, g):  # g * y * (1 - y)
    return [b("mul", b("mul", g, n), b("sub", b.const(1, like=n), n))]


def _matmul(b, n, g):
    x, y = n.inputs
    if len(x.shape) == 2 and len(y.shape) == 2:
        return [b("matmul", g, b.t(y)), b("matmul", b.t(x), g)]
    # The general case, as eager mode does it: vectors become matrices, batch axes are summed back.
    x2 = b.reshape(x, (1,) + x.shape) if len(x.shape) == 1 else x
    y2 = b.reshape(y, y.shape + (1,)) if len(y.shape) == 1 else y
    g2 = g
    if len(y.shape) == 1:
        g2 = b.reshape(g2, g2.shape + (1,))
    if len(x.shape) == 1:
        g2 = b.reshape(g2, g2.shape[:-1] + (1,) + g2.shape[-1:])
    gx = b.reshape(b.sum_to(b("matmul", g2, b.t(y2)), x2.shape), x.shape)
    gy = b.reshape(b.sum_to(b("matmul", b.t(x2), g2), y2.shape), y.shape)
    return [gx, gy]


def _matmul_t(b, n, g):  # out = x @ w.T: dx = g @ w, dw = g.T @ x
    x, w = n.inputs
    return [b("matmul", g, w), b("matmul", b.t(g), x)]


def _linear(b, n, g):
    x, w = n.inputs[:2]
    gx = b("matmul", g, w)
    if len(x.shape) == 2:
        gw = b("matmul", b.t(g), x)
    else:
        gw = b("matmul", b.t(b.reshape(g, (-1, g.shape[-1]))), b.reshape(x, (-1, x.shape[-1])))
    grads = [gx, gw]
    if len(n.inputs) == 3:
        grads.append(b("sum", g, axis=tuple(range(len(g.shape) - 1)), keepdims=False))
    return grads


def _einsum(b, n, g):
    from ..autograd.functional import _parse_einsum

    terms, output, sizes = _parse_einsum(n.attrs["subscripts"], [i.shape for i in n.inputs])
    grads = []
    for k, (term, x) in enumerate(zip(terms, n.inputs)):
        if len(set(term)) != len(term) or any(x.shape[j] != sizes[c] for j, c in enumerate(term)):
            raise GraphError(f"node {n.name!r} (einsum {n.attrs['subscripts']!r}): symbolic gradients of "
                             f"repeated indices or broadcast size-1 axes are not supported", n.name)
        others = [(t, i) for j, (t, i) in enumerate(zip(terms, n.inputs)) if j != k]
        available = set(output).union(*[set(t) for t, _ in others])
        target = "".join(c for c in term if c in available)
        spec = ",".join([output] + [t for t, _ in others]) + "->" + target
        gk = b("einsum", g, *[i for _, i in others], subscripts=spec)
        if target != term:  # letters only this operand had were summed away: broadcast back
            keep = tuple(sizes[c] if c in available else 1 for c in term)
            gk = b("broadcast_to", b.reshape(gk, keep), shape=x.shape)
        grads.append(gk)
    return grads


def _keep_shape(n: Node) -> tuple:
    (x,) = n.inputs[:1]
    axes = n.attrs["axis"]
    axes = range(len(x.shape)) if axes is None else axes
    return tuple(1 if k in axes else s for k, s in enumerate(x.shape))


def _sum(b, n, g):
    (x,) = n.inputs
    return [b("broadcast_to", b.reshape(g, _keep_shape(n)), shape=x.shape)]


def _mean(b, n, g):
    (x,) = n.inputs
    count = x.size // max(n.size, 1) if x.size else 0
    ge = b.reshape(g, _keep_shape(n))
    if count:
        ge = b("div", ge, b.const(count, like=g))
    return [b("broadcast_to", ge, shape=x.shape)]


def _max(b, n, g):
    x = n.inputs[0]
    return [b("max_grad", g, x, n, axis=n.attrs["axis"], keepdims=n.attrs["keepdims"])]


def _transpose(b, n, g):
    inverse = tuple(int(a) for a in np.argsort(n.attrs["axes"]))
    return [b("transpose", g, axes=inverse)]


def _softmax(b, n, g):  # dx = y*g - y * sum(y*g)
    (x,) = n.inputs
    axis = n.attrs["axis"]
    if axis is None:
        return [b("broadcast_to", b.const(0, like=x), shape=x.shape)]
    yg = b("mul", n, g)
    return [b("sub", yg, b("mul", n, b("sum", yg, axis=(axis,), keepdims=True)))]


def _log_softmax(b, n, g):  # dx = g - exp(y) * sum(g)
    (x,) = n.inputs
    axis = n.attrs["axis"]
    if axis is None:
        return [b("broadcast_to", b.const(0, like=x), shape=x.shape)]
    return [b("sub", g, b("mul", b("exp", n), b("sum", g, axis=(axis,), keepdims=True)))]


def _loss(grad_op):
    def rule(b, n, g):
        x, t = n.inputs
        return [b(grad_op, g, x, t, reduction=n.attrs["reduction"]), None]
    return rule


def _no_grad_rule(b, n, g):
    raise GraphError(f"node {n.name!r} ({n.op}): no gradient rule; differentiate the graph before "
                     f"passes that fuse ops, and gradients of gradient ops are not supported", n.name)


VJP_RULES = {
    "add": _add, "sub": _sub, "mul": _mul, "div": _div, "pow": _pow, "pow_scalar": _pow_scalar,
    "neg": lambda b, n, g: [b("neg", g)],
    "exp": lambda b, n, g: [b("mul", g, n)],
    "log": lambda b, n, g: [b("div", g, n.inputs[0])],
    "tanh": _tanh, "sigmoid": _sigmoid,
    # relu_grad reads the *output*: y > 0 exactly where x > 0, and then x itself is not needed by the
    # backward pass, so x can be freed early and linear + relu can still fuse (a training-graph trick).
    "relu": lambda b, n, g: [b("relu_grad", g, n)],
    "gelu": lambda b, n, g: [b("gelu_grad", g, n.inputs[0], approximate=n.attrs["approximate"])],
    "matmul": _matmul, "matmul_t": _matmul_t, "linear": _linear, "einsum": _einsum,
    "sum": _sum, "mean": _mean, "max": _max,
    "sum_to": lambda b, n, g: [b("broadcast_to", g, shape=n.inputs[0].shape)],
    "broadcast_to": lambda b, n, g: [b.sum_to(g, n.inputs[0].shape)],
    "reshape": lambda b, n, g: [b.reshape(g, n.inputs[0].shape)],
    "transpose": _transpose,
    "getitem": lambda b, n, g: [b("getitem_grad", g, index=n.attrs["index"], shape=n.inputs[0].shape)],
    "softmax": _softmax, "log_softmax": _log_softmax,
    "cross_entropy": _loss("cross_entropy_grad"), "nll_loss": _loss("nll_loss_grad"),
    "fused_elementwise": _no_grad_rule, "fused_linear": _no_grad_rule,
}


# ----------------------------------------------------------------------------------------------------------
# The transformation
# ----------------------------------------------------------------------------------------------------------

def _resolve(graph: Graph, wrt) -> list:
    if wrt is None:
        wrt = graph.params or [n for n in graph.inputs if n.dtype.kind == "f"]
    out = []
    for w in wrt:
        node = graph.node(w) if isinstance(w, str) else w
        if node not in graph.nodes or node.op != "input":
            raise GraphError(f"grad: can only differentiate with respect to graph inputs, not {node.name!r}",
                             node.name)
        if node.dtype.kind != "f":
            raise GraphError(f"grad: input {node.name!r} has dtype {node.dtype}; only floating-point inputs "
                             f"have gradients", node.name)
        out.append(node)
    return out


def grad(graph: Graph, wrt=None, output: int = 0, name: str | None = None) -> Graph:
    """Return a new graph computing ``graph``'s outputs and d(outputs[output])/d(w) for each ``w`` in ``wrt``.

    ``wrt``: input nodes or names; by default the inputs of kind ``"param"``, or every floating-point
    input if there are none. The new graph's outputs are the original outputs followed by one gradient
    per ``wrt`` entry (same shape and dtype as that input; a constant zero if the output does not depend
    on it); ``meta["grads"]`` maps each input's name to its output index. A scalar output is seeded with
    1; a non-scalar one gets a new input ``d<output name>`` carrying the seed (a vector-Jacobian product).
    """
    g, mapping = graph.copy_with_map(name or f"{graph.name}_grad")
    g.validate()
    wrt_nodes = [mapping[w] for w in _resolve(graph, wrt)]
    out = g.outputs[output]
    b = Builder(g)
    order = g.topological_order()

    # Only nodes on a path from a wrt input to the output get gradients.
    depends = set(wrt_nodes)
    for n in order:
        if any(i in depends for i in n.inputs) and n.dtype.kind in "fc":
            depends.add(n)
    if out.shape == ():
        seed = b.const(1, like=out)
    elif out.size == 1:
        seed = g.constant(np.ones(out.shape, out.dtype))
    else:
        seed = g.input(g._unique(f"d{out.name}"), out.shape, out.dtype)
    grads = {out: seed} if out in depends else {}

    for n in reversed(order):
        gn = grads.pop(n, None)
        if gn is None or n.op in ("input", "constant"):
            if gn is not None:
                grads[n] = gn  # keep the gradients of inputs for the outputs
            continue
        rule = VJP_RULES.get(n.op)
        if rule is None:
            _no_grad_rule(b, n, gn)
        in_grads = rule(b, n, gn)
        if len(in_grads) != len(n.inputs):
            raise GraphError(f"node {n.name!r} ({n.op}): gradient rule returned {len(in_grads)} gradients "
                             f"for {len(n.inputs)} inputs", n.name)
        for i, gi in zip(n.inputs, in_grads):
            if gi is None or i not in depends:
                continue
            if gi.shape != i.shape:
                raise GraphError(f"node {n.name!r} ({n.op}): gradient for input {i.name!r} has shape "
                                 f"{gi.shape}, expected {i.shape}", n.name)
            prev = grads.get(i)
            grads[i] = gi if prev is None else b("add", prev, gi)

    results = []
    for w in wrt_nodes:
        gw = grads.get(w)
        if gw is None:
            gw = b("broadcast_to", b.const(0, like=w), shape=w.shape)
        results.append(gw)
    g.meta["grads"] = {w.name: len(g.outputs) + k for k, w in enumerate(wrt_nodes)}
    g.set_outputs(g.outputs + results)
    g.meta["single_output"] = False
    g.validate()
    return g


def sgd_update(graph: Graph, lr: float, name: str | None = None) -> Graph:
    """From a :func:`grad` graph, a graph whose outputs are ``[outputs..., p - lr * dp for each p]``.

    One call runs a whole SGD training step: forward, loss, backward and update. ``meta["updates"]``
    maps each parameter name to the output index of its new value.
    """
    if "grads" not in graph.meta:
        raise GraphError("sgd_update needs a graph made by grad() (meta['grads'] is missing)")
    g, mapping = graph.copy_with_map(name or f"{graph.name}_sgd")
    b = Builder(g)
    n_fwd = min(graph.meta["grads"].values())
    fwd_outputs = g.outputs[:n_fwd]
    news, updates = [], {}
    for pname, k in graph.meta["grads"].items():
        p, dp = g.node(pname), g.outputs[k]
        news.append(b("sub", p, b("mul", b.const(lr, like=p), dp)))
        updates[pname] = n_fwd + len(news) - 1
    g.set_outputs(fwd_outputs + news)
    g.meta.pop("grads")
    g.meta["updates"] = updates
    g.validate()
    return g
