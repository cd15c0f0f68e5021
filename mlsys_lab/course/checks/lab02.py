"""Checks for Lab 2 (graph passes): one function per exercise.

Each ``check_*`` takes the student's function, runs it on copies of small hand-built graphs (the awkward
cases: a value read twice by one node, a graph output that other nodes also read, an unused input, a
3,000-node chain) and on seeded random graphs, and tests the result against ground truth that does not
come from a reference answer:

* a topological order is checked against its definition (every node once, after each of its inputs);
* dead code is known by construction: the random graphs are built as a live part whose sinks are the
  outputs, then dead nodes are added that read anything but are read by no output;
* common subexpressions are known by construction too: a graph of distinct expressions is built first,
  then copies of some of its nodes (inputs swapped for ``add`` and ``mul``, copies reading copies);
* a simplification rule is checked against hand-counted results, and every rewritten graph against
  the reference interpreter :func:`mlsys_lab.graph.interpret` (the definition of what a graph computes)
  on random inputs;
* fusion groups are checked against the two properties that make a group one kernel (only its root's
  value leaves it; every member is elementwise) and the one that makes the grouping as good as the
  greedy rule (no group could be merged into the group that reads it); the check then fuses the groups
  itself and compares values with the unfused graph.

A wrong answer raises ``AssertionError`` naming the case, the node(s) involved and what was expected; a
correct one prints ``✓ <exercise> passed``. Every check works on copies, so the graphs a student passes
around in the notebook are never changed by a check.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np

from ...graph import CycleError, Graph, GraphError, Node, interpret
from . import call_student, report_pass

__all__ = [
    "check_topological_order",
    "check_dead_code_elimination",
    "check_common_subexpression_elimination",
    "check_simplify_rule",
    "check_fusion_groups",
]

_SHAPE = (3, 4)
_UNARY = ("tanh", "sigmoid", "neg", "relu")
_BINARY = ("add", "sub", "mul")


# ----------------------------------------------------------------------------------------- helpers ----

def _names(nodes) -> str:
    return ", ".join(f"%{n.name}" for n in nodes)


def _describe(n: Node) -> str:
    return f"%{n.name} ({n.op})"


def _values(g: Graph, inputs: list) -> list:
    with np.errstate(all="ignore"):
        return interpret(g, *inputs)


def _random_inputs(g: Graph, rng) -> list:
    out = []
    for i in g.inputs:
        if i.dtype.kind in "iu":
            out.append(rng.integers(0, 3, size=i.shape).astype(i.dtype))
        else:
            out.append(rng.standard_normal(i.shape).astype(i.dtype))
    return out


def _same_values(before: Graph, after: Graph, inputs: list, what: str, hint: str | None = None) -> None:
    expected, got = _values(before, inputs), _values(after, inputs)
    suffix = f"\n  hint: {hint}" if hint else ""
    if len(got) != len(expected):
        raise AssertionError(f"{what}: the graph now has {len(got)} outputs instead of {len(expected)}{suffix}")
    for k, (e, a) in enumerate(zip(expected, got)):
        if a.shape != e.shape:
            raise AssertionError(f"{what}: output {k} (%{after.outputs[k].name}) now has shape {a.shape}, "
                                 f"it had {e.shape}{suffix}")
        if not np.allclose(a, e, rtol=1e-12, atol=1e-12, equal_nan=True):
            err = float(np.nanmax(np.abs(a.astype(np.float64) - e)))
            raise AssertionError(f"{what}: output {k} (%{after.outputs[k].name}) changed value (max abs "
                                 f"difference {err:.3g}): a pass must not change what the graph computes"
                                 f"{suffix}")


def _validate(g: Graph, what: str, hint: str | None = None) -> None:
    try:
        g.validate()
    except GraphError as e:
        suffix = f"\n  hint: {hint}" if hint else ""
        raise AssertionError(f"{what}: the graph is no longer valid: {e}{suffix}") from e


def _pick(rng, pool: list) -> Node:
    """A node from ``pool``, recent ones more likely (so the graphs get deep, not only wide)."""
    w = np.arange(1, len(pool) + 1, dtype=np.float64) ** 1.5
    return pool[int(rng.choice(len(pool), p=w / w.sum()))]


class _Builder:
    """Random float64 graphs on shapes that always broadcast: (3, 4), (3, 1), (1, 4).

    Values are kept bounded (a node that could exceed 1e4 in magnitude is passed through tanh), so that
    comparisons of values never meet inf or NaN.
    """

    def __init__(self, g: Graph, rng):
        self.g, self.rng, self.bound = g, rng, {}

    def source(self, node: Node, bound: float) -> Node:
        self.bound[node] = bound
        return node

    def op(self, op: str, inputs, attrs=None) -> Node:
        n = self.g.add_node(op, list(inputs), attrs or {})
        b = [self.bound[i] for i in inputs]
        self.bound[n] = {"tanh": 1.0, "sigmoid": 1.0, "add": sum(b), "sub": sum(b),
                         "mul": float(np.prod(b)), "sum": b[0] * 4}.get(op, b[0] if b else 1.0)
        if self.bound[n] > 1e4:
            n = self.op("tanh", [n])
        return n

    def random_op(self, pool: list) -> Node:
        r = self.rng.random()
        if r < 0.35:
            return self.op(str(self.rng.choice(_UNARY)), [_pick(self.rng, pool)])
        if r < 0.85:
            a = _pick(self.rng, pool)
            b = a if self.rng.random() < 0.1 else _pick(self.rng, pool)  # x * x: one value read twice
            return self.op(str(self.rng.choice(_BINARY)), [a, b])
        x = _pick(self.rng, pool)
        axes = [k for k, s in enumerate(x.shape) if s > 1] or [0]
        reduce = str(self.rng.choice(["sum", "max"]))
        return self.op(reduce, [x], {"axis": (int(self.rng.choice(axes)),), "keepdims": True})


def _random_dag(rng, n_ops: int, n_inputs: int = 2, name: str = "random"):
    """A random graph whose outputs are its sinks (so every node is live); returns (graph, builder)."""
    g = Graph(name)
    b = _Builder(g, rng)
    pool = [b.source(g.input(f"x{k}", _SHAPE, np.float64), 4.0) for k in range(n_inputs)]
    pool.append(b.source(g.constant(np.float64(0.5)), 0.5))
    for _ in range(n_ops):
        pool.append(b.random_op(pool))
    users = g.users()
    g.set_outputs([n for n in g.nodes if not users[n] and n.op not in ("input", "constant")])
    return g, b


def _prune(g: Graph) -> None:
    """Remove what no output needs (the check's own clean-up, used after a student's rewrite)."""
    live, stack = set(), list(g.outputs)
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(n.inputs)
    g.nodes = [n for n in g.nodes if n in live or n.op == "input"]


# ------------------------------------------------------------------------------ topological order ----

def _chain(length: int) -> Graph:
    g = Graph(f"chain_{length}")
    x = g.input("x", (2,), np.float64)
    n = x
    for k in range(length):
        n = g.add_node("tanh" if k % 2 else "neg", [n])
    g.set_outputs([n])
    return g


def _diamond() -> Graph:
    g = Graph("diamond")
    x = g.input("x", _SHAPE, np.float64)
    sq = g.add_node("mul", [x, x])  # one value read twice by the same node
    t = g.add_node("tanh", [x])
    s = g.add_node("add", [sq, t])
    g.add_node("exp", [t])  # dead: no output needs it, but it is a node of the graph
    g.input("unused", _SHAPE, np.float64)
    g.set_outputs([s, t])
    return g


def _cyclic(kind: str) -> Graph:
    g = Graph(f"cycle_{kind}")
    x = g.input("x", _SHAPE, np.float64)
    a = g.add_node("tanh", [x], name="a")
    b = g.add_node("neg", [a], name="b")
    c = g.add_node("add", [b, x], name="c")
    d = g.add_node("sigmoid", [c], name="d")
    g.set_outputs([d])
    if kind == "self-loop":
        b.inputs = (b,)
    elif kind == "two nodes":
        a.inputs = (b,)
    else:  # three nodes, behind an acyclic prefix: a -> b -> c -> d -> b
        b.inputs = (d,)
        g.add_node("exp", [a])
    return g


def _check_order(order, g: Graph, nodes: list, what: str) -> None:
    if order is None:
        raise AssertionError(f"{what}: your function returned None (did you forget `return`?)")
    if not isinstance(order, (list, tuple)):
        raise AssertionError(f"{what}: expected a list of nodes, got {type(order).__name__}")
    members = set(nodes)
    foreign = [n for n in order if not isinstance(n, Node) or n not in members]
    if foreign:
        raise AssertionError(f"{what}: the order contains {foreign[0]!r}, which is not a node of the graph")
    seen = set()
    for n in order:
        if n in seen:
            raise AssertionError(f"{what}: node {_describe(n)} appears twice in the order",)
        seen.add(n)
    missing = [n for n in nodes if n not in seen]
    if missing:
        hint = ""
        if any(n.op == "input" for n in missing) or len(missing) < len(nodes) // 2:
            hint = ("\n  hint: the order must contain every node of graph.nodes, also unused inputs and nodes "
                    "that no output needs")
        raise AssertionError(f"{what}: {len(missing)} of the graph's {len(nodes)} nodes are missing from "
                             f"the order, e.g. {_names(missing[:3])}{hint}")
    position = {n: k for k, n in enumerate(order)}
    for n in order:
        for i in n.inputs:
            if position[i] > position[n]:
                raise AssertionError(
                    f"{what}: node {_describe(n)} is at position {position[n]} but its input {_describe(i)} "
                    f"comes later, at {position[i]}: every node must come after all of its inputs")


def check_topological_order(topological_order: Callable, seed: int = 0) -> None:
    """Check ``topological_order(graph) -> list of every node of graph.nodes, producers first``.

    The graphs' ``nodes`` lists are shuffled first, so that their stored order cannot be returned as it
    is. A graph with a cycle must raise :class:`mlsys_lab.graph.CycleError`. A chain of 3,000 nodes
    (at least 1,000 more than Python's recursion limit) must not hit that limit.
    """
    rng = np.random.default_rng(seed)
    acyclic = [("a diamond with x * x, a dead node and an unused input", _diamond())]
    for k in range(6):
        g, _ = _random_dag(rng, n_ops=int(rng.integers(5, 30)), name=f"random_{k}")
        acyclic.append((f"random graph {k} ({len(g)} nodes)", g))
    depth = max(3000, sys.getrecursionlimit() + 1000)  # deeper than recursion can go
    acyclic.append((f"a chain of {depth} ops", _chain(depth)))
    for what, g in acyclic:
        what = f"topological_order on {what}"
        nodes = list(g.nodes)
        shuffled = [nodes[k] for k in rng.permutation(len(nodes))]
        g.nodes = list(shuffled)
        try:
            order = call_student(topological_order, what, g)
        except AssertionError as e:
            if "RecursionError" in str(e):
                raise AssertionError(f"{e}\n  hint: a recursive depth-first search goes {depth} calls deep on "
                                     f"a {depth}-op chain; use a work list (Kahn's algorithm) instead") from None
            raise
        _check_order(order, g, shuffled, what)
    for kind in ("self-loop", "two nodes", "three nodes"):
        g = _cyclic(kind)
        what = f"topological_order on a graph with a cycle ({kind})"
        try:
            result = topological_order(g)
        except NotImplementedError:
            raise
        except CycleError:
            continue
        except Exception as e:
            raise AssertionError(f"{what}: expected CycleError, but your function raised "
                                 f"{type(e).__name__}: {e}\n  hint: raise CycleError(message, node.name) when "
                                 f"some nodes never become ready") from e
        length = len(result) if isinstance(result, (list, tuple)) else "?"
        raise AssertionError(f"{what}: the graph has a cycle but your function returned an order of "
                             f"{length} nodes instead of raising CycleError\n  hint: if fewer nodes come "
                             f"out than the graph has, the rest wait on each other in a cycle")
    report_pass("topological order", len(acyclic) + 3)


# ---------------------------------------------------------------------------- dead-code elimination ----

def _dce_random(rng, k: int):
    """A random live graph (outputs: its sinks), then dead nodes; returns (graph, live nodes)."""
    g, b = _random_dag(rng, n_ops=int(rng.integers(4, 14)), name=f"dce_{k}")
    g.input("unused", _SHAPE, np.float64)
    if rng.random() < 0.5:  # an interior live node that is also an output (it has readers)
        users = g.users()
        inner = [n for n in g.nodes if users[n] and n.op not in ("input", "constant")]
        if inner:
            g.set_outputs(g.outputs + [inner[int(rng.integers(len(inner)))]])
    users = g.users()  # every op of the live part leads to a sink, an output; a constant may be unread
    live = {n for n in g.nodes if n.op != "constant" or users[n]}
    pool = [n for n in g.nodes if n.op != "input" or n.name != "unused"]
    dead_const = b.source(g.constant(np.float64(2.0)), 2.0)  # read only by dead nodes
    pool.append(dead_const)
    for _ in range(int(rng.integers(3, 12))):
        pool.append(b.random_op(pool))
    g.constant(np.float64(3.0))  # a constant nobody reads
    return g, live


def _dce_hand_cases():
    cases = []
    g = Graph("dead_chain")  # out = exp(x); tanh(exp(x)) -> neg -> sigmoid is a dead chain
    x = g.input("x", _SHAPE, np.float64)
    e = g.add_node("exp", [x])
    g.add_node("sigmoid", [g.add_node("neg", [g.add_node("tanh", [e])])])
    g.set_outputs([e])
    cases.append(("a dead chain of three ops hanging off the output", g, {x, e}))

    g = Graph("output_is_input")  # an output that is a graph input, twice, and dead work on it
    x = g.input("x", _SHAPE, np.float64)
    y = g.input("y", _SHAPE, np.float64)
    s = g.add_node("add", [x, g.constant(np.float64(1.0))])
    g.add_node("mul", [s, y])
    g.set_outputs([x, x])
    cases.append(("a graph whose outputs are its input x (twice)", g, {x, y}))

    g = Graph("nothing_dead")
    x = g.input("x", _SHAPE, np.float64)
    t = g.add_node("tanh", [x])
    m = g.add_node("mul", [t, t])
    g.set_outputs([m, t])
    cases.append(("a graph with nothing dead", g, set(g.nodes)))
    return cases


def check_dead_code_elimination(dead_code_elimination: Callable, seed: int = 0) -> None:
    """Check ``dead_code_elimination(graph) -> number of nodes removed``, working in place.

    Every node that no graph output depends on must be removed, however long the dead chain, except
    graph inputs (the calling convention stays). Nothing live may be removed, the outputs stay the same
    nodes, the graph stays valid and computes the same values, and the returned count is right.
    """
    rng = np.random.default_rng(seed)
    cases = _dce_hand_cases()
    for k in range(6):
        g, live = _dce_random(rng, k)
        cases.append((f"random graph {k} ({len(g)} nodes, {len(g) - len(live)} dead)", g, live))
    for what, original, live in cases:
        what = f"dead_code_elimination on {what}"
        g, mapping = original.copy_with_map()
        live_copy = {mapping[n] for n in live}
        outputs = list(g.outputs)
        before = list(g.nodes)
        result = call_student(dead_code_elimination, what, g)
        if isinstance(result, Graph):
            raise AssertionError(f"{what}: your function returned a Graph; DCE works in place on the graph "
                                 f"it is given and returns the number of nodes it removed")
        remaining = set(g.nodes)
        if any(o is not p for o, p in zip(g.outputs, outputs)) or len(g.outputs) != len(outputs):
            raise AssertionError(f"{what}: the graph's outputs changed: a pass must keep them")
        lost_inputs = [n for n in g.inputs if n not in remaining]
        if lost_inputs:
            raise AssertionError(f"{what}: graph input {_names(lost_inputs)} was removed; inputs are the "
                                 f"graph's calling convention and stay, even when nothing reads them")
        lost = [n for n in before if n in live_copy and n not in remaining]
        if lost:
            hint = ""
            if any(n in g.outputs for n in lost):
                hint = "\n  hint: a graph output is needed even when no node reads it"
            raise AssertionError(f"{what}: removed {_names(lost)}, which the outputs need{hint}")
        kept = [n for n in g.nodes if n not in live_copy]
        if kept:
            hint = "\n  hint: removing a dead node can make its inputs dead too: follow liveness from " \
                   "the outputs back to the inputs instead of looking for nodes without users"
            raise AssertionError(f"{what}: {len(kept)} dead node(s) remain, e.g. {_names(kept[:4])}{hint}")
        expected = len(before) - len(live_copy)
        if not isinstance(result, (int, np.integer)) or isinstance(result, bool) or result != expected:
            raise AssertionError(f"{what}: returned {result!r}; expected the number of nodes removed, "
                                 f"{expected}")
        _validate(g, what)
        _same_values(original, g, _random_inputs(original, rng), what)
    report_pass("dead-code elimination", len(cases))


# --------------------------------------------------------------------- common-subexpression elimination ----

def _cse_random(rng, k: int):
    """A graph of distinct expressions plus copies of some of them; returns (graph, distinct op count)."""
    g = Graph(f"cse_{k}")
    b = _Builder(g, rng)
    pool = [b.source(g.input("a", _SHAPE, np.float64), 4.0), b.source(g.input("b", _SHAPE, np.float64), 4.0),
            b.source(g.input("c", (4,), np.float64), 4.0)]
    keys = set()
    base = []
    tries = 0
    while len(base) < int(rng.integers(6, 14)) and tries < 500:
        tries += 1
        mark = len(g.nodes)
        n = b.random_op(pool)
        fresh = g.nodes[mark:]  # the op, and a tanh the builder may have added to bound it
        new_keys = []
        for m in fresh:
            ins = tuple(id(i) for i in m.inputs)
            key = (m.op, tuple(sorted(ins)) if m.op in ("add", "mul") else ins,
                   tuple(sorted((a, repr(v)) for a, v in m.attrs.items())))
            new_keys.append(key)
        if any(key in keys for key in new_keys) or len(set(new_keys)) != len(new_keys):
            for m in reversed(fresh):  # an expression the graph already has: take it back
                g.nodes.remove(m)
            continue
        keys.update(new_keys)
        base.extend(fresh)
        pool.append(n)
    copies = {}
    for n in base:  # producers first: a copy can read copies, so merging must cascade
        if rng.random() < 0.45:
            ins = [copies[i] if i in copies and rng.random() < 0.7 else i for i in n.inputs]
            if n.op in ("add", "mul") and rng.random() < 0.5:
                ins = ins[::-1]
            copies[n] = g.add_node(n.op, ins, dict(n.attrs))
    users = g.users()
    outs = [n for n in g.nodes if not users[n] and n.op not in ("input", "constant")]
    g.set_outputs(outs)
    return g, len(base)


def _cse_hand_cases():
    cases = []
    g = Graph("exp_four_times")  # (exp(x) + exp(x)) * (exp(x) + exp(x))
    x = g.input("x", (4,), np.float64)
    adds = [g.add_node("add", [g.add_node("exp", [x]), g.add_node("exp", [x])]) for _ in range(2)]
    g.set_outputs([g.add_node("mul", adds)])
    cases.append(("(exp(x) + exp(x)) * (exp(x) + exp(x))", g, 3))

    g = Graph("commutative")  # x*y + y*x, x - y, y - x
    x, y = g.input("x", _SHAPE, np.float64), g.input("y", _SHAPE, np.float64)
    s = g.add_node("add", [g.add_node("mul", [x, y]), g.add_node("mul", [y, x])])
    g.set_outputs([s, g.add_node("sub", [x, y]), g.add_node("sub", [y, x])])
    cases.append(("x*y + y*x, x - y and y - x", g, 4))

    g = Graph("attributes")  # sums over different axes are different expressions
    x = g.input("x", _SHAPE, np.float64)
    s0 = g.add_node("sum", [x], {"axis": (0,), "keepdims": True})
    s1 = g.add_node("sum", [x], {"axis": (1,), "keepdims": True})
    s1b = g.add_node("sum", [x], {"axis": (1,), "keepdims": True})
    g.set_outputs([g.add_node("add", [s0, s1]), g.add_node("mul", [s0, s1b])])
    cases.append(("sum(x, axis=0), sum(x, axis=1) twice", g, 4))

    g = Graph("output_duplicate")  # the duplicate is itself a graph output
    x = g.input("x", _SHAPE, np.float64)
    t1, t2 = g.add_node("tanh", [x]), g.add_node("tanh", [x])
    g.set_outputs([g.add_node("neg", [t1]), t2])
    cases.append(("tanh(x) twice, the second one a graph output", g, 2))
    return cases


def _remaining_duplicate(g: Graph):
    """Two op nodes computing the same expression (the check's diagnosis), or None."""
    seen = {}
    for n in g.topological_order():
        if n.op in ("input", "constant"):
            continue
        ins = tuple(id(i) for i in n.inputs)
        attrs = tuple(sorted((a, repr(v)) for a, v in n.attrs.items()))
        for key in {(n.op, ins, attrs), (n.op, tuple(sorted(ins)) if n.op in ("add", "mul") else ins, attrs)}:
            if key in seen:
                return seen[key], n
            seen[key] = n
    return None


def check_common_subexpression_elimination(cse: Callable, seed: int = 0) -> None:
    """Check ``cse(graph) -> number of nodes removed``, working in place.

    Op nodes with the same op, the same input nodes (in either order for ``add`` and ``mul``) and equal
    attributes must end up as one node, including copies whose inputs only become equal after their
    inputs were merged. Sources (inputs, constants) are left alone. The graph must stay valid and compute
    the same values, and the count must be the number of nodes removed.
    """
    rng = np.random.default_rng(seed)
    cases = _cse_hand_cases()
    for k in range(8):
        g, distinct = _cse_random(rng, k)
        cases.append((f"random graph {k} ({g.num_ops()} ops, {distinct} distinct)", g, distinct))
    for what, original, distinct in cases:
        what = f"cse on {what}"
        g = original.copy()
        ops_before, nodes_before = g.num_ops(), len(g)
        result = call_student(cse, what, g)
        if isinstance(result, Graph):
            raise AssertionError(f"{what}: your function returned a Graph; CSE works in place and returns the "
                                 f"number of nodes it removed")
        _validate(g, what)
        _same_values(original, g, _random_inputs(original, rng), what,
                     hint="only merge nodes with the same op, the same inputs and equal attributes; "
                          "sub and div are not commutative")
        if g.num_ops() > distinct:
            dup = _remaining_duplicate(g)
            detail = ""
            if dup is not None:
                a, b = dup
                detail = f": e.g. {_describe(a)} and {_describe(b)} both compute {a.op}({_names(a.inputs)})"
                if a.inputs != b.inputs:
                    detail = (f": e.g. {_describe(a)} reads ({_names(a.inputs)}) and {_describe(b)} reads "
                              f"({_names(b.inputs)})\n  hint: add and mul are commutative")
            raise AssertionError(f"{what}: {g.num_ops()} ops remain; the graph computes {distinct} distinct "
                                 f"expressions{detail}\n  hint: visit nodes producers first, so that merging "
                                 f"two nodes makes their users' inputs equal before the users are compared; "
                                 f"and remove the node you replaced")
        if g.num_ops() < distinct:
            raise AssertionError(f"{what}: only {g.num_ops()} ops remain but the graph computes {distinct} "
                                 f"distinct expressions: a node was removed that computes something else")
        expected = nodes_before - len(g)
        if len(g) != nodes_before - (ops_before - distinct):
            raise AssertionError(f"{what}: the graph lost {nodes_before - len(g)} nodes, but only "
                                 f"{ops_before - distinct} duplicates should go (leave inputs and constants "
                                 f"alone)")
        if not isinstance(result, (int, np.integer)) or isinstance(result, bool) or result != expected:
            raise AssertionError(f"{what}: returned {result!r}; expected the number of nodes removed, "
                                 f"{expected}")
    report_pass("common-subexpression elimination", len(cases))


# -------------------------------------------------------------------------- algebraic simplification ----

def _simplify_cases():
    """(description, builder(g) -> output nodes, expected op counts after simplification, hint)."""
    f32, f64 = np.float32, np.float64

    def c(g, v, dtype=f32):
        return g.constant(np.asarray(v, dtype=dtype))

    def x_(g, shape=_SHAPE, name="x"):
        return g.input(name, shape, f32)

    def binary(op, left_const=None, right_const=None, shape=_SHAPE, dtype=f32):
        def build(g):
            x = x_(g, shape)
            a = c(g, left_const, dtype) if left_const is not None else x
            b = c(g, right_const, dtype) if right_const is not None else x
            return [g.add_node(op, [a, b])]
        return build

    def transposes(shape, *perms, extra_use=False):
        def build(g):
            x = x_(g, shape)
            n = x
            firsts = []
            for p in perms:
                n = g.add_node("transpose", [n], {"axes": tuple(p)})
                firsts.append(n)
            if extra_use:
                return [n, g.add_node("mul", [firsts[0], c(g, 2.0)])]
            return [n]
        return build

    def chain(g):
        x = x_(g)
        t = g.add_node("tanh", [x])
        return [g.add_node("add", [g.add_node("mul", [t, c(g, 1.0)]), c(g, 0.0)])]

    ident = "identities: x * 1, 1 * x, x / 1, x + 0, 0 + x, x - 0 are x"
    keep = "this expression is not an identity: leave it alone (return None)"
    shape_hint = "the replacement must have exactly the node's shape and dtype"
    return [
        ("x * 1", binary("mul", right_const=1.0), {}, ident),
        ("1 * x", binary("mul", left_const=1.0), {}, ident),
        ("x + 0", binary("add", right_const=0.0), {}, ident),
        ("0 + x", binary("add", left_const=0.0), {}, ident),
        ("x - 0", binary("sub", right_const=0.0), {}, ident),
        ("x / 1", binary("div", right_const=1.0), {}, ident),
        ("x * ones((3, 4))", binary("mul", right_const=np.ones(_SHAPE)), {}, "a tensor of ones is a one too"),
        ("0 - x", binary("sub", left_const=0.0), {"sub": 1}, "0 - x is -x, not x"),
        ("1 / x", binary("div", left_const=1.0), {"div": 1}, "1 / x is not x"),
        ("x * 2", binary("mul", right_const=2.0), {"mul": 1}, keep),
        ("x * 0", binary("mul", right_const=0.0), {"mul": 1},
         "x * 0 is not always 0 (inf * 0 is NaN), and it is not x"),
        ("x + 1", binary("add", right_const=1.0), {"add": 1}, keep),
        ("x * [1, 2, 1, 1]", binary("mul", right_const=np.array([1.0, 2.0, 1.0, 1.0])), {"mul": 1},
         "only a constant whose every element is 1 is a multiplicative identity"),
        ("x of shape (4,) * ones((3, 4))", binary("mul", right_const=np.ones(_SHAPE), shape=(4,)), {"mul": 1},
         "the multiplication broadcasts x from (4,) to (3, 4): " + shape_hint),
        ("x (float32) * float64 ones", binary("mul", right_const=np.ones(_SHAPE), dtype=f64), {"mul": 1},
         "the multiplication promotes float32 to float64: " + shape_hint),
        ("tanh(x) * 1 + 0", chain, {"tanh": 1}, "after x * 1 becomes x, (...) + 0 is an identity too"),
        ("x.T.T", transposes(_SHAPE, (1, 0), (1, 0)), {}, "a transpose of a transpose with inverse "
         "permutations is the identity"),
        ("transpose(transpose(x, (1, 2, 0)), (2, 0, 1))", transposes((2, 3, 4), (1, 2, 0), (2, 0, 1)), {},
         "the composed permutation is the identity"),
        ("transpose(transpose(x, (1, 0, 2)), (0, 2, 1))", transposes((2, 3, 4), (1, 0, 2), (0, 2, 1)),
         {"transpose": 1}, "out[i] = x[p[q[i]]]: the composed permutation is p[q[i]] for i in range(ndim), "
         "p the inner one and q the outer one"),
        ("three transposes", transposes((2, 3, 4), (1, 0, 2), (0, 2, 1), (2, 1, 0)), {"transpose": 1},
         "compose pairs until one transpose is left"),
        ("transpose(x, (0, 1))", transposes(_SHAPE, (0, 1)), {}, "a transpose with axes (0, 1, ...) is x"),
        ("x.T.T where x.T is also read by x.T * 2", transposes(_SHAPE, (1, 0), (1, 0), extra_use=True),
         {"transpose": 1, "mul": 1}, "x.T.T is x, but x.T itself is still needed by the multiplication"),
        ("transpose(x, (1, 0))", transposes(_SHAPE, (1, 0)), {"transpose": 1}, keep),
    ]


def _rewrite(rule: Callable, g: Graph, what: str, hint: str, max_rounds: int = 50) -> None:
    """Apply ``rule`` to every op node, producers first, until it changes nothing."""
    for _ in range(max_rounds):
        changed = False
        for n in g.topological_order():
            if n.op in ("input", "constant") or n not in g.nodes:
                continue
            new = call_student(rule, f"{what}: simplify_rule({_describe(n)})", n, g)
            if new is None or new is n:
                continue
            if not isinstance(new, Node) or new not in g.nodes:
                raise AssertionError(f"{what}: for {_describe(n)} your rule returned {new!r}, which is not a "
                                     f"node of the graph (return an existing node, one made with "
                                     f"graph.add_node, or None)")
            if new.shape != n.shape or new.dtype != n.dtype:
                raise AssertionError(f"{what}: your rule replaced {_describe(n)}: {n.type_str()} by "
                                     f"{_describe(new)}: {new.type_str()}; the replacement must have "
                                     f"exactly the node's shape and dtype, or every reader of it breaks"
                                     f"\n  hint: {hint}")
            try:
                g.replace_all_uses(n, new)
                g.remove(n)
                g.sort()
            except GraphError as e:
                raise AssertionError(f"{what}: replacing {_describe(n)} by {_describe(new)} broke the graph: "
                                     f"{e}") from e
            changed = True
        _prune(g)
        if not changed:
            return
    raise AssertionError(f"{what}: your rule still rewrites the graph after {max_rounds} rounds; it must "
                         f"return None for a node it cannot simplify (not a new copy of it)")


def check_simplify_rule(simplify_rule: Callable, seed: int = 0) -> None:
    """Check ``simplify_rule(node, graph) -> replacement node or None``.

    The check applies the rule to every node, producers first, replacing each node by what the rule
    returns and removing what is left unused, until the rule changes nothing. The result must have the
    hand-counted ops (x * 1, x + 0, ... gone; x * 2, x * 0, 0 - x and broadcasting or type-promoting
    multiplications kept; transposes of transposes composed), and the same values as before on random
    inputs.
    """
    rng = np.random.default_rng(seed)
    cases = _simplify_cases()
    for what, build, expected, hint in cases:
        original = Graph("case")
        original.set_outputs(build(original))
        original.validate()
        g = original.copy()
        what = f"simplify_rule on {what}"
        _rewrite(simplify_rule, g, what, hint)
        _validate(g, what)
        _same_values(original, g, _random_inputs(original, rng), what, hint=hint)
        got = dict(g.op_counts())
        if got != expected:
            fmt = lambda d: "{" + ", ".join(f"{k}: {v}" for k, v in sorted(d.items())) + "}"  # noqa: E731
            raise AssertionError(f"{what}: after simplification the graph has ops {fmt(got)}; expected "
                                 f"{fmt(expected)}\n  graph now:\n    "
                                 + str(g).replace("\n", "\n    ") + f"\n  hint: {hint}")
    report_pass("simplification rule", len(cases))


# ------------------------------------------------------------------------------------ fusion groups ----

def _fusion_hand_cases():
    import math

    from ...graph import trace

    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 6))
    cases = []

    def gelu_tanh(x):
        return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)).tanh())
    cases.append(("GELU's tanh form", trace(gelu_tanh, x), [8]))

    def softmax(x):
        e = (x - x.max(axis=1, keepdims=True)).exp()
        return e / e.sum(axis=1, keepdims=True)
    cases.append(("softmax written out (exp feeds a sum and the division)", trace(softmax, x), [2]))

    def shared(x):
        t = x.exp()
        return (t * 2.0).tanh() + 1.0, t.sum()
    cases.append(("exp(x) read by a fused chain and by a sum", trace(shared, x), [3]))

    def outputs_inside(x, y):
        a = x.exp().tanh()
        return a, (a * 3.0).sigmoid(), (y - 1.0).relu() * y
    cases.append(("a graph output in the middle of a chain", trace(outputs_inside, x, x + 1), [2, 2, 3]))

    def matmuls(x):
        h = (x @ x.T).tanh()
        return (h @ h).relu() * 2.0
    cases.append(("chains cut by matrix products", trace(matmuls, x[:, :4]), [2]))

    g = Graph("diamond")
    a = g.input("a", _SHAPE, np.float64)
    p = g.add_node("mul", [a, g.constant(np.float64(2.0))])
    left, right = g.add_node("tanh", [p]), g.add_node("exp", [g.add_node("neg", [p])])
    g.set_outputs([g.add_node("add", [left, right])])
    cases.append(("a diamond: p feeds two branches that meet again", g, [5]))
    return cases


def _fuse(g: Graph, groups: list) -> Graph:
    """The check's own fuser, in place: each group becomes one ``fused_elementwise`` node whose
    sub-expression reads every value from outside the group as an input."""
    order = g.topological_order()
    for group in groups:
        members = [n for n in order if n in group]
        users = g.users()
        outs = set(g.outputs)
        root = next(n for n in members if n in outs or any(u not in group for u in users[n]))
        sub = Graph(f"{root.name}_expr")
        ext, mapping = [], {}
        for n in members:
            for i in n.inputs:
                if i not in group and i not in mapping:
                    ext.append(i)
                    mapping[i] = sub.input(f"x{len(ext) - 1}", i.shape, i.dtype)
        for n in members:
            mapping[n] = sub.add_node(n.op, [mapping[i] for i in n.inputs], n.attrs, name=n.name)
        sub.set_outputs([mapping[root]])
        fused = g.add_node("fused_elementwise", ext, {"graph": sub}, name=g._fresh("fused"))
        g.replace_all_uses(root, fused)
        for n in reversed(members):
            g.remove(n)
        g.sort()
    return g


def check_fusion_groups(fusion_groups: Callable, seed: int = 0) -> None:
    """Check ``fusion_groups(graph) -> list of groups (sets of nodes) to fuse``, graph unchanged.

    Each group must hold at least two nodes, all elementwise, in no other group, and exactly one of them
    (the root) may be read outside the group or be a graph output. The grouping must be greedy: no
    group (or lone elementwise node) may have all its root's readers inside one other group, since then
    the two could be one kernel. On the hand-made cases the group sizes must be the ones counted by hand.
    Finally the check fuses the groups itself: the fused graph must be valid and compute the same values.
    """
    rng = np.random.default_rng(seed)
    cases = _fusion_hand_cases()
    for k in range(6):
        g, _ = _random_dag(rng, n_ops=int(rng.integers(6, 25)), name=f"random_{k}")
        users = g.users()
        interior = [n for n in g.nodes if users[n] and n.kind == "elementwise"]
        if interior and rng.random() < 0.7:  # an output that other nodes also read
            g.set_outputs(g.outputs + [interior[int(rng.integers(len(interior)))]])
        cases.append((f"random graph {k} ({g.num_ops()} ops)", g, None))
    for what, original, sizes in cases:
        what = f"fusion_groups on {what}"
        g = original.copy()
        before = [(n, n.inputs) for n in g.nodes]
        result = call_student(fusion_groups, what, g)
        if [(n, n.inputs) for n in g.nodes] != before:
            raise AssertionError(f"{what}: your function changed the graph; it should only return the groups")
        if result is None:
            raise AssertionError(f"{what}: your function returned None (did you forget `return`?)")
        try:
            groups = [set(grp) for grp in result]
        except TypeError:
            raise AssertionError(f"{what}: expected a list of groups (sets of nodes), got "
                                 f"{type(result).__name__}") from None
        members, users, outputs = set(g.nodes), g.users(), set(g.outputs)
        owner = {}
        for k, grp in enumerate(groups):
            for n in grp:
                if not isinstance(n, Node) or n not in members:
                    raise AssertionError(f"{what}: group {k} contains {n!r}, which is not a node of the graph")
                if n.kind != "elementwise":
                    raise AssertionError(f"{what}: group {k} contains {_describe(n)}, which is not elementwise "
                                         f"(kind {n.kind!r}); only elementwise ops fuse into one loop")
                if n in owner:
                    raise AssertionError(f"{what}: {_describe(n)} is in two groups ({owner[n]} and {k})")
                owner[n] = k
            if len(grp) < 2:
                raise AssertionError(f"{what}: group {k} has {len(grp)} node(s); a group of fewer than two "
                                     f"ops fuses nothing, leave single ops out")
            leaving = [n for n in grp if n in outputs or any(u not in grp for u in users[n])]
            if len(leaving) != 1:
                detail = "; ".join(
                    f"{_describe(n)} is " + ("a graph output" if n in outputs else
                                              "read by " + _names([u for u in users[n] if u not in grp]))
                    for n in leaving[:3])
                raise AssertionError(
                    f"{what}: group {k} ({_names(sorted(grp, key=lambda n: n.name))}) has {len(leaving)} values "
                    f"leaving it ({detail or 'none'}); a fused kernel writes exactly one value, its root's, so "
                    f"every other member must be read only inside the group and not be a graph output")
            dead = [n for n in grp if n not in leaving and not users[n]]
            if dead:
                raise AssertionError(f"{what}: group {k} contains {_describe(dead[0])}, which nothing reads")
        # Greedy: no class (a group, or a lone elementwise node) may feed only one other class.
        classes = [(grp, next(n for n in grp if n in outputs or any(u not in grp for u in users[n])))
                   for grp in groups]
        classes += [({n}, n) for n in g.nodes if n.kind == "elementwise" and n not in owner]
        cls_of = {n: k for k, (grp, _) in enumerate(classes) for n in grp}
        for k, (grp, root) in enumerate(classes):
            readers = users[root]
            if root in outputs or not readers or not all(u in cls_of for u in readers):
                continue
            targets = {cls_of[u] for u in readers}
            if len(targets) == 1 and k not in targets:
                other, other_root = classes[targets.pop()]
                this = "group rooted at " if len(grp) > 1 else "lone op "
                that = f"the group of {_describe(other_root)}" if len(other) > 1 else \
                    f"the lone op {_describe(other_root)}"
                raise AssertionError(
                    f"{what}: the {this}{_describe(root)} and {that} could be one kernel: every reader of "
                    f"{_describe(root)} ({_names(readers)}) is in the latter and it is not a graph output"
                    f"\n  hint: absorb a producer once all of its readers are in the group; look at producers "
                    f"again when the group grows")
        if sizes is not None and sorted(len(grp) for grp in groups) != sorted(sizes):
            raise AssertionError(f"{what}: group sizes {sorted(len(grp) for grp in groups)}, expected "
                                 f"{sorted(sizes)}")
        fused = _fuse(g, groups)
        _validate(fused, what)
        _same_values(original, fused, _random_inputs(original, rng), what)
    report_pass("fusion groups", len(cases))
