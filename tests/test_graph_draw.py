"""Pictures of graphs: every node drawn once, edges pointing down, before/after figures."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mlsys_lab.graph import draw, draw_before_after, optimize, trace  # noqa: E402
from mlsys_lab.graph.draw import layout  # noqa: E402


def gelu_tanh(x):
    return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)).tanh())


def test_layout_puts_every_producer_above_its_consumers():
    g = trace(gelu_tanh, np.ones((4, 4), np.float32))
    pos = layout(g)
    assert set(pos) == set(g.nodes)
    for n in g.nodes:
        for i in n.inputs:
            assert pos[i][1] > pos[n][1]
    assert len(set(pos.values())) == len(pos)  # no two boxes on top of each other
    assert len(layout(g, constants=False)) == len(g) - len(g.constants)


def test_draw_one_box_per_node_and_before_after_figure():
    g = trace(gelu_tanh, np.ones((4, 4), np.float32))
    ax = draw(g)
    labels = [t.get_text() for t in ax.texts if t.get_text()]  # (arrows are empty annotations)
    assert len(labels) == len(g) and "tanh\nf32[4,4]" in labels and "x\nf32[4,4]" in labels
    assert ax.get_title() == "gelu_tanh: 8 ops"
    plt.close(ax.figure)
    fig = draw_before_after(g, optimize(g))
    left, right = fig.axes[:2]
    assert left.get_title() == "before: 8 ops" and right.get_title() == "after: 1 ops"
    assert "fused (8 ops)\nf32[4,4]" in [t.get_text() for t in right.texts]
    plt.close(fig)


def test_long_edges_bend_between_boxes_instead_of_through_them():
    from mlsys_lab.graph.draw import _BOX_WIDTH, _LANE_WIDTH, _layout
    from mlsys_lab.runtime.examples import mlp_training_step

    g = mlp_training_step(batch=32)
    pos, bends = _layout(g, constants=False)
    long_edges = 0
    for n in pos:
        for i in n.inputs:
            if i not in pos:
                continue
            path = [pos[i], *bends.get((i, n), []), pos[n]]
            # One waypoint in every row the edge crosses, so that each drawn segment spans one row.
            assert [round(y1 - y2) for (_, y1), (_, y2) in zip(path, path[1:])] == [1] * (len(path) - 1)
            long_edges += len(path) > 2
            for bx, by in path[1:-1]:
                for m, (mx, my) in pos.items():
                    if my == by:
                        assert abs(mx - bx) >= (_BOX_WIDTH + _LANE_WIDTH) / 2 - 1e-9, (i, n, m)
    assert long_edges > 5
    # Inputs sit just above their first user: the weights of the last layer are not in the top row.
    weight = next(n for n in pos if n.op == "input" and n.name == "4.weight")
    assert pos[weight][1] < 0
