"""Helpers the lab tests share: finding exercise and check cells, and the conventions every lab keeps."""

from __future__ import annotations

import re


def code_cells(nb, text: str) -> list[int]:
    """Indices of the code cells whose source contains ``text``."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and text in c.source]


def next_code_cell(nb, index: int) -> int:
    """Index of the first code cell after cell ``index``."""
    return next(j for j in range(index + 1, len(nb.cells)) if nb.cells[j].cell_type == "code")


def assert_notebook_conventions(nb) -> None:
    """Committed without outputs; one top-level heading, in the first cell; heading levels never skip."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit the lab without outputs"
    headings = [(len(m.group(1)), m.group(2)) for c in nb.cells if c.cell_type == "markdown"
                for m in re.finditer(r"^(#+) (.*)$", c.source, re.M)]
    assert nb.cells[0].source.startswith("# ") and [h for h in headings if h[0] == 1] == [headings[0]]
    for (before, _), (level, title) in zip(headings, headings[1:]):
        assert level <= before + 1, f"heading level skipped at {title!r}"
