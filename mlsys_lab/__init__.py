"""mlsys_lab: the mini ML stack built lab by lab in the course.

``from mlsys_lab import Tensor``; ``import mlsys_lab.functional as F``; ``mlsys_lab.nn``, ``mlsys_lab.optim``,
``mlsys_lab.data`` and later layers are imported on first use, so ``import mlsys_lab`` stays cheap.
"""

import importlib

from mlsys_lab.autograd import Tensor, no_grad

__version__ = "0.1.0"
__all__ = ["Tensor", "no_grad", "__version__"]

_SUBMODULES = {"autograd", "functional", "nn", "optim", "data", "graph", "kernels", "runtime", "serving", "course"}


def __getattr__(name):
    # Lazy subpackages: ``mlsys_lab.nn`` works after a plain ``import mlsys_lab``.
    if name in _SUBMODULES:
        return importlib.import_module(f"mlsys_lab.{name}")
    raise AttributeError(f"module 'mlsys_lab' has no attribute {name!r}")
