"""Dead-code elimination: remove nodes whose values no output needs."""

from __future__ import annotations

from ..ir import Graph

__all__ = ["dead_code_elimination"]


def dead_code_elimination(graph: Graph) -> int:
    """Remove every node that no graph output depends on; return the number removed.

    Liveness is reachability backwards from the outputs. Graph inputs stay even when unused: they are
    the graph's calling convention. Dead code appears naturally: symbolic autodiff computes the
    gradient of the data input that nobody asked for, and every rewrite leaves its old inputs behind.
    """
    live, stack = set(), list(graph.outputs)
    while stack:
        n = stack.pop()
        if n in live:
            continue
        live.add(n)
        stack.extend(n.inputs)
    dead = [n for n in graph.nodes if n not in live and n.op != "input"]
    keep = set(dead)
    graph.nodes = [n for n in graph.nodes if n not in keep]
    for n in dead:
        graph._names.discard(n.name)
    return len(dead)
