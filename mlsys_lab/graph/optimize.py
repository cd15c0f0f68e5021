"""``optimize(graph)``: the default pass pipeline.

1. Clean-up to a fixed point: constant folding, algebraic simplification, CSE, DCE. Each can expose work
   for the others (folding ``sqrt(2/pi)`` leaves dead constants; CSE makes two users of one value, ...),
   so the group repeats until a round changes nothing.
2. Pattern fusion (softmax, matmul + bias + activation), then DCE of the ops it replaced. Patterns go
   before elementwise fusion, which would otherwise swallow the bias add and the activation.
3. Elementwise fusion of what is left, then DCE.

The result is a new graph (the argument is not changed) whose ``meta["pass_history"]`` lists every pass
application with node counts before and after (``PassManager.report`` prints it).
"""

from __future__ import annotations

from .ir import Graph
from .passes import (FixedPoint, PassManager, common_subexpression_elimination, constant_fold,
                     dead_code_elimination, fuse_elementwise, fuse_patterns, simplify)

__all__ = ["optimize", "default_passes"]


def default_passes(fuse: bool = True) -> list:
    """The default pipeline as a list for :class:`PassManager` (``fuse=False``: clean-up only)."""
    passes = [FixedPoint([constant_fold, simplify, common_subexpression_elimination, dead_code_elimination],
                         name="cleanup")]
    if fuse:
        passes += [fuse_patterns, dead_code_elimination, fuse_elementwise, dead_code_elimination]
    return passes


def optimize(graph: Graph, fuse: bool = True, validate: bool = True) -> Graph:
    """Return an optimised copy of ``graph`` (see the module docstring); ``fuse=False`` skips fusion."""
    return PassManager(default_passes(fuse), validate=validate).run(graph)
