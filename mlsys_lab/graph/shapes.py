"""Shape and dtype inference: from the shapes and dtypes of a node's inputs, those of its output.

Each op has a rule in :data:`SHAPE_RULES`: ``rule(node, shapes, dtypes) -> (shape, dtype)``, where
``shapes`` and ``dtypes`` are those of ``node.inputs``. A rule raises :class:`ShapeError` whose message
starts with the node's name and op, e.g.::

    ShapeError: node 'add_3' (add): cannot broadcast shapes (2, 3) and (4,)

Inference runs when a node is added (``Graph.add_node``), when a graph is validated (stored shapes must
agree with inferred ones) and in :func:`infer_shapes`, which propagates new input shapes through a whole
graph: the way a framework checks a model for a new batch size without running it.

Dtypes follow NumPy (and so eager mode): binary arithmetic promotes with ``np.result_type``; true
division and transcendental functions of integers give float64; reductions take the dtype NumPy's own
reduction gives, asked of a one-element array rather than re-derived here.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .ir import OPS, Graph, GraphError, Node, ShapeError, format_dtype

__all__ = ["SHAPE_RULES", "infer_node", "infer_shapes", "broadcast_shapes", "normalize_axes"]


def _fail(node: Node, message: str):
    raise ShapeError(f"node {node.name!r} ({node.op}): {message}", node.name)


def broadcast_shapes(node: Node, *shapes) -> tuple:
    """NumPy broadcasting of ``shapes``, or a ShapeError naming ``node`` and the shapes."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        _fail(node, "cannot broadcast shapes " + " and ".join(str(tuple(s)) for s in shapes))


def normalize_axes(node: Node, axis, ndim: int) -> tuple:
    """``axis`` (None, int or tuple; negatives allowed) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, numbers.Integral):
        axis = (axis,)
    out = []
    for a in axis:
        if ndim == 0 and a in (0, -1):
            continue
        if not -ndim <= a < ndim:
            _fail(node, f"axis {a} is out of range for an input with {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        _fail(node, f"repeated axis in {axis!r}")
    return tuple(sorted(out))


def _float(dtype) -> np.dtype:
    return dtype if dtype.kind in "fc" else np.dtype(np.float64)


def _unary_float(node, shapes, dtypes):
    return shapes[0], _float(dtypes[0])


def _unary_same(node, shapes, dtypes):
    return shapes[0], dtypes[0]


def _pow_scalar(node, shapes, dtypes):
    e = node.attrs["exponent"]
    return shapes[0], np.result_type(np.ones((), dtypes[0]) ** e)


def _binary(node, shapes, dtypes):
    return broadcast_shapes(node, *shapes), np.result_type(*dtypes)


def _div(node, shapes, dtypes):
    dt = np.result_type(*dtypes)
    return broadcast_shapes(node, *shapes), _float(dt)


def _grad_binary(node, shapes, dtypes):
    # (g, x): the result has g's dtype, like eager backward functions
    return broadcast_shapes(node, *shapes), dtypes[0]


def _fused(node, shapes, dtypes):
    sub = node.attrs["graph"]
    if not isinstance(sub, Graph) or len(sub.outputs) != 1:
        _fail(node, "attrs['graph'] must be a Graph with one output")
    if len(sub.inputs) != len(shapes):
        _fail(node, f"the sub-expression has {len(sub.inputs)} inputs but the node has {len(shapes)}")
    for i, (si, s, d) in enumerate(zip(sub.inputs, shapes, dtypes)):
        if si.shape != tuple(s) or si.dtype != d:
            _fail(node, f"input {i} is {format_dtype(d)}{list(s)} but the sub-expression expects "
                        f"{si.type_str()}")
    out = sub.outputs[0]
    return out.shape, out.dtype


def _reduce_dtype(op: str, dtype) -> np.dtype:
    probe = np.ones((1,), dtype)
    return {"sum": probe.sum, "mean": probe.mean, "max": probe.max}[op]().dtype


def _reduction(node, shapes, dtypes):
    (shape,) = shapes
    axes = normalize_axes(node, node.attrs["axis"], len(shape))
    if node.op == "max" and any(shape[a] == 0 for a in axes):
        _fail(node, f"max over an empty axis of shape {shape}")
    if node.attrs["keepdims"]:
        out = tuple(1 if k in axes else n for k, n in enumerate(shape))
    else:
        out = tuple(n for k, n in enumerate(shape) if k not in axes)
    return out, _reduce_dtype(node.op, dtypes[0])


def _sum_to(node, shapes, dtypes):
    target = tuple(node.attrs["shape"])
    try:
        ok = tuple(np.broadcast_shapes(target, shapes[0])) == tuple(shapes[0])
    except ValueError:
        ok = False
    if not ok:
        _fail(node, f"cannot sum shape {tuple(shapes[0])} down to {target} (it does not broadcast to it)")
    return target, dtypes[0]


def _reshape(node, shapes, dtypes):
    target = list(node.attrs["shape"])
    size = math.prod(shapes[0])
    if target.count(-1) > 1:
        _fail(node, f"at most one -1 in shape {tuple(target)}")
    if -1 in target:
        rest = math.prod(n for n in target if n != -1)
        if rest == 0 or size % rest:
            _fail(node, f"cannot reshape {tuple(shapes[0])} into {tuple(target)}")
        target[target.index(-1)] = size // rest
    if math.prod(target) != size:
        _fail(node, f"cannot reshape {tuple(shapes[0])} ({size} elements) into {tuple(target)} "
                    f"({math.prod(target)} elements)")
    return tuple(target), dtypes[0]


def _transpose(node, shapes, dtypes):
    axes = tuple(node.attrs["axes"])
    (shape,) = shapes
    if sorted(axes) != list(range(len(shape))):
        _fail(node, f"axes {axes} are not a permutation of the {len(shape)} axes of shape {tuple(shape)}")
    return tuple(shape[a] for a in axes), dtypes[0]


def _broadcast_to(node, shapes, dtypes):
    target = tuple(node.attrs["shape"])
    if broadcast_shapes(node, shapes[0], target) != target:
        _fail(node, f"cannot broadcast shape {tuple(shapes[0])} to {target}")
    return target, dtypes[0]


def _getitem(node, shapes, dtypes):
    # Index a zero-stride view of the right shape: NumPy applies its own indexing rules, no memory used.
    view = np.broadcast_to(np.zeros((), dtypes[0]), shapes[0])
    try:
        return view[node.attrs["index"]].shape, dtypes[0]
    except (IndexError, TypeError, ValueError) as e:
        _fail(node, f"bad index for shape {tuple(shapes[0])}: {e}")


def _matmul(node, shapes, dtypes):
    a, b = (tuple(s) for s in shapes)
    if len(a) == 0 or len(b) == 0:
        _fail(node, f"matmul needs operands with at least 1 dimension, got shapes {a} and {b}")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        _fail(node, f"matmul shape mismatch: {a} @ {b} (inner dimensions {a2[-1]} != {b2[-2]})")
    batch = broadcast_shapes(node, a2[:-2], b2[:-2])
    out = batch + (a2[-2], b2[-1])
    if len(b) == 1:
        out = out[:-1]
    if len(a) == 1:
        out = out[:-2] + out[-1:] if len(b) != 1 else out[:-1]
    return out, np.result_type(*dtypes)


def _matmul_t(node, shapes, dtypes):
    a, b = (tuple(s) for s in shapes)
    if len(a) != 2 or len(b) != 2 or a[1] != b[1]:
        _fail(node, f"matmul_t computes a @ b.T for 2-D a (m, k) and b (n, k); got {a} and {b}")
    return (a[0], b[0]), np.result_type(*dtypes)


def _linear_like(node, shapes, dtypes, trans_b=True):
    x, w = tuple(shapes[0]), tuple(shapes[1])
    if len(w) != 2 or len(x) < 1:
        _fail(node, f"input {x} does not fit weight {w}")
    k, n = (w[1], w[0]) if trans_b else (w[0], w[1])
    if x[-1] != k:
        _fail(node, f"input of shape {x} does not fit weight of shape {w} (need input[..., {k}])")
    if len(shapes) == 3 and tuple(shapes[2]) != (n,):
        _fail(node, f"bias of shape {tuple(shapes[2])} does not fit {n} output features")
    return x[:-1] + (n,), np.result_type(*dtypes)


_ACTIVATIONS = (None, "relu", "gelu", "gelu_tanh", "tanh", "sigmoid")


def _fused_linear(node, shapes, dtypes):
    if node.attrs["activation"] not in _ACTIVATIONS:
        _fail(node, f"unknown activation {node.attrs['activation']!r} (one of {_ACTIVATIONS})")
    return _linear_like(node, shapes, dtypes, trans_b=bool(node.attrs["trans_b"]))


def _einsum(node, shapes, dtypes):
    from ..autograd.functional import _parse_einsum  # the one einsum parser of the package

    try:
        _, output, sizes = _parse_einsum(node.attrs["subscripts"], [tuple(s) for s in shapes])
    except (ValueError, TypeError) as e:
        _fail(node, str(e))
    return tuple(sizes[c] for c in output), np.result_type(*dtypes)


def _softmax(node, shapes, dtypes):
    axis = node.attrs["axis"]
    if axis is not None:
        normalize_axes(node, axis, len(shapes[0]))
    return shapes[0], _float(dtypes[0])


def _targets(node, logits, t_shape, t_dtype):
    if t_dtype.kind not in "iu":
        _fail(node, f"targets must be integer class indices, got dtype {t_dtype}")
    if len(logits) < 1:
        _fail(node, f"logits must have at least 1 dimension, got shape {logits}")
    expected = logits[:1] + logits[2:] if len(logits) > 1 else ()
    if tuple(t_shape) != expected:
        _fail(node, f"logits of shape {logits} need targets of shape {expected}, got {tuple(t_shape)}")
    return expected


def _loss(node, shapes, dtypes):
    logits = tuple(shapes[0])
    t_shape = _targets(node, logits, shapes[1], dtypes[1])
    red = node.attrs["reduction"]
    if red not in ("mean", "sum", "none"):
        _fail(node, f"reduction must be 'mean', 'sum' or 'none', got {red!r}")
    return (t_shape if red == "none" else ()), dtypes[0]


def _loss_grad(node, shapes, dtypes):
    g, logits = tuple(shapes[0]), tuple(shapes[1])
    t_shape = _targets(node, logits, shapes[2], dtypes[2])
    expect = t_shape if node.attrs["reduction"] == "none" else ()
    if g != expect:
        _fail(node, f"the gradient has shape {g} but the loss has shape {expect}")
    return logits, dtypes[1]


def _max_grad(node, shapes, dtypes):
    g, x, out = (tuple(s) for s in shapes)
    fake = Node("max", (), {"axis": node.attrs["axis"], "keepdims": node.attrs["keepdims"]},
                name=node.name)
    expect, _ = _reduction(fake, [x], [dtypes[1]])
    if g != expect or out != expect:
        _fail(node, f"gradient {g} and max {out} must both have the max's shape {expect}")
    return x, dtypes[1]


def _getitem_grad(node, shapes, dtypes):
    shape = tuple(node.attrs["shape"])
    view = np.broadcast_to(np.zeros((), dtypes[0]), shape)
    try:
        expect = view[node.attrs["index"]].shape
    except (IndexError, TypeError, ValueError) as e:
        _fail(node, f"bad index for shape {shape}: {e}")
    if tuple(shapes[0]) != expect:
        _fail(node, f"gradient of shape {tuple(shapes[0])} does not match x[index] of shape {expect}")
    return shape, dtypes[0]


SHAPE_RULES = {
    "neg": _unary_same, "relu": _unary_same,
    "exp": _unary_float, "log": _unary_float, "tanh": _unary_float, "sigmoid": _unary_float,
    "gelu": _unary_float, "pow_scalar": _pow_scalar,
    "add": _binary, "sub": _binary, "mul": _binary, "pow": _binary, "div": _div,
    "relu_grad": _grad_binary, "gelu_grad": _grad_binary,
    "fused_elementwise": _fused,
    "sum": _reduction, "mean": _reduction, "max": _reduction, "sum_to": _sum_to,
    "reshape": _reshape, "transpose": _transpose, "broadcast_to": _broadcast_to, "getitem": _getitem,
    "matmul": _matmul, "matmul_t": _matmul_t, "linear": _linear_like, "einsum": _einsum,
    "fused_linear": _fused_linear,
    "softmax": _softmax, "log_softmax": _softmax, "cross_entropy": _loss, "nll_loss": _loss,
    "cross_entropy_grad": _loss_grad, "nll_loss_grad": _loss_grad, "max_grad": _max_grad,
    "getitem_grad": _getitem_grad,
}


def infer_node(node: Node):
    """``(shape, dtype)`` of ``node`` from its inputs' stored shapes and dtypes.

    Sources (``input``, ``constant``) return what they store. Raises :class:`GraphError` for an unknown
    op or wrong arity and :class:`ShapeError` for inputs that do not fit, naming the node.
    """
    if node.op == "constant":
        v = node.attrs["value"]
        return tuple(v.shape), v.dtype
    if node.op == "input":
        return node.shape, node.dtype
    info = OPS.get(node.op)
    rule = SHAPE_RULES.get(node.op)
    if info is None or rule is None:
        raise GraphError(f"node {node.name!r}: unknown op {node.op!r}", node.name)
    if not info.arity_ok(len(node.inputs)):
        raise GraphError(f"node {node.name!r}: op {node.op!r} takes {info.arity} inputs, got "
                         f"{len(node.inputs)}", node.name)
    for a in info.attrs:
        if a not in node.attrs:
            raise GraphError(f"node {node.name!r}: op {node.op!r} needs attribute {a!r}", node.name)
    for i in node.inputs:
        if i.shape is None or i.dtype is None:
            raise ShapeError(f"node {node.name!r} ({node.op}): input {i.name!r} has no shape yet",
                             node.name)
    shape, dtype = rule(node, [i.shape for i in node.inputs], [i.dtype for i in node.inputs])
    return tuple(int(n) for n in shape), np.dtype(dtype)


def infer_shapes(graph: Graph, input_shapes: dict | None = None) -> Graph:
    """Propagate shapes through a copy of ``graph`` and return it.

    ``input_shapes`` maps input names to new shapes (e.g. another batch size); every other node's shape
    and dtype is recomputed in topological order. Static attributes traced for the old shapes (a
    ``reshape`` to a fixed shape) raise a ShapeError naming the node that no longer fits.
    """
    g = graph.copy()
    input_shapes = dict(input_shapes or {})
    for n in g.inputs:
        if n.name in input_shapes:
            n.shape = tuple(input_shapes.pop(n.name))
    if input_shapes:
        raise GraphError(f"infer_shapes: graph {graph.name!r} has no inputs named {sorted(input_shapes)}")
    for n in g.topological_order():
        n.shape, n.dtype = infer_node(n)
    return g
