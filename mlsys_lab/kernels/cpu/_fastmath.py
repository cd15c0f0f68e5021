"""A vectorisable ``exp`` for float32, as math libraries write one (used inside the softmax and GELU kernels).

Numba lowers ``np.exp`` on a scalar to a call into the C maths library, one element at a time: a loop that
calls it cannot be vectorised (NumPy's own ``np.exp`` on a whole array uses SIMD code, which is why it is
fast). So the kernels use :func:`exp_f32`, written the way such libraries do it:

1. **Range reduction.** Write ``x = n ln2 + r`` with ``n = round(x / ln2)`` and ``|r| <= ln2 / 2``; then
   ``exp(x) = 2**n * exp(r)``. ``ln2`` is split in a high and a low part so that ``x - n ln2`` is exact.
2. **Polynomial.** ``exp(r)`` on that small interval is a degree-7 polynomial (Cephes ``expf``
   coefficients), evaluated with Horner's rule: fused multiply-adds only.
3. **Scale by** ``2**n`` by building the float directly: exponent bits ``n + 127`` shifted into place
   (:func:`f32_from_bits` reinterprets an integer's bits as a float32, like a C union).

Every step is plain arithmetic or a select, so LLVM vectorises a loop over it. It is compiled without
reassociation (which would let LLVM regroup the polynomial and lose about a bit). Accuracy: within 2 ulp
of the exact result for normal outputs (the tests check this; measured about 1 ulp); results below
float32's smallest normal number (``x < -87.34``) are flushed to zero, above ``88.72`` they are ``inf``.
For float64 the kernels call ``np.exp`` (correct, not vectorised). Inputs are assumed finite.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

#: Fast-math flags for the kernels: reassociation (vectorised sums), contraction (FMA), approximate
#: functions, reciprocals, no signed zeros -- but not "no NaNs"/"no infs", so inf and NaN stay meaningful.
FASTMATH = {"reassoc", "contract", "afn", "arcp", "nsz"}

_F32 = np.float32
LOG2E = _F32(1.4426950408889634)
LN2_HI = _F32(0.693359375)
LN2_LO = _F32(-2.12194440e-4)
EXP_LO = _F32(-87.33654)  # below: flush to 0 (smallest normal float32 is exp(-87.336...))
EXP_HI = _F32(88.72283)   # above: inf


@intrinsic
def f32_from_bits(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (no conversion: a bit cast)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        (v,) = args
        if bits.bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif bits.bitwidth < 32:
            v = builder.zext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def fmax(typingctx, a, b):
    """``max(a, b)`` for two floats of the same type as LLVM's ``maxnum``, which the loop vectoriser turns
    into a vector max reduction (Python's ``max`` becomes compare + select, which it does not)."""
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        lty = context.get_value_type(a)
        fn = builder.module.declare_intrinsic("llvm.maxnum", [lty], ir.FunctionType(lty, [lty, lty]))
        return builder.call(fn, args, fastmath=("nsz",))

    return a(a, b), codegen


@intrinsic
def prefetch(typingctx, arr, idx):
    """Ask the CPU to start loading the cache line holding ``arr[idx]`` (LLVM's ``prefetch``, read, keep).

    Hardware prefetchers follow a stream only within a 4 KiB page; a kernel that works row by row on
    rows of one page each can name the next row itself, so its loads overlap the current row's work.
    """
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic("llvm.prefetch", [ptr.type],
                                              ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]))
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])   # read, high locality, data cache
        return context.get_dummy_value()

    return types.none(arr, idx), codegen


@njit(fastmath={"contract", "nsz"}, cache=True, nogil=True)   # no reassociation: keep Horner's order exact
def exp_f32(x):
    """``exp(x)`` for a float32 ``x``: range reduction, a polynomial and exponent bits (vectorisable)."""
    xc = min(max(x, EXP_LO), EXP_HI)
    n = np.floor(xc * LOG2E + _F32(0.5))
    r = xc - n * LN2_HI
    r = r - n * LN2_LO
    p = _F32(1.9875691500e-4)
    p = p * r + _F32(1.3981999507e-3)
    p = p * r + _F32(8.3334519073e-3)
    p = p * r + _F32(4.1665795894e-2)
    p = p * r + _F32(1.6666665459e-1)
    p = p * r + _F32(5.0000001201e-1)
    p = p * r * r + r + _F32(1.0)
    if n > _F32(127.0):  # exp(x) for x in (88.38, 88.72] is finite but 2**128 is not: use 2 * 2**127
        p = p * _F32(2.0)
        n = _F32(127.0)
    scale = f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
    res = p * scale
    if x < EXP_LO:
        res = _F32(0.0)
    elif x > EXP_HI:
        res = _F32(np.inf)
    return res


@njit(fastmath={"contract", "nsz"}, cache=True, nogil=True)
def exp_f32_nonpos(x):
    """:func:`exp_f32` for ``x <= 0`` only (softmax's ``x - max``): no overflow handling, about 20% fewer
    instructions. Same accuracy; results for ``x > 0`` are wrong above ``88.38`` (not checked)."""
    xc = max(x, EXP_LO)
    n = np.floor(xc * LOG2E + _F32(0.5))
    r = xc - n * LN2_HI
    r = r - n * LN2_LO
    p = _F32(1.9875691500e-4)
    p = p * r + _F32(1.3981999507e-3)
    p = p * r + _F32(8.3334519073e-3)
    p = p * r + _F32(4.1665795894e-2)
    p = p * r + _F32(1.6666665459e-1)
    p = p * r + _F32(5.0000001201e-1)
    p = p * r * r + r + _F32(1.0)
    res = p * f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
    if x < EXP_LO:
        res = _F32(0.0)
    return res


def fast_exp(x):
    """``exp`` for use inside Numba kernels: :func:`exp_f32` for float32, ``np.exp`` for float64."""
    raise NotImplementedError("fast_exp is only callable from Numba-compiled code")


@overload(fast_exp)
def _fast_exp_impl(x):
    if x == types.float32:
        return lambda x: exp_f32(x)
    if isinstance(x, types.Float):
        return lambda x: np.exp(x)
    return None


def fast_exp_nonpos(x):
    """Like :func:`fast_exp` for arguments known to be <= 0 (float32: :func:`exp_f32_nonpos`)."""
    raise NotImplementedError("fast_exp_nonpos is only callable from Numba-compiled code")


@overload(fast_exp_nonpos)
def _fast_exp_nonpos_impl(x):
    if x == types.float32:
        return lambda x: exp_f32_nonpos(x)
    if isinstance(x, types.Float):
        return lambda x: np.exp(x)
    return None


def cast_like(value, like):
    """``value`` converted to the float type of ``like`` (for typed constants inside Numba kernels)."""
    raise NotImplementedError("cast_like is only callable from Numba-compiled code")


@overload(cast_like)
def _cast_like_impl(value, like):
    if like == types.float32:
        return lambda value, like: np.float32(value)
    if isinstance(like, types.Float):
        return lambda value, like: np.float64(value)
    return None
