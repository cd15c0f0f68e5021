"""Pictures of graphs with matplotlib (no Graphviz needed): ``draw(graph)``, ``draw_before_after(g0, g1)``.

Layout: a node's row is its depth, the length of the longest path from a source (so every edge points
down), and inputs and constants sit just above their first user; an edge that spans several rows
bends through a lane in each row it crosses instead of cutting through boxes; within a row, nodes and
lanes are ordered by the mean position of their neighbours (the barycenter heuristic of Sugiyama-style
layered drawing), which keeps most edges short and uncrossed. Colours show the op's kind
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


#: Horizontal room a node's box and a long edge's lane take in a row (in box widths).
_BOX_WIDTH, _LANE_WIDTH = 1.0, 0.45


def _depths(graph: Graph, order: list) -> dict:
    """Row of each node: longest path from a source for ops; inputs and constants sit just above their
    first user (rather than all in the top row), which keeps their edges short."""
    shown = set(order)
    sources = {n for n in order if n.op in ("input", "constant")}
    depth = {}
    for n in order:
        if n not in sources:
            depth[n] = 1 + max((depth[i] for i in n.inputs if i in shown and i not in sources), default=0)
    users = graph.users()
    for n in order:
        if n in sources:
            depth[n] = min((depth[u] for u in users[n] if u in depth), default=1) - 1
    low = min(depth.values(), default=0)
    return {n: d - low for n, d in depth.items()}


def _width(item) -> float:
    return _LANE_WIDTH if isinstance(item, tuple) else _BOX_WIDTH


def _closest_spaced(wanted: list, gaps: list) -> list:
    """Positions x_0 <= x_1 <= ... closest to ``wanted`` (least squares) with x_{k+1} - x_k >= gaps[k]:
    shift out the gaps, then isotonic regression by pooling adjacent violators."""
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    blocks = []                                    # [mean, count]
    for w, o in zip(wanted, offsets):
        blocks.append([w - o, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m1, c1), (m2, c2) = blocks[-2], blocks.pop()
            blocks[-1] = [(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2]
    flat = [m for m, c in blocks for _ in range(c)]
    return [v + o for v, o in zip(flat, offsets)]


def _layout(graph: Graph, constants: bool = True) -> tuple[dict, dict]:
    """Positions of the nodes and the bends of the long edges.

    An edge that spans several rows gets a waypoint (a "lane") in every row it crosses, ordered with
    the nodes of that row, so that it passes between boxes instead of through them (the dummy nodes of
    Sugiyama-style layered drawing). Rows are ordered by the barycenter heuristic, one sweep down and
    one up. Returns ``({node: (x, y)}, {(producer, consumer): [(x, y), ...] waypoints})``.
    """
    order = [n for n in graph.topological_order() if constants or n.op != "constant"]
    shown = set(order)
    depth = _depths(graph, order)
    # Items of a row: real nodes, and ("lane", producer, consumer, row) for long edges.
    preds: dict = {n: [i for i in n.inputs if i in shown] for n in order}
    succs: dict = {n: [] for n in order}
    rows: dict = {}
    for n in order:
        rows.setdefault(depth[n], []).append(n)
    for n in order:
        for k, i in enumerate(list(preds[n])):
            prev = i
            for d in range(depth[i] + 1, depth[n]):
                lane = ("lane", i, n, d)
                rows.setdefault(d, []).append(lane)
                preds[lane], succs[lane] = [prev], []
                succs[prev].append(lane)
                prev = lane
            preds[n][k] = prev
            succs[prev].append(n)
    for row in rows.values():
        row.sort(key=lambda n: isinstance(n, Node) and n.op == "constant")   # ties: constants right
    x: dict = {}

    def place(row):
        widths = [_width(n) for n in row]
        total = sum(widths)
        left = -total / 2
        for n, w in zip(row, widths):
            x[n] = left + w / 2
            left += w

    def sweep(depths, neighbours):
        for d in depths:
            row = rows[d]
            keys = {}
            for k, n in enumerate(row):       # (list.sort empties the list while it sorts: keys first)
                xs = [x[m] for m in neighbours[n] if m in x]
                keys[n] = sum(xs) / len(xs) if xs else x.get(n, k)
            row.sort(key=keys.__getitem__)
            place(row)

    levels = sorted(rows)
    for d in levels:
        place(rows[d])
    sweep(levels[1:], preds)
    sweep(levels[-2::-1], succs)
    sweep(levels[1:], preds)
    # With the order fixed, move each row towards its neighbours (keeping the order and the spacing),
    # which straightens the lanes of long edges.
    for _ in range(6):
        for d in levels[1:] + levels[-2::-1]:
            row = rows[d]
            wanted = []
            for n in row:
                xs = [x[m] for m in preds[n] + succs[n]]
                wanted.append(sum(xs) / len(xs) if xs else x[n])
            gaps = [(_width(a) + _width(b)) / 2 for a, b in zip(row, row[1:])]
            for n, v in zip(row, _closest_spaced(wanted, gaps)):
                x[n] = v
    pos = {n: (x[n], -depth[n]) for n in order}
    bends = {}
    for d in levels:
        for item in rows[d]:
            if isinstance(item, tuple):
                _, i, n, row = item
                bends.setdefault((i, n), []).append((x[item], -row))
    return pos, bends


def layout(graph: Graph, constants: bool = True) -> dict:
    """``{node: (x, y)}``: rows by depth (y = -depth), columns by the barycenter heuristic, with room
    left in each row for the long edges that cross it (see :func:`_layout`)."""
    return _layout(graph, constants)[0]


def draw(graph: Graph, ax=None, title: str | None = None, constants: bool = True, fontsize: float = 7):
    """Draw ``graph`` on ``ax`` (a new figure if None) and return ``ax``.

    ``constants=False`` leaves constant nodes out (weights and scalars clutter large graphs). Outputs
    get a thick border. An edge that spans several rows bends through lanes between the boxes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    pos, bends = _layout(graph, constants)
    xs = [p[0] for p in pos.values()] + [b[0] for path in bends.values() for b in path] or [0]
    ys = [p[1] for p in pos.values()] or [0]
    if ax is None:
        w = max(4.0, 1.9 * (max(xs) - min(xs) + 1))
        h = max(3.0, 0.85 * (max(ys) - min(ys) + 1))
        _, ax = plt.subplots(figsize=(min(w, 16), min(h, 30)))
    outputs = set(graph.outputs)
    edge = dict(color="#555555", lw=0.8)
    for n, (x, y) in pos.items():
        for i in n.inputs:
            if i not in pos:
                continue
            path = [(pos[i][0], pos[i][1] - 0.18), *bends.get((i, n), []), (x, y + 0.18)]
            if len(path) > 2:
                ax.plot([p[0] for p in path[:-1]], [p[1] for p in path[:-1]], zorder=1, **edge)
            ax.annotate("", xy=path[-1], xytext=path[-2], zorder=1,
                        arrowprops=dict(arrowstyle="->", shrinkA=0 if len(path) > 2 else 2, shrinkB=2, **edge))
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
