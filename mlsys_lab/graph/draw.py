"""Pictures of graphs with matplotlib (no Graphviz needed): ``draw(graph)``, ``draw_before_after(g0, g1)``.

Layout: a node's row is its depth, the length of the longest path from a source (so every edge points
down); within a row, nodes are ordered by the mean position of their inputs (the barycenter heuristic of
Sugiyama-style layered drawing), which keeps most edges short and uncrossed. Colours show the op's kind
(legend on the figure): inputs blue, constants grey, elementwise orange, fused red, matmul green,
reductions purple, data movement yellow, softmax and losses teal, gradient ops pink. Each box shows the
op (or the input's name) and the value's type, e.g. ``relu`` / ``f32[32,256]``.
"""

from __future__ import annotations

from .ir import Graph, Node, format_dtype, format_shape

__all__ = ["draw", "draw_before_after", "layout", "KIND_COLORS"]

KIND_COLORS = {
    "input": "#9ecae1", "constant": "#d9d9d9", "elementwise": "#fdae6b", "fused": "#fb6a4a",
    "matmul": "#a1d99b", "reduction": "#bcbddc", "shape": "#fee391", "nn": "#80cdc1", "grad": "#fbb4c4",
    "unknown": "#ffffff",
}


def _kind(n: Node) -> str:
    if n.op in ("input", "constant"):
        return n.op
    return n.kind


def _label(n: Node) -> str:
    t = f"{format_dtype(n.dtype)}{format_shape(n.shape)}"
    if n.op == "input":
        return f"{n.name}\n{t}"
    if n.op == "constant":
        if n.size == 1:
            return f"{n.attrs['value'].reshape(())[()]:.4g}"
        return f"{n.name}\n{t}"
    if n.op == "fused_elementwise":
        return f"fused ({n.attrs['graph'].num_ops()} ops)\n{t}"
    if n.op == "fused_linear":
        act = n.attrs["activation"]
        return f"fused_linear{'+' + act if act else ''}\n{t}"
    return f"{n.op}\n{t}"


def layout(graph: Graph, constants: bool = True) -> dict:
    """``{node: (x, y)}``: rows by depth (y = -depth), columns by the barycenter heuristic."""
    order = [n for n in graph.topological_order() if constants or n.op != "constant"]
    shown = set(order)
    # Constants sit just above their first user rather than all in the top row.
    depth = {}
    for n in order:
        if n.op != "constant":
            depth[n] = 1 + max((depth[i] for i in n.inputs if i in shown and i.op != "constant"), default=-1)
    users = graph.users()
    for n in order:
        if n.op == "constant":
            depth[n] = min((depth[u] for u in users[n] if u in depth), default=1) - 1
    low = min(depth.values(), default=0)
    depth = {n: d - low for n, d in depth.items()}
    rows = {}
    for n in order:
        rows.setdefault(depth[n], []).append(n)
    pos = {}
    for d in sorted(rows):
        row = rows[d]
        row.sort(key=lambda n: n.op == "constant")  # ties: constants to the right
        if d > 0:
            keys = {}
            for k, n in enumerate(row):  # (list.sort empties the list while it sorts: compute keys first)
                xs = [pos[i][0] for i in n.inputs if i in pos]
                keys[n] = sum(xs) / len(xs) if xs else k
            row.sort(key=keys.__getitem__)
        width = len(row)
        for k, n in enumerate(row):
            pos[n] = (k - (width - 1) / 2, -d)
    return pos


def draw(graph: Graph, ax=None, title: str | None = None, constants: bool = True, fontsize: float = 7):
    """Draw ``graph`` on ``ax`` (a new figure if None) and return ``ax``.

    ``constants=False`` leaves constant nodes out (weights and scalars clutter large graphs). Outputs
    get a thick border.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    pos = layout(graph, constants)
    xs = [p[0] for p in pos.values()] or [0]
    ys = [p[1] for p in pos.values()] or [0]
    if ax is None:
        w = max(4.0, 1.9 * (max(xs) - min(xs) + 1))
        h = max(3.0, 0.85 * (max(ys) - min(ys) + 1))
        _, ax = plt.subplots(figsize=(min(w, 16), min(h, 30)))
    outputs = set(graph.outputs)
    for n, (x, y) in pos.items():
        for i in n.inputs:
            if i in pos:
                ax.annotate("", xy=(x, y + 0.18), xytext=(pos[i][0], pos[i][1] - 0.18),
                            arrowprops=dict(arrowstyle="->", color="#555555", lw=0.8, shrinkA=2, shrinkB=2),
                            zorder=1)
    for n, (x, y) in pos.items():
        ax.text(x, y, _label(n), ha="center", va="center", fontsize=fontsize, zorder=2,
                bbox=dict(boxstyle="round,pad=0.3", fc=KIND_COLORS.get(_kind(n), "#ffffff"),
                          ec="black", lw=2.0 if n in outputs else 0.6))
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.axis("off")
    kinds = sorted({_kind(n) for n in pos}, key=list(KIND_COLORS).index)
    ax.legend(handles=[Patch(fc=KIND_COLORS[k], ec="black", lw=0.5, label=k) for k in kinds],
              loc="lower left", fontsize=fontsize, frameon=False, bbox_to_anchor=(0, -0.02))
    ax.set_title(title if title is not None else f"{graph.name}: {graph.num_ops()} ops", fontsize=fontsize + 3)
    return ax


def draw_before_after(before: Graph, after: Graph, titles=None, constants: bool = True, figsize=None):
    """Two graphs side by side (e.g. before and after a pass); returns the figure."""
    import matplotlib.pyplot as plt

    rows = max(max((-p[1] for p in layout(g, constants).values()), default=0) for g in (before, after)) + 1
    cols = max(max(len([1 for p in layout(g, constants).values() if p[1] == -d]) for d in range(int(rows)))
               for g in (before, after))
    if figsize is None:
        figsize = (min(16, max(8, 3.6 * cols)), min(30, max(3.5, 0.9 * rows)))
    fig, axes = plt.subplots(1, 2, figsize=figsize)
    titles = titles or (f"before: {before.num_ops()} ops", f"after: {after.num_ops()} ops")
    draw(before, axes[0], titles[0], constants)
    draw(after, axes[1], titles[1], constants)
    fig.tight_layout()
    return fig
