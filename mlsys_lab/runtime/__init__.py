"""Lab 3: the runtime. A graph becomes a plan (lowering, kernel selection), its tensors get planned memory
(liveness, in-place reuse, offsets in one arena) and an executor runs it (sequentially, or in parallel
with a thread pool and a ready queue), with a profiler to see where the time goes.

    from mlsys_lab.runtime import compile
    plan = compile(graph, backend="numpy", executor="sequential")
    outputs = plan(*inputs)
    plan.memory_report()      # peak_bytes, naive_bytes, lower_bound_bytes
    plan.profile(*inputs)     # per-op times, Chrome trace, timeline

Modules: :mod:`.registry` (kernels per op and backend), :mod:`.kernels_numpy` (the default backend),
:mod:`.kernels_numba` (generated fused loops, Lab 4 kernels), :mod:`.kernels_reference` (the graph
interpreter's kernels as a fallback), :mod:`.lowering`, :mod:`.memory`, :mod:`.executor`,
:mod:`.profiler`, :mod:`.compile`, :mod:`.examples` (graphs the lab, tests and benchmarks use).
"""

from . import kernels_numpy  # noqa: F401  (registers the default backend's kernels)
from .compile import CompiledPlan, compile
from .executor import KernelError, ParallelExecutor, SequentialExecutor
from .lowering import Plan, Step, lower
from .memory import MemoryPlan, MemoryReport, arena_views, plan_memory, plot_memory
from .profiler import Profile, plot_timeline
from .registry import REGISTRY, KernelNotFoundError, KernelRegistry, register

__all__ = ["compile", "CompiledPlan", "lower", "Plan", "Step", "plan_memory", "MemoryPlan", "MemoryReport", "arena_views",
           "plot_memory", "SequentialExecutor", "ParallelExecutor", "KernelError", "Profile", "plot_timeline",
           "REGISTRY", "KernelRegistry", "KernelNotFoundError", "register"]
