"""Lab 2: computation graphs. A program becomes a graph; the graph is checked, differentiated, optimised.

>>> import numpy as np
>>> from mlsys_lab.graph import trace, optimize, interpret
>>> g = trace(lambda x: (x * 1.0 + 0.0).tanh().exp(), np.ones((2, 3), np.float32))
>>> g.num_ops(), optimize(g).num_ops()        # x*1 and x+0 simplified away, tanh+exp fused
(4, 1)
>>> float(interpret(optimize(g), np.zeros((2, 3), np.float32))[0][0, 0])
1.0

Modules (the layers import downward only: graph uses autograd and nn, never the other way round):

* :mod:`.ir`: ``Graph``, ``Node``, the op set ``OPS``, the text form, validation, errors naming nodes
* :mod:`.trace`: ``trace(fn, *example_inputs)`` records an eager program or an ``nn.Module``
* :mod:`.shapes`: shape and dtype inference (``ShapeError`` names the node)
* :mod:`.interpret`: the reference NumPy interpreter; ``KERNELS``, the per-op kernel registry
* :mod:`.autodiff`: ``grad(graph)`` builds the backward graph; ``sgd_update`` adds the update step
* :mod:`.passes`: ``PassManager`` and the passes; :mod:`.optimize`: ``optimize(graph)``
* :mod:`.draw`: matplotlib pictures of a graph, before and after a pass
"""

from .autodiff import grad, sgd_update
from .draw import draw, draw_before_after
from .interpret import KERNELS, evaluate, interpret
from .ir import OPS, CycleError, Graph, GraphError, Node, OpInfo, ShapeError, register_op
from .optimize import default_passes, optimize
from .passes import FixedPoint, PassManager
from .shapes import infer_shapes
from .trace import TraceError, trace

__all__ = ["Graph", "Node", "OPS", "OpInfo", "GraphError", "CycleError", "ShapeError", "TraceError",
           "register_op", "trace", "infer_shapes", "interpret", "evaluate", "KERNELS", "grad", "sgd_update",
           "optimize", "default_passes", "PassManager", "FixedPoint", "draw", "draw_before_after"]
