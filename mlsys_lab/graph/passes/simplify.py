"""Algebraic simplification: rewrite expressions into cheaper equal ones.

Each rule looks at one node and, when it matches, returns the node to use instead (an existing node, or a
new one it adds). A rule only fires when the replacement has exactly the node's shape and dtype, so
``x * ones((3, 4))`` with ``x`` of shape ``(4,)`` is kept: the multiplication is what broadcasts it.

Rules (:data:`RULES`):

* identities: ``x * 1``, ``1 * x``, ``x / 1``, ``x + 0``, ``0 + x``, ``x - 0``, ``x ** 1`` become ``x``
  (the constant may be a scalar or a tensor of ones/zeros)
* ``-(-x)`` becomes ``x``; ``x ** 2`` becomes ``x * x`` (NumPy squares with one multiply either way, and
  ``mul`` is an op that every backend has)
* ``transpose(transpose(x, p), q)`` becomes one transpose with the composed permutation, or ``x`` when that
  is the identity; a transpose with the identity permutation becomes ``x``
* ``reshape(reshape(x))`` becomes one reshape; a reshape, ``broadcast_to`` or ``sum_to`` to the input's own
  shape becomes ``x``

One rule is a deliberate, standard relaxation: ``x + 0 -> x`` turns ``-0.0`` (for which ``-0.0 + 0.0`` is
``+0.0``) into ``-0.0``; ML compilers accept that, C compilers without ``-ffast-math`` do not.

Not applied, on purpose: ``x * 0 -> 0`` (wrong for inf and NaN), ``exp(log(x)) -> x`` (wrong for
``x < 0``), reassociating sums (changes float rounding). A compiler must not change what a program means.
"""

from __future__ import annotations

from ..ir import Graph, Node
from ._util import all_equal_const, replace

__all__ = ["simplify", "RULES"]


def _same_type(a: Node, b: Node) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype


def _identity(n: Node, g: Graph):
    if n.op in ("mul", "add", "sub", "div"):
        x, y = n.inputs
        unit = 1 if n.op in ("mul", "div") else 0
        if all_equal_const(y, unit) and _same_type(x, n):
            return x
        if n.op in ("mul", "add") and all_equal_const(x, unit) and _same_type(y, n):
            return y
    if n.op == "pow_scalar" and n.attrs["exponent"] == 1 and _same_type(n.inputs[0], n):
        return n.inputs[0]
    return None


def _square(n: Node, g: Graph):
    if n.op == "pow_scalar" and n.attrs["exponent"] == 2:
        x = n.inputs[0]
        if x.dtype == n.dtype:
            return g.add_node("mul", [x, x])
    return None


def _double_neg(n: Node, g: Graph):
    if n.op == "neg" and n.inputs[0].op == "neg":
        return n.inputs[0].inputs[0]
    return None


def _transposes(n: Node, g: Graph):
    if n.op != "transpose":
        return None
    axes = tuple(n.attrs["axes"])
    if axes == tuple(range(len(axes))):
        return n.inputs[0]
    inner = n.inputs[0]
    if inner.op == "transpose":
        p = tuple(inner.attrs["axes"])
        composed = tuple(p[a] for a in axes)  # out[i] = x[p[q[i]]]
        x = inner.inputs[0]
        if composed == tuple(range(len(composed))):
            return x
        return g.add_node("transpose", [x], {"axes": composed})
    return None


def _reshapes(n: Node, g: Graph):
    if n.op in ("reshape", "broadcast_to", "sum_to") and n.inputs[0].shape == n.shape:
        return n.inputs[0]
    if n.op == "reshape" and n.inputs[0].op == "reshape":
        x = n.inputs[0].inputs[0]
        return x if x.shape == n.shape else g.add_node("reshape", [x], {"shape": n.shape})
    return None


RULES = [_identity, _double_neg, _square, _transposes, _reshapes]


def simplify(graph: Graph, rules=None) -> int:
    """Apply the algebraic rules (see the module docstring) until none matches; return the number of
    rewrites. Replaced nodes are removed; inputs they leave unused are left to dead-code elimination."""
    rules = RULES if rules is None else rules
    total = 0
    changed = True
    while changed:
        changed = False
        for n in list(graph.topological_order()):
            if n.op in ("input", "constant"):
                continue
            for rule in rules:
                new = rule(n, graph)
                if new is not None and new is not n:
                    replace(graph, n, new)
                    total += 1
                    changed = True
                    break
        if changed:
            graph.sort()
    return total
