"""The ``"reference"`` backend: the graph layer's interpreter kernels, adapted to the ``out`` convention.

``mlsys_lab.graph.interpret.KERNELS[op](*inputs, **attrs)`` returns a new array; here its result is
copied into the planned buffer. One extra copy per call, so this is the backend of last resort: every
other backend falls back to it, which keeps every op the IR can interpret runnable by the runtime (the
losses and their gradients, ``max_grad``, ops added to the IR later) without a hand-written ``out=`` kernel.
"""

from __future__ import annotations

import numpy as np

from ..graph.interpret import KERNELS
from .registry import REGISTRY


def _wrap(op: str, kernel):
    def factory(node):
        attrs = dict(node.attrs)

        def run(*arrays, out):
            np.copyto(out, kernel(*arrays, **attrs))
            return out

        run.__name__ = f"reference_{op}"
        return run

    return factory


# Views and fused ops have dedicated kernels in the numpy backend; everything else gets a reference one.
for _op, _kernel in KERNELS.items():
    REGISTRY.register(_op, "reference", factory=True, name=f"reference.{_op}")(
        _wrap(_op, _kernel))
