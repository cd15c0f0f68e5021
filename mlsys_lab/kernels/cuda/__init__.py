"""Numba CUDA kernels (Lab 5): they run on a GPU when one is usable, else on Numba's CUDA simulator.

Importing this package decides, once per process, between a GPU and the simulator
(:mod:`~mlsys_lab.kernels.cuda.device`), *before* anything imports ``numba.cuda``; :func:`backend`
says which was chosen and :func:`describe` says it in a sentence for a notebook to print.

The operators (same contract as :mod:`mlsys_lab.kernels.cpu`): NumPy float32 arrays in, NumPy arrays
out; each call copies its inputs to the device, launches, and copies the result back.

* :func:`matmul` ``(a, b)``: ``a @ b`` with ``np.matmul``'s shape rules (tiled GEMM in shared memory);
* :func:`softmax` ``(x, axis=-1)``: one block per row, online max-and-sum;
* :func:`reduce_sum` ``(x, axis=None, keepdims=False)``: the warp-shuffle rung of the reduction ladder.

The lessons, one module each: :mod:`.vector_add` (grids and bounds), :mod:`.reduce` (the reduction
ladder), :mod:`.gemm` (tiling), :mod:`.softmax`, :mod:`.transpose` (coalescing and bank conflicts),
and :mod:`.ptx` (what the compiler makes of each kernel for a real GPU: registers, shared memory).

What the simulator cannot show: speed, coalescing, bank conflicts and races. It runs the same kernel
source, one Python thread per CUDA thread, so it checks that a kernel computes the right thing, and
nothing about how fast it would be. Use it at small sizes (tens of elements per side): it is slow.
"""

from . import device  # first: chooses GPU or simulator before numba.cuda is imported
from .device import CudaUnavailableError, backend, describe, selection_reason

device.configure()

from .gemm import gemm, matmul  # noqa: E402  (after the choice above)
from .reduce import reduce_sum, sum_1d  # noqa: E402
from .softmax import softmax  # noqa: E402
from .transpose import transpose  # noqa: E402
from .vector_add import vector_add  # noqa: E402

__all__ = [
    "CudaUnavailableError",
    "backend",
    "describe",
    "gemm",
    "matmul",
    "reduce_sum",
    "selection_reason",
    "softmax",
    "sum_1d",
    "transpose",
    "vector_add",
]
