"""The kernel registry: for each op, the kernels that can compute it, per backend.

This is the dispatch table every framework has in some form (PyTorch's dispatcher keyed by operator and
device, TensorFlow's kernel registry keyed by op, device and type constraints, ONNX Runtime's execution
providers). An op in the graph says *what* to compute; the registry says *how*, and lowering picks one
kernel per node once, before the first run, instead of deciding again at every call.

A kernel is a Python function that writes its result into a preallocated output array::

    @register("add", inplace=True)
    def add(a, b, *, out):
        return np.add(a, b, out=out)

    @register("sum")
    def sum_(x, *, out, axis, keepdims):        # keyword-only parameters other than ``out`` are filled
        ...                                    # from the node's attributes when the plan is built

Why ``out``: the memory planner decides where every tensor lives (an offset in one arena), so kernels must
not allocate their results; they write where they are told, and return ``out``.

Flags a kernel is registered with:

* ``inplace=True``: the kernel is correct when ``out`` *is* one of its inputs (an input with the
  output's shape and dtype), so the planner may hand it the input's buffer when that input dies here.
  Elementwise kernels qualify if they read each element before writing it; the planner checks the rest
  (same shape and dtype, no other reader left, not a graph output).
* ``view=True``: the kernel allocates nothing and returns a view of its first input (``reshape``,
  ``transpose``, ``broadcast_to``, basic ``getitem``); it is called with ``out=None`` and the result
  shares the input's buffer, which the planner keeps alive for as long as the view is used.
  ``needs_contiguous=True`` (``reshape``): a view only exists when the input is contiguous; lowering
  then picks the next kernel, a copy, for a strided input.
* ``when=predicate(node) -> bool``: the kernel only handles some nodes (a Numba GEMM only for 2-D
  float32); the next candidate is tried otherwise.
* ``factory=True``: the registered function is called once per node at lowering time,
  ``factory(node) -> kernel or None``, and the kernel it returns is called as ``kernel(*inputs, out=out)``
  (for code generated per node, e.g. a fused elementwise loop; None declines the node).
* ``threads``: ``"gil-free"`` (NumPy on large arrays, Numba ``nogil``: other Python threads run
  meanwhile, so the parallel executor can overlap it with another kernel), ``"own-pool"`` (the kernel
  runs its own thread pool, like a multithreaded BLAS or a Numba ``parallel=True`` kernel) or
  ``"holds-gil"``. Informational: a kernel that holds the GIL cannot overlap with another on the
  parallel executor, and one with its own pool competes with the executor's threads for the cores.

Lookup (:meth:`KernelRegistry.select`) tries backends in order: the requested one, then its fallbacks
(``"numba" -> "numpy" -> "reference"``). ``"reference"`` wraps the graph layer's interpreter kernels
(``mlsys_lab.graph.interpret.KERNELS``), copying their result into ``out``, so that every op the IR can
interpret also runs here, if not as fast. An op with no kernel anywhere raises :class:`KernelNotFoundError`
naming the node.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..graph.ir import GraphError, Node

__all__ = ["Kernel", "BoundKernel", "KernelRegistry", "KernelNotFoundError", "REGISTRY", "register",
           "BACKENDS"]

#: Backends and the backends each falls back to, in order.
BACKENDS = {
    "numpy": ("numpy", "reference"),
    "numba": ("numba", "numpy", "reference"),
    "reference": ("reference",),
}

# Backends whose kernels live in a module that is imported only when the backend is first used (Numba's
# import and compilation cost seconds; a NumPy-only plan should not pay them).
_LAZY_BACKENDS = {"numba": "mlsys_lab.runtime.kernels_numba", "reference": "mlsys_lab.runtime.kernels_reference"}


class KernelNotFoundError(GraphError):
    """No kernel can compute a node; ``.node`` is its name, the message names its op and the backends tried."""


@dataclass(frozen=True)
class Kernel:
    """One registered kernel (see the module docstring for the flags)."""

    op: str
    backend: str
    fn: Callable
    name: str
    inplace: bool = False
    view: bool = False
    needs_contiguous: bool = False
    factory: bool = False
    when: Callable | None = None
    threads: str = "gil-free"
    attr_names: tuple = ()          # keyword parameters filled from node.attrs
    attr_defaults: dict = field(default_factory=dict)

    def accepts(self, node: Node) -> bool:
        return self.when is None or bool(self.when(node))

    def bind(self, node: Node) -> "BoundKernel | None":
        """The kernel specialised to ``node``: attributes bound (or the factory run). None if it declines."""
        if self.factory:
            fn = self.fn(node)
            if fn is None:
                return None
        else:
            kwargs = {}
            for a in self.attr_names:
                if a in node.attrs:
                    kwargs[a] = node.attrs[a]
                elif a not in self.attr_defaults:
                    raise GraphError(f"node {node.name!r} ({node.op}): kernel {self.name} needs attribute "
                                     f"{a!r}, which the node does not have", node.name)
            fn = functools.partial(self.fn, **kwargs) if kwargs else self.fn
        return BoundKernel(self, fn)


@dataclass(frozen=True)
class BoundKernel:
    """A kernel chosen for one node: ``call(*inputs, out=buffer_or_None) -> result``."""

    kernel: Kernel
    call: Callable

    @property
    def name(self) -> str:
        return self.kernel.name


class KernelRegistry:
    """``op -> backend -> [kernels]`` (most specific first). See the module docstring."""

    def __init__(self):
        self._table: dict[str, dict[str, list[Kernel]]] = {}
        self._loaded: set[str] = set()

    # -- registration -----------------------------------------------------------------------------------
    def register(self, op: str, backend: str = "numpy", *, inplace: bool = False, view: bool = False,
                 needs_contiguous: bool = False, factory: bool = False, when: Callable | None = None,
                 threads: str = "gil-free", name: str | None = None, first: bool = False):
        """Decorator: register ``fn`` as a kernel for ``op`` on ``backend``.

        Kernels registered later for the same op and backend are tried after earlier ones, unless
        ``first=True`` (a more specialised kernel that should be tried before the general one).
        """
        if threads not in ("gil-free", "own-pool", "holds-gil"):
            raise ValueError(f"threads must be 'gil-free', 'own-pool' or 'holds-gil', got {threads!r}")

        def deco(fn):
            attr_names, defaults = (), {}
            if not factory:
                params = inspect.signature(fn).parameters.values()
                kw = [p for p in params if p.kind is p.KEYWORD_ONLY and p.name != "out"]
                attr_names = tuple(p.name for p in kw)
                defaults = {p.name: p.default for p in kw if p.default is not p.empty}
                if not any(p.name == "out" for p in inspect.signature(fn).parameters.values()):
                    raise TypeError(f"kernel {fn.__name__} for {op!r} must take a keyword argument 'out'")
            k = Kernel(op, backend, fn, name or f"{backend}.{op}", inplace, view, needs_contiguous, factory,
                       when, threads, attr_names, defaults)
            lst = self._table.setdefault(op, {}).setdefault(backend, [])
            if first:
                lst.insert(0, k)
            else:
                lst.append(k)
            return fn

        return deco

    def unregister(self, op: str, backend: str | None = None) -> None:
        """Remove the kernels of ``op`` (on one backend, or all): for tests and experiments."""
        if backend is None:
            self._table.pop(op, None)
        else:
            self._table.get(op, {}).pop(backend, None)

    # -- lookup -----------------------------------------------------------------------------------------
    def _ensure(self, backend: str) -> None:
        if backend in _LAZY_BACKENDS and backend not in self._loaded:
            self._loaded.add(backend)
            importlib.import_module(_LAZY_BACKENDS[backend])

    def candidates(self, op: str, backend: str) -> list[Kernel]:
        """Every kernel that could compute ``op`` for ``backend``, in the order lowering tries them."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: {sorted(BACKENDS)}")
        out = []
        for b in BACKENDS[backend]:
            self._ensure(b)
            out += self._table.get(op, {}).get(b, [])
        return out

    def select(self, node: Node, backend: str = "numpy", *, allow_view: bool = True) -> BoundKernel:
        """The first kernel (in :meth:`candidates` order) that accepts ``node``, bound to it.

        ``allow_view=False`` skips view kernels (lowering asks for a copying kernel when a view is
        impossible). Raises :class:`KernelNotFoundError` naming the node if none fits.
        """
        tried = self.candidates(node.op, backend)
        for k in tried:
            if (k.view and not allow_view) or not k.accepts(node):
                continue
            bound = k.bind(node)
            if bound is not None:
                return bound
        known = sorted(op for op, per in self._table.items() if any(per.values()))
        if not tried:
            msg = (f"node {node.name!r}: no kernel for op {node.op!r} on backend {backend!r} (tried "
                   f"{', '.join(BACKENDS[backend])}); ops with kernels: {', '.join(known)}")
        else:
            msg = (f"node {node.name!r}: none of the kernels for op {node.op!r} "
                   f"({', '.join(k.name for k in tried)}) accepts it ({node.type_str()}, attrs "
                   f"{ {k: v for k, v in node.attrs.items() if k != 'graph'} })")
        raise KernelNotFoundError(msg, node.name)

    def ops(self, backend: str | None = None) -> list[str]:
        """Ops that have at least one kernel (on ``backend`` itself, if given)."""
        if backend is not None:
            self._ensure(backend)
        return sorted(op for op, per in self._table.items()
                      if (per.get(backend) if backend else any(per.values())))

    def table(self) -> str:
        """A text table: one line per op, the kernel names per backend (what the book prints)."""
        for b in _LAZY_BACKENDS:
            self._ensure(b)
        backends = ["numba", "numpy", "reference"]
        rows = [("op", *backends)]
        for op in sorted(self._table):
            rows.append((op, *[", ".join(k.name.split(".", 1)[1] + ("*" if k.when else "")
                                         for k in self._table[op].get(b, [])) or "-" for b in backends]))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


#: The registry that ``compile`` uses unless given another one.
REGISTRY = KernelRegistry()


def register(op: str, backend: str = "numpy", **flags):
    """Register a kernel in :data:`REGISTRY` (see :meth:`KernelRegistry.register`)."""
    return REGISTRY.register(op, backend, **flags)


def is_float(*dtypes) -> bool:
    return all(np.dtype(d).kind == "f" for d in dtypes)
