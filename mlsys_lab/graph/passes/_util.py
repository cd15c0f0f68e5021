"""Helpers shared by the passes."""

from __future__ import annotations

from ..ir import Graph, Node


def replace(graph: Graph, old: Node, new: Node) -> None:
    """Rewire every use of ``old`` (and the outputs) to ``new``, then drop ``old`` from the graph.

    Each pass removes the node it replaced, so that its own node count is meaningful; whatever else
    became unused (the replaced node's inputs) is left to dead-code elimination.
    """
    graph.replace_all_uses(old, new)
    graph.remove(old)


def is_scalar_const(node: Node, value=None) -> bool:
    """A constant with one element (and, if ``value`` is given, equal to it)."""
    if node.op != "constant" or node.size != 1:
        return False
    return value is None or node.attrs["value"].reshape(()).item() == value


def all_equal_const(node: Node, value) -> bool:
    """A constant whose every element equals ``value`` (e.g. a tensor of ones)."""
    return node.op == "constant" and bool((node.attrs["value"] == value).all())
