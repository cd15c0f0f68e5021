"""Tracing: run an eager Tensor program once on example inputs and record what it did as a Graph.

How it works. Every eager op (``x + y``, ``x.sum(axis=1)``, ``F.linear``, ...) builds its result with
``mlsys_lab.autograd.make_op``, which hands the result, the inputs, the op name and the op's attributes to
an observer installed with ``mlsys_lab.autograd.tensor.observe_ops``. The tracer is such an observer: it
writes down every op, then, starting from the Tensors the program returned, keeps the ops those depend
on and turns them into graph nodes. A Tensor it has never seen produced is either one of the example
inputs (a graph input), or something the program captured from outside, such as a layer's weights:
a constant stored in the graph (``params="const"``, the default) or, with ``params="input"``, a graph
input of kind ``"param"`` (trainable weights, so that autodiff can differentiate with respect to them).

Why an observer on the real engine rather than proxy objects. A proxy tracer (``torch.fx``) calls the
program with stand-in objects that only record; it needs every function the program calls to accept
proxies, and ``F.linear`` or ``F.cross_entropy`` read ``.data`` and check shapes on real arrays. Observing
the engine instead (as ``torch.jit.trace`` and PyTorch's dispatch modes do; JAX, by contrast, traces
abstract shape-and-dtype values) runs the program for real, so every function that works eagerly can be traced without change, and the
traced shapes can be checked against the real ones: ``trace`` verifies that shape inference predicts
every recorded result's shape and dtype. The price is the one every tracing framework pays: Python
control flow is evaluated once, with the example inputs, and the graph records the branch taken.

The autograd engine knows nothing of graphs: it only calls whatever observer is installed, and the
mapping from its op names and attributes to IR ops lives here, in :data:`EAGER_OPS`.

    >>> import numpy as np
    >>> from mlsys_lab import Tensor
    >>> from mlsys_lab.graph import trace
    >>> g = trace(lambda x: (x * 2.0).exp().sum(axis=1), np.ones((2, 3), np.float32))
    >>> g.op_counts()
    Counter({'mul': 1, 'exp': 1, 'sum': 1})
"""

from __future__ import annotations

import inspect

import numpy as np

from ..autograd import Tensor
from ..autograd.tensor import observe_ops
from .ir import Graph, GraphError, Node, format_dtype, format_shape

__all__ = ["trace", "TraceError", "EAGER_OPS"]


class TraceError(GraphError):
    """The program could not be turned into a graph (an op the IR lacks, a non-Tensor result, ...)."""


# Eager op names that map one-to-one onto IR ops (their attributes already have the IR's names).
EAGER_OPS = {name: name for name in (
    "add", "sub", "mul", "div", "neg", "exp", "log", "tanh", "sigmoid", "relu", "gelu",
    "matmul", "matmul_t", "linear", "einsum", "sum", "mean", "max", "reshape", "transpose", "getitem",
    "softmax", "log_softmax", "cross_entropy", "nll_loss",
)}
EAGER_OPS["pow"] = "pow"  # "pow_scalar" when the exponent is a number (see _convert)


def _input_names(fn, n: int) -> list:
    """Names for the example inputs: the function's parameter names where Python can tell them."""
    target = fn.forward if hasattr(fn, "forward") and hasattr(fn, "parameters") else fn
    names = []
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and len(names) < n:
            names.append(p.name)
    return names + [f"input{k}" for k in range(len(names), n)]


def trace(fn, *example_inputs, params: str = "const", module=None, name: str | None = None) -> Graph:
    """Run ``fn(*example_inputs)`` once and return the Graph of what it computed.

    ``fn``: a function of Tensors, or an ``nn.Module`` (its ``forward`` is traced). ``example_inputs``:
    Tensors or ndarrays (an ndarray is wrapped in a Tensor that shares its data); their shapes and
    dtypes become those of the graph inputs, named after ``fn``'s parameters. ``fn`` returns a Tensor
    or a tuple/list of Tensors: the graph's outputs, in order (``graph.meta["single_output"]`` says
    which it was).

    Tensors that ``fn`` uses but did not compute and were not given (weights, captured arrays, lifted
    Python numbers) become constants, or, with ``params="input"``, trainable ones (``requires_grad``)
    become graph inputs of kind ``"param"``, after the example inputs and in first-use order. They are
    named after ``module.named_parameters()`` (``module`` defaults to ``fn`` when it is a Module), so
    a Linear layer's weight is ``%0.weight`` rather than ``%c_7``.

    Only ops that the outputs depend on are kept. Each node's shape and dtype are inferred and checked
    against the eager result. Raises :class:`TraceError` for an op the IR does not know (naming it).
    """
    if params not in ("const", "input"):
        raise ValueError(f"params must be 'const' or 'input', got {params!r}")
    if module is None and hasattr(fn, "named_parameters") and hasattr(fn, "forward"):
        module = fn
    param_names = {}
    if module is not None:
        param_names = {id(p): n for n, p in module.named_parameters()}
    inputs = [x if isinstance(x, Tensor) else Tensor(np.asarray(x)) for x in example_inputs]
    if name is None:
        name = type(fn).__name__ if module is fn else getattr(fn, "__name__", "graph")
        if name == "<lambda>":
            name = "graph"

    records = []

    def observe(out, ins, op, attrs):
        records.append((out, ins, op, attrs))

    with observe_ops(observe):
        result = fn(*inputs)

    single = isinstance(result, Tensor)
    outs = [result] if single else list(result) if isinstance(result, (tuple, list)) else None
    if not outs or not all(isinstance(o, Tensor) for o in outs):
        raise TraceError(f"trace: {name} must return a Tensor or a tuple/list of Tensors, got "
                         f"{type(result).__name__}")

    produced = {id(r[0]): k for k, r in enumerate(records)}
    input_ids = {id(t): k for k, t in enumerate(inputs)}
    input_data_ids = {id(t.data): k for k, t in enumerate(inputs)}

    # Keep only the records the outputs depend on (walk back from the outputs).
    needed, stack = set(), [id(o) for o in outs]
    while stack:
        k = produced.get(stack.pop())
        if k is None or k in needed:
            continue
        needed.add(k)
        stack.extend(id(t) for t in records[k][1])

    g = Graph(name)
    g.meta["single_output"] = single
    nodes = {}  # id(Tensor) -> Node
    for t, n in zip(inputs, _input_names(fn, len(inputs))):
        nodes[id(t)] = g.input(g._unique(n), t.shape, t.dtype)

    def leaf(t: Tensor) -> Node:
        node = nodes.get(id(t))
        if node is not None:
            return node
        pname = param_names.get(id(t))
        if params == "input" and t.requires_grad:
            node = g.input(g._unique(pname or "param"), t.shape, t.dtype, kind="param")
        else:
            node = g.constant(t.data, name=pname)
        nodes[id(t)] = node
        return node

    for k in sorted(needed):
        out, ins, op, attrs = records[k]
        args = [nodes[id(t)] if id(t) in nodes else leaf(t) for t in ins]
        ir_op, ir_attrs, args = _convert(g, op, dict(attrs or ()), args, input_data_ids)
        node_name = g._fresh(ir_op)
        try:
            node = g.add_node(ir_op, args, ir_attrs, name=node_name)
        except GraphError as e:
            raise TraceError(f"trace: eager op {op!r} became node {node_name!r}, which is invalid: {e}",
                             node_name) from e
        if node.shape != out.data.shape or node.dtype != out.data.dtype:
            raise TraceError(
                f"trace: node {node.name!r} ({ir_op}) is inferred as {node.type_str()} but eager mode "
                f"computed {format_dtype(out.data.dtype)}{format_shape(out.data.shape)}", node.name)
        nodes[id(out)] = node

    g.set_outputs(nodes[id(o)] if id(o) in nodes else leaf(o) for o in outs)
    g.validate()
    return g


def _convert(g: Graph, op: str, attrs: dict, args: list, input_data_ids: dict):
    """Map one recorded eager op onto an IR op: ``(ir_op, ir_attrs, ir_inputs)``."""
    if op not in EAGER_OPS:
        raise TraceError(
            f"trace: the program used eager op {op!r}, which the graph IR does not have (known: "
            f"{', '.join(sorted(EAGER_OPS))}); register it with mlsys_lab.graph.register_op and add a "
            f"shape rule, a kernel and a mapping in EAGER_OPS", op)
    if op == "pow" and len(args) == 1:
        return "pow_scalar", {"exponent": attrs["exponent"]}, args
    if op in ("cross_entropy", "nll_loss"):
        # Eager mode keeps the integer targets out of the graph (nothing flows back into them); the IR
        # makes them an input edge, so that the graph can be called with new targets.
        t = attrs.pop("targets")
        k = input_data_ids.get(id(t))
        tnode = g.inputs[k] if k is not None else g.constant(t, name="targets")
        return op, attrs, args + [tnode]
    return EAGER_OPS[op], attrs, args
