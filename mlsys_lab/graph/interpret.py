"""The reference interpreter: run a Graph on NumPy arrays, one node at a time, in topological order.

``interpret(graph, *inputs)`` returns the list of output arrays. It is the specification of what a graph
means: every pass must leave ``interpret``'s results unchanged, and a runtime's compiled plan must agree
with it. The kernels are plain NumPy and compute exactly what eager mode computes (the same formulas, in
the same order, so that traced graphs reproduce eager results to the last bit for most ops).

:data:`KERNELS` maps each op to ``kernel(*input_arrays, **attrs) -> ndarray``: a registry, like the
kernel tables of production frameworks; a runtime can start from these and replace the ones it has
faster versions of. A kernel never writes into its inputs and may return a view of one (``reshape``,
``transpose``, ``broadcast_to``).

Inputs are checked against the graph's input nodes: a missing one raises :class:`GraphError` naming the
input, a wrong shape or dtype a :class:`ShapeError` naming it. With ``check=True`` (the default) every
result is checked against the node's inferred shape and dtype, so a kernel or shape rule that disagree
are caught at the node where they first differ.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Tensor
from ..autograd.functional import _parse_einsum, _squeeze_broadcast, erf
from ..autograd.tensor import unbroadcast
from .ir import Graph, GraphError, ShapeError, format_dtype, format_shape

__all__ = ["interpret", "evaluate", "KERNELS", "bind_inputs"]

_GELU_K = math.sqrt(2 / math.pi)


# ----------------------------------------------------------------------------------------------------------
# Kernels (the same formulas as eager mode)
# ----------------------------------------------------------------------------------------------------------

def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def _gelu(x, approximate="none"):
    if approximate == "none":
        cdf = (0.5 * (1.0 + erf(x * (1 / math.sqrt(2))))).astype(x.dtype, copy=False)
        return x * cdf
    t = np.tanh(_GELU_K * (x + 0.044715 * x ** 3))
    return 0.5 * x * (1 + t)


def _gelu_grad(g, x, approximate="none"):
    if approximate == "none":
        cdf = (0.5 * (1.0 + erf(x * (1 / math.sqrt(2))))).astype(x.dtype, copy=False)
        pdf = np.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return g * (cdf + x * pdf)
    t = np.tanh(_GELU_K * (x + 0.044715 * x ** 3))
    du = _GELU_K * (1 + 3 * 0.044715 * x * x)
    return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)


def _relu(x):
    return np.maximum(x, 0)


def _relu_grad(g, x):
    return g * (x > 0).astype(g.dtype)


def _div(a, b):
    return a / b


def _axes(axis, ndim) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    return tuple(sorted(int(a) % max(ndim, 1) for a in axis)) if ndim else ()


def _reduce(fn):
    def kernel(x, axis, keepdims):
        return np.asarray(fn(x, axis=_axes(axis, x.ndim), keepdims=keepdims))
    return kernel


def _einsum(*arrays, subscripts):
    terms, output, sizes = _parse_einsum(subscripts, [a.shape for a in arrays])
    squeezed = [_squeeze_broadcast(t, a, sizes) for t, a in zip(terms, arrays)]
    spec = ",".join(t for t, _ in squeezed) + "->" + output
    return np.asarray(np.einsum(spec, *[a for _, a in squeezed], optimize=len(arrays) > 1))


def _linear(x, w, b=None):
    out = x @ w.T
    if b is not None:
        out += b
    return out


ACTIVATIONS = {
    None: lambda y: y,
    "relu": _relu,
    "gelu": lambda y: _gelu(y, "none"),
    "gelu_tanh": lambda y: _gelu(y, "tanh"),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
}


def _fused_linear(a, b, bias=None, trans_b=True, activation=None):
    out = a @ (b.T if trans_b else b)
    if bias is not None:
        out += bias
    return ACTIVATIONS[activation](out)


def _softmax(x, axis):
    if axis is None:
        return np.ones_like(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis):
    if axis is None:
        return np.zeros_like(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _rows(x, t):
    """Logits as (rows, classes) with the class axis (1, or 0 for 1-D) last; targets flat; and the map back."""
    if x.ndim == 1:
        return x[None], t.reshape(1), lambda d: d.reshape(x.shape)
    if x.ndim == 2:
        return x, t, lambda d: d
    moved = np.moveaxis(x, 1, -1)
    return moved.reshape(-1, x.shape[1]), t.reshape(-1), lambda d: np.moveaxis(d.reshape(moved.shape), -1, 1)


def _reduce_rows(per_row, t_shape, reduction):
    if reduction == "mean":
        return np.asarray(per_row.mean())
    if reduction == "sum":
        return np.asarray(per_row.sum())
    return per_row.reshape(t_shape)


def _row_scale(g, n_rows, reduction):
    if reduction == "mean":
        return g * (1.0 / max(n_rows, 1))
    if reduction == "sum":
        return g
    return g.reshape(-1, 1)


def _cross_entropy(x, t, reduction="mean"):
    x2, t2, _ = _rows(x, t)
    rows = np.arange(len(t2))
    shifted = x2 - x2.max(axis=1, keepdims=True)
    sum_e = np.exp(shifted).sum(axis=1, keepdims=True)
    per_row = np.log(sum_e[:, 0]) - shifted[rows, t2]
    return _reduce_rows(per_row, t.shape, reduction).astype(x.dtype, copy=False)


def _cross_entropy_grad(g, x, t, reduction="mean"):
    x2, t2, back = _rows(x, t)
    rows = np.arange(len(t2))
    e = np.exp(x2 - x2.max(axis=1, keepdims=True))
    d = e / e.sum(axis=1, keepdims=True)
    d[rows, t2] -= 1
    d *= _row_scale(g, len(t2), reduction)
    return back(d)


def _nll_loss(x, t, reduction="mean"):
    x2, t2, _ = _rows(x, t)
    return _reduce_rows(-x2[np.arange(len(t2)), t2], t.shape, reduction).astype(x.dtype, copy=False)


def _nll_loss_grad(g, x, t, reduction="mean"):
    x2, t2, back = _rows(x, t)
    d = np.zeros_like(x2)
    d[np.arange(len(t2)), t2] = -1
    d *= _row_scale(g, len(t2), reduction)
    return back(d)


def _max_grad(g, x, out, axis, keepdims):
    axes = _axes(axis, x.ndim)
    keep = tuple(1 if k in axes else n for k, n in enumerate(x.shape))
    mask = x == out.reshape(keep)
    count = mask.sum(axis=axes, keepdims=True)
    return mask * (g.reshape(keep) / count)


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer)) and not isinstance(i, bool)
               for i in items)


def _getitem_grad(g, index, shape):
    full = np.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        full[index] = g
    else:
        np.add.at(full, index, g)
    return full


def _fused_elementwise(*arrays, graph, **_):
    return interpret(graph, *arrays, check=False)[0]


KERNELS = {
    "neg": np.negative, "exp": np.exp, "log": np.log, "tanh": np.tanh, "sigmoid": _sigmoid,
    "relu": _relu, "gelu": _gelu, "pow_scalar": lambda x, exponent: x ** exponent,
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": _div, "pow": np.power,
    "relu_grad": _relu_grad, "gelu_grad": _gelu_grad,
    "fused_elementwise": _fused_elementwise,
    "sum": _reduce(np.sum), "mean": _reduce(np.mean), "max": _reduce(np.max),
    "sum_to": lambda x, shape: unbroadcast(x, tuple(shape)),
    "reshape": lambda x, shape: x.reshape(shape),
    "transpose": lambda x, axes: x.transpose(axes),
    "broadcast_to": lambda x, shape: np.broadcast_to(x, shape),
    "getitem": lambda x, index: np.asarray(x[index]),
    "matmul": np.matmul, "matmul_t": lambda a, b: a @ b.T, "linear": _linear, "einsum": _einsum,
    "fused_linear": _fused_linear,
    "softmax": _softmax, "log_softmax": _log_softmax,
    "cross_entropy": _cross_entropy, "nll_loss": _nll_loss,
    "cross_entropy_grad": _cross_entropy_grad, "nll_loss_grad": _nll_loss_grad,
    "max_grad": _max_grad, "getitem_grad": _getitem_grad,
}


# ----------------------------------------------------------------------------------------------------------
# The interpreter
# ----------------------------------------------------------------------------------------------------------

def bind_inputs(graph: Graph, args, kwargs) -> dict:
    """``{input node: ndarray}`` from positional values (in ``graph.inputs`` order) and/or values by name.

    Tensors are unwrapped. Raises GraphError for a missing or unknown input and ShapeError for a value
    whose shape or dtype differs from the input node's, naming the input.
    """
    if len(args) > len(graph.inputs):
        raise GraphError(f"graph {graph.name!r} takes {len(graph.inputs)} inputs, got {len(args)}")
    env = {}
    by_name = {n.name: n for n in graph.inputs}
    for node, v in zip(graph.inputs, args):
        env[node] = v
    for k, v in kwargs.items():
        if k not in by_name:
            raise GraphError(f"graph {graph.name!r} has no input named {k!r} (inputs: {list(by_name)})", k)
        env[by_name[k]] = v
    for node in graph.inputs:
        if node not in env:
            raise GraphError(f"graph {graph.name!r}: input {node.name!r} ({node.type_str()}) was not given",
                             node.name)
        v = env[node]
        if isinstance(v, Tensor):
            v = v.data
        v = np.asarray(v)
        if v.shape != node.shape or v.dtype != node.dtype:
            raise ShapeError(f"graph {graph.name!r}: input {node.name!r} expects {node.type_str()}, got "
                             f"{format_dtype(v.dtype)}{format_shape(v.shape)}", node.name)
        env[node] = v
    return env


def evaluate(graph: Graph, *args, check: bool = True, **kwargs) -> dict:
    """Run the graph and return ``{node: value}`` for every node (for inspection and tests)."""
    env = bind_inputs(graph, args, kwargs)
    for node in graph.topological_order():
        if node.op == "input":
            continue
        if node.op == "constant":
            env[node] = node.attrs["value"]
            continue
        kernel = KERNELS.get(node.op)
        if kernel is None:
            raise GraphError(f"node {node.name!r}: no kernel for op {node.op!r}", node.name)
        try:
            value = kernel(*[env[i] for i in node.inputs], **node.attrs)
        except GraphError:
            raise
        except Exception as e:  # a kernel failing on values its shape rule accepted: say where
            raise GraphError(f"node {node.name!r} ({node.op}) failed: {type(e).__name__}: {e}",
                             node.name) from e
        value = np.asarray(value)
        if check and (value.shape != node.shape or value.dtype != node.dtype):
            raise ShapeError(f"node {node.name!r} ({node.op}) computed {format_dtype(value.dtype)}"
                             f"{format_shape(value.shape)} but is declared {node.type_str()}", node.name)
        env[node] = value
    return env


def interpret(graph: Graph, *args, check: bool = True, **kwargs) -> list:
    """Run ``graph`` on input values (positional in ``graph.inputs`` order, or by name); return the list
    of output arrays, in ``graph.outputs`` order. See the module docstring for the checks."""
    env = evaluate(graph, *args, check=check, **kwargs)
    return [env[o] for o in graph.outputs]
