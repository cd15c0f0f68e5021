"""Lowering: a Graph becomes an execution plan, a flat list of steps with one chosen kernel each.

A graph says what to compute; a plan says what to run, in which order, with which kernel, reading and
writing which values. Lowering does, once, the work an interpreter would redo at every call:

1. **Check** the graph (``Graph.validate``): unknown ops, wrong arity, inputs from outside the graph,
   cycles and shapes that disagree with inference all raise an error whose ``.node`` names the culprit.
2. **Order** the nodes topologically (producers before consumers) and keep only those the outputs need.
3. **Select a kernel** per node from the registry (:mod:`mlsys_lab.runtime.registry`), the way a
   framework's dispatcher maps an operator to a device- and dtype-specific implementation. Kernels are
   bound to the node's attributes here, so a step is just ``kernel(*inputs, out=buffer)``.
4. **Number the values**: every node's result gets a slot in a flat list; a step reads slots and writes
   one. The memory planner (:mod:`mlsys_lab.runtime.memory`) then decides which buffer backs each slot.

It also tracks which values are *contiguous* (a transposed view is not), because ``reshape`` of a
contiguous value is a free view while ``reshape`` of a strided one must copy: lowering picks the kernel
accordingly (the registry's ``needs_contiguous`` flag).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph.ir import Graph, GraphError, Node
from .registry import REGISTRY, BoundKernel, KernelNotFoundError, KernelRegistry

__all__ = ["Step", "Plan", "lower"]


@dataclass
class Step:
    """One kernel call of a plan.

    ``index``: position in the plan; ``node``: the graph node it computes; ``kernel``: the bound kernel;
    ``args``: the value slots it reads (in the node's input order); ``out``: the slot it writes;
    ``deps``: the indices of the steps that produce its arguments (what it must wait for).
    """

    index: int
    node: Node
    kernel: BoundKernel
    args: tuple
    out: int
    deps: tuple

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def op(self) -> str:
        return self.node.op

    @property
    def is_view(self) -> bool:
        """The kernel returns a view of its first input instead of writing a buffer."""
        return self.kernel.kernel.view

    @property
    def inplace_ok(self) -> bool:
        return self.kernel.kernel.inplace


@dataclass
class Plan:
    """The result of :func:`lower`.

    ``values[k]`` is the node whose result lives in slot ``k``; ``slot[node]`` the inverse. ``inputs``
    and ``outputs`` are slots in the graph's order; ``constants`` maps slots to their stored arrays;
    ``producer[k]`` is the step that writes slot ``k`` (absent for inputs and constants) and
    ``readers[k]`` the steps that read it (once per step); ``contiguous[k]`` says whether the value is
    laid out contiguously.
    """

    graph: Graph
    backend: str
    steps: list
    values: list
    slot: dict
    inputs: list
    outputs: list
    constants: dict
    producer: dict
    readers: list
    contiguous: list

    def __len__(self) -> int:
        return len(self.steps)

    def dependents(self) -> list:
        """``dependents[s]``: the steps that wait for step ``s`` (the edges the executors follow)."""
        out = [[] for _ in self.steps]
        for st in self.steps:
            for d in st.deps:
                out[d].append(st.index)
        return out

    def text(self, memory=None) -> str:
        """The plan, one step per line (with buffer offsets when a :class:`MemoryPlan` is given)."""
        lines = [f"plan {self.graph.name} (backend {self.backend}, {len(self.steps)} steps)"]
        width = len(str(max(len(self.steps) - 1, 0)))
        for st in self.steps:
            args = ", ".join("%" + self.values[a].name for a in st.args)
            line = (f"  #{st.index:<{width}} %{st.name}: {st.node.type_str()} = {st.kernel.name}({args})")
            if memory is not None:
                line = line.ljust(72) + "  " + memory.describe(st.out)
            lines.append(line)
        lines.append("  return " + ", ".join("%" + self.values[o].name for o in self.outputs))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def _transpose_is_contiguous(shape, axes) -> bool:
    moved = [a for a in axes if shape[a] != 1]
    return moved == sorted(moved)


def _view_contiguous(node: Node, in_contiguous: bool) -> bool:
    if not in_contiguous:
        return False
    x = node.inputs[0]
    if node.op == "reshape":
        return True
    if node.op == "transpose":
        return _transpose_is_contiguous(x.shape, node.attrs["axes"])
    if node.op == "broadcast_to":
        return tuple(x.shape) == tuple(node.shape)
    return False  # getitem and unknown views: assume strided


def lower(graph: Graph, backend: str = "numpy", registry: KernelRegistry | None = None,
          prune: bool = True) -> Plan:
    """Lower ``graph`` to a :class:`Plan` for ``backend`` (see the module docstring).

    ``prune=False`` keeps nodes no output depends on (they still run). Raises the graph layer's
    :class:`~mlsys_lab.graph.GraphError` family (cycle, unknown op, shape mismatch) naming the node, or
    :class:`KernelNotFoundError` naming a node no kernel can compute.
    """
    registry = registry or REGISTRY
    graph.validate()
    order = graph.topological_order()
    if prune:
        needed = set(graph.outputs)
        for n in reversed(order):
            if n in needed:
                needed.update(n.inputs)
        order = [n for n in order if n in needed or n.op == "input"]

    slot = {n: k for k, n in enumerate(order)}
    values = list(order)
    readers = [[] for _ in values]
    contiguous = [True] * len(values)
    constants, producer, steps = {}, {}, []
    for n in order:
        k = slot[n]
        if n.op == "input":
            continue
        if n.op == "constant":
            constants[k] = np.ascontiguousarray(n.attrs["value"])
            continue
        args = tuple(slot[i] for i in n.inputs)
        try:
            bound = registry.select(n, backend)
            if bound.kernel.view and bound.kernel.needs_contiguous and not contiguous[args[0]]:
                bound = registry.select(n, backend, allow_view=False)
        except KernelNotFoundError:
            raise
        except GraphError as e:  # e.g. a fused node whose sub-expression has an op without a kernel
            if e.node == n.name:
                raise
            raise KernelNotFoundError(f"node {n.name!r} ({n.op}): {e}", n.name) from e
        if bound.kernel.view:
            contiguous[k] = _view_contiguous(n, contiguous[args[0]])
        index = len(steps)
        deps = tuple(sorted({producer[a] for a in args if a in producer}))
        steps.append(Step(index, n, bound, args, k, deps))
        producer[k] = index
        for a in dict.fromkeys(args):
            readers[a].append(index)

    return Plan(graph, backend, steps, values, slot, [slot[i] for i in graph.inputs],
                [slot[o] for o in graph.outputs], constants, producer, readers, contiguous)

