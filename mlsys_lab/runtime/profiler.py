"""Profiling a plan: time per step and per op, a Chrome trace, and a timeline picture.

``plan.profile(*inputs)`` runs the plan with event recording on and returns a :class:`Profile`. Each
event is one step on one thread with its start and end time (``time.perf_counter_ns``). From the events:

* :meth:`Profile.by_op` / :meth:`Profile.table`: total and mean time per op, what a framework profiler's
  "operator view" shows first: where does the time go?
* :meth:`Profile.chrome_trace` / :meth:`Profile.save_chrome_trace`: the Trace Event Format
  (``{"traceEvents": [{"ph": "X", "name", "ts", "dur", "pid", "tid", ...}]}``, times in microseconds),
  which https://ui.perfetto.dev and ``chrome://tracing`` open as a zoomable timeline, one row per
  thread; PyTorch's profiler and TensorFlow's export the same format.
* :func:`plot_timeline`: the same timeline drawn with matplotlib, for notebooks and the book.
* :attr:`Profile.parallelism`: busy time over wall time (1.0: one step at a time; 2.0: two cores busy
  all the time).

Timing a run changes it a little (two clock reads and a list append per step, a few hundred
nanoseconds): fine for kernels of microseconds and more.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

__all__ = ["Event", "Profile", "plot_timeline"]


@dataclass(frozen=True)
class Event:
    """One executed step: ``run`` (which repetition), ``step`` index, node ``name``, ``op``, ``kernel``,
    ``thread`` (worker index), ``start_ns``/``end_ns`` (perf_counter), ``seq_start``/``seq_end`` (global
    order of starts and ends within the run)."""

    run: int
    step: int
    name: str
    op: str
    kernel: str
    thread: int
    start_ns: int
    end_ns: int
    seq_start: int
    seq_end: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


class Profile:
    """Events of one or more runs of a plan (see the module docstring).

    ``events``: list of :class:`Event`; ``wall_ns``: wall time of each run; ``executor``: its name.
    """

    def __init__(self, plan, events: list, wall_ns: list, executor: str, memory=None):
        self.plan = plan
        self.events = events
        self.wall_ns = list(wall_ns)
        self.executor = executor
        self.memory = memory

    @classmethod
    def from_raw(cls, plan, raw_runs: list, wall_ns: list, executor: str, memory=None) -> "Profile":
        """Build from the executors' tuples ``(step, thread, t0, t1, seq0, seq1)``, one list per run.
        ``memory``: the plan's :class:`~mlsys_lab.runtime.memory.MemoryPlan` (adds a memory track to the
        Chrome trace of sequential runs)."""
        events = []
        for r, raw in enumerate(raw_runs):
            for s, tid, t0, t1, q0, q1 in raw:
                st = plan.steps[s]
                events.append(Event(r, s, st.name, st.op, st.kernel.name, tid, t0, t1, q0, q1))
        return cls(plan, events, wall_ns, executor, memory)

    # -- summaries ----------------------------------------------------------------------------------------
    @property
    def runs(self) -> int:
        return len(self.wall_ns)

    @property
    def wall_ms(self) -> float:
        """Median wall time of one run, in milliseconds."""
        w = sorted(self.wall_ns)
        return w[len(w) // 2] / 1e6 if w else 0.0

    def _busy_ns_per_run(self) -> list[int]:
        busy = [0] * self.runs
        for e in self.events:
            busy[e.run] += e.duration_ns
        return busy

    @property
    def busy_ms(self) -> float:
        """Median over runs of the kernel time of a run (summed over threads), in milliseconds: the
        same statistic as :attr:`wall_ms`, so that the two compare."""
        busy = sorted(self._busy_ns_per_run())
        return busy[len(busy) // 2] / 1e6 if busy else 0.0

    @property
    def parallelism(self) -> float:
        """Kernels running at once, on average over a run: busy time / wall time of each run, the
        median over runs."""
        ratios = sorted(b / w for b, w in zip(self._busy_ns_per_run(), self.wall_ns) if w)
        return ratios[len(ratios) // 2] if ratios else 0.0

    def by_op(self) -> list:
        """Rows ``{"op", "calls", "total_ms", "mean_us", "share"}`` per op (per run), largest total first."""
        tot, calls = defaultdict(int), defaultdict(int)
        for e in self.events:
            tot[e.op] += e.duration_ns
            calls[e.op] += 1
        runs = max(self.runs, 1)
        all_ns = sum(tot.values()) or 1
        rows = [{"op": op, "calls": calls[op] // runs, "total_ms": ns / runs / 1e6,
                 "mean_us": ns / calls[op] / 1e3, "share": ns / all_ns} for op, ns in tot.items()]
        return sorted(rows, key=lambda r: -r["total_ms"])

    def by_node(self) -> list:
        """Rows ``{"step", "name", "op", "kernel", "mean_us"}`` per step, in plan order."""
        tot, calls = defaultdict(int), defaultdict(int)
        for e in self.events:
            tot[e.step] += e.duration_ns
            calls[e.step] += 1
        return [{"step": s, "name": self.plan.steps[s].name, "op": self.plan.steps[s].op,
                 "kernel": self.plan.steps[s].kernel.name, "mean_us": tot[s] / calls[s] / 1e3}
                for s in sorted(tot)]

    def table(self, top: int | None = None) -> str:
        """The per-op summary as text."""
        rows = self.by_op()[:top]
        lines = [f"{'op':<22}{'calls':>6}{'total ms':>11}{'mean us':>11}{'share':>8}"]
        for r in rows:
            lines.append(f"{r['op']:<22}{r['calls']:>6}{r['total_ms']:>11.3f}{r['mean_us']:>11.1f}"
                         f"{r['share']:>8.1%}")
        lines.append(f"{self.executor} executor, {self.runs} run(s), medians over runs: wall {self.wall_ms:.3f} ms, "
                     f"busy {self.busy_ms:.3f} ms, parallelism {self.parallelism:.2f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    # -- Chrome trace -------------------------------------------------------------------------------------
    def chrome_trace(self, run: int | None = None) -> dict:
        """The Trace Event Format dict (one complete "X" event per step; one row per worker thread; runs
        one after the other on the time axis). ``run`` selects one run (default: all). For a sequential
        run with a memory plan, a counter track "live tensors (bytes)" shows the planned live bytes at
        each step."""
        evs = [e for e in self.events if run is None or e.run == run]
        t0 = min((e.start_ns for e in evs), default=0)
        trace = []
        for tid in sorted({e.thread for e in evs}):
            trace.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                          "args": {"name": f"worker {tid}" if self.executor == "parallel" else "main"}})
        trace.append({"name": "process_name", "ph": "M", "pid": 1, "tid": 0,
                      "args": {"name": f"plan {self.plan.graph.name} ({self.executor})"}})
        for e in evs:
            node = self.plan.steps[e.step].node
            trace.append({"name": e.name, "cat": e.op, "ph": "X", "pid": 1, "tid": e.thread,
                          "ts": (e.start_ns - t0) / 1e3, "dur": e.duration_ns / 1e3,
                          "args": {"op": e.op, "kernel": e.kernel, "step": e.step, "run": e.run,
                                   "shape": list(node.shape), "dtype": str(node.dtype)}})
        if self.memory is not None and self.executor == "sequential":
            live = self.memory.live_bytes()
            for e in evs:
                trace.append({"name": "live tensors (bytes)", "ph": "C", "pid": 1,
                              "ts": (e.start_ns - t0) / 1e3, "args": {"bytes": live[e.step]}})
        return {"traceEvents": trace, "displayTimeUnit": "ms"}

    def save_chrome_trace(self, path, run: int | None = None) -> str:
        """Write :meth:`chrome_trace` as JSON to ``path`` (open it in Perfetto or chrome://tracing)."""
        with open(path, "w") as f:
            json.dump(self.chrome_trace(run), f)
        return str(path)


def plot_timeline(profile: Profile, ax=None, run: int = -1, max_legend: int = 10, title: str | None = None):
    """Draw one run as a timeline: one row per thread, one bar per step coloured by op. Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 2.2))
    if not profile.events:
        return ax
    runs = sorted({e.run for e in profile.events})
    r = runs[run]
    evs = [e for e in profile.events if e.run == r]
    t0 = min(e.start_ns for e in evs)
    threads = sorted({e.thread for e in evs})
    ops = [row["op"] for row in profile.by_op()]
    cmap = plt.get_cmap("tab10" if len(ops) <= 10 else "tab20")
    color = {op: cmap(k % cmap.N) for k, op in enumerate(ops)}
    for e in evs:
        y = threads.index(e.thread)
        ax.broken_barh([((e.start_ns - t0) / 1e6, max(e.duration_ns / 1e6, 1e-4))], (y - 0.4, 0.8),
                       facecolors=color[e.op], edgecolor="black", linewidth=0.3)
    ax.set_yticks(range(len(threads)))
    ax.set_yticklabels([f"worker {t}" if profile.executor == "parallel" else "main" for t in threads])
    ax.set_xlabel("time (ms)")
    ax.set_ylim(-0.6, len(threads) - 0.4)
    handles = [plt.Rectangle((0, 0), 1, 1, color=color[op]) for op in ops[:max_legend]]
    ax.legend(handles, ops[:max_legend], fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or f"{profile.plan.graph.name}: {profile.executor} executor, "
                          f"{(max(e.end_ns for e in evs) - t0) / 1e6:.2f} ms")
    return ax
