"""Memory planning: liveness analysis, in-place reuse, and offsets in one arena.

A plan computes many intermediate tensors, but few of them are needed at the same time: an activation
of the forward pass lives until the backward pass has used it, a temporary of the backward pass only
until the next op. A framework that allocates every tensor separately needs the sum of all their sizes
(``naive_bytes``); one that plans can reuse memory between tensors whose lifetimes do not overlap and needs
far less. Inference engines (TFLite, ONNX Runtime, TVM) and training compilers (XLA's buffer assignment)
all do this before the first run, because the graph and its shapes are known in advance.

The steps, for a lowered :class:`~mlsys_lab.runtime.lowering.Plan`:

1. **Buffers.** Every step that writes a result needs memory, except *views* (``reshape``,
   ``transpose``, ...), which alias their input's buffer. Graph inputs and constants belong to the
   caller and are never planned.
2. **In-place reuse.** An elementwise step whose input dies at that step (no later reader, not a
   graph output, nobody else viewing it) and has the output's shape and dtype can write its result over
   that input: the two tensors share one buffer (``relu_grad(g, x)`` overwriting ``g`` in the backward
   pass, an SGD update overwriting the gradient).
3. **Liveness.** A buffer is live from the step that first writes it to the last step that reads any
   tensor stored in it (a view or an in-place result extends it); outputs stay live to the end.
4. **Offsets.** Each buffer gets an offset in one arena so that buffers live at the same time never
   overlap. Finding the smallest arena is NP-hard (it is dynamic storage allocation); the classic
   heuristic, used by TFLite ("greedy by size"), places buffers from the largest to the smallest, each
   at the lowest offset of the *smallest gap* that fits it among the already placed buffers it
   conflicts with (best fit), or on top if no gap fits. A second order, by first use ("greedy by
   time"), is also tried and the smaller arena kept.

Two numbers bound the result. ``naive_bytes`` is every tensor in its own buffer. ``lower_bound_bytes``
is the largest total size of buffers live at one step: no placement can do better, because those
buffers must all exist at once. A good plan's ``peak_bytes`` (the arena size, plus the output buffers
when those are kept out of the arena) is close to the lower bound; what separates them is fragmentation
(a gap too small for anyone). Both bounds are for the plan's step order: another topological order
changes which tensors are live together (choosing the order to lower the peak, memory-aware
scheduling, is a further optimisation this planner does not attempt).

**Parallel execution** breaks the sequential notion of "before". If steps A and B are independent, a
parallel executor may run them in either order or at once, so a buffer freed by A's branch may still be
in use when B's branch wants it. With ``parallel=True`` two buffers may share memory only if every use of
one *happens before* the other's first write in the dependency graph (an ancestor relation, computed with
bitsets), which holds under every schedule the executor may choose; the arena is larger, but no extra
ordering edges are needed and independent branches stay independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .lowering import Plan

__all__ = ["Buffer", "MemoryPlan", "MemoryReport", "plan_memory", "plot_memory", "STRATEGIES", "MEMORY_UNITS"]

STRATEGIES = ("best", "greedy_by_size", "greedy_by_time", "naive")


def _fmt_bytes(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


@dataclass
class Buffer:
    """A region of the arena shared by one or more tensors (the root, its in-place successors, views).

    ``start``/``end``: the first and last step (inclusive) at which it is live, in plan order (``end``
    equals the number of steps for buffers holding graph outputs). ``uses``: bitmask of the steps that
    write or read it (bit ``n_steps`` for "returned as an output"). ``offset``: its place in the arena.
    ``output``: it holds a graph output, so (unless outputs are planned into the arena) it is allocated
    fresh at each call and handed to the caller; its ``offset`` then only places it above the arena in
    pictures and checks.
    """

    id: int
    nbytes: int
    start: int
    end: int
    values: list = field(default_factory=list)
    uses: int = 0
    offset: int = 0
    output: bool = False

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return not (self.end < other.start or other.end < self.start)


@dataclass
class MemoryReport:
    """What a memory plan achieves. Attribute or item access: ``r.peak_bytes`` or ``r["peak_bytes"]``.

    ``peak_bytes``: the memory the plan needs at once: ``arena_bytes`` (the temporaries' arena) plus
    ``output_bytes`` (the buffers handed to the caller); ``naive_bytes``: every computed tensor in its own
    buffer;
    ``lower_bound_bytes``: the largest total size of buffers live at the same step (see the module
    docstring); ``num_tensors`` (computed, non-view), ``num_buffers``, ``num_inplace`` (tensors written
    over a dying input), ``num_views`` (tensors that alias another); ``strategy`` and ``parallel_safe``
    say how the offsets were chosen.
    """

    peak_bytes: int
    naive_bytes: int
    lower_bound_bytes: int
    arena_bytes: int
    output_bytes: int
    num_tensors: int
    num_buffers: int
    num_inplace: int
    num_views: int
    strategy: str
    parallel_safe: bool
    alignment: int

    @property
    def peak_over_lower_bound(self) -> float:
        return self.peak_bytes / self.lower_bound_bytes if self.lower_bound_bytes else 1.0

    @property
    def peak_over_naive(self) -> float:
        return self.peak_bytes / self.naive_bytes if self.naive_bytes else 1.0

    def __getitem__(self, key: str):
        return getattr(self, key)

    def keys(self):
        return self.as_dict().keys()

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def __str__(self) -> str:
        return (f"peak {_fmt_bytes(self.peak_bytes)} | lower bound {_fmt_bytes(self.lower_bound_bytes)} "
                f"(peak/bound {self.peak_over_lower_bound:.3f}) | naive {_fmt_bytes(self.naive_bytes)} "
                f"(peak/naive {self.peak_over_naive:.3f}) | {self.num_tensors} tensors in "
                f"{self.num_buffers} buffers, {self.num_inplace} in place, {self.num_views} views "
                f"[{self.strategy}{', parallel-safe' if self.parallel_safe else ''}]")


@dataclass
class MemoryPlan:
    """The planner's answer for one lowered plan.

    ``buffers``: the :class:`Buffer` list; ``buffer_of[slot]``: the buffer id backing a value (None for
    graph inputs, constants and views of them); ``inplace_of[slot]``: the slot whose buffer a value
    overwrote; ``view_of[slot]``: the slot a view aliases; ``arena_bytes``: the arena size;
    ``output_bytes``: the buffers holding outputs, allocated at each call outside the arena (0 when
    ``outputs_in_arena``); ``peak_bytes``: their sum.
    """

    plan: Plan
    buffers: list
    buffer_of: dict
    inplace_of: dict
    view_of: dict
    arena_bytes: int
    output_bytes: int
    outputs_in_arena: bool
    naive_bytes: int
    lower_bound_bytes: int
    strategy: str
    parallel_safe: bool
    alignment: int

    @property
    def peak_bytes(self) -> int:
        return self.arena_bytes + self.output_bytes

    def offset(self, slot: int):
        b = self.buffer_of.get(slot)
        return None if b is None else self.buffers[b].offset

    def describe(self, slot: int) -> str:
        """Where a value lives, for plan listings: ``buf3 @ 4096 (+1024 B)``, ``in place of %x``, ..."""
        node = self.plan.values[slot]
        b = self.buffer_of.get(slot)
        if slot in self.view_of:
            base = self.plan.values[self.view_of[slot]].name
            return f"view of %{base}" + ("" if b is None else f" (buf{b})")
        if b is None:
            return "external"
        buf = self.buffers[b]
        if buf.output and not self.outputs_in_arena:
            where = f"buf{b}: output, fresh each call (+{node.nbytes} B)"
        else:
            where = f"buf{b} @ {buf.offset} (+{node.nbytes} B)"
        if slot in self.inplace_of:
            where += f", in place of %{self.plan.values[self.inplace_of[slot]].name}"
        return where

    def live_bytes(self) -> list:
        """Bytes of the buffers live at each step, in plan order (the curve whose maximum is the lower bound)."""
        n = len(self.plan.steps)
        curve = [0] * max(n, 1)
        for b in self.buffers:
            for k in range(b.start, min(b.end, n - 1) + 1):
                curve[k] += b.nbytes
        return curve

    def report(self) -> MemoryReport:
        n_views = len(self.view_of)
        return MemoryReport(
            peak_bytes=self.peak_bytes, naive_bytes=self.naive_bytes,
            lower_bound_bytes=self.lower_bound_bytes, arena_bytes=self.arena_bytes,
            output_bytes=self.output_bytes,
            num_tensors=sum(1 for st in self.plan.steps if not st.is_view),
            num_buffers=len(self.buffers), num_inplace=len(self.inplace_of), num_views=n_views,
            strategy=self.strategy, parallel_safe=self.parallel_safe, alignment=self.alignment)

    def conflicts(self, a: Buffer, b: Buffer) -> bool:
        """Must ``a`` and ``b`` occupy disjoint memory? (Time overlap, or for a parallel-safe plan: no
        happens-before order between them.)"""
        if self.parallel_safe:
            return _parallel_conflict(a, b, self._ancestors)
        return a.overlaps_in_time(b)

    def check(self) -> None:
        """Raise AssertionError if two conflicting buffers overlap, or one lies outside the planned peak."""
        for i, a in enumerate(self.buffers):
            assert 0 <= a.offset and a.offset + a.nbytes <= self.peak_bytes, f"buf{a.id} outside the plan"
            for b in self.buffers[i + 1:]:
                if a.nbytes and b.nbytes and self.conflicts(a, b):
                    assert a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset, (
                        f"buf{a.id} [{a.offset}, {a.offset + a.nbytes}) and buf{b.id} "
                        f"[{b.offset}, {b.offset + b.nbytes}) overlap but are live together")

    _ancestors: list = field(default_factory=list, repr=False)


# ----------------------------------------------------------------------------------------------------------
# Analysis
# ----------------------------------------------------------------------------------------------------------

def _ancestors(plan: Plan) -> list:
    """``anc[s]``: bitmask of the steps that must finish before step ``s`` starts (transitively)."""
    anc = [0] * len(plan.steps)
    for st in plan.steps:
        m = 0
        for d in st.deps:
            m |= anc[d] | (1 << d)
        anc[st.index] = m
    return anc


def _parallel_conflict(a: Buffer, b: Buffer, anc: list) -> bool:
    # a may precede b in memory if every use of a is a strict ancestor of b's first write, or vice versa.
    a_before_b = a.uses & ~anc[b.start] == 0
    b_before_a = b.uses & ~anc[a.start] == 0
    return not (a_before_b or b_before_a)


def _build_buffers(plan: Plan, inplace: bool, parallel: bool, anc: list):
    """Assign every computed value to a buffer (views and in-place results join their input's)."""
    n = len(plan.steps)
    outputs = set(plan.outputs)
    # The last step reading each value (n for outputs: they are read when the plan returns).
    last_read = {k: (n if k in outputs else max(r, default=-1)) for k, r in enumerate(plan.readers)}
    read_mask = [0] * len(plan.values)
    for k, rs in enumerate(plan.readers):
        for r in rs:
            read_mask[k] |= 1 << r
        if k in outputs:
            read_mask[k] |= 1 << n

    buffers: list[Buffer] = []
    buffer_of, inplace_of, view_of = {}, {}, {}

    def end_of(buf: Buffer) -> int:
        return max([buf.start] + [last_read[v] for v in buf.values] +
                   [plan.producer[v] for v in buf.values if v in plan.producer])

    for st in plan.steps:
        out = st.out
        node = st.node
        if st.is_view:
            base = st.args[0]
            view_of[out] = base
            b = buffer_of.get(base)
            buffer_of[out] = b
            if b is not None:
                buffers[b].values.append(out)
                buffers[b].uses |= read_mask[out] | (1 << st.index)
            continue
        chosen = None
        if inplace and st.inplace_ok:
            for a in dict.fromkeys(st.args):
                b = buffer_of.get(a)
                if b is None or a in view_of:
                    continue                      # caller's memory, or a view: never overwrite
                cand = plan.values[a]
                if cand.shape != node.shape or cand.dtype != node.dtype:
                    continue
                buf = buffers[b]
                if end_of(buf) != st.index:
                    continue                      # someone reads this buffer later (or it is an output)
                others = [x for x in st.args if x != a and buffer_of.get(x) == b]
                if others:
                    continue                      # another argument views the same memory
                if parallel and (buf.uses & ~(1 << st.index)) & ~anc[st.index]:
                    continue                      # a use not ordered before this step
                chosen = b
                inplace_of[out] = a
                break
        if chosen is None:
            chosen = len(buffers)
            buffers.append(Buffer(chosen, node.nbytes, st.index, st.index))
        buf = buffers[chosen]
        buf.values.append(out)
        buf.uses |= read_mask[out] | (1 << st.index)
        buffer_of[out] = chosen

    for buf in buffers:
        buf.end = end_of(buf)
    return buffers, buffer_of, inplace_of, view_of


def _lower_bound(buffers: list, n_steps: int) -> int:
    """The largest total size of buffers live at one step (a sweep over start and end events)."""
    delta = [0] * (n_steps + 2)
    for b in buffers:
        delta[b.start] += b.nbytes
        delta[min(b.end, n_steps) + 1] -= b.nbytes
    best = cur = 0
    for d in delta:
        cur += d
        best = max(best, cur)
    return best


def _round_up(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def _place(buffers: list, order: list, conflicts, alignment: int) -> int:
    """Best-fit placement in the given order; sets ``offset`` on every buffer, returns the arena size."""
    placed = []
    for b in order:
        size = _round_up(b.nbytes, alignment)
        busy = sorted((p.offset, p.offset + _round_up(p.nbytes, alignment)) for p in placed
                      if p.nbytes and conflicts(p, b))
        best = best_gap = None
        prev = 0
        for lo, hi in busy:
            gap = lo - prev
            if gap >= size and (best_gap is None or gap < best_gap):
                best, best_gap = prev, gap
            prev = max(prev, hi)
        b.offset = prev if best is None else best
        placed.append(b)
    return max((b.offset + b.nbytes for b in buffers), default=0)


# ----------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------

def plan_memory(plan: Plan, strategy: str = "best", inplace: bool = True, parallel: bool = False,
                alignment: int = 64, outputs_in_arena: bool = True) -> MemoryPlan:
    """Plan the memory of a lowered plan (see the module docstring).

    ``strategy``: ``"greedy_by_size"``, ``"greedy_by_time"``, ``"best"`` (both, keep the smaller arena)
    or ``"naive"`` (every tensor its own buffer, no in-place: the baseline). ``inplace``: allow in-place
    reuse. ``parallel``: make the plan safe for any schedule the dependency graph allows (for the parallel
    executor). ``alignment``: every buffer starts at a multiple of this many bytes (cache lines, SIMD).

    ``outputs_in_arena=True`` (default): outputs get arena offsets like every other buffer (a caller that
    wants to keep them must copy them, which ``compile``'s plans do at return). ``False``: buffers holding
    graph outputs are not part of the arena; the plan allocates them at each call and hands them to the
    caller, as XLA does with its output buffers (nothing is copied, but their memory cannot be shared
    with temporaries). They count in ``peak_bytes`` (as ``output_bytes``) and in the bounds either way.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {STRATEGIES}")
    if alignment < 1 or alignment & (alignment - 1):
        raise ValueError(f"alignment must be a power of two, got {alignment}")
    n = len(plan.steps)
    anc = _ancestors(plan)
    naive = strategy == "naive"
    buffers, buffer_of, inplace_of, view_of = _build_buffers(plan, inplace and not naive, parallel, anc)
    outputs = set(plan.outputs)
    for b in buffers:
        b.output = any(v in outputs for v in b.values)
    naive_bytes = sum(st.node.nbytes for st in plan.steps if not st.is_view)
    lower = _lower_bound(buffers, n)
    inner = [b for b in buffers if outputs_in_arena or not b.output]
    outer = [b for b in buffers if not (outputs_in_arena or not b.output)]

    if naive:
        off = 0
        for b in inner:
            b.offset = off
            off += _round_up(b.nbytes, alignment)
        arena = max((b.offset + b.nbytes for b in inner), default=0)
        used = "naive"
    else:
        if parallel:
            def conflicts(a, b):
                return _parallel_conflict(a, b, anc)
        else:
            def conflicts(a, b):
                return a.overlaps_in_time(b)
        orders = {
            "greedy_by_size": sorted(inner, key=lambda b: (-b.nbytes, b.start, b.id)),
            "greedy_by_time": sorted(inner, key=lambda b: (b.start, -b.nbytes, b.id)),
        }
        names = list(orders) if strategy == "best" else [strategy]
        results = []
        for name in names:
            size = _place(inner, orders[name], conflicts, alignment)
            results.append((size, name, [b.offset for b in inner]))
        arena, used, offsets = min(results, key=lambda r: r[0])
        for b, o in zip(inner, offsets):
            b.offset = o
    # Output buffers live outside the arena: stack them above it (for pictures and checks).
    off = _round_up(arena, alignment)
    for b in outer:
        b.offset = off
        off += _round_up(b.nbytes, alignment)
    output_bytes = sum(b.nbytes for b in outer)
    mp = MemoryPlan(plan, buffers, buffer_of, inplace_of, view_of, arena, output_bytes, outputs_in_arena,
                    naive_bytes, lower, used, parallel, alignment)
    mp._ancestors = anc
    return mp


# ----------------------------------------------------------------------------------------------------------
# Picture
# ----------------------------------------------------------------------------------------------------------

#: Units :func:`plot_memory` can draw in, with their sizes in bytes.
MEMORY_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def plot_memory(memory: MemoryPlan, ax=None, label_min_fraction: float = 0.04, title: str | None = None,
                unit: str | None = None):
    """Draw the plan: one rectangle per buffer, steps across, bytes up (matplotlib ``Axes`` returned).

    Buffers in the arena are solid; output buffers allocated per call (stacked above the arena) are
    hatched. A dashed line marks the lower bound, a red line the planned peak. Buffers holding at least
    ``label_min_fraction`` of the peak are labelled with the first tensor they hold. ``unit`` (one of
    :data:`MEMORY_UNITS`) fixes the unit of the byte axis, for plans drawn side by side; by default it
    is KiB below 4 MiB of peak and MiB above.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.6))
    n = len(memory.plan.steps)
    peak = memory.peak_bytes
    cmap = plt.get_cmap("tab20")
    if unit is None:
        unit = "KiB" if peak < (1 << 22) else "MiB"
    if unit not in MEMORY_UNITS:
        raise ValueError(f"unit must be one of {', '.join(MEMORY_UNITS)}, got {unit!r}")
    scale = MEMORY_UNITS[unit]
    for b in memory.buffers:
        if not b.nbytes:
            continue
        end = min(b.end, n - 1) + 1
        outside = b.output and not memory.outputs_in_arena
        ax.add_patch(Rectangle((b.start, b.offset / scale), end - b.start, b.nbytes / scale,
                               facecolor=cmap(b.id % 20), edgecolor="black", linewidth=0.5, alpha=0.85,
                               hatch="//" if outside else None))
        if peak and b.nbytes >= label_min_fraction * peak:
            ax.text(b.start + 0.15, (b.offset + b.nbytes / 2) / scale,
                    memory.plan.values[b.values[-1 if b.output else 0]].name, fontsize=7, va="center")
    if memory.output_bytes:
        ax.axhline(memory.arena_bytes / scale, color="grey", linewidth=0.8, linestyle=":",
                   label=f"arena {memory.arena_bytes / scale:.1f} {unit} (outputs above, hatched)")
    ax.axhline(memory.lower_bound_bytes / scale, color="black", linestyle="--", linewidth=1,
               label=f"lower bound {memory.lower_bound_bytes / scale:.1f} {unit}")
    ax.axhline(peak / scale, color="tab:red", linewidth=1, label=f"planned peak {peak / scale:.1f} {unit}")
    ax.set_xlim(0, max(n, 1))
    ax.set_ylim(0, max(peak, 1) / scale * 1.12)
    ax.set_xlabel("step")
    ax.set_ylabel(f"offset ({unit})")
    ax.set_title(title or f"memory plan of {memory.plan.graph.name} ({memory.strategy})")
    ax.legend(loc="upper left", fontsize=7)
    return ax


def aligned_empty(shape, dtype, alignment: int = 64) -> np.ndarray:
    """``np.empty(shape, dtype)`` whose data starts at a multiple of ``alignment`` bytes.

    NumPy's own large arrays start 16 bytes past a page boundary; a SIMD loop storing 64-byte vectors
    into such an array splits every store across two cache lines (measurably slower with AVX-512).
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    start = (-raw.ctypes.data) % alignment
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def arena_views(memory: MemoryPlan):
    """Allocate the arena; return ``(arena, views, fresh)``.

    ``views[slot]``: the typed array view at its buffer's offset for every non-view computed value in the
    arena (the arena's start is aligned to ``memory.alignment``, so the offsets are aligned in memory).
    ``fresh``: for each output buffer outside the arena, ``(shape, dtype, [slots])``: what to allocate
    at each call and which values (the root and its in-place successors) it backs.
    """
    arena = aligned_empty((memory.arena_bytes,), np.uint8, memory.alignment)
    views, fresh = {}, []
    for b in memory.buffers:
        slots = [v for v in b.values if v not in memory.view_of]
        if b.output and not memory.outputs_in_arena:
            root = memory.plan.values[slots[0]]
            fresh.append((root.shape, root.dtype, slots))
            continue
        for v in slots:
            node = memory.plan.values[v]
            views[v] = arena[b.offset:b.offset + node.nbytes].view(node.dtype).reshape(node.shape)
    return arena, views, fresh
