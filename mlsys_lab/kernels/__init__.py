"""Kernels under the runtime: ``mlsys_lab.kernels.cpu`` (Numba, Lab 4) and ``mlsys_lab.kernels.cuda`` (Lab 5).

Both offer ``matmul(a, b)``, ``softmax(x, axis=-1)`` and ``reduce_sum(x, axis=None, keepdims=False)`` on
NumPy arrays. Neither is imported here: ``import mlsys_lab.kernels.cpu`` (or ``.cuda``) loads only what it
names, so using the CPU kernels never starts the CUDA machinery, and ``mlsys_lab.kernels.cpu`` also works
as an attribute after ``import mlsys_lab.kernels``.
"""

import importlib

__all__ = ["cpu", "cuda"]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
