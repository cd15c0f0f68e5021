"""Common-subexpression elimination: compute each distinct expression once."""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from ._util import replace

__all__ = ["common_subexpression_elimination", "COMMUTATIVE"]

#: Ops whose two inputs can be swapped: ``a * b`` and ``b * a`` are the same expression.
COMMUTATIVE = {"add", "mul"}

_SMALL = 64  # constants up to this many elements are compared by value


def _freeze(v):
    """A hashable stand-in for an attribute value (slices, lists and small arrays are not hashable)."""
    if isinstance(v, (tuple, list)):
        return (type(v).__name__,) + tuple(_freeze(x) for x in v)
    if isinstance(v, slice):
        return ("slice", v.start, v.stop, v.step)
    if isinstance(v, np.ndarray):
        return ("array", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, dict):
        return ("dict",) + tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    try:
        hash(v)
        return v
    except TypeError:
        return ("id", id(v))


def _key(n: Node):
    if n.op == "constant":
        v = n.attrs["value"]
        return ("constant", _freeze(v)) if v.size <= _SMALL else None
    if n.op == "input":
        return None
    ins = tuple(id(i) for i in n.inputs)
    if n.op in COMMUTATIVE:
        ins = tuple(sorted(ins))
    return (n.op, ins, _freeze(n.attrs), n.shape, n.dtype.str)


def common_subexpression_elimination(graph: Graph) -> int:
    """Merge nodes that compute the same thing: the same op on the same inputs with equal attributes
    (inputs in either order for :data:`COMMUTATIVE` ops), and small constants with equal values.

    Works in topological order, so once two nodes merge, their users become equal and merge too.
    Every op in the IR is pure (no randomness, no state), which is what makes this safe. Returns the
    number of nodes removed.
    """
    seen, merged = {}, 0
    for n in list(graph.topological_order()):
        k = _key(n)
        if k is None:
            continue
        first = seen.get(k)
        if first is None:
            seen[k] = n
        else:
            replace(graph, n, first)
            merged += 1
    return merged
