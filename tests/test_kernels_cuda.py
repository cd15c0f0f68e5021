"""CUDA kernels (mlsys_lab.kernels.cuda) against NumPy, on a GPU if present, else on the simulator.

The simulator runs one Python thread per CUDA thread, so every case is small (about 32 per side) and
the Hypothesis tests draw few examples. Shapes are chosen to be *not* multiples of the tile and block
sizes, with empty and one-element edges. Subprocess tests check how the backend is chosen.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mlsys_lab.kernels.cuda as kc
from mlsys_lab.kernels.cuda import device
from mlsys_lab.kernels.cuda.gemm import gemm
from mlsys_lab.kernels.cuda.reduce import LADDER, block_partials, reduce_sum, sum_1d, sum_rows
from mlsys_lab.kernels.cuda.transpose import transpose
from mlsys_lab.kernels.cuda.vector_add import vector_add

F32 = np.float32
FEW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rand(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(F32)


def np_softmax(x, axis=-1):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def assert_sum_close(got, x, axis=None, keepdims=False):
    want = np.sum(x.astype(np.float64), axis=axis, keepdims=keepdims)
    bound = np.sum(np.abs(x.astype(np.float64)), axis=axis, keepdims=keepdims)
    assert np.shape(got) == np.shape(want)
    assert np.all(np.abs(np.asarray(got, dtype=np.float64) - want) <= 1e-5 * bound + 1e-6)


# ------------------------------------------------------------------------------------------------
# Backend choice


def test_backend_is_gpu_or_simulator_and_matches_the_probe():
    assert kc.backend() in ("gpu", "simulator")
    if "simulator" in kc.describe():
        assert kc.backend() == "simulator"
    if not device._probe_gpu()[0]:
        # No GPU here: unless the environment forced GPU mode, we must be on the simulator.
        assert kc.backend() == "simulator"
        assert os.environ[device.ENV_VAR] == "1"
    assert kc.selection_reason()


def _run_python(code, env_updates, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_updates)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )


no_gpu_here = pytest.mark.skipif(device._probe_gpu()[0], reason="these cases need a machine without a GPU")


@no_gpu_here
def test_without_gpu_the_simulator_is_enabled_before_numba_cuda_is_imported():
    code = """
        import os, sys
        import numba  # importing numba itself is fine; numba.cuda must not be imported yet
        assert "numba.cuda" not in sys.modules
        import mlsys_lab.kernels.cuda as kc
        import numpy as np
        ones = np.ones(3, np.float32)
        print(kc.backend(), os.environ["NUMBA_ENABLE_CUDASIM"], kc.vector_add(ones, ones).tolist())
    """
    proc = _run_python(code, {}, drop=[device.ENV_VAR])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["simulator", "1", "[2.0,", "2.0,", "2.0]"]


@no_gpu_here
def test_forced_gpu_mode_without_gpu_gives_a_clear_error():
    code = """
        import numpy as np
        import mlsys_lab.kernels.cuda as kc
        try:
            kc.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))
        except kc.CudaUnavailableError as e:
            print("refused:", e)
    """
    proc = _run_python(code, {device.ENV_VAR: "0"})
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout and "NUMBA_ENABLE_CUDASIM=1" in proc.stdout


@no_gpu_here
def test_numba_cuda_imported_first_is_reported_not_silently_broken():
    code = """
        from numba import cuda  # before our package: GPU mode, and there is no GPU
        import numpy as np
        import mlsys_lab.kernels.cuda as kc
        print(kc.selection_reason())
        try:
            kc.backend()
        except kc.CudaUnavailableError as e:
            print("refused:", e)
    """
    proc = _run_python(code, {}, drop=[device.ENV_VAR])
    assert proc.returncode == 0, proc.stderr
    assert "imported before" in proc.stdout and "refused:" in proc.stdout


# ------------------------------------------------------------------------------------------------
# Warp intrinsics: real ones on a GPU, the emulation in device.py on the simulator

from numba import cuda  # noqa: E402  (after mlsys_lab.kernels.cuda has chosen the mode)


@cuda.jit
def _shuffles(x, down, up, xor, idx):
    i = cuda.threadIdx.x
    v = x[i]
    down[i] = cuda.shfl_down_sync(0xFFFFFFFF, v, 3)
    up[i] = cuda.shfl_up_sync(0xFFFFFFFF, v, 5)
    xor[i] = cuda.shfl_xor_sync(0xFFFFFFFF, v, 6)
    cuda.syncwarp()
    idx[i] = cuda.shfl_sync(0xFFFFFFFF, v, 7)


def test_warp_shuffles_follow_cuda_semantics():
    n = 64  # two warps: lanes never read across a warp boundary
    x = np.arange(n, dtype=F32)
    outs = [np.zeros(n, F32) for _ in range(4)]
    _shuffles[1, n](x, *outs)
    down, up, xor, idx = outs
    lane = np.arange(n) % 32
    base = np.arange(n) - lane
    np.testing.assert_array_equal(down, np.where(lane + 3 < 32, x + 3, x))
    np.testing.assert_array_equal(up, np.where(lane >= 5, x - 5, x))
    np.testing.assert_array_equal(xor, base + (lane ^ 6))
    np.testing.assert_array_equal(idx, base + 7)


@cuda.jit
def _divergent(x):
    if cuda.threadIdx.x < 16:  # half the warp never reaches the shuffle
        x[cuda.threadIdx.x] = cuda.shfl_down_sync(0xFFFFFFFF, x[cuda.threadIdx.x], 1)


@pytest.mark.skipif(kc.backend() != "simulator", reason="undefined behaviour on a GPU")
def test_simulated_divergent_shuffle_is_an_error_not_a_hang(monkeypatch):
    monkeypatch.setattr(device, "_WARP_TIMEOUT_S", 0.5)
    with pytest.raises(RuntimeError, match="not every lane"):
        _divergent[1, 32](np.zeros(32, F32))


# ------------------------------------------------------------------------------------------------
# Vector add


@pytest.mark.parametrize("shape", [(1,), (33,), (3, 7, 5)])
@pytest.mark.parametrize("grid_stride", [False, True])
def test_vector_add(shape, grid_stride):
    a, b = rand(*shape, seed=1), rand(*shape, seed=2)
    out = vector_add(a, b, threads_per_block=32, grid_stride=grid_stride, blocks=1 if grid_stride else None)
    assert out.shape == shape and out.dtype == F32
    np.testing.assert_array_equal(out, a + b)


def test_vector_add_edges_and_errors():
    e = np.zeros((0, 3), F32)
    assert vector_add(e, e).shape == (0, 3)
    a = rand(6, 4)
    np.testing.assert_array_equal(vector_add(a.T, a.T, threads_per_block=32), 2 * a.T)  # non-contiguous
    with pytest.raises(ValueError, match=r"\(6, 4\) and \(4, 6\)"):
        vector_add(a, a.T)
    with pytest.raises(TypeError, match="float32"):
        vector_add(a.astype(np.float64), a)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        vector_add([1.0], [2.0])
    with pytest.raises(ValueError, match="threads_per_block"):
        vector_add(a, a, threads_per_block=2048)


# ------------------------------------------------------------------------------------------------
# Reductions


@pytest.mark.parametrize("variant", list(LADDER))
@pytest.mark.parametrize("n", [1, 31, 150])
def test_reduction_ladder_sums_like_numpy(variant, n):
    threads = 32 if variant != "neighbored" else 64
    x = rand(n, seed=n)
    assert_sum_close(sum_1d(x, variant, threads_per_block=threads), x)


@pytest.mark.parametrize("variant", list(LADDER))
def test_block_partials_one_per_block(variant):
    x = rand(100, seed=3)
    per_thread = LADDER[variant][1]
    partials = block_partials(x, variant, threads_per_block=32)
    assert partials.shape == (-(-100 // (32 * per_thread)),)
    assert_sum_close(partials.sum(dtype=np.float64), x)
    assert block_partials(np.zeros(0, F32), variant).shape == (0,)


def test_reduction_launch_configuration_errors():
    x = rand(10)
    with pytest.raises(ValueError, match="power of two"):
        sum_1d(x, "interleaved", threads_per_block=48)
    with pytest.raises(ValueError, match="between 1 and 256"):
        sum_1d(x, "interleaved", threads_per_block=512)
    with pytest.raises(ValueError, match="between 32 and 1024"):
        sum_1d(x, "warp", threads_per_block=16)
    with pytest.raises(ValueError, match="unknown reduction variant"):
        sum_1d(x, "magic")
    with pytest.raises(ValueError, match="1-D"):
        sum_1d(rand(2, 2))


def test_reduce_sum_edges():
    assert reduce_sum(np.zeros(0, F32)) == 0 and isinstance(reduce_sum(np.zeros(0, F32)), np.float32)
    assert reduce_sum(np.array(2.5, F32)) == np.float32(2.5)
    assert reduce_sum(np.array([7.0], F32)) == np.float32(7.0)
    np.testing.assert_array_equal(reduce_sum(np.zeros((3, 0), F32), axis=1), np.zeros(3, F32))
    assert reduce_sum(np.zeros((0, 3), F32), axis=1).shape == (0,)
    x = rand(2, 3)
    np.testing.assert_array_equal(reduce_sum(x, axis=()), x)
    assert reduce_sum(x, keepdims=True).shape == (1, 1)
    assert_sum_close(reduce_sum(x.T, axis=0), x.T, axis=0)  # non-contiguous input


def test_reduce_sum_bad_input():
    x = rand(2, 3)
    with pytest.raises(np.exceptions.AxisError):
        reduce_sum(x, axis=2)
    with pytest.raises(ValueError, match="repeated|duplicate"):
        reduce_sum(x, axis=(0, 0))
    with pytest.raises(TypeError, match="float32"):
        reduce_sum(x.astype(np.int32))
    with pytest.raises(ValueError, match="2-D"):
        sum_rows(rand(3))


@st.composite
def array_and_axis(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9))
    x = draw(hnp.arrays(F32, shape, elements=st.floats(-100, 100, width=32)))
    axes = draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1),
                          st.lists(st.integers(0, x.ndim - 1), unique=True).map(tuple)))
    return x, axes, draw(st.booleans())


@FEW
@given(array_and_axis())
def test_reduce_sum_matches_numpy(case):
    x, axis, keepdims = case
    assert_sum_close(reduce_sum(x, axis=axis, keepdims=keepdims), x, axis=axis, keepdims=keepdims)


# ------------------------------------------------------------------------------------------------
# GEMM and matmul


@pytest.mark.parametrize("variant", ["naive", "tiled"])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (17, 33, 5), (33, 16, 20)])
def test_gemm_matches_numpy(variant, m, k, n):
    a, b = rand(m, k, seed=m), rand(k, n, seed=n)
    c = gemm(a, b, variant)
    assert c.shape == (m, n) and c.dtype == F32
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5 * k)


def test_gemm_edges_and_errors():
    np.testing.assert_array_equal(gemm(np.zeros((3, 0), F32), np.zeros((0, 4), F32)), np.zeros((3, 4)))
    assert gemm(np.zeros((0, 2), F32), rand(2, 5)).shape == (0, 5)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        gemm(rand(2, 3), rand(4, 5))
    with pytest.raises(ValueError, match="2-D"):
        gemm(rand(3), rand(3, 2))
    with pytest.raises(ValueError, match="unknown gemm variant"):
        gemm(rand(2, 2), rand(2, 2), "fast")
    with pytest.raises(TypeError, match="float32"):
        gemm(rand(2, 2).astype(np.float16), rand(2, 2))


@pytest.mark.parametrize(
    "sa,sb",
    [((5,), (5, 3)), ((4, 5), (5,)), ((6,), (6,)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((0, 3), (3, 2))],
)
def test_matmul_follows_numpy_shape_rules(sa, sb):
    a, b = rand(*sa, seed=1), rand(*sb, seed=2)
    got, want = kc.matmul(a, b), np.matmul(a.astype(np.float64), b)
    assert np.shape(got) == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_matmul_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(5, 2\)"):
        kc.matmul(rand(3, 4), rand(5, 2))
    with pytest.raises(ValueError, match=r"batch.*\(2, 3, 4\) and \(3, 4, 5\)"):
        kc.matmul(rand(2, 3, 4), rand(3, 4, 5))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        kc.matmul(np.array(1.0, F32), rand(1))
    with pytest.raises(TypeError, match="float32"):
        kc.matmul(rand(2, 2), rand(2, 2).astype(np.float64))


@FEW
@given(st.integers(1, 20), st.integers(0, 20), st.integers(1, 20), st.integers(0, 2**16))
def test_matmul_matches_numpy(m, k, n, seed):
    a, b = rand(m, k, seed=seed), rand(k, n, seed=seed + 1)
    np.testing.assert_allclose(kc.matmul(a, b), a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5 * (k + 1))


# ------------------------------------------------------------------------------------------------
# Softmax


@pytest.mark.parametrize("shape,axis", [((1, 1), -1), ((5, 33), -1), ((7, 3), 0), ((2, 3, 4), 1), ((9,), 0)])
def test_softmax_matches_numpy(shape, axis):
    x = rand(*shape, seed=4, scale=3.0)
    y = kc.softmax(x, axis=axis)
    assert y.shape == x.shape and y.dtype == F32 and y.flags.c_contiguous
    np.testing.assert_allclose(y, np_softmax(x, axis), rtol=1e-5, atol=1e-7)


def test_softmax_long_row_uses_the_block_stride_loop():
    x = rand(1, 300, seed=5)  # more elements than threads: each thread takes several
    np.testing.assert_allclose(kc.softmax(x), np_softmax(x), rtol=1e-5, atol=1e-7)


def test_softmax_is_stable_and_handles_minus_inf():
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1001.0, -np.inf]], F32)
    y = kc.softmax(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, np_softmax(x), rtol=1e-5, atol=1e-7)
    assert y[1, 2] == 0


def test_softmax_edges_and_errors():
    assert kc.softmax(np.zeros((0, 4), F32)).shape == (0, 4)
    assert kc.softmax(np.zeros((3, 0), F32), axis=0).shape == (3, 0)
    with pytest.raises(np.exceptions.AxisError):
        kc.softmax(rand(2, 3), axis=2)
    with pytest.raises(np.exceptions.AxisError):
        kc.softmax(np.array(1.0, F32))
    with pytest.raises(TypeError, match="axis must be an int"):
        kc.softmax(rand(2, 3), axis=(0, 1))
    with pytest.raises(TypeError, match="float32"):
        kc.softmax(np.ones((2, 2)))


@FEW
@given(hnp.arrays(F32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=10),
                  elements=st.floats(-50, 50, width=32)), st.data())
def test_softmax_matches_numpy_property(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    y = kc.softmax(x, axis=axis)
    np.testing.assert_allclose(y, np_softmax(x, axis), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Transpose


@pytest.mark.parametrize("variant", ["naive", "tiled", "padded"])
@pytest.mark.parametrize("shape", [(1, 1), (33, 31), (5, 40)])
def test_transpose_is_exact(variant, shape):
    x = rand(*shape, seed=6)
    y = transpose(x, variant)
    assert y.flags.c_contiguous
    np.testing.assert_array_equal(y, x.T)


def test_transpose_edges_and_errors():
    assert transpose(np.zeros((0, 3), F32)).shape == (3, 0)
    np.testing.assert_array_equal(transpose(rand(4, 3).T), rand(4, 3))  # non-contiguous input
    with pytest.raises(ValueError, match="2-D"):
        transpose(rand(3))
    with pytest.raises(ValueError, match="unknown transpose variant"):
        transpose(rand(2, 2), "diagonal")
    with pytest.raises(TypeError, match="float32"):
        transpose(np.ones((2, 2), np.int64))
