"""The ``"numba"`` backend: generated single-pass kernels for fused elementwise nodes, and Lab 4's kernels.

**Fused elementwise code generation.** A ``fused_elementwise`` node carries its sub-expression as a small
graph (``attrs["graph"]``). NumPy cannot run it in one pass: every op is a separate loop over memory that
writes a full-size temporary. Here the sub-expression becomes the body of one loop, generated as Python
source and compiled by Numba::

    def fused_kernel(a0, out):                      # a0: the input, flattened; out: the planned buffer
        for i in range(out.size):
            x0 = a0[i]
            v1 = np.float32(x0 * x0)
            v2 = np.float32(v1 * x0)
            ...
            out[i] = v8

so ``x`` is read once and ``y`` written once; the intermediate values live in registers. Three details
make the loop fast, and each is a lesson of Lab 4:

* **Types.** Every literal and intermediate is cast to its node's dtype (``np.float32(0.5)``), so a
  float32 expression stays float32 (a bare ``0.5`` is a float64 and would promote the whole loop).
* **Vectorisable maths.** ``math.exp`` and ``math.tanh`` compile to calls into the C library, one
  element at a time, which stops LLVM from vectorising the loop. For float32, ``exp`` uses Lab 4's
  polynomial ``exp_f32`` (``mlsys_lab.kernels.cpu``) and ``tanh`` is built on it
  (``tanh(u) = 1 - 2 / (1 + exp(2u))``, with a short odd polynomial near 0 where that form loses
  digits): straight-line arithmetic the loop vectoriser turns into SIMD code.
* **No Python semantics in the loop.** ``error_model="numpy"``: a float division by zero gives inf
  instead of raising ``ZeroDivisionError``; without it every division carries a branch that defeats
  vectorisation.

The kernel is compiled with ``nogil=True`` (the parallel executor can run two at once) and is
single-threaded (parallelism across nodes is the executor's job; a ``prange`` here would fight it for
the cores). Inputs of the output's shape are passed flat, one-element inputs as scalars; any other
broadcast falls back to a Numba ``vectorize`` ufunc built from the same scalar code (NumPy handles the
broadcasting). A sub-expression with an op this generator does not know, or a dtype other than float32,
float64 and integers, is declined, and the node runs on the NumPy backend.

Compiled kernels are cached by their source for the life of the process (Numba adds one specialisation
per argument types): the same fused expression in another graph or another plan compiles once.

**Lab 4 kernels.** ``matmul`` (2-D), ``softmax`` and ``sum`` use ``mlsys_lab.kernels.cpu``'s Numba kernels
where their dtype is supported; those run their own thread pool (``threads="own-pool"``) and return new
arrays, copied into the planned buffer.
"""

from __future__ import annotations

import math
import threading

import numpy as np

try:  # first, so that its Numba settings (vector width) apply to everything compiled below
    from ..kernels import cpu as _cpu
except Exception:  # pragma: no cover - the kernels package is optional for this backend
    _cpu = None

import numba
from numba import njit

from .registry import REGISTRY

try:
    from ..kernels.cpu._fastmath import exp_f32 as _exp_f32_impl
except Exception:  # pragma: no cover - fall back to the C library's exp (correct, not vectorised)
    _exp_f32_impl = None

__all__ = ["generate_source", "fused_kernel", "FASTMATH"]

#: Fast-math flags of the generated loops: reassociation, contraction (FMA), approximate functions and
#: reciprocals, no signed zeros; not "no NaNs"/"no infs", so inf and NaN keep their meaning.
FASTMATH = {"reassoc", "contract", "afn", "arcp", "nsz"}
_JIT = dict(nogil=True, fastmath=FASTMATH, error_model="numpy")

if _exp_f32_impl is not None:
    _exp32 = _exp_f32_impl
else:  # pragma: no cover
    @njit(**_JIT)
    def _exp32(x):
        return np.exp(x)

_F32 = np.float32


@njit(**_JIT)
def _tanh32(u):
    """tanh for float32 from the vectorisable exp: a Cephes odd polynomial for |u| < 0.625, else
    ``sign(u) * (1 - 2 / (exp(2|u|) + 1))`` (both computed, one selected: no branch in the loop)."""
    a = abs(u)
    z = u * u
    p = ((((_F32(-5.70498872745e-3) * z + _F32(2.06390887954e-2)) * z - _F32(5.37397155531e-2)) * z
          + _F32(1.33314422036e-1)) * z - _F32(3.33332819422e-1)) * z * u + u
    big = _F32(1.0) - _F32(2.0) / (_exp32(_F32(2.0) * a) + _F32(1.0))
    big = big if u >= _F32(0.0) else -big
    return p if a < _F32(0.625) else big


@njit(**_JIT)
def _sigmoid32(x):
    return _F32(1.0) / (_F32(1.0) + _exp32(-x))


_K = math.sqrt(2 / math.pi)
_NAMESPACE = {"np": np, "math": math, "_exp32": _exp32, "_tanh32": _tanh32, "_sigmoid32": _sigmoid32}


def _cast(dtype: np.dtype) -> str:
    return f"np.{np.dtype(dtype).name}"


def _lit(value, dtype: np.dtype) -> str:
    return f"{_cast(dtype)}({value!r})"


def _unary(op: str, x: str, dt: np.dtype, attrs: dict) -> str | None:
    c = _cast(dt)
    f32 = dt == np.float32
    xs = f"{c}({x})"
    if op == "neg":
        return f"-{x}"
    if op == "exp":
        return f"_exp32({xs})" if f32 else f"np.exp({xs})"
    if op == "log":
        return f"np.log({xs})"
    if op == "tanh":
        return f"_tanh32({xs})" if f32 else f"np.tanh({xs})"
    if op == "sigmoid":
        return f"_sigmoid32({xs})" if f32 else f"{c}(1.0) / ({c}(1.0) + np.exp(-{xs}))"
    if op == "relu":
        return f"({x} if not ({x} <= 0) else {c}(0))"
    if op == "gelu":
        if attrs.get("approximate", "none") == "tanh":
            th = "_tanh32" if f32 else "np.tanh"
            return (f"{_lit(0.5, dt)} * {xs} * ({_lit(1.0, dt)} + {th}({_lit(_K, dt)} * ({xs} + "
                    f"{_lit(0.044715, dt)} * {xs} * {xs} * {xs})))")
        return f"{xs} * {_lit(0.5, dt)} * ({_lit(1.0, dt)} + math.erf({xs} * {_lit(1 / math.sqrt(2), dt)}))"
    if op == "pow_scalar":
        e = attrs["exponent"]
        if e == 1:
            return x
        if e == 2:
            return f"{xs} * {xs}"
        if e == 3:
            return f"{xs} * {xs} * {xs}"
        if e == 0.5 and dt.kind == "f":
            return f"np.sqrt({xs})"
        if e == -1 and dt.kind == "f":
            return f"{c}(1.0) / {xs}"
        return f"{xs} ** {_lit(e, dt) if dt.kind == 'f' else repr(e)}"
    return None


def _binary(op: str, a: str, b: str, dt: np.dtype, attrs: dict) -> str | None:
    c = _cast(dt)
    A, B = f"{c}({a})", f"{c}({b})"
    if op in ("add", "sub", "mul", "div", "pow"):
        sym = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}[op]
        return f"{A} {sym} {B}"
    if op == "relu_grad":  # (g, x): g where x > 0
        return f"({A} if {b} > 0 else {c}(0))"
    if op == "gelu_grad":
        f32 = dt == np.float32
        th = "_tanh32" if f32 else "np.tanh"
        ex = "_exp32" if f32 else "np.exp"
        X = f"{c}({b})"
        if attrs.get("approximate", "none") == "tanh":
            t = f"{th}({_lit(_K, dt)} * ({X} + {_lit(0.044715, dt)} * {X} * {X} * {X}))"
            du = f"{_lit(_K, dt)} * ({_lit(1.0, dt)} + {_lit(3 * 0.044715, dt)} * {X} * {X})"
            return (f"{A} * ({_lit(0.5, dt)} * ({_lit(1.0, dt)} + {t}) + {_lit(0.5, dt)} * {X} * "
                    f"({_lit(1.0, dt)} - {t} * {t}) * {du})")
        cdf = f"{_lit(0.5, dt)} * ({_lit(1.0, dt)} + math.erf({X} * {_lit(1 / math.sqrt(2), dt)}))"
        pdf = f"{ex}({_lit(-0.5, dt)} * {X} * {X}) * {_lit(1 / math.sqrt(2 * math.pi), dt)}"
        return f"{A} * ({cdf} + {X} * {pdf})"
    return None


def generate_source(sub, kinds: list, name: str = "fused_kernel") -> str | None:
    """Source of the loop kernel for sub-expression graph ``sub``; ``kinds[i]`` is ``"flat"`` (input i
    is an array of the output's size, read at ``[i]``) or ``"scalar"``. ``kinds=None`` generates a scalar
    function ``name(x0, x1, ...)`` instead (for ``numba.vectorize``). None if an op is not supported."""
    out_node = sub.outputs[0]
    for n in sub.nodes:
        if n.dtype is None or n.dtype.kind not in "fiu":
            return None
    names = {}
    body = []
    for k, i in enumerate(sub.inputs):
        names[i] = f"x{k}"
        if kinds is not None:
            body.append(f"x{k} = a{k}[i]" if kinds[k] == "flat" else f"x{k} = a{k}")
    for k, n in enumerate(sub.topological_order()):
        if n.op == "input":
            continue
        if n.op == "constant":
            v = n.attrs["value"]
            if v.size != 1:
                return None
            names[n] = _lit(v.reshape(()).item(), n.dtype)
            continue
        args = [names[i] for i in n.inputs]
        if len(args) == 1:
            expr = _unary(n.op, args[0], n.dtype, n.attrs)
        elif len(args) == 2:
            expr = _binary(n.op, args[0], args[1], n.dtype, n.attrs)
        else:
            expr = None
        if expr is None:
            return None
        names[n] = f"v{k}"
        body.append(f"v{k} = {_cast(n.dtype)}({expr})")
    result = names[out_node]
    if kinds is None:
        params = ", ".join(f"x{k}" for k in range(len(sub.inputs)))
        lines = [f"def {name}({params}):"] + ["    " + b for b in body] + [f"    return {result}"]
    else:
        params = ", ".join([f"a{k}" for k in range(len(sub.inputs))] + ["out"])
        lines = ([f"def {name}({params}):", "    for i in range(out.size):"]
                 + ["        " + b for b in body] + [f"        out[i] = {result}"])
    return "\n".join(lines) + "\n"


_cache: dict = {}
_cache_lock = threading.Lock()


def _compile(source: str, name: str, vectorize_sig=None):
    key = (source, vectorize_sig)
    with _cache_lock:
        fn = _cache.get(key)
        if fn is None:
            ns = dict(_NAMESPACE)
            exec(source, ns)  # noqa: S102  (our own generated source)
            if vectorize_sig is None:
                fn = njit(**_JIT)(ns[name])
            else:
                fn = numba.vectorize([vectorize_sig], nopython=True, fastmath=FASTMATH)(ns[name])
            _cache[key] = fn
    return fn


def fused_kernel(node):
    """Factory for a ``fused_elementwise`` node: the generated kernel, or None to decline (see above)."""
    sub = node.attrs["graph"]
    if len(sub.outputs) != 1 or len(sub.inputs) != len(node.inputs):
        return None
    out_shape = node.shape
    kinds = []
    for i in node.inputs:
        if tuple(i.shape) == tuple(out_shape):
            kinds.append("flat")
        elif i.size == 1:
            kinds.append("scalar")
        else:
            kinds.append("broadcast")
    if "broadcast" not in kinds:
        source = generate_source(sub, kinds)
        if source is None:
            return None
        loop = _compile(source, "fused_kernel")

        def run(*arrays, out):
            args = [np.ascontiguousarray(a).reshape(-1) if k == "flat" else a.reshape(-1)[0]
                    for a, k in zip(arrays, kinds)]
            loop(*args, out.reshape(-1))
            return out
    else:
        source = generate_source(sub, None, "fused_scalar")
        if source is None:
            return None
        sig = numba.from_dtype(node.dtype)(*[numba.from_dtype(i.dtype) for i in node.inputs])
        ufunc = _compile(source, "fused_scalar", sig)

        def run(*arrays, out):
            return ufunc(*arrays, out=out)

    run.__name__ = "fused_kernel_numba"
    run.source = source
    return run


REGISTRY.register("fused_elementwise", "numba", factory=True, inplace=True, name="numba.fused_elementwise")(
    fused_kernel)


# ----------------------------------------------------------------------------------------------------------
# Lab 4 kernels where they apply
# ----------------------------------------------------------------------------------------------------------

def _floats(*nodes) -> bool:
    return len({n.dtype for n in nodes}) == 1 and nodes[0].dtype in (np.float32, np.float64)


if _cpu is not None and hasattr(_cpu, "matmul"):
    @REGISTRY.register("matmul", "numba", threads="own-pool", name="numba.matmul",
                       when=lambda n: all(len(i.shape) == 2 for i in n.inputs) and _floats(*n.inputs))
    def matmul(a, b, *, out):
        np.copyto(out, _cpu.matmul(a, b))
        return out

if _cpu is not None and hasattr(_cpu, "softmax"):
    @REGISTRY.register("softmax", "numba", threads="own-pool", name="numba.softmax",
                       when=lambda n: n.attrs["axis"] is not None and len(n.shape) >= 1 and _floats(n))
    def softmax(x, *, out, axis):
        np.copyto(out, _cpu.softmax(x, axis))
        return out

if _cpu is not None and hasattr(_cpu, "reduce_sum"):
    @REGISTRY.register("sum", "numba", threads="own-pool", name="numba.reduce_sum",
                       when=lambda n: _floats(n.inputs[0]) and n.inputs[0].size > 0)
    def reduce_sum(x, *, out, axis, keepdims):
        np.copyto(out, _cpu.reduce_sum(x, axis=axis, keepdims=keepdims))
        return out
