"""Lab 2's solution notebook follows the lab conventions, and its student copy fails where it should.

The student copy of lab02, executed, runs every cell before its first exercise check and stops at that
check with NotImplementedError (and not before): the given code works without the answers, and the
checks really call the student's functions.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from mlsys_lab.course.student import BEGIN_SOLUTION, END_SOLUTION, STUB_RAISE, write_student_copies
from labtools import assert_notebook_conventions, code_cells, next_code_cell

ROOT = Path(__file__).resolve().parents[1]
LAB02 = ROOT / "labs" / "lab02_graph_passes.ipynb"
STUB = "# YOUR CODE HERE\n"


def expected_student_source(src: str) -> str:
    """The solution cell with each region cut out by a plain regex (independent of strip_solutions)."""
    pattern = re.compile(rf"^([ \t]*){re.escape(BEGIN_SOLUTION)}.*?^[ \t]*{re.escape(END_SOLUTION)}[^\n]*",
                         re.S | re.M)
    return pattern.sub(lambda m: f"{m.group(1)}{STUB}{m.group(1)}{STUB_RAISE}", src)


@pytest.fixture(scope="module")
def lab02():
    return nbformat.read(LAB02, as_version=4)


@pytest.fixture(scope="module")
def lab02_student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    copies = write_student_copies([LAB02], out)
    assert [c.source.resolve() for c in copies] == [LAB02.resolve()]
    return nbformat.read(out / LAB02.name, as_version=4)


def test_lab02_solution_notebook_follows_the_conventions(lab02):
    assert lab02.metadata["kernelspec"]["name"] == "python3"
    assert_notebook_conventions(lab02)
    solution = code_cells(lab02, BEGIN_SOLUTION)
    assert len(solution) == 5
    for i in solution:  # every exercise is followed by a cell that checks it
        assert lab02.cells[next_code_cell(lab02, i)].source.startswith("checks.check_")
    seeded = "\n".join(c.source for c in lab02.cells if c.cell_type == "code")
    assert "default_rng(0)" in seeded and "manual_seed(0)" in seeded


def test_lab02_student_copy_replaces_every_solution_region(lab02, lab02_student):
    assert len(lab02_student.cells) == len(lab02.cells)
    solution = set(code_cells(lab02, BEGIN_SOLUTION))
    assert lab02_student.metadata["mlsys_lab"]["student_copy"]["regions"] == len(solution) == 5
    for i, (sol, stu) in enumerate(zip(lab02.cells, lab02_student.cells)):
        assert sol.cell_type == stu.cell_type
        if stu.cell_type != "code":
            assert stu.source == sol.source
            continue
        assert BEGIN_SOLUTION not in stu.source and END_SOLUTION not in stu.source
        if i in solution:
            assert stu.source == expected_student_source(sol.source)
        else:
            assert stu.source == sol.source
    text = nbformat.writes(lab02_student)
    for answer in ["waiting[r] -= 1", "stack.extend(n.inputs)", "tuple(sorted(inputs))", "p[a] for a in axes",
                   "all(r in group for r in readers[p])"]:
        assert answer in nbformat.writes(lab02) and answer not in text
    # the helpers given next to an exercise stay in the student's copy
    assert "def attrs_key(node):" in text and "def is_const(node, value):" in text and "def fuse(" in text

