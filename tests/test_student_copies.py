"""Student copies: the transformation itself, and what it does to Lab 1.

The lab tests prove the checks can fail: the student copy of Lab 1, executed, stops at its first
exercise check with NotImplementedError, and not before.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mlsys_lab.course.student import (
    BEGIN_SOLUTION,
    END_SOLUTION,
    HIDDEN_SOLUTION_TAG,
    STUB_RAISE,
    StudentCopyError,
    make_student_notebook,
    strip_solutions,
    write_student_copies,
)
from labtools import assert_notebook_conventions

ROOT = Path(__file__).resolve().parents[1]
LAB01 = ROOT / "labs" / "lab01_autograd.ipynb"
STUB = "# YOUR CODE HERE\n"


def notebook(*sources, name_outputs=True):
    """A notebook with one markdown cell, then one code cell per source (each with an output)."""
    cells = [new_markdown_cell("# Title\n\nThe markers are `### BEGIN SOLUTION` / `### END SOLUTION`.")]
    for i, src in enumerate(sources):
        cell = new_code_cell(src, execution_count=i + 1)
        if name_outputs:
            cell.outputs = [new_output("stream", name="stdout", text="the answer is 42\n")]
        cells.append(cell)
    return new_notebook(cells=cells)


# ------------------------------------------------------------------------- the pure transformation ----

def test_function_body_becomes_an_indented_stub_that_raises():
    src = (
        "def f(x):\n"
        "    y = x + 1\n"
        f"    {BEGIN_SOLUTION}\n"
        "    z = y * 2\n"
        "    return z\n"
        f"    {END_SOLUTION}\n"
        "\n"
        "print('defined')"
    )
    student = make_student_notebook(notebook(src))
    out = student.cells[1].source
    assert out == (
        "def f(x):\n"
        "    y = x + 1\n"
        f"    {STUB}"
        f"    {STUB_RAISE}\n"
        "\n"
        "print('defined')"
    )
    namespace = {}
    exec(compile(out, "<student>", "exec"), namespace)  # still valid Python
    with pytest.raises(NotImplementedError):
        namespace["f"](1)


def test_several_regions_and_top_level_regions():
    src = (
        f"{BEGIN_SOLUTION}\n"
        "a = 1\n"
        f"{END_SOLUTION}\n"
        "class C:\n"
        "    def m(self):\n"
        f"        {BEGIN_SOLUTION}  (extra words are allowed)\n"
        "        return 2\n"
        f"        {END_SOLUTION}"
    )
    new, regions = strip_solutions(src)
    assert regions == 2
    assert new == (
        f"{STUB}{STUB_RAISE}\n"
        "class C:\n"
        "    def m(self):\n"
        f"        {STUB}"
        f"        {STUB_RAISE}"  # the region ended the cell: no trailing newline added
    )
    assert "a = 1" not in new and "return 2" not in new


def test_outputs_cleared_metadata_counted_and_input_untouched():
    nb = notebook(f"def f():\n    {BEGIN_SOLUTION}\n    return 1\n    {END_SOLUTION}\n", "print(1)")
    nb.cells[2].metadata["execution"] = {"iopub.execute_input": "2026-01-01"}
    before = nbformat.writes(nb)
    student = make_student_notebook(nb, name="x.ipynb")
    assert nbformat.writes(nb) == before  # pure: the solution notebook is not modified
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            assert "execution" not in cell.metadata
    assert student.cells[2].source == "print(1)"
    assert student.cells[0] == nb.cells[0]  # markdown untouched, even when it quotes the markers
    assert student.metadata["mlsys_lab"]["student_copy"] == {"regions": 1, "hidden_cells": 0}
    nbformat.validate(student)


def test_hidden_solution_cells_are_removed():
    nb = notebook("x = 1", "assert reference(x) == 2", "print(x)")
    nb.cells[2].metadata["tags"] = [HIDDEN_SOLUTION_TAG]
    student = make_student_notebook(nb)
    assert [c.source for c in student.cells if c.cell_type == "code"] == ["x = 1", "print(x)"]
    assert student.metadata["mlsys_lab"]["student_copy"]["hidden_cells"] == 1


@pytest.mark.parametrize(
    "src, line, words",
    [
        (f"def f():\n    {BEGIN_SOLUTION}\n    return 1\n", 2, "never closed"),
        (f"x = 1\n{END_SOLUTION}\n", 2, "without"),
        (f"{BEGIN_SOLUTION}\n{BEGIN_SOLUTION}\nx\n{END_SOLUTION}\n{END_SOLUTION}\n", 2, "nested"),
        (f"{BEGIN_SOLUTION}\nx\n{END_SOLUTION}\n{END_SOLUTION}\n", 4, "without"),
    ],
    ids=["begin-without-end", "end-without-begin", "nested", "extra-end"],
)
def test_unbalanced_markers_name_notebook_cell_and_line(src, line, words):
    nb = notebook("ok = 1", src)
    with pytest.raises(StudentCopyError) as info:
        make_student_notebook(nb, name="labs/broken.ipynb")
    message = str(info.value)
    assert "labs/broken.ipynb: cell 2" in message  # cell index 2 (0-based, the markdown cell is 0)
    assert f"line {line}" in message and words in message


def test_write_student_copies_writes_nothing_when_one_notebook_is_broken(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nbformat.write(notebook(f"{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}\n"), src / "a_good.ipynb")
    nbformat.write(notebook(f"{BEGIN_SOLUTION}\nx = 1\n"), src / "b_broken.ipynb")
    with pytest.raises(StudentCopyError, match="b_broken.ipynb: cell 1"):
        write_student_copies([src], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_folders_keep_their_layout_and_skip_checkpoints_and_the_output(tmp_path):
    src = tmp_path / "labs"
    (src / "part2").mkdir(parents=True)
    (src / ".ipynb_checkpoints").mkdir()
    for rel in ["lab01.ipynb", "part2/lab02.ipynb", ".ipynb_checkpoints/lab01-checkpoint.ipynb"]:
        nbformat.write(notebook(f"def f():\n    {BEGIN_SOLUTION}\n    pass\n    {END_SOLUTION}\n"), src / rel)
    out = src / "student"  # inside the source folder: must not be picked up on a second run
    for _ in range(2):
        copies = write_student_copies([src], out)
        assert sorted(c.target.relative_to(out).as_posix() for c in copies) == [
            "lab01.ipynb", "part2/lab02.ipynb"]
        assert all(c.regions == 1 for c in copies)


# ------------------------------------------------------------------------------------------ Lab 1 ----

def _solution_cells(nb):
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and BEGIN_SOLUTION in c.source]


def _next_code_cell(nb, index):
    return next(j for j in range(index + 1, len(nb.cells)) if nb.cells[j].cell_type == "code")


def _expected_student_source(src: str) -> str:
    """The solution cell with each region cut out by a plain regex (independent of strip_solutions)."""
    pattern = re.compile(rf"^([ \t]*){re.escape(BEGIN_SOLUTION)}.*?^[ \t]*{re.escape(END_SOLUTION)}[^\n]*",
                         re.S | re.M)
    return pattern.sub(lambda m: f"{m.group(1)}{STUB}{m.group(1)}{STUB_RAISE}", src)


@pytest.fixture(scope="module")
def lab01():
    return nbformat.read(LAB01, as_version=4)


@pytest.fixture(scope="module")
def lab01_student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    copies = write_student_copies([ROOT / "labs"], out)
    assert any(c.source.resolve() == LAB01.resolve() for c in copies)
    path = out / LAB01.name
    assert path.is_file()
    return nbformat.read(path, as_version=4)


def test_lab01_solution_notebook_follows_the_conventions(lab01):
    assert_notebook_conventions(lab01)
    solution = _solution_cells(lab01)
    assert len(solution) >= 5
    for i in solution:  # every exercise is followed by a cell that checks it
        assert "checks.check_" in lab01.cells[_next_code_cell(lab01, i)].source


def test_lab01_student_copy_replaces_every_solution_region(lab01, lab01_student):
    assert len(lab01_student.cells) == len(lab01.cells)
    solution = set(_solution_cells(lab01))
    regions = sum(c.source.count(BEGIN_SOLUTION) for c in lab01.cells if c.cell_type == "code")
    assert lab01_student.metadata["mlsys_lab"]["student_copy"]["regions"] == regions >= 5
    for i, (sol, stu) in enumerate(zip(lab01.cells, lab01_student.cells)):
        assert sol.cell_type == stu.cell_type
        if stu.cell_type != "code":
            assert stu.source == sol.source
            continue
        assert stu.outputs == [] and stu.execution_count is None
        assert BEGIN_SOLUTION not in stu.source and END_SOLUTION not in stu.source
        if i in solution:
            assert stu.source == _expected_student_source(sol.source)
            assert stu.source.count(STUB_RAISE) == sol.source.count(BEGIN_SOLUTION)
        else:
            assert stu.source == sol.source
    text = nbformat.writes(lab01_student)
    for answer in ["grad_out @ b.T", "np.sum(y * dy, axis=axis, keepdims=True)", "(1 - lr * weight_decay)"]:
        assert answer in nbformat.writes(lab01) and answer not in text


LABS = sorted((ROOT / "labs").glob("lab*.ipynb"))


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=lambda path: path.stem)
def test_student_copy_runs_until_its_first_check_and_fails_there(lab):
    """Executed, every lab's student copy runs cleanly up to its first exercise's check, and fails there."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = make_student_notebook(nbformat.read(lab, as_version=4), lab.name)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    first_exercise = next(i for i in code if STUB_RAISE in nb.cells[i].source)
    first_check = next(i for i in code if i > first_exercise)
    assert "checks.check_" in nb.cells[first_check].source

    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(lab.parent)}})
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert "NotImplementedError" in str(info.value)

    failed = [i for i in code if any(o.output_type == "error" for o in nb.cells[i].outputs)]
    assert failed == [first_check], f"expected the first check (cell {first_check}) to fail, not cells {failed}"
    error = next(o for o in nb.cells[first_check].outputs if o.output_type == "error")
    assert error.ename == "NotImplementedError"
    ran = [i for i in code if nb.cells[i].execution_count is not None]
    assert ran == [i for i in code if i <= first_check]  # every cell before it ran, none after it
