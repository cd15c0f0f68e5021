"""Numba CPU kernels (mlsys_lab.kernels.cpu) against NumPy.

Property tests draw small shapes that are *not* multiples of the tiles (GEMM's MR x NR register tile and
KC-deep panels, softmax's 512-element blocks), with empty and one-element edges; every error path is
checked for a message that names the problem. Compiled kernels are cached on disk, so only the first run
on a machine pays for Numba's compilation. No test asserts a time.
"""

import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mlsys_lab.kernels.cpu as K
from mlsys_lab.kernels.cpu import _fastmath, _microkernels, combine, gemm, softmax_kernels, timing

F32, F64 = np.float32, np.float64
SOME = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MR, NR = K.microkernel_tile()
KC = gemm.KC


def rand(*shape, seed=0, dtype=F32, scale=1.0):
    return np.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, dtype=dtype)


def floats32(lo=-4.0, hi=4.0):
    return st.floats(lo, hi, width=32, allow_nan=False, allow_infinity=False)


def arrays(shape_st, lo=-4.0, hi=4.0, dtype=F32):
    elems = floats32(lo, hi) if dtype == F32 else st.floats(lo, hi, allow_nan=False)
    return shape_st.flatmap(lambda s: hnp.arrays(dtype, s, elements=elems))


def assert_gemm_close(c, a, b):
    want = a.astype(F64) @ b.astype(F64)
    assert c.shape == want.shape
    bound = np.abs(a.astype(F64)) @ np.abs(b.astype(F64))      # error scale of a float32 dot product
    assert np.all(np.abs(c - want) <= 1e-5 * bound + 1e-6)


def assert_sum_close(got, x, axis=None, keepdims=False):
    want = np.sum(x.astype(F64), axis=axis, keepdims=keepdims)
    bound = np.sum(np.abs(x.astype(F64)), axis=axis, keepdims=keepdims)
    assert np.shape(got) == np.shape(want) and got.dtype == x.dtype
    assert np.all(np.abs(np.asarray(got, F64) - want) <= 1e-5 * bound + 1e-6)


def np_softmax(x, axis=-1):
    x = x.astype(F64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_gelu(x):
    x = x.astype(F64)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


# ------------------------------------------------------------------------------------------------
# GEMM ladder

SIDES = st.tuples(st.integers(0, 3 * MR + 1), st.integers(0, KC + 20), st.integers(0, 2 * NR + 3))


@SOME
@given(SIDES, st.integers(0, 2**32 - 1))
def test_gemm_ladder_matches_numpy(mkn, seed):
    m, k, n = mkn
    a, b = rand(m, k, seed=seed), rand(k, n, seed=seed + 1)
    for name, f in K.GEMM_LADDER.items():
        c = f(a, b)
        assert c.dtype == F32 and c.flags.c_contiguous, name
        assert_gemm_close(c, a, b)


@pytest.mark.parametrize("m,k,n", [(0, 0, 0), (0, 5, 3), (3, 0, 4), (1, 1, 1), (MR + 1, KC + 1, NR + 1),
                                   (MR, 2 * KC, NR), (1, 3 * KC + 7, 1), (2 * gemm.MC + 3, 70, 3 * NR - 1)])
def test_gemm_edges(m, k, n):
    a, b = rand(m, k, seed=1), rand(k, n, seed=2)
    for f in (K.gemm_packed, K.gemm_parallel, K.gemm_blocked, K.matmul):
        assert_gemm_close(f(a, b), a, b)


def test_gemm_parallel_uses_threads_on_big_enough_work():
    # above PARALLEL_MIN_WORK: several row blocks, B packed in parallel, dynamic scheduling
    a, b = rand(2 * gemm.MC + 5, KC + 33, seed=3), rand(KC + 33, 4 * NR + 5, seed=4)
    assert a.shape[0] * b.shape[1] * a.shape[1] // 8 >= K._jit.PARALLEL_MIN_WORK
    assert_gemm_close(K.gemm_parallel(a, b), a, b)


def test_matmul_layouts_and_float64():
    a, b = rand(40, 70, seed=5), rand(70, 33, seed=6)
    assert_gemm_close(K.matmul(a, b), a, b)
    at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    assert_gemm_close(K.matmul(at.T, bt.T), a, b)                          # transposed views
    assert_gemm_close(K.matmul(np.asfortranarray(a), b[:, ::1]), a, b)
    assert_gemm_close(K.matmul(a[::2], b), a[::2], b)                      # strided rows
    a64, b64 = a.astype(F64), b.astype(F64)
    c64 = K.matmul(a64, b64)
    assert c64.dtype == F64
    np.testing.assert_allclose(c64, a64 @ b64, rtol=1e-12, atol=1e-12)


def test_gemm_errors_name_the_problem():
    a, b = rand(4, 5), rand(5, 3)
    with pytest.raises(ValueError, match=r"\(4, 5\) and \(4, 3\).*not aligned"):
        K.matmul(a, rand(4, 3))
    with pytest.raises(TypeError, match="dtype int64"):
        K.matmul(a.astype(np.int64), b.astype(np.int64))
    with pytest.raises(TypeError, match="same dtype.*float32 and float64"):
        K.matmul(a, b.astype(F64))
    with pytest.raises(TypeError, match="float16.*supported: float32"):
        K.gemm_packed(a.astype(np.float16), b.astype(np.float16))
    with pytest.raises(TypeError, match="supported: float32$"):
        K.gemm_naive(a.astype(F64), b.astype(F64))                         # ladder steps are float32
    with pytest.raises(ValueError, match="must be 2-D, got shape \\(5,\\)"):
        K.matmul(a, b[:, 0])
    with pytest.raises(ValueError, match="must be 2-D"):
        K.matmul(a[None], b)
    with pytest.raises(TypeError, match="NumPy ndarray, got list"):
        K.matmul(a.tolist(), b)
    for f in K.GEMM_LADDER.values():
        with pytest.raises(ValueError, match="C-contiguous"):
            f(np.ascontiguousarray(a.T).T, b)


def test_microkernels_file_is_the_generator_output():
    for mr, nr in ((8, 32), (6, 16)):
        fn = getattr(_microkernels, f"micro_{mr}x{nr}")
        assert inspect.getsource(fn) == gemm.render_microkernel(mr, nr)


def test_microkernel_generator_computes_a_block():
    ns = {"np": np}
    exec(gemm.render_microkernel(3, 5), ns)   # plain Python, no Numba: the spec of the unrolled code
    ap, bp, ct = rand(7, 3, seed=7), rand(7, 5, seed=8), np.zeros((3, 5), F32)
    ns["micro_3x5"](7, ap, bp, ct)
    np.testing.assert_allclose(ct, ap.T @ bp, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not (K._jit.HAS_AVX2 or K._jit.HAS_AVX512), reason="vector ISA check is for x86-64")
def test_microkernel_is_vectorised_by_slp():
    # An uncached copy, compiled the way gemm.py compiles it: SLP on, contraction only.
    from numba import njit

    with K._jit.slp_vectorize():
        micro = njit(gemm._MICRO_SIG, fastmath={"contract"})(getattr(_microkernels, f"micro_{MR}x{NR}"))
    asm = micro.inspect_asm(micro.signatures[0])
    reg = "zmm" if K.vector_info()["vector_bits"] == 512 else "ymm"
    vfma = re.findall(rf"vfmadd\w*ps\s+[^\n]*%{reg}", asm)
    assert len(vfma) >= MR * NR // (16 if reg == "zmm" else 8), f"{len(vfma)} vector FMAs on {reg}"


# ------------------------------------------------------------------------------------------------
# reduce_sum

SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)


@st.composite
def arrays_and_axes(draw):
    x = draw(arrays(SHAPES))
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none" or x.ndim == 0:
        return x, None
    if kind == "int":
        return x, draw(st.integers(-x.ndim, x.ndim - 1))
    axes = draw(st.lists(st.integers(0, x.ndim - 1), unique=True, max_size=x.ndim))
    return x, tuple(a - x.ndim if draw(st.booleans()) else a for a in axes)


@SOME
@given(arrays_and_axes(), st.booleans(), st.booleans())
def test_reduce_sum_matches_numpy(x_axis, keepdims, transpose):
    x, axis = x_axis
    if transpose:
        x = x.T                         # same values, another layout: exercises the copying path
    assert_sum_close(K.reduce_sum(x, axis, keepdims), x, axis, keepdims)


@pytest.mark.parametrize("shape,axis", [((3, 70_001), 1), ((3, 70_001), None), ((70_001, 3), 0),
                                        ((2, 3, 40_000), (0, 1)), ((5, 0, 4), 1), ((5, 0, 4), (0, 2)),
                                        ((1,), 0), ((), None), ((4, 5), ())])
def test_reduce_sum_chunks_columns_and_edges(shape, axis):
    x = rand(*shape, seed=9)
    for keepdims in (False, True):
        assert_sum_close(K.reduce_sum(x, axis, keepdims), x, axis, keepdims)
    assert_sum_close(K.reduce_sum(x.astype(F64), axis), x.astype(F64), axis)


def test_reduce_sum_full_reduction_is_a_scalar_like_numpy():
    x = rand(3, 4, seed=20)
    s = K.reduce_sum(x)
    assert isinstance(s, np.float32) and not isinstance(s, np.ndarray)
    assert isinstance(K.reduce_sum(x, (0, 1), keepdims=True), np.ndarray)
    assert isinstance(K.reduce_sum(np.array(2.0, F64)), np.float64)


def test_sum_rows_and_cols():
    x = rand(7, 33, seed=10)
    np.testing.assert_allclose(K.sum_rows(x), x.sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(K.sum_cols(x), x.sum(0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.sum_rows(x.T)
    with pytest.raises(ValueError, match="2-D"):
        K.sum_cols(x[0])


def test_reduce_sum_errors_name_the_problem():
    x = rand(2, 3)
    with pytest.raises(np.exceptions.AxisError, match="axis 2 is out of bounds for an array of dimension 2"):
        K.reduce_sum(x, 2)
    with pytest.raises(np.exceptions.AxisError, match="axis -3 is out of bounds"):
        K.reduce_sum(x, (0, -3))
    with pytest.raises(ValueError, match="repeats axis 1"):
        K.reduce_sum(x, (1, -1))
    for bad in (1.5, "0", True, (0, None)):
        with pytest.raises(TypeError, match="axis must be"):
            K.reduce_sum(x, bad)
    with pytest.raises(TypeError, match="dtype int32"):
        K.reduce_sum(np.ones(3, np.int32))
    with pytest.raises(TypeError, match="ndarray, got float"):
        K.reduce_sum(1.0)


# ------------------------------------------------------------------------------------------------
# softmax

@SOME
@given(arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7), -30, 30), st.data())
def test_softmax_matches_numpy(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    y = K.softmax(x, axis)
    assert y.shape == x.shape and y.dtype == F32
    if x.size:
        np.testing.assert_allclose(y, np_softmax(x, axis), rtol=2e-6, atol=1e-7)
        np.testing.assert_allclose(y.sum(axis), 1.0, rtol=1e-5)


@FEW
@given(st.integers(1, 3), st.sampled_from([1, 2, 1030, 2047, 2048, 2049, 4100]), st.floats(0.1, 80),
       st.integers(0, 99))
def test_softmax_ladder_rows_cross_blocks(rows, cols, scale, seed):
    # rows longer than the online kernel's block (2048), with the maximum somewhere in a later block
    assert 4100 > 2 * softmax_kernels.BLOCK
    x = rand(rows, cols, seed=seed, scale=scale)
    x[:, cols // 2] += scale
    want = np_softmax(x)
    for name, f in K.SOFTMAX_LADDER.items():
        np.testing.assert_allclose(f(x), want, rtol=5e-6, atol=1e-7, err_msg=name)


def test_softmax_float64_layouts_and_large_inputs():
    x = rand(300, 1100, seed=11, scale=20.0)                  # big enough for the threaded path
    np.testing.assert_allclose(K.softmax(x), np_softmax(x), rtol=5e-6, atol=1e-7)
    x64 = x.astype(F64)
    np.testing.assert_allclose(K.softmax(x64), np_softmax(x64), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(K.softmax(x.T, axis=0), np_softmax(x.T, axis=0), rtol=5e-6, atol=1e-7)
    big = np.array([[1e4, 1e4 - 1, -1e4], [-87.0, -88.0, -100.0]], F32)   # no overflow, no NaN
    np.testing.assert_allclose(K.softmax(big), np_softmax(big), rtol=1e-6, atol=1e-30)


def test_softmax_rows_into_out_and_in_place():
    x = rand(5, 700, seed=16, scale=5.0)
    want = np_softmax(x)
    for f in (K.softmax_three_pass, K.softmax_online):
        out = np.full_like(x, np.nan)
        assert f(x, out) is out
        np.testing.assert_allclose(out, want, rtol=5e-6, atol=1e-7)
        y = x.copy()
        f(y, y)                                                # in place
        np.testing.assert_allclose(y, want, rtol=5e-6, atol=1e-7)
        with pytest.raises(ValueError, match=r"out has shape \(5, 699\), expected \(5, 700\)"):
            f(x, out[:, :699])
        with pytest.raises(TypeError, match="out has dtype float64; supported: float32"):
            f(x, out.astype(F64))
        with pytest.raises(ValueError, match="out must be C-contiguous"):
            f(x, np.asfortranarray(out))


def test_softmax_errors_name_the_problem():
    with pytest.raises(np.exceptions.AxisError, match="axis -1 is out of bounds for an array of dimension 0"):
        K.softmax(np.array(1.0, F32))
    with pytest.raises(np.exceptions.AxisError, match="axis 2 is out of bounds"):
        K.softmax(rand(2, 3), axis=2)
    with pytest.raises(TypeError, match="axis must be an int"):
        K.softmax(rand(2, 3), axis=(0, 1))
    with pytest.raises(TypeError, match="dtype int64"):
        K.softmax(np.arange(3))
    with pytest.raises(ValueError, match="C-contiguous"):
        K.softmax_online(rand(3, 4).T)
    with pytest.raises(ValueError, match="must be 2-D"):
        K.softmax_three_pass(rand(3))


# ------------------------------------------------------------------------------------------------
# layer norm and fused elementwise

@SOME
@given(arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9), -8, 8), st.booleans(),
       st.integers(0, 99))
def test_layernorm_matches_numpy(x, affine, seed):
    n = x.shape[-1]
    w, b = (rand(n, seed=seed), rand(n, seed=seed + 1)) if affine else (None, None)
    y = K.layernorm(x, w, b, eps=1e-5)
    assert y.shape == x.shape and y.dtype == F32
    if x.size == 0:
        return
    x64 = x.astype(F64)
    want = K.layernorm_numpy(x64, None if w is None else w.astype(F64), None if b is None else b.astype(F64), 1e-5)
    # float32 rounding of x and of the mean is amplified by 1/std (up to 1/sqrt(eps) for a constant row)
    rstd = 1 / np.sqrt(x64.var(axis=-1, keepdims=True) + 1e-5)
    wmax = 1.0 if w is None else max(1.0, float(np.abs(w).max()))
    tol = 1e-6 * (np.abs(x64).max(axis=-1, keepdims=True) * rstd + 1) * wmax * 8
    assert np.all(np.abs(y - want) <= tol)


def test_layernorm_float64_layout_and_errors():
    x = rand(600, 300, seed=12, scale=3.0)
    np.testing.assert_allclose(K.layernorm(x.T), K.layernorm_numpy(x.T.astype(F64)), rtol=1e-4, atol=2e-4)
    x64 = x.astype(F64)
    np.testing.assert_allclose(K.layernorm(x64, eps=1e-3), K.layernorm_numpy(x64, eps=1e-3), rtol=1e-10,
                               atol=1e-10)
    with pytest.raises(ValueError, match=r"weight must have shape \(300,\) to match x of shape \(600, 300\), "
                                         r"got \(299,\)"):
        K.layernorm(x, np.ones(299, F32))
    with pytest.raises(TypeError, match="x and bias must have the same dtype"):
        K.layernorm(x, None, np.zeros(300, F64))
    with pytest.raises(ValueError, match="0-d"):
        K.layernorm(np.array(1.0, F32))
    with pytest.raises(ValueError, match="eps must be positive"):
        K.layernorm(x, eps=0.0)


@SOME
@given(arrays(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9), -12, 12), st.booleans())
def test_gelu_tanh_matches_numpy(x, transpose):
    x = x.T if transpose else x
    y = K.gelu_tanh(x)
    assert y.shape == x.shape and y.dtype == F32
    np.testing.assert_allclose(y, np_gelu(x), rtol=2e-6, atol=2e-7)


@FEW
@given(arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9), -6, 6), st.integers(0, 99))
def test_bias_gelu_tanh_matches_numpy(x, seed):
    bias = rand(x.shape[-1], seed=seed)
    np.testing.assert_allclose(K.bias_gelu_tanh(x, bias), np_gelu(x + bias), rtol=2e-6, atol=2e-7)


def test_gelu_extremes_float64_and_errors():
    x = np.array([-1e4, -100.0, -10.0, -1e-3, 0.0, 1e-3, 10.0, 100.0, 1e4], F32)
    y = K.gelu_tanh(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, np_gelu(x), rtol=2e-6, atol=1e-30)
    x64 = rand(300, 500, seed=13, dtype=F64)
    np.testing.assert_allclose(K.gelu_tanh(x64), np_gelu(x64), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(K.gelu_tanh_numpy(x64), np_gelu(x64), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"bias of shape \(4,\) does not match the last axis of x of shape \(2, 3\)"):
        K.bias_gelu_tanh(rand(2, 3), rand(4))
    with pytest.raises(TypeError, match="same dtype"):
        K.bias_gelu_tanh(rand(2, 3), rand(3, dtype=F64))
    with pytest.raises(TypeError, match="dtype int64"):
        K.gelu_tanh(np.arange(4))


def test_layernorm_and_gelu_write_into_out():
    x = rand(6, 40, seed=17, scale=3.0)
    w, b = rand(40, seed=18), rand(40, seed=19)
    cases = [(lambda o: K.layernorm(x, w, b, out=o), K.layernorm(x, w, b)),
             (lambda o: K.gelu_tanh(x, out=o), K.gelu_tanh(x)),
             (lambda o: K.bias_gelu_tanh(x, b, out=o), K.bias_gelu_tanh(x, b))]
    for f, want in cases:
        out = np.full_like(x, np.nan)
        assert f(out) is out
        np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)   # vector and scalar paths may differ by an ulp
        with pytest.raises(ValueError, match=r"out has shape \(6, 39\), expected \(6, 40\)"):
            f(out[:, :39])
        with pytest.raises(ValueError, match="out must be C-contiguous"):
            f(np.asfortranarray(out))
        with pytest.raises(TypeError, match="out has dtype float64"):
            f(out.astype(F64))
    y = x.copy()
    np.testing.assert_allclose(K.gelu_tanh(y, out=y), K.gelu_tanh(x), rtol=1e-6, atol=1e-6)          # in place
    y = x.copy()
    np.testing.assert_allclose(K.layernorm(y, w, b, out=y), K.layernorm(x, w, b), rtol=1e-6, atol=1e-6)


def test_exp_f32_is_accurate_to_2_ulp():
    from numba import njit

    @njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = _fastmath.exp_f32(x[i])

    @njit
    def apply_nonpos(x, out):
        for i in range(x.size):
            out[i] = _fastmath.exp_f32_nonpos(x[i])

    x = np.concatenate([np.linspace(-87.3, 88.7, 400_001, dtype=F32), np.array([0, -0.0, 1, -1], F32)])
    out = np.empty_like(x)
    apply(x, out)
    want = np.exp(x.astype(F64))
    ulp = np.spacing(want.astype(F32)).astype(F64)
    assert np.max(np.abs(out - want) / ulp) <= 2
    neg = x <= 0
    apply_nonpos(x, out)
    assert np.max(np.abs(out[neg] - want[neg]) / ulp[neg]) <= 2
    edge = np.array([-1000, -87.5, 88.8, 1000], F32)
    apply(edge, out[:4])
    assert list(out[:4]) == [0.0, 0.0, np.inf, np.inf]
    apply_nonpos(edge[:2], out[:2])
    assert list(out[:2]) == [0.0, 0.0]


# ------------------------------------------------------------------------------------------------
# CSAPP combine ladder

@SOME
@given(hnp.arrays(F64, st.integers(0, 40), elements=st.floats(0.5, 2.0)), st.sampled_from(combine.OPS))
def test_combine_ladder_matches_numpy(x, op):
    # float64 (CSAPP's double), the type the chapter measures; reassociating versions round differently
    ref = np.prod(x) if op == "mul" else np.sum(x)
    for version in K.COMBINE_LADDER:
        assert K.fold(x, op, version) == pytest.approx(ref, rel=1e-12, abs=1e-12), version


@FEW
@given(hnp.arrays(np.int64, st.integers(0, 40), elements=st.integers(-50, 50)), st.sampled_from(combine.OPS),
       st.sampled_from(["combine1", "combine4", "unroll8x8", "unroll8x1a"]))
def test_combine_integers_wrap_like_c(x, op, version):
    ref = np.prod(x) if op == "mul" else np.sum(x)           # int64 wraps, like C and like the kernels
    assert K.fold(x, op, version) == ref


def test_combine_measurement_and_errors():
    res = K.measure_cpe("combine4", np.ones(1000), "add", repeats=2, ghz=3.0)
    assert set(res) == {"ns_per_element", "median_ns_per_element", "cpe", "ghz"}
    assert res["cpe"] == pytest.approx(3.0 * res["ns_per_element"])
    assert K.estimate_clock_ghz(n=10_000, repeats=1) > 0
    with pytest.raises(ValueError, match="op must be one of"):
        K.fold(np.ones(3), "max")
    with pytest.raises(ValueError, match="unknown version 'combine9'"):
        K.fold(np.ones(3), "add", "combine9")
    with pytest.raises(ValueError, match="must be 1-D"):
        K.fold(np.ones((2, 2)))
    with pytest.raises(ValueError, match="C-contiguous"):
        K.fold(np.ones(6)[::2])
    with pytest.raises(TypeError, match="dtype complex128"):
        K.fold(np.ones(3, complex))


# ------------------------------------------------------------------------------------------------
# roofline and timing helpers

def test_triad_and_roofline_helpers():
    b, c = rand(1001, seed=14), rand(1001, seed=15)
    a = np.empty_like(b)
    K.triad(a, b, c, 3.0)
    np.testing.assert_allclose(a, b + np.float32(3.0) * c, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        K.triad(a[:5], b, c, 1.0)
    with pytest.raises(TypeError, match="a and c must have the same dtype"):
        K.triad(a, b, c.astype(F64), 1.0)
    bw = K.measure_bandwidth(3 << 20, repeats=2)
    assert bw["best_gbs"] > 0 and bw["total_bytes"] == 3 * bw["n"] * 4
    peak = K.measure_peak_gflops(seconds=0.01, repeats=1)
    assert peak["best_gflops"] > 0 and peak["tile"] == (MR, NR)
    np.testing.assert_allclose(K.attainable_gflops([0.5, 100.0], 200.0, 20.0), [10.0, 200.0])
    p = K.roofline_point(flops=2e9, nbytes=1e9, seconds=0.5)
    assert p == {"intensity": 2.0, "gflops": 4.0, "gbs": 2.0}


def test_timing_helpers():
    calls = []
    res = timing.sample({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]       # warm-up, then the order rotates
    assert set(res) == {"a", "b"} and all(len(v) == 3 for v in res.values())
    s = timing.summarize([3.0, 1.0, 2.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    np.testing.assert_allclose(timing.paired_ratios([2.0, 4.0], [1.0, 2.0]), [2.0, 2.0])
    assert timing.markdown_table(["x", "y"], [[1, "a|b"]]) == "| x | y |\n|:---|---:|\n| 1 | a\\|b |"
    info = timing.machine_info()
    assert info["logical_cpus"] >= 1 and info["vector_bits"] in (128, 256, 512)


# ------------------------------------------------------------------------------------------------
# Layering: kernels depend on NumPy and Numba only

KERNELS_DIR = Path(K.__file__).parent
ALLOWED_TOP = {"numpy", "numba", "llvmlite", "__future__"} | set(sys.stdlib_module_names)


def test_kernel_modules_import_only_numpy_numba_and_stdlib():
    for path in sorted(KERNELS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:          # relative: inside mlsys_lab.kernels.cpu
                    continue
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                optional = name == "threadpoolctl" and path.name == "timing.py"  # optional, inside a try
                assert top in ALLOWED_TOP or optional, f"{path.name} imports {name}"


def test_importing_kernels_does_not_import_autograd_or_cuda():
    # Stub the top-level package so that its own __init__ (which imports autograd) does not run.
    code = textwrap.dedent(f"""
        import sys, types
        pkg = types.ModuleType("mlsys_lab")
        pkg.__path__ = [{str(KERNELS_DIR.parent.parent)!r}]
        sys.modules["mlsys_lab"] = pkg
        import mlsys_lab.kernels.cpu as K
        import numpy as np
        assert K.matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)).sum() == 12
        bad = sorted(m for m in sys.modules if m.startswith(("mlsys_lab.autograd", "mlsys_lab.kernels.cuda",
                                                            "torch", "mlsys_lab.nn")))
        assert not bad, bad
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=str(KERNELS_DIR.parents[2]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_vector_info_reports_the_compile_settings():
    info = K.vector_info()
    assert set(info) == {"cpu", "avx2", "avx512", "wide_vectors", "vector_bits", "note"}
    if info["wide_vectors"]:
        assert info["avx512"] and info["vector_bits"] == 512
    assert isinstance(info["note"], str) and info["note"]
