"""``import mlsys_lab.functional as F``: softmax, log_softmax, cross_entropy, einsum, relu, gelu, ...

A re-export of :mod:`mlsys_lab.autograd.functional`, so user code does not depend on where the ops live.
"""

from mlsys_lab.autograd.functional import *  # noqa: F401,F403
from mlsys_lab.autograd.functional import __all__  # noqa: F401
