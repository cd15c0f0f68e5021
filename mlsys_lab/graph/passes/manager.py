"""A small pass manager: run graph-to-graph rewrites in order, check the graph after each, keep a log.

A *pass* is any callable ``pass_(graph) -> int`` that rewrites ``graph`` in place and returns how many
rewrites it made (0 = nothing to do). That is the whole interface: the passes in this package are plain
functions, and a lab exercise adds one by writing one more function.

:class:`PassManager` copies the graph (the caller's graph is never changed), then for each pass: runs it,
re-sorts the nodes topologically (a pass may append replacements after their users), validates the
graph (so a broken rewrite fails at the pass that broke it, naming the node) and appends a
:class:`PassRecord` to ``history``: the pass's name, the rewrite count and the node counts before and
after. :class:`FixedPoint` wraps a list of passes and repeats it until none of them changes anything,
because one simplification often exposes another (folding a constant makes ``x * 1`` visible, which
makes a node dead).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..ir import Graph, GraphError

__all__ = ["PassManager", "FixedPoint", "PassRecord", "pass_name"]


@dataclass
class PassRecord:
    """One pass application: ``name``, ``changes`` (rewrites), node counts (``nodes_*`` all nodes,
    ``ops_*`` compute nodes only), ``op_counts`` after the pass, and the time it took."""

    name: str
    changes: int
    nodes_before: int
    nodes_after: int
    ops_before: int
    ops_after: int
    seconds: float
    op_counts: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"{self.name:<34} {self.changes:>4} rewrites  ops {self.ops_before:>4} -> {self.ops_after:<4}"
                f" nodes {self.nodes_before:>4} -> {self.nodes_after}")


def pass_name(p) -> str:
    return getattr(p, "name", None) or getattr(p, "__name__", None) or type(p).__name__


class FixedPoint:
    """Repeat ``passes`` (in order) until a whole round changes nothing, at most ``max_rounds`` rounds.

    Used as one pass inside a :class:`PassManager`; each inner application is logged there too.
    """

    def __init__(self, passes, max_rounds: int = 10, name: str = "fixed_point"):
        self.passes = list(passes)
        self.max_rounds = max_rounds
        self.name = name

    def run(self, graph: Graph, manager: "PassManager") -> int:
        total = 0
        for _ in range(self.max_rounds):
            round_changes = sum(manager._apply(p, graph) for p in self.passes)
            total += round_changes
            if not round_changes:
                break
        return total


class PassManager:
    """Run ``passes`` over a copy of a graph: ``PassManager([fold, dce]).run(g) -> new graph``.

    ``validate=True`` checks the graph after every pass (structure and shapes); ``history`` holds a
    :class:`PassRecord` per pass application after ``run``, and ``report()`` prints it as a table.
    """

    def __init__(self, passes, validate: bool = True):
        self.passes = list(passes)
        self.validate = validate
        self.history: list[PassRecord] = []

    def _apply(self, p, graph: Graph) -> int:
        if isinstance(p, FixedPoint):
            return p.run(graph, self)
        name = pass_name(p)
        nodes0, ops0 = len(graph), graph.num_ops()
        t0 = time.perf_counter()
        changes = int(p(graph) or 0)
        try:
            graph.sort()
            if self.validate:
                graph.validate()
        except GraphError as e:
            raise type(e)(f"after pass {name!r}: {e}", e.node) from e
        self.history.append(PassRecord(name, changes, nodes0, len(graph), ops0, graph.num_ops(),
                                       time.perf_counter() - t0, dict(graph.op_counts())))
        return changes

    def run(self, graph: Graph) -> Graph:
        g = graph.copy()
        g.sort()
        self.history = []
        for p in self.passes:
            self._apply(p, g)
        g.meta["pass_history"] = list(self.history)
        return g

    def report(self) -> str:
        return "\n".join(str(r) for r in self.history)
