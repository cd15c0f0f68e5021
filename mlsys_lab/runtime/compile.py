"""``compile(graph, ...)``: lower a graph, plan its memory, pick an executor, and return a callable plan.

    step = compile(graph)                          # NumPy kernels, planned arena, sequential executor
    loss, *grads = step(x, y, *params)             # positional in graph.inputs order, or by name
    step.memory_report()                           # peak_bytes, naive_bytes, lower_bound_bytes, ...
    print(step)                                    # the plan: one step per line, kernel and buffer
    prof = step.profile(x, y, *params)             # per-op times, Chrome trace, timeline plot

What happens once, at compile time: the graph is checked (errors name the node), ordered, each node
gets a kernel (:mod:`~mlsys_lab.runtime.lowering`), every intermediate tensor gets an offset in one
preallocated arena (:mod:`~mlsys_lab.runtime.memory`). What happens at each call: inputs are checked
against the graph's input nodes, the executor runs the kernels, which write into the arena, and the
outputs are copied into arrays the caller owns (reused at the next call if the caller has dropped
them). Nothing else is allocated per call, except temporaries inside some kernels.

A plan is not re-entrant: its arena holds one call's tensors, so concurrent calls take turns (a lock).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

from ..autograd import Tensor
from ..graph.ir import Graph, GraphError, ShapeError, format_dtype, format_shape
from .executor import EXECUTORS
from .lowering import Plan, lower
from .memory import MemoryPlan, MemoryReport, aligned_empty, arena_views, plan_memory, plot_memory
from .profiler import Profile, plot_timeline
from .registry import REGISTRY, KernelRegistry

__all__ = ["compile", "CompiledPlan"]


class CompiledPlan:
    """A compiled graph: call it like a function (see the module docstring).

    Attributes: ``graph``, ``plan`` (the lowered :class:`~mlsys_lab.runtime.lowering.Plan`), ``memory``
    (the :class:`~mlsys_lab.runtime.memory.MemoryPlan`), ``executor`` (its ``name`` is ``"sequential"``
    or ``"parallel"``), ``backend``, ``arena`` (the uint8 array holding every planned tensor).
    """

    def __init__(self, graph: Graph, plan: Plan, memory: MemoryPlan, executor: str, num_threads=None,
                 copy_outputs: bool = True, check: bool = False):
        self.graph = graph
        self.plan = plan
        self.memory = memory
        self.backend = plan.backend
        self.copy_outputs = copy_outputs
        self.arena, views, self._fresh = arena_views(memory)
        self._static_buffers = [views.get(k) for k in range(len(plan.values))]
        self._fresh_slots = {k for _, _, slots in self._fresh for k in slots}
        self._cache: dict = {}
        self._free_refs = self._probe_free_refs()
        cls = EXECUTORS[executor]
        kwargs = {"num_threads": num_threads} if executor == "parallel" else {}
        self.executor = cls(plan, check=check, **kwargs)
        self._template = [None] * len(plan.values)
        for k, v in plan.constants.items():
            self._template[k] = v
        self._inputs = [(k, plan.values[k]) for k in plan.inputs]
        self._by_name = {node.name: (k, node) for k, node in self._inputs}
        self._single = bool(graph.meta.get("single_output", len(plan.outputs) == 1))
        self._lock = threading.Lock()

    # -- calling ------------------------------------------------------------------------------------------
    def _bind(self, args, kwargs) -> list:
        g = self.graph
        if len(args) > len(self._inputs):
            raise GraphError(f"graph {g.name!r} takes {len(self._inputs)} inputs, got {len(args)}")
        values = list(self._template)
        given = {}
        for (k, node), v in zip(self._inputs, args):
            given[k] = (node, v)
        for name, v in kwargs.items():
            if name not in self._by_name:
                raise GraphError(f"graph {g.name!r} has no input named {name!r} (inputs: "
                                 f"{list(self._by_name)})", name)
            k, node = self._by_name[name]
            given[k] = (node, v)
        for k, node in self._inputs:
            if k not in given:
                raise GraphError(f"graph {g.name!r}: input {node.name!r} ({node.type_str()}) was not given",
                                 node.name)
            v = given[k][1]
            if isinstance(v, Tensor):
                v = v.data
            v = np.asarray(v)
            if v.shape != node.shape or v.dtype != node.dtype:
                raise ShapeError(f"graph {g.name!r}: input {node.name!r} expects {node.type_str()}, got "
                                 f"{format_dtype(v.dtype)}{format_shape(v.shape)}", node.name)
            values[k] = np.ascontiguousarray(v)
        return values

    def _recycled(self, key, shape, dtype) -> np.ndarray:
        """An aligned array for ``key`` (an output position or an output buffer): last call's, if the
        caller has dropped it and every view of it, else a new one.

        A caching allocator in miniature: ``sys.getrefcount`` tells whether anyone but this cache still
        references the array or the memory under it (a view made by the caller references the owner of
        the memory, not the array it was taken from, so both are checked). A loop that consumes its
        outputs then reuses the same memory at every call (no page faults, no allocator traffic), and an
        output the caller keeps is never overwritten.
        """
        if key not in self._cache or self._refs(key) != self._free_refs:
            arr = aligned_empty(shape, dtype, self.memory.alignment)
            self._cache[key] = (arr, arr.base)
            del arr
        return self._cache[key][0]

    def _refs(self, key) -> tuple:
        entry = self._cache[key]
        return sys.getrefcount(entry[0]), sys.getrefcount(entry[1])

    def _probe_free_refs(self) -> tuple:
        # The reference counts of a cache entry nobody else holds, measured rather than assumed.
        self._cache["probe"] = (lambda a: (a, a.base))(aligned_empty((1,), np.uint8))
        refs = self._refs("probe")
        del self._cache["probe"]
        return refs

    def _buffers(self) -> list:
        """The arena views plus an array for each output buffer outside the arena (see ``_recycled``)."""
        if not self._fresh:
            return self._static_buffers
        bufs = list(self._static_buffers)
        for j, (shape, dtype, slots) in enumerate(self._fresh):
            arr = self._recycled(("buffer", j), shape, dtype)
            for k in slots:
                bufs[k] = arr
        return bufs

    def _outputs(self, values) -> list:
        outs = []
        for j, o in enumerate(self.plan.outputs):
            v = values[o]
            # Outputs in buffers outside the arena already belong to the caller; anything else (an arena
            # view, an input or constant returned as is, a view of one) is copied unless told otherwise.
            if self.copy_outputs and o not in self._fresh_slots:
                dst = self._recycled(("output", j), v.shape, v.dtype)
                np.copyto(dst, v)
                v = dst
            outs.append(v)
        return outs

    def run(self, *args, **kwargs) -> list:
        """Run the plan; return the list of outputs in ``graph.outputs`` order."""
        with self._lock:
            values = self._bind(args, kwargs)
            self.executor.run(values, self._buffers())
            return self._outputs(values)

    def __call__(self, *args, **kwargs):
        """Run the plan; the single output for a single-output graph, else the list of outputs.

        Outputs are new arrays the caller owns (but see ``outputs_in_arena`` and ``copy_outputs`` in
        :func:`compile`).
        """
        outs = self.run(*args, **kwargs)
        return outs[0] if self._single else outs

    # -- inspection -----------------------------------------------------------------------------------------
    def memory_report(self) -> MemoryReport:
        """``peak_bytes``, ``naive_bytes``, ``lower_bound_bytes`` and more (:class:`MemoryReport`)."""
        return self.memory.report()

    def profile(self, *args, repeat: int = 5, warmup: int = 1, **kwargs) -> Profile:
        """Run ``warmup`` untimed and ``repeat`` timed calls with event recording; return a :class:`Profile`."""
        raw_runs, wall = [], []
        with self._lock:
            for r in range(warmup + repeat):
                values = self._bind(args, kwargs)
                events = [] if r >= warmup else None
                t0 = time.perf_counter_ns()
                self.executor.run(values, self._buffers(), events)
                t1 = time.perf_counter_ns()
                if events is not None:
                    raw_runs.append(events)
                    wall.append(t1 - t0)
        return Profile.from_raw(self.plan, raw_runs, wall, self.executor.name, self.memory)

    def plot_memory(self, ax=None, **kw):
        """Picture of the arena (see :func:`mlsys_lab.runtime.memory.plot_memory`)."""
        return plot_memory(self.memory, ax=ax, **kw)

    def plot_timeline(self, *args, ax=None, repeat: int = 3, **kwargs):
        """Profile a few runs and draw the last one (see :func:`mlsys_lab.runtime.profiler.plot_timeline`)."""
        return plot_timeline(self.profile(*args, repeat=repeat, **kwargs), ax=ax)

    def text(self) -> str:
        """The plan, one step per line with its kernel and where its result lives."""
        head = (f"compiled {self.graph.name}: backend {self.backend}, {self.executor.name} executor, "
                f"arena {self.memory.arena_bytes} B")
        return head + "\n" + self.plan.text(self.memory)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return (f"<CompiledPlan {self.graph.name!r}: {len(self.plan.steps)} steps, backend {self.backend}, "
                f"{self.executor.name}, arena {self.memory.arena_bytes} B>")

    def close(self) -> None:
        """Stop the parallel executor's threads (no-op for the sequential one)."""
        self.executor.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def compile(graph: Graph, backend: str = "numpy", executor: str = "sequential", *, num_threads=None,
            memory: str = "planned", strategy: str = "best", inplace: bool = True, alignment: int = 64,
            outputs_in_arena: bool = True, copy_outputs: bool = True, check: bool = False,
            optimize: bool = False, registry: KernelRegistry | None = None) -> CompiledPlan:
    """Compile ``graph`` into a callable :class:`CompiledPlan`.

    ``backend``: ``"numpy"`` (default), ``"numba"`` (generated single-loop kernels for fused elementwise
    nodes, and ``mlsys_lab.kernels.cpu`` kernels where they apply; everything else falls back to NumPy)
    or ``"reference"`` (the graph interpreter's kernels). ``executor``: ``"sequential"`` or
    ``"parallel"`` (``num_threads`` workers, default the CPU count; its memory plan is parallel-safe).
    ``memory``: ``"planned"`` (one arena, offsets chosen by ``strategy``, in-place reuse if ``inplace``,
    every buffer aligned to ``alignment`` bytes) or ``"naive"`` (every tensor its own buffer).

    Outputs. ``outputs_in_arena=True`` (default): outputs are planned into the arena like every other
    tensor (so their memory can be shared with temporaries that died earlier) and copied out at return,
    as ONNX Runtime does by default; ``copy_outputs=False`` returns views into the arena instead, valid
    until the next call (ONNX Runtime's I/O binding). ``outputs_in_arena=False``: outputs get buffers of
    their own, outside the arena, handed over without a copy, as XLA does; their memory cannot be shared
    with temporaries, so the peak grows by the outputs born after the busiest step.

    ``check=True`` verifies every kernel's result (shape, dtype, written into its buffer).
    ``optimize=True`` first runs the graph layer's default passes (``mlsys_lab.graph.optimize``).
    ``registry``: a :class:`KernelRegistry` other than the default.

    Raises errors naming the node for a bad graph (cycle, unknown op, shape mismatch) or a node no
    kernel can run.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known: {sorted(EXECUTORS)}")
    if memory not in ("planned", "naive"):
        raise ValueError(f"memory must be 'planned' or 'naive', got {memory!r}")
    if not isinstance(graph, Graph):
        raise TypeError(f"compile expects a mlsys_lab.graph.Graph, got {type(graph).__name__}")
    if optimize:
        from ..graph.optimize import optimize as _optimize
        graph = _optimize(graph)
    plan = lower(graph, backend, registry or REGISTRY)
    mem = plan_memory(plan, strategy="naive" if memory == "naive" else strategy, inplace=inplace,
                      parallel=executor == "parallel", alignment=alignment,
                      outputs_in_arena=outputs_in_arena)
    return CompiledPlan(graph, plan, mem, executor, num_threads, copy_outputs, check)
