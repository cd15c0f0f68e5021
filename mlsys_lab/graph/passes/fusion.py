"""Elementwise fusion: a connected group of elementwise ops becomes one ``fused_elementwise`` node.

Why: an unfused chain like GELU's tanh form, ``0.5 * x * (1 + tanh(c * (x + 0.044715 * x**3)))``, runs 8
kernels, and each reads its inputs from memory and writes a full-size temporary back. For large tensors
every one of them is limited by memory bandwidth, not arithmetic. One fused kernel reads ``x`` once and
writes the result once, keeping the temporaries in registers: the single most profitable optimisation
in ML compilers (XLA, TorchInductor, TVM all do it first).

The group. Walking the graph from the outputs back, each elementwise node not yet in a group starts one
(its *root*) and absorbs elementwise producers **all of whose users are already in the group** and which
are not graph outputs. So only the root's value leaves the group: the interior values are never needed
in memory, and the group cannot be part of a cycle (any path out of it starts at the root). Groups with
fewer than ``min_ops`` ops are left alone. One-element constants are folded into the sub-expression as
literals; every other value the group reads becomes an input of the fused node.

The fused node. ``attrs["graph"]`` is the sub-expression as a small :class:`Graph` whose inputs are the
fused node's inputs (the interpreter evaluates it; a code generator compiles it), ``attrs["expr"]`` its
text (:func:`expression`), and :func:`scalar_source` turns it into the source of a scalar Python function
that a JIT (Numba's ``vectorize``) can compile into one loop.
"""

from __future__ import annotations

from ..ir import OPS, Graph, Node
from ._util import replace

__all__ = ["fuse_elementwise", "elementwise_groups", "expression", "scalar_source", "ELEMENTWISE"]

#: The ops that fusion may combine (those of kind "elementwise" in ``OPS``).
ELEMENTWISE = frozenset(op for op, info in OPS.items() if info.kind == "elementwise")


def elementwise_groups(graph: Graph, min_ops: int = 2) -> list:
    """The groups fusion would form: a list of ``(root, set of nodes)``, downstream groups first."""
    order = graph.topological_order()
    users = graph.users()
    outputs = set(graph.outputs)
    assigned, groups = set(), []
    for root in reversed(order):
        if root.op not in ELEMENTWISE or root in assigned:
            continue
        group = {root}
        grew = True
        while grew:  # absorbing one producer can make another's users all lie inside the group
            grew = False
            for m in list(group):
                for p in m.inputs:
                    if (p in group or p in assigned or p.op not in ELEMENTWISE or p in outputs
                            or not all(u in group for u in users[p])):
                        continue
                    group.add(p)
                    grew = True
        if len(group) >= min_ops:
            assigned |= group
            groups.append((root, group))
    return groups


def _build_subgraph(root: Node, group: set, order: list):
    members = [n for n in order if n in group]
    ext, sub_inputs = [], {}
    sub = Graph(f"{root.name}_expr")
    mapping = {}
    for n in members:
        for i in n.inputs:
            if i in group or i in mapping:
                continue
            if i.op == "constant" and i.size == 1:
                mapping[i] = sub.constant(i.attrs["value"].copy())
            else:
                ext.append(i)
                mapping[i] = sub.input(f"x{len(ext) - 1}", i.shape, i.dtype)
                sub_inputs[i] = mapping[i]
    for n in members:
        mapping[n] = sub.add_node(n.op, [mapping[i] for i in n.inputs], n.attrs, name=n.name)
    sub.set_outputs([mapping[root]])
    return sub, ext, members


def fuse_elementwise(graph: Graph, min_ops: int = 2) -> int:
    """Replace each elementwise group (see the module docstring) by one ``fused_elementwise`` node.

    Returns the number of ops removed (a group of k ops counts k - 1). The fused nodes are named
    ``fused_1``, ``fused_2``, ...
    """
    order = graph.topological_order()
    removed = 0
    for root, group in elementwise_groups(graph, min_ops):
        sub, ext, members = _build_subgraph(root, group, order)
        fused = graph.add_node("fused_elementwise", ext, {"graph": sub, "expr": expression(sub)},
                               name=graph._fresh("fused"))
        replace(graph, root, fused)
        for n in reversed(members):  # interior nodes were only read inside the group: now unused
            if n is not root:
                graph.remove(n)
        removed += len(members) - 1
    return removed


# ----------------------------------------------------------------------------------------------------------
# Printing and code generation for a sub-expression
# ----------------------------------------------------------------------------------------------------------

_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2), "pow": ("**", 4)}


def _literal(node: Node) -> str:
    v = node.attrs["value"].reshape(()).item()
    return repr(float(v)) if isinstance(v, float) else repr(v)


def expression(sub: Graph) -> str:
    """A readable formula for a one-output elementwise graph, e.g.
    ``0.5 * x0 * (1.0 + tanh(0.7978846 * (x0 + 0.044715 * x0 ** 3)))``. A value used twice is named
    once (``t0 = ...; ...``)."""
    users = sub.users()
    names, lets = {}, []

    def render(n: Node):
        """(text, precedence) of a node."""
        if n in names:
            return names[n], 5
        if n.op == "input":
            return n.name, 5
        if n.op == "constant":
            return str(n.attrs["value"].reshape(())[()]), 5
        args = [render(i) for i in n.inputs]
        if n.op in _INFIX:
            sym, prec = _INFIX[n.op]
            (a, pa), (b, pb) = args
            a = f"({a})" if pa < prec or (n.op == "pow" and pa <= prec) else a
            b = f"({b})" if pb < prec or (pb == prec and n.op in ("sub", "div", "pow")) else b
            return f"{a} {sym} {b}", prec
        if n.op == "neg":
            a, pa = args[0]
            return (f"-({a})" if pa < 4 else f"-{a}"), 3
        if n.op == "pow_scalar":
            a, pa = args[0]
            return (f"({a})" if pa < 5 else a) + f" ** {n.attrs['exponent']}", 4
        fn = n.op
        if n.op in ("gelu", "gelu_grad") and n.attrs.get("approximate") == "tanh":
            fn += "_tanh"
        return f"{fn}({', '.join(a for a, _ in args)})", 5

    for n in sub.topological_order():
        if n.op not in ("input", "constant") and len(users[n]) > 1 and n is not sub.outputs[0]:
            text, _ = render(n)
            names[n] = f"t{len(lets)}"
            lets.append(f"{names[n]} = {text}")
    text, _ = render(sub.outputs[0])
    return "; ".join(lets + [text])


_K = 0.7978845608028654  # sqrt(2 / pi)
_SCALAR = {
    "neg": "-{0}", "exp": "math.exp({0})", "log": "math.log({0})", "tanh": "math.tanh({0})",
    "sigmoid": "1.0 / (1.0 + math.exp(-{0}))", "relu": "({0} if {0} > 0.0 else 0.0)",
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}", "pow": "{0} ** {1}",
    "relu_grad": "({0} if {1} > 0.0 else 0.0)",
    ("gelu", "none"): "0.5 * {0} * (1.0 + math.erf({0} * 0.7071067811865476))",
    ("gelu", "tanh"): f"0.5 * {{0}} * (1.0 + math.tanh({_K} * ({{0}} + 0.044715 * {{0}} * {{0}} * {{0}})))",
    ("gelu_grad", "none"): "{0} * (0.5 * (1.0 + math.erf({1} * 0.7071067811865476)) + {1} * "
                           "math.exp(-0.5 * {1} * {1}) * 0.3989422804014327)",
    ("gelu_grad", "tanh"): f"{{0}} * (0.5 * (1.0 + math.tanh({_K} * ({{1}} + 0.044715 * {{1}} * {{1}} * {{1}})))"
                           f" + 0.5 * {{1}} * (1.0 - math.tanh({_K} * ({{1}} + 0.044715 * {{1}} * {{1}} * {{1}}))"
                           f" ** 2) * {_K} * (1.0 + 3.0 * 0.044715 * {{1}} * {{1}}))",
}


def scalar_source(sub: Graph, name: str = "fused") -> str:
    """Python source of ``def <name>(x0, x1, ...)`` computing the sub-expression on scalars with ``math``
    functions, one statement per op. Compile it with ``exec`` (namespace ``{"math": math}``) and, for
    speed, with ``numba.vectorize``, which turns it into one loop over whole arrays: a fused kernel."""
    lines = [f"def {name}({', '.join(i.name for i in sub.inputs)}):"]
    names = {i: i.name for i in sub.inputs}
    for k, n in enumerate(sub.topological_order()):
        if n.op == "input":
            continue
        if n.op == "constant":
            names[n] = _literal(n)
            continue
        args = [names[i] for i in n.inputs]
        if n.op == "pow_scalar":
            text = f"{args[0]} ** {n.attrs['exponent']!r}"
        else:
            key = (n.op, n.attrs["approximate"]) if n.op in ("gelu", "gelu_grad") else n.op
            text = _SCALAR[key].format(*args)
        names[n] = f"v{k}"
        lines.append(f"    v{k} = {text}")
    lines.append(f"    return {names[sub.outputs[0]]}")
    return "\n".join(lines) + "\n"
