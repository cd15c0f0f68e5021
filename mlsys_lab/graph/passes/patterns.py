"""Pattern fusion: recognise a known multi-op pattern and replace it with one specialised op.

Elementwise fusion merges any elementwise ops; pattern fusion knows what a group of *different* kinds of
ops means, and swaps in a kernel written for it, as cuDNN/oneDNN "fused" primitives and TensorRT's
layer fusion do:

* **softmax**: ``exp(x - max(x)) / sum(exp(x - max(x)))`` along one axis (or the same without the max
  shift) becomes ``softmax(x)``: one pass over memory per row instead of five ops and four temporaries,
  and always the numerically stable form. ``z - log(sum(exp(z)))`` becomes ``log_softmax`` likewise.
* **matmul + bias + activation**: ``act(x @ W + b)``, ``act(x @ W.T + b)`` and ``act(linear(x, W, b))``
  (act: relu, gelu, tanh, sigmoid, or none) become one ``fused_linear``: the bias and activation are
  applied while the matmul's output tile is still in cache, instead of two more passes over memory.
  ``x @ transpose(W)`` first becomes ``matmul_t(x, W)``, the transposed-operand GEMM every BLAS offers.

A pattern only fires when its interior values have no other users (otherwise they must be computed
anyway and nothing would be saved).
"""

from __future__ import annotations

from ..ir import Graph, Node
from ._util import replace

__all__ = ["fuse_patterns", "fuse_softmax", "fuse_linear", "ACTIVATION_OPS"]


def _only_users(users: dict, node: Node, allowed) -> bool:
    """Every use of ``node`` is in ``allowed``."""
    return all(u in allowed for u in users[node])


_OUTSIDE = object()  # the reader of the graph's outputs


def _users(graph: Graph) -> dict:
    """``graph.users()``, where each graph output also has the outside world as a user: an output's
    value must exist, so it can never be the interior of a fused pattern."""
    users = graph.users()
    for o in graph.outputs:
        users[o].append(_OUTSIDE)
    return users


def _single_axis_reduce(n: Node, op: str):
    """The axis if ``n`` is ``op(..., axis=(a,), keepdims=True)``, else None."""
    if n.op == op and n.attrs.get("keepdims") and len(tuple(n.attrs["axis"] or ())) == 1:
        return tuple(n.attrs["axis"])[0]
    return None


def _unshift(z: Node, axis: int, users: dict, consumers) -> Node:
    """``x`` if ``z`` is ``x - max(x, axis, keepdims=True)`` only used by ``consumers``, else ``z``."""
    if z.op == "sub":
        x, m = z.inputs
        if m.op == "max" and m.inputs[0] is x and _single_axis_reduce(m, "max") == axis \
                and _only_users(users, z, consumers):
            return x
    return z


def fuse_softmax(graph: Graph) -> int:
    """``e / sum(e)`` with ``e = exp(z)`` becomes ``softmax``; ``z - log(sum(exp(z)))`` becomes
    ``log_softmax`` (see the module docstring). Returns the number of patterns replaced."""
    count = 0
    for n in list(graph.topological_order()):
        users = _users(graph)
        if n not in users:
            continue
        if n.op == "div":
            e, s = n.inputs
            axis = _single_axis_reduce(s, "sum")
            if (e.op != "exp" or axis is None or s.inputs[0] is not e
                    or not _only_users(users, e, {s, n}) or not _only_users(users, s, {n})):
                continue
            z = e.inputs[0]
            x = _unshift(z, axis, users, {e})
            new = graph.add_node("softmax", [x], {"axis": axis})
        elif n.op == "sub" and n.inputs[1].op == "log":
            z, lg = n.inputs
            s = lg.inputs[0]
            axis = _single_axis_reduce(s, "sum")
            e = s.inputs[0] if axis is not None else None
            if (e is None or e.op != "exp" or e.inputs[0] is not z or not _only_users(users, lg, {n})
                    or not _only_users(users, s, {lg}) or not _only_users(users, e, {s})):
                continue
            x = _unshift(z, axis, users, {e, n})
            new = graph.add_node("log_softmax", [x], {"axis": axis})
        else:
            continue
        if new.shape != n.shape or new.dtype != n.dtype:
            graph.remove(new)
            continue
        replace(graph, n, new)
        count += 1
    return count


#: Activation ops that ``fuse_linear`` absorbs, and the ``activation`` attribute each becomes.
ACTIVATION_OPS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", ("gelu", "none"): "gelu",
                  ("gelu", "tanh"): "gelu_tanh"}


def _activation(n: Node):
    key = (n.op, n.attrs["approximate"]) if n.op == "gelu" else n.op
    return ACTIVATION_OPS.get(key)


def _as_linear(n: Node, users: dict):
    """``(a, b, bias, trans_b)`` if ``n`` computes ``a @ b(.T) + bias`` with 2-D operands, else None."""
    if n.op == "fused_linear" and n.attrs["activation"] is None:  # x @ W + b, fused a moment ago
        return n.inputs[0], n.inputs[1], (n.inputs[2] if len(n.inputs) == 3 else None), n.attrs["trans_b"]
    if n.op == "linear":
        x, w = n.inputs[:2]
        return x, w, (n.inputs[2] if len(n.inputs) == 3 else None), True
    if n.op in ("matmul", "matmul_t"):
        a, b = n.inputs
        if len(a.shape) == 2 and len(b.shape) == 2:
            return a, b, None, n.op == "matmul_t"
        return None
    if n.op == "add":
        for mm, bias in (n.inputs, n.inputs[::-1]):
            if mm.op in ("matmul", "matmul_t") and _only_users(users, mm, {n}):
                inner = _as_linear(mm, users)
                if inner and bias.shape == (n.shape[-1],) and bias.dtype == n.dtype and mm.shape == n.shape:
                    return inner[0], inner[1], bias, inner[3]
    return None


def fuse_linear(graph: Graph) -> int:
    """``matmul(x, transpose(W))`` becomes ``matmul_t(x, W)``; then every ``act(x @ W (+ b))`` and
    ``act(linear(...))`` with an activation, and every ``x @ W + b``, becomes one ``fused_linear``.
    Returns the number of rewrites."""
    count = 0
    for n in list(graph.topological_order()):
        users = _users(graph)
        if n not in users:
            continue
        if n.op == "matmul" and n.inputs[1].op == "transpose" and len(n.inputs[1].shape) == 2 \
                and len(n.inputs[0].shape) == 2:
            new = graph.add_node("matmul_t", [n.inputs[0], n.inputs[1].inputs[0]])
            replace(graph, n, new)
            count += 1
    for n in list(graph.topological_order()):
        users = _users(graph)
        if n not in users:
            continue
        act, body = _activation(n), n
        if act is not None:
            body = n.inputs[0]
            if not _only_users(users, body, {n}):
                continue
            lin = _as_linear(body, users)
        elif n.op == "add":
            lin = _as_linear(n, users)  # bias, no activation
        else:
            continue
        if lin is None:
            continue
        a, b, bias, trans_b = lin
        inputs = [a, b] + ([bias] if bias is not None else [])
        new = graph.add_node("fused_linear", inputs, {"trans_b": trans_b, "activation": act})
        if new.shape != n.shape or new.dtype != n.dtype:
            graph.remove(new)
            continue
        replace(graph, n, new)
        count += 1
    return count


def fuse_patterns(graph: Graph) -> int:
    """Both pattern fusions: softmax / log-softmax, then matmul + bias + activation."""
    return fuse_softmax(graph) + fuse_linear(graph)
