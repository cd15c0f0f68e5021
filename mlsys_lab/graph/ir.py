"""The graph IR: a program as a list of operations on named, typed values.

A :class:`Graph` holds :class:`Node` objects. Every node is one operation and produces one value:

* ``op``: the operation's name, one of the keys of :data:`OPS` (``"add"``, ``"matmul"``, ``"sum"``, ...);
  two special ops are the sources ``"input"`` (a value fed in each call) and ``"constant"`` (a value
  stored in the graph, ``attrs["value"]``).
* ``inputs``: a tuple of the nodes whose values it reads (edges point from producer to consumer).
* ``attrs``: a dict of the operation's static parameters (``axis``, ``keepdims``, ``shape``, ``subscripts``,
  ...); never other nodes.
* ``shape`` (a tuple of ints) and ``dtype`` (a NumPy dtype) of the value: shapes are static, because a
  graph is traced from example inputs.
* ``name``: unique in its graph, printed as ``%name``.

API summary (everything below is in :mod:`mlsys_lab.graph`)::

    g = Graph("f")
    x = g.input("x", (4, 3), np.float32)             # kind="data" (fed each call) or kind="param" (weights)
    c = g.constant(np.float32(2.0))                  # a 0-d or n-d ndarray stored in the graph
    y = g.add_node("mul", [x, c])                    # shape/dtype inferred (mlsys_lab.graph.shapes)
    s = g.add_node("sum", [y], {"axis": (1,), "keepdims": False})
    g.set_outputs([s])
    print(g)                                         # the text form, below
    g.validate()                                     # GraphError naming the bad node, or None

    g.nodes            # every node, in a topological order (producers first) after g.sort()
    g.inputs           # input nodes, in call order;   g.outputs: the result nodes, in order
    g.constants        # {name: ndarray} of constant nodes;  g.params: input nodes with kind "param"
    g.node("mul_2")    # look up by name;  g.users(): {node: [nodes that read it]}
    g.topological_order()      # a fresh order (Kahn's algorithm); CycleError names a node on the cycle
    g.replace_all_uses(old, new); g.remove(node); g.sort(); g.copy()
    len(g)             # all nodes;  g.num_ops(): nodes other than inputs and constants
    g.count("add"), g.op_counts()    # structure, as the tests check it
    OPS["add"].kind    # "elementwise" | "reduction" | "shape" | "matmul" | "nn" | "grad" | "fused" | "source"

The text form (``str(g)``) prints one node per line, producers first::

    graph f(%x: f32[4,3]) {
      %c_1: f32[] = constant 2.0
      %mul_2: f32[4,3] = mul(%x, %c_1)
      %sum_3: f32[4] = sum(%mul_2) {axis=(1,), keepdims=False}
      return %sum_3
    }

Inputs are listed in the signature (with ``param`` after trainable ones); every other node is one line,
``%name: dtype[shape] = op(%inputs) {attrs}``, producers before consumers.

Why nodes point at nodes (not at names): passes rewrite graphs by rewiring ``inputs``, and an object
reference cannot dangle the way a misspelled name can. Names are for people: the text form, the pictures
and error messages. Why the graph is mutable: every pass is "find a pattern, add the replacement, rewire
users" (:meth:`Graph.replace_all_uses`), and a dead-code pass removes what is left over, as in
``torch.fx`` or ONNX graph surgeons; the pass manager copies the graph first, so ``optimize(g)`` leaves
``g`` alone.

Errors (all ``ValueError`` subclasses with a ``.node`` attribute, the offending node's name):
:class:`GraphError` (structure: unknown op, wrong arity, an input that is not in the graph, a missing
input value), :class:`CycleError`, and :class:`ShapeError` (raised by shape inference).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = ["Graph", "Node", "OpInfo", "OPS", "GraphError", "CycleError", "ShapeError", "register_op",
           "format_dtype", "format_shape"]


# ----------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------

class GraphError(ValueError):
    """A malformed graph. ``.node`` is the name of the node at fault (None if it is the graph itself)."""

    def __init__(self, message: str, node: str | None = None):
        super().__init__(message)
        self.node = node


class CycleError(GraphError):
    """The graph has a cycle; ``.node`` is a node on it and the message lists the cycle."""


class ShapeError(GraphError):
    """Shape or dtype inference failed for ``.node`` (e.g. shapes that do not broadcast)."""


# ----------------------------------------------------------------------------------------------------------
# The operation set
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpInfo:
    """What the IR knows about an operation name, independent of how it is computed.

    ``arity``: the number of inputs, or a ``(min, max)`` pair (``max`` None = any number).
    ``kind``: a coarse class that passes and runtimes dispatch on: ``"elementwise"`` (out[i] depends
    on in[i] only, with NumPy broadcasting), ``"reduction"``, ``"shape"`` (data movement: reshape,
    transpose, indexing), ``"matmul"``, ``"nn"`` (softmax, losses), ``"grad"`` (ops that only appear in
    backward graphs), ``"fused"`` and ``"source"`` (input, constant).
    ``attrs``: the attribute names the op requires.
    """

    name: str
    arity: int | tuple
    kind: str
    attrs: tuple = ()
    doc: str = ""

    def arity_ok(self, n: int) -> bool:
        if isinstance(self.arity, int):
            return n == self.arity
        lo, hi = self.arity
        return n >= lo and (hi is None or n <= hi)


OPS: dict[str, OpInfo] = {}


def register_op(name: str, arity, kind: str, attrs: Sequence[str] = (), doc: str = "") -> OpInfo:
    """Add an operation to :data:`OPS` (a new op also needs a shape rule, a kernel and, to be
    differentiable, a gradient rule: see ``shapes.SHAPE_RULES``, ``interpret.KERNELS``,
    ``autodiff.VJP_RULES``)."""
    info = OpInfo(name, arity, kind, tuple(attrs), doc)
    OPS[name] = info
    return info


for _name, _doc in [("neg", "-x"), ("exp", "e**x"), ("log", "natural log"), ("tanh", "tanh"),
                    ("sigmoid", "1/(1+e**-x)"), ("relu", "max(x, 0)")]:
    register_op(_name, 1, "elementwise", (), _doc)
register_op("gelu", 1, "elementwise", ("approximate",), "x*Phi(x); approximate 'none' (erf) or 'tanh'")
register_op("pow_scalar", 1, "elementwise", ("exponent",), "x ** exponent, a Python number")
for _name, _doc in [("add", "a + b"), ("sub", "a - b"), ("mul", "a * b"), ("div", "a / b"),
                    ("pow", "a ** b, both tensors")]:
    register_op(_name, 2, "elementwise", (), _doc + " (NumPy broadcasting)")
register_op("relu_grad", 2, "elementwise", (), "relu_grad(g, x) = g * (x > 0)")
register_op("gelu_grad", 2, "elementwise", ("approximate",), "gelu_grad(g, x) = g * gelu'(x)")
register_op("fused_elementwise", (1, None), "fused", ("graph",),
            "several elementwise ops as one kernel; attrs['graph'] is the sub-expression, a Graph "
            "whose inputs are this node's inputs, and attrs['expr'] its text")

for _name in ("sum", "mean", "max"):
    register_op(_name, 1, "reduction", ("axis", "keepdims"),
                f"{_name} over a sorted tuple of non-negative axes")
register_op("sum_to", 1, "reduction", ("shape",),
            "sum a broadcast value back down to shape (the backward of broadcasting)")

register_op("reshape", 1, "shape", ("shape",), "same elements, new shape")
register_op("transpose", 1, "shape", ("axes",), "permute axes: out.shape[i] = x.shape[axes[i]]")
register_op("broadcast_to", 1, "shape", ("shape",), "NumPy broadcast_to")
register_op("getitem", 1, "shape", ("index",), "basic or advanced indexing x[index]")

register_op("matmul", 2, "matmul", (), "a @ b, NumPy rules (batched, 1-D operands as vectors)")
register_op("matmul_t", 2, "matmul", (), "a @ b.T for 2-D a and b (a Linear layer's x @ W.T)")
register_op("linear", (2, 3), "matmul", (), "x @ w.T (+ bias): a Linear layer, w is (out, in)")
register_op("einsum", (1, None), "matmul", ("subscripts",), "Einstein summation")
register_op("fused_linear", (2, 3), "fused", ("trans_b", "activation"),
            "activation(a @ (b.T if trans_b else b) + bias): matmul, bias and activation in one op")

register_op("softmax", 1, "nn", ("axis",), "exp(x) / sum(exp(x)) along axis")
register_op("log_softmax", 1, "nn", ("axis",), "x - log(sum(exp(x))) along axis")
register_op("cross_entropy", 2, "nn", ("reduction",), "cross_entropy(logits, integer targets)")
register_op("nll_loss", 2, "nn", ("reduction",), "nll_loss(log_probs, integer targets)")

register_op("cross_entropy_grad", 3, "grad", ("reduction",),
            "(softmax(logits) - onehot(targets)) * g / N: inputs (g, logits, targets)")
register_op("nll_loss_grad", 3, "grad", ("reduction",), "-onehot(targets) * g / N: inputs (g, logp, targets)")
register_op("max_grad", 3, "grad", ("axis", "keepdims"),
            "gradient of max, split evenly among ties: inputs (g, x, out)")
register_op("getitem_grad", 1, "grad", ("index", "shape"), "zeros(shape) with g written at x[index]")

register_op("input", 0, "source", ("kind",), "a value given at each call ('data' or 'param')")
register_op("constant", 0, "source", ("value",), "a value stored in the graph")


# ----------------------------------------------------------------------------------------------------------
# Printing helpers
# ----------------------------------------------------------------------------------------------------------

def format_dtype(dtype) -> str:
    """``float32 -> 'f32'``, ``int64 -> 'i64'``, ``bool -> 'bool'``."""
    if dtype is None:
        return "?"
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "bool"
    return f"{dtype.kind}{dtype.itemsize * 8}"


def format_shape(shape) -> str:
    if shape is None:
        return "[?]"
    return "[" + ",".join(str(n) for n in shape) + "]"


def _format_index(index) -> str:
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for i in items:
        if isinstance(i, slice):
            s = ("" if i.start is None else str(i.start)) + ":" + ("" if i.stop is None else str(i.stop))
            if i.step is not None:
                s += f":{i.step}"
            out.append(s)
        elif i is Ellipsis:
            out.append("...")
        elif i is None:
            out.append("None")
        elif isinstance(i, np.ndarray):
            out.append(f"array({format_dtype(i.dtype)}{format_shape(i.shape)})")
        else:
            out.append(repr(i))
    return "[" + ", ".join(out) + "]"


def _format_value(key: str, v) -> str:
    if key == "index":
        return _format_index(v)
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return str(v[()]) if v.dtype.kind == "f" else repr(v.item())
        if v.size <= 4:
            return np.array2string(v, separator=",").replace("\n", "")
        return f"array({format_dtype(v.dtype)}{format_shape(v.shape)})"
    if isinstance(v, Graph):
        return f"<{v.num_ops()} ops>"
    if isinstance(v, np.dtype):
        return format_dtype(v)
    if isinstance(v, float):
        return repr(v)
    return repr(v)


# ----------------------------------------------------------------------------------------------------------
# Node
# ----------------------------------------------------------------------------------------------------------

class Node:
    """One operation in a :class:`Graph` (see the module docstring for the fields).

    Nodes are compared and hashed by identity, so they can be dict keys and set members even while a
    pass rewires them.
    """

    __slots__ = ("op", "inputs", "attrs", "shape", "dtype", "name", "__weakref__")

    def __init__(self, op: str, inputs: Sequence["Node"] = (), attrs: dict | None = None, shape=None,
                 dtype=None, name: str = ""):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs) if attrs else {}
        self.shape = None if shape is None else tuple(int(n) for n in shape)
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.name = name

    @property
    def value(self):
        """The stored ndarray of a ``constant`` node (None for other ops)."""
        return self.attrs.get("value") if self.op == "constant" else None

    @property
    def kind(self) -> str:
        """The op's kind from :data:`OPS` (``"unknown"`` for an op that is not registered)."""
        info = OPS.get(self.op)
        return info.kind if info else "unknown"

    @property
    def size(self) -> int:
        """Number of elements of the value (1 for a scalar)."""
        n = 1
        for d in self.shape or ():
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * (self.dtype.itemsize if self.dtype is not None else 0)

    def type_str(self) -> str:
        return f"{format_dtype(self.dtype)}{format_shape(self.shape)}"

    def format(self) -> str:
        """This node as one line of the graph's text form."""
        head = f"%{self.name}: {self.type_str()} = "
        if self.op == "input":
            return head + f"input {self.attrs.get('kind', 'data')}"
        if self.op == "constant":
            return head + "constant " + _format_value("value", self.attrs.get("value"))
        args = ", ".join(f"%{i.name}" for i in self.inputs)
        attrs = {k: v for k, v in self.attrs.items() if not (self.op == "fused_elementwise" and k == "graph")}
        extra = ""
        if attrs:
            extra = " {" + ", ".join(f"{k}={_format_value(k, v)}" for k, v in attrs.items()) + "}"
        return head + f"{self.op}({args}){extra}"

    def __repr__(self) -> str:
        return f"<Node {self.format()}>"


# ----------------------------------------------------------------------------------------------------------
# Graph
# ----------------------------------------------------------------------------------------------------------

class Graph:
    """A dataflow graph: nodes, the ordered graph inputs, and the ordered outputs.

    Build one with :meth:`input`, :meth:`constant`, :meth:`add_node` and :meth:`set_outputs` (or get one
    from :func:`mlsys_lab.graph.trace`). ``nodes`` keeps insertion order; builders can only use nodes
    that exist, so a built graph is topologically ordered, and passes call :meth:`sort` after rewiring.
    """

    def __init__(self, name: str = "graph"):
        self.name = name
        self.nodes: list[Node] = []
        self.inputs: list[Node] = []
        self.outputs: list[Node] = []
        self._names: set[str] = set()
        self._next = 1  # counter for fresh names
        self.meta: dict = {}  # free-form notes (e.g. which outputs are gradients of which inputs)

    # -- building ---------------------------------------------------------------------------------------
    def _unique(self, base: str) -> str:
        name = base
        while name in self._names:
            name = f"{base}_{self._next}"
            self._next += 1
        return name

    def _fresh(self, op: str) -> str:
        while True:
            name = f"{op}_{self._next}"
            self._next += 1
            if name not in self._names:
                return name

    def _append(self, node: Node) -> Node:
        self._names.add(node.name)
        self.nodes.append(node)
        return node

    def input(self, name: str, shape, dtype=np.float32, kind: str = "data") -> Node:
        """Add a graph input (a placeholder given at each call). ``kind`` is ``"data"`` or ``"param"``
        (trainable weights: autodiff differentiates with respect to these by default)."""
        if kind not in ("data", "param"):
            raise ValueError(f"input kind must be 'data' or 'param', got {kind!r}")
        if name in self._names:
            raise GraphError(f"graph {self.name!r} already has a node named {name!r}", name)
        node = self._append(Node("input", (), {"kind": kind}, shape, dtype, name))
        self.inputs.append(node)
        return node

    def constant(self, value, name: str | None = None, dtype=None) -> Node:
        """Add a constant; ``value`` becomes an ndarray (a Python number takes ``dtype``, default float32)."""
        if not isinstance(value, np.ndarray):
            if isinstance(value, np.generic):
                value = np.asarray(value)
            else:
                value = np.asarray(value, dtype=dtype or np.float32)
        elif dtype is not None and value.dtype != dtype:
            value = value.astype(dtype)
        name = self._unique(name) if name else self._fresh("c")
        return self._append(Node("constant", (), {"value": value}, value.shape, value.dtype, name))

    def add_node(self, op: str, inputs: Sequence[Node] = (), attrs: dict | None = None, *,
                 name: str | None = None, shape=None, dtype=None) -> Node:
        """Add an operation node and return it.

        ``shape`` and ``dtype`` are inferred by :mod:`mlsys_lab.graph.shapes` unless given (a pass that
        knows them, or a test building a deliberately broken graph, may pass them). Raises
        :class:`GraphError` for an unknown op, wrong arity or an input from another graph, and
        :class:`ShapeError` when inference fails, each naming the new node.
        """
        name = self._unique(name) if name else self._fresh(op)
        node = Node(op, inputs, attrs, shape, dtype, name)
        info = OPS.get(op)
        if info is None:
            raise GraphError(f"node {name!r}: unknown op {op!r}", name)
        if not info.arity_ok(len(node.inputs)):
            raise GraphError(f"node {name!r}: op {op!r} takes {info.arity} inputs, got {len(node.inputs)}",
                             name)
        for i in node.inputs:
            if not isinstance(i, Node):
                raise GraphError(f"node {name!r}: input {i!r} is not a Node", name)
        if shape is None or dtype is None:
            from .shapes import infer_node

            s, d = infer_node(node)
            node.shape = s if shape is None else node.shape
            node.dtype = d if dtype is None else node.dtype
        return self._append(node)

    def set_outputs(self, nodes: Iterable[Node]) -> None:
        self.outputs = list(nodes)

    # -- queries ----------------------------------------------------------------------------------------
    @property
    def constants(self) -> dict:
        """``{name: ndarray}`` for every constant node."""
        return {n.name: n.attrs["value"] for n in self.nodes if n.op == "constant"}

    @property
    def params(self) -> list:
        """The input nodes of kind ``"param"`` (trainable weights), in input order."""
        return [n for n in self.inputs if n.attrs.get("kind") == "param"]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"graph {self.name!r} has no node named {name!r}")

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self):
        return iter(self.nodes)

    def num_ops(self) -> int:
        """Nodes that compute something (everything but inputs and constants)."""
        return sum(1 for n in self.nodes if n.op not in ("input", "constant"))

    def count(self, op: str) -> int:
        return sum(1 for n in self.nodes if n.op == op)

    def op_counts(self) -> Counter:
        """``Counter({op: number of nodes})`` over compute nodes."""
        return Counter(n.op for n in self.nodes if n.op not in ("input", "constant"))

    def users(self) -> dict:
        """``{node: [nodes that read it, once per use]}`` for every node in ``nodes``."""
        out = {n: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                if i in out:
                    out[i].append(n)
        return out

    # -- order ------------------------------------------------------------------------------------------
    def topological_order(self) -> list:
        """Every node of ``nodes``, producers before consumers (Kahn's algorithm, stable: ties keep
        the current order). Raises :class:`CycleError` naming a node on a cycle, or
        :class:`GraphError` if a node reads a node that is not in the graph."""
        index = {n: k for k, n in enumerate(self.nodes)}
        missing = [(n, i) for n in self.nodes for i in n.inputs if i not in index]
        if missing:
            n, i = missing[0]
            raise GraphError(f"node {n.name!r} ({n.op}) reads {i.name!r}, which is not in graph "
                             f"{self.name!r}", n.name)
        indeg = {n: len(n.inputs) for n in self.nodes}
        users = self.users()
        ready = deque(n for n in self.nodes if indeg[n] == 0)
        order = []
        while ready:
            n = ready.popleft()
            order.append(n)
            for u in users[n]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    ready.append(u)
        if len(order) != len(self.nodes):
            raise self._cycle_error({n for n in self.nodes if indeg[n] > 0})
        return order

    def _cycle_error(self, stuck: set) -> CycleError:
        # Walk inputs inside the stuck set until a node repeats: that stretch is a cycle.
        start = next(n for n in self.nodes if n in stuck)
        path, seen = [], {}
        n = start
        while n not in seen:
            seen[n] = len(path)
            path.append(n)
            n = next(i for i in n.inputs if i in stuck)
        cycle = path[seen[n]:][::-1]
        names = " -> ".join(f"%{c.name}" for c in cycle + [cycle[0]])
        return CycleError(f"graph {self.name!r} has a cycle: {names}", cycle[0].name)

    def sort(self) -> "Graph":
        """Reorder ``nodes`` topologically (after a pass rewired edges); returns self."""
        self.nodes = self.topological_order()
        return self

    # -- rewriting --------------------------------------------------------------------------------------
    def replace_all_uses(self, old: Node, new: Node) -> int:
        """Make every reader of ``old`` (and the outputs) read ``new``; returns the number of uses changed."""
        changed = 0
        for n in self.nodes:
            if any(i is old for i in n.inputs):
                changed += sum(1 for i in n.inputs if i is old)
                n.inputs = tuple(new if i is old else i for i in n.inputs)
        for k, o in enumerate(self.outputs):
            if o is old:
                self.outputs[k] = new
                changed += 1
        return changed

    def remove(self, node: Node) -> None:
        """Remove a node that nothing reads (graph inputs cannot be removed)."""
        if node.op == "input":
            raise GraphError(f"cannot remove graph input {node.name!r}", node.name)
        readers = [n.name for n in self.nodes if any(i is node for i in n.inputs)]
        if readers or any(o is node for o in self.outputs):
            raise GraphError(f"cannot remove {node.name!r}: still used by "
                             f"{readers or ['the graph outputs']}", node.name)
        self.nodes.remove(node)
        self._names.discard(node.name)

    def copy(self, name: str | None = None) -> "Graph":
        """A structural copy: new Node objects, same attrs values (constants are shared, not copied)."""
        return self.copy_with_map(name)[0]

    def copy_with_map(self, name: str | None = None):
        """Like :meth:`copy`, also returning ``{old node: new node}``."""
        g = Graph(name or self.name)
        g.meta = dict(self.meta)
        mapping = {}
        for n in self.nodes:
            m = Node(n.op, tuple(mapping.get(i, i) for i in n.inputs), n.attrs, n.shape, n.dtype, n.name)
            mapping[n] = m
            g.nodes.append(m)
            g._names.add(m.name)
        # A node read before it appears in ``nodes`` (an unsorted graph) still gets its copy.
        for m in g.nodes:
            m.inputs = tuple(mapping.get(i, i) for i in m.inputs)
        g.inputs = [mapping[n] for n in self.inputs]
        g.outputs = [mapping.get(n, n) for n in self.outputs]
        g._next = self._next
        return g, mapping

    # -- checking ---------------------------------------------------------------------------------------
    def validate(self, check_shapes: bool = True) -> None:
        """Check the graph; raise an error naming the first bad node, or return None.

        Checks, in order: unique names; every op is known, with the right number of inputs and its
        required attributes; every input of a node is in the graph; graph inputs are ``input`` nodes
        and every ``input`` node is a graph input; outputs are in the graph; no cycles; and (with
        ``check_shapes``) that every node's stored shape and dtype agree with shape inference.
        """
        from .shapes import infer_node

        names = set()
        for n in self.nodes:
            if n.name in names:
                raise GraphError(f"graph {self.name!r}: two nodes are named {n.name!r}", n.name)
            names.add(n.name)
        members = set(self.nodes)
        for n in self.nodes:
            info = OPS.get(n.op)
            if info is None:
                raise GraphError(f"node {n.name!r}: unknown op {n.op!r}", n.name)
            if not info.arity_ok(len(n.inputs)):
                raise GraphError(f"node {n.name!r}: op {n.op!r} takes {info.arity} inputs, got "
                                 f"{len(n.inputs)}", n.name)
            for a in info.attrs:
                if a not in n.attrs:
                    raise GraphError(f"node {n.name!r}: op {n.op!r} needs attribute {a!r}", n.name)
            for i in n.inputs:
                if i not in members:
                    raise GraphError(f"node {n.name!r} ({n.op}) reads {getattr(i, 'name', i)!r}, which "
                                     f"is not in graph {self.name!r}", n.name)
            if n.op == "input" and not any(n is i for i in self.inputs):
                raise GraphError(f"node {n.name!r} is an input node but not one of the graph's inputs",
                                 n.name)
        for i in self.inputs:
            if i.op != "input" or i not in members:
                raise GraphError(f"graph input {i.name!r} is not an input node of the graph", i.name)
        if not self.outputs:
            raise GraphError(f"graph {self.name!r} has no outputs")
        for o in self.outputs:
            if o not in members:
                raise GraphError(f"graph output {o.name!r} is not in graph {self.name!r}", o.name)
        order = self.topological_order()
        if check_shapes:
            for n in order:
                if n.op in ("input", "constant"):
                    continue
                shape, dtype = infer_node(n)
                if shape != n.shape or dtype != n.dtype:
                    raise ShapeError(
                        f"node {n.name!r} ({n.op}) is recorded as {n.type_str()} but its inputs give "
                        f"{format_dtype(dtype)}{format_shape(shape)}", n.name)

    # -- printing ---------------------------------------------------------------------------------------
    def text(self) -> str:
        """The readable text form (see the module docstring)."""
        # Insertion order reads like the program; re-sort only if a rewrite left it out of order.
        seen, order = set(), self.nodes
        for n in self.nodes:
            if any(i not in seen for i in n.inputs):
                try:
                    order = self.topological_order()
                except GraphError:
                    pass  # print what is there, so that a broken graph can still be looked at
                break
            seen.add(n)
        sig = ", ".join(f"%{i.name}: {i.type_str()}" + (" param" if i.attrs.get("kind") == "param" else "")
                        for i in self.inputs)
        lines = [f"graph {self.name}({sig}) {{"]
        lines += ["  " + n.format() for n in order if n.op != "input"]
        lines.append("  return " + ", ".join(f"%{o.name}" for o in self.outputs))
        lines.append("}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return (f"<Graph {self.name!r}: {len(self.inputs)} inputs, {self.num_ops()} ops, "
                f"{len(self.outputs)} outputs>")
