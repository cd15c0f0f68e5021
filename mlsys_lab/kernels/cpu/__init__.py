"""Numba CPU kernels (Lab 4): the operators under the runtime, and the optimisation ladders behind them.

The contract shared with ``mlsys_lab.kernels.cuda``, on NumPy arrays:

* :func:`matmul` ``(a, b)`` -- 2-D ``a @ b``; float32 runs the packed, register-blocked, multi-threaded GEMM;
* :func:`softmax` ``(x, axis=-1)`` -- the one-pass online softmax;
* :func:`reduce_sum` ``(x, axis=None, keepdims=False)`` -- sums over any axes (reduced axes moved last).

Also :func:`layernorm`, :func:`gelu_tanh` and :func:`bias_gelu_tanh` (fused kernels), and the ladders, one
module per concept, each step a function you can time:

* ``combine`` -- CSAPP chapter 5's combine versions, cycles per element (:data:`COMBINE_LADDER`, :func:`fold`);
* ``gemm`` -- naive, loop reordering, cache blocking, packing + register blocking, threads (:data:`GEMM_LADDER`);
* ``reduce`` -- row and column sums behind :func:`reduce_sum`;
* ``softmax_kernels`` -- NumPy's five passes, a fused three-pass kernel, the online kernel (:data:`SOFTMAX_LADDER`);
* ``norm`` and ``elementwise`` -- fused layer norm and GELU;
* ``roofline`` -- measured peak GFLOP/s and triad bandwidth; ``timing`` -- interleaved, median-and-range timing.

Depends on NumPy and Numba only. Importing it configures Numba's code generation (512-bit vectors where
the CPU has AVX-512; see ``_jit``): import it before compiling other Numba code. Compiled kernels are
cached on disk (``__pycache__``), so only the first import on a machine pays for compilation.
"""

from . import _jit  # noqa: I001  (first: compiler settings must precede every kernel definition)
from ._jit import vector_info
from .combine import COMBINE_LADDER, estimate_clock_ghz, fold, measure_cpe
from .elementwise import bias_gelu_tanh, gelu_tanh, gelu_tanh_numpy
from .gemm import (GEMM_LADDER, gemm_blocked, gemm_naive, gemm_packed, gemm_parallel, gemm_reorder, matmul,
                   microkernel_tile)
from .norm import layernorm, layernorm_numpy
from .reduce import reduce_sum, sum_cols, sum_rows
from .roofline import attainable_gflops, measure_bandwidth, measure_peak_gflops, roofline_point, triad
from .softmax_kernels import SOFTMAX_LADDER, softmax, softmax_numpy, softmax_online, softmax_three_pass

__all__ = [
    "matmul", "softmax", "reduce_sum",
    "layernorm", "layernorm_numpy", "gelu_tanh", "bias_gelu_tanh", "gelu_tanh_numpy",
    "GEMM_LADDER", "gemm_naive", "gemm_reorder", "gemm_blocked", "gemm_packed", "gemm_parallel",
    "microkernel_tile",
    "SOFTMAX_LADDER", "softmax_numpy", "softmax_three_pass", "softmax_online",
    "sum_rows", "sum_cols",
    "COMBINE_LADDER", "fold", "measure_cpe", "estimate_clock_ghz",
    "triad", "measure_bandwidth", "measure_peak_gflops", "attainable_gflops", "roofline_point",
    "vector_info",
]
