"""Constant folding: compute at compile time what depends on constants only."""

from __future__ import annotations

from ..interpret import KERNELS
from ..ir import Graph
from ._util import replace

__all__ = ["constant_fold"]


def constant_fold(graph: Graph, max_elements: int = 1 << 20) -> int:
    """Replace every op whose inputs are all constants by a constant holding its value.

    Values are computed with the reference kernels, so folding cannot change results. Folding runs in
    topological order, so a chain of constant ops folds in one pass. A result with more than
    ``max_elements`` elements is not folded: folding ``broadcast_to(0.0, (4096, 4096))`` would turn a
    scalar into 64 MB stored in the graph. Returns the number of nodes folded.

    Typical wins: a transposed weight in an inference graph (``W.T`` computed once, not per call), the
    arithmetic on Python numbers in a formula (``math.sqrt(2 / math.pi)`` written with Tensors), and
    ``1 - p`` for a constant ``p``.
    """
    folded = 0
    for n in list(graph.topological_order()):
        if n.op in ("input", "constant") or not n.inputs:
            continue
        if not all(i.op == "constant" for i in n.inputs) or n.size > max_elements:
            continue
        value = KERNELS[n.op](*[i.attrs["value"] for i in n.inputs], **n.attrs)
        value = value.astype(n.dtype, copy=False).reshape(n.shape)
        if value.base is not None or not value.flags.writeable:
            value = value.copy()  # a view would keep the inputs alive, and broadcast views are read-only
        const = graph.constant(value)
        replace(graph, n, const)
        folded += 1
    return folded
