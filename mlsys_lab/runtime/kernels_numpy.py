"""The ``"numpy"`` backend: one kernel per op, each writing into the ``out`` array the planner gives it.

The formulas are the reference interpreter's (``mlsys_lab.graph.interpret``), which are eager mode's, in
the same order, so a compiled plan reproduces eager results to rounding (most ops bit for bit). What
changes is where results go: ``np.add(a, b, out=out)`` instead of ``a + b``, so a plan allocates nothing
per call beyond the temporaries some formulas need.

NumPy releases the GIL inside its loops and inside BLAS, which is what lets the parallel executor run two
of these kernels at the same time on two cores.

Kernels marked ``inplace=True`` read each element before they write it (or compute everything they need
from the inputs into temporaries before their first write), so they stay correct when ``out`` is one of
their inputs. Ops with no kernel here run on the ``"reference"`` backend (the interpreter's kernel plus
a copy into ``out``).
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd.functional import erf
from .registry import register

_GELU_K = math.sqrt(2 / math.pi)


def _axes(axis, ndim) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    return tuple(sorted(int(a) % max(ndim, 1) for a in axis)) if ndim else ()


# -- elementwise ---------------------------------------------------------------------------------------------

@register("neg", inplace=True)
def neg(x, *, out):
    return np.negative(x, out=out)


@register("exp", inplace=True)
def exp(x, *, out):
    return np.exp(x, out=out)


@register("log", inplace=True)
def log(x, *, out):
    return np.log(x, out=out)


@register("tanh", inplace=True)
def tanh(x, *, out):
    return np.tanh(x, out=out)


@register("sigmoid", inplace=True)
def sigmoid(x, *, out):
    # 1 / (1 + exp(-x)), one pass per operation but no temporaries: every step writes into out.
    with np.errstate(over="ignore"):
        np.negative(x, out=out)
        np.exp(out, out=out)
    np.add(out, 1, out=out)
    return np.divide(1, out, out=out)


@register("relu", inplace=True)
def relu(x, *, out):
    return np.maximum(x, 0, out=out)


@register("gelu", inplace=True)
def gelu(x, *, out, approximate="none"):
    if approximate == "none":
        cdf = (0.5 * (1.0 + erf(x * (1 / math.sqrt(2))))).astype(x.dtype, copy=False)
        return np.multiply(x, cdf, out=out)
    one_plus_t = 1 + np.tanh(_GELU_K * (x + 0.044715 * x ** 3))  # everything read from x first
    np.multiply(0.5, x, out=out)
    return np.multiply(out, one_plus_t, out=out)


@register("pow_scalar", inplace=True)
def pow_scalar(x, *, out, exponent):
    # NumPy's own `x ** e` takes shortcuts for e in (2, 0.5, -1, 1); the general power function is a slow
    # scalar loop (float32 x ** 3 runs ~50x slower than x * x * x), so the cube is strength-reduced too.
    if exponent == 2:
        return np.square(x, out=out)
    if exponent == 3 and x.dtype.kind == "f":
        sq = np.square(x)                     # read x fully before out (which may be x) is written
        return np.multiply(sq, x, out=out)
    if exponent == 0.5 and x.dtype.kind == "f":
        return np.sqrt(x, out=out)
    if exponent == -1 and x.dtype.kind == "f":
        return np.reciprocal(x, out=out)
    return np.power(x, exponent, out=out)


@register("add", inplace=True)
def add(a, b, *, out):
    return np.add(a, b, out=out)


@register("sub", inplace=True)
def sub(a, b, *, out):
    return np.subtract(a, b, out=out)


@register("mul", inplace=True)
def mul(a, b, *, out):
    return np.multiply(a, b, out=out)


@register("div", inplace=True)
def div(a, b, *, out):
    return np.true_divide(a, b, out=out)


@register("pow", inplace=True)
def pow_(a, b, *, out):
    return np.power(a, b, out=out)


@register("relu_grad", inplace=True)
def relu_grad(g, x, *, out):
    return np.multiply(g, x > 0, out=out)


@register("gelu_grad", inplace=True)
def gelu_grad(g, x, *, out, approximate="none"):
    if approximate == "none":
        cdf = (0.5 * (1.0 + erf(x * (1 / math.sqrt(2))))).astype(x.dtype, copy=False)
        pdf = np.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return np.multiply(g, cdf + x * pdf, out=out)
    t = np.tanh(_GELU_K * (x + 0.044715 * x ** 3))
    du = _GELU_K * (1 + 3 * 0.044715 * x * x)
    return np.multiply(g, 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du, out=out)


# -- reductions ----------------------------------------------------------------------------------------------

@register("sum")
def sum_(x, *, out, axis, keepdims):
    return np.sum(x, axis=_axes(axis, x.ndim), keepdims=keepdims, out=out)


@register("mean")
def mean(x, *, out, axis, keepdims):
    return np.mean(x, axis=_axes(axis, x.ndim), keepdims=keepdims, out=out)


@register("max")
def max_(x, *, out, axis, keepdims):
    return np.max(x, axis=_axes(axis, x.ndim), keepdims=keepdims, out=out)


@register("sum_to")
def sum_to(x, *, out, shape):
    # The backward of broadcasting: sum the new leading axes and the axes that were 1 (as unbroadcast).
    shape = tuple(shape)
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + k for k, n in enumerate(shape) if n == 1 and x.shape[lead + k] != 1)
    if not axes:
        np.copyto(out, x.reshape(shape))
        return out
    np.sum(x, axis=axes, keepdims=True, out=out.reshape((1,) * lead + shape))
    return out


# -- data movement: views where possible --------------------------------------------------------------------

@register("reshape", view=True, needs_contiguous=True, name="numpy.reshape_view")
def reshape_view(x, *, out, shape):
    return x.reshape(shape)


@register("reshape", name="numpy.reshape_copy")
def reshape_copy(x, *, out, shape):
    # out is contiguous, so viewing it with x's shape and copying x in gives x's elements in C order.
    np.copyto(out.reshape(x.shape), x)
    return out


@register("transpose", view=True)
def transpose(x, *, out, axes):
    return x.transpose(axes)


@register("broadcast_to", view=True)
def broadcast_to(x, *, out, shape):
    return np.broadcast_to(x, shape)


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or (isinstance(i, (slice, int, np.integer)) and not isinstance(i, bool))
               for i in items)


@register("getitem", view=True, when=lambda n: _is_basic(n.attrs["index"]), name="numpy.getitem_view")
def getitem_view(x, *, out, index):
    return x[index]


@register("getitem", name="numpy.getitem_copy")
def getitem_copy(x, *, out, index):
    np.copyto(out, x[index])
    return out


@register("getitem_grad")
def getitem_grad(g, *, out, index, shape):
    out.fill(0)
    if _is_basic(index):
        out[index] = g
    else:
        np.add.at(out, index, g)
    return out


# -- matrix products -----------------------------------------------------------------------------------------

@register("matmul")
def matmul(a, b, *, out):
    return np.matmul(a, b, out=out)


@register("matmul_t")
def matmul_t(a, b, *, out):
    return np.matmul(a, b.T, out=out)


@register("linear")
def linear(x, w, b=None, *, out):
    np.matmul(x, w.T, out=out)
    if b is not None:
        out += b
    return out


def _activation_inplace(out, activation):
    if activation is None:
        return out
    if activation == "relu":
        return np.maximum(out, 0, out=out)
    if activation in ("gelu", "gelu_tanh"):
        return gelu(out, out=out, approximate="tanh" if activation == "gelu_tanh" else "none")
    if activation == "tanh":
        return np.tanh(out, out=out)
    if activation == "sigmoid":
        return sigmoid(out, out=out)
    raise ValueError(f"unknown activation {activation!r}")


@register("fused_linear")
def fused_linear(a, b, bias=None, *, out, trans_b, activation):
    # One node, one output buffer: the product lands in out, the bias and the activation run in place.
    np.matmul(a, b.T if trans_b else b, out=out)
    if bias is not None:
        out += bias
    return _activation_inplace(out, activation)


@register("einsum")
def einsum(*arrays, out, subscripts):
    from ..autograd.functional import _parse_einsum, _squeeze_broadcast

    terms, output, sizes = _parse_einsum(subscripts, [a.shape for a in arrays])
    squeezed = [_squeeze_broadcast(t, a, sizes) for t, a in zip(terms, arrays)]
    spec = ",".join(t for t, _ in squeezed) + "->" + output
    return np.einsum(spec, *[a for _, a in squeezed], optimize=len(arrays) > 1, out=out)


# -- normalisations ------------------------------------------------------------------------------------------

@register("softmax", inplace=True)
def softmax(x, *, out, axis):
    if axis is None:
        out.fill(1)
        return out
    m = x.max(axis=axis, keepdims=True)
    np.subtract(x, m, out=out)
    np.exp(out, out=out)
    return np.divide(out, out.sum(axis=axis, keepdims=True), out=out)


@register("log_softmax", inplace=True)
def log_softmax(x, *, out, axis):
    if axis is None:
        out.fill(0)
        return out
    np.subtract(x, x.max(axis=axis, keepdims=True), out=out)
    return np.subtract(out, np.log(np.exp(out).sum(axis=axis, keepdims=True)), out=out)


# -- fused elementwise: NumPy cannot fuse, so the sub-expression runs op by op -------------------------------

@register("fused_elementwise", factory=True, inplace=True, name="numpy.fused_elementwise")
def fused_elementwise(node):
    """Evaluate the node's sub-graph with the kernels above, temporaries for the intermediate values and
    the final op writing into ``out``. Same memory traffic as the unfused ops (NumPy makes one pass per
    op); the ``"numba"`` backend generates a single loop instead."""
    from .registry import REGISTRY

    sub = node.attrs["graph"]
    result = sub.outputs[0]
    needed = {result}
    for n in reversed(sub.topological_order()):  # only the output's ancestors, so the output runs last
        if n in needed:
            needed.update(n.inputs)
    order = [n for n in sub.topological_order() if n in needed and n.op != "input"]
    slots = {n: k for k, n in enumerate(sub.inputs)}
    consts, prog = {}, []
    for n in order:
        if n.op == "constant":
            consts[n] = n.attrs["value"]
            continue
        bound = REGISTRY.select(n, "numpy", allow_view=True)
        prog.append((n, bound.call, bound.kernel.view))

    def run(*arrays, out):
        env = dict(consts)
        for n, k in slots.items():
            env[n] = arrays[k]
        for n, call, is_view in prog:
            target = None if is_view else (out if n is result else np.empty(n.shape, n.dtype))
            env[n] = call(*[env[i] for i in n.inputs], out=target)
        if result.op in ("input", "constant") or env[result] is not out:
            np.copyto(out, env[result])
        return out

    run.__name__ = "fused_elementwise_numpy"
    return run

