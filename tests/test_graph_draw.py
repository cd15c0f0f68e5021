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
