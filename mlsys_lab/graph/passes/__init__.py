"""Graph passes and the pass manager.

Every pass is a function ``pass_(graph) -> int`` that rewrites the graph in place and returns its number
of rewrites; :class:`PassManager` runs a list of them on a copy, validating after each and logging node
counts. The passes, in the order :func:`mlsys_lab.graph.optimize` runs them:

========================================  =============================================================
``constant_fold``                         ops on constants only become constants
``simplify``                              ``x*1``, ``x+0``, ``-(-x)``, double transpose, reshape chains
``common_subexpression_elimination``      the same op on the same inputs is computed once
``dead_code_elimination``                 nodes no output needs are removed
``fuse_patterns``                         softmax / log-softmax; matmul + bias + activation
``fuse_elementwise``                      groups of elementwise ops become one kernel
========================================  =============================================================
"""

from .cse import COMMUTATIVE, common_subexpression_elimination
from .dce import dead_code_elimination
from .fold import constant_fold
from .fusion import ELEMENTWISE, elementwise_groups, expression, fuse_elementwise, scalar_source
from .manager import FixedPoint, PassManager, PassRecord
from .patterns import fuse_linear, fuse_patterns, fuse_softmax
from .simplify import simplify

# Short names, as the lab and the book call them.
cse = common_subexpression_elimination
dce = dead_code_elimination

__all__ = ["PassManager", "FixedPoint", "PassRecord", "constant_fold", "simplify",
           "common_subexpression_elimination", "cse", "dead_code_elimination", "dce", "fuse_patterns",
           "fuse_softmax", "fuse_linear", "fuse_elementwise", "elementwise_groups", "expression",
           "scalar_source", "ELEMENTWISE", "COMMUTATIVE"]
