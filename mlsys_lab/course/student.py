"""Student copies of the labs: the solution notebook with its answers taken out.

A lab is written once, as a *solution notebook*: every exercise's answer sits in a code cell between
two marker lines (the nbgrader convention)::

    def softmax_backward(y, dy, axis=-1):
        ### BEGIN SOLUTION
        return y * (dy - (y * dy).sum(axis=axis, keepdims=True))
        ### END SOLUTION

The student copy keeps everything else (the text, the given code, the calls to the lab's checks) and
replaces each region by a stub that raises ``NotImplementedError``, indented like the ``BEGIN`` line, so
that the function still parses and the student sees exactly where to write::

    def softmax_backward(y, dy, axis=-1):
        # YOUR CODE HERE
        raise NotImplementedError("Exercise: replace this line with your solution.")

:func:`make_student_notebook` is that transformation, a pure function from notebook to notebook;
:func:`write_student_copies` applies it to files and folders, and is what
``python -m mlsys_lab student SRC... --out DIR`` runs.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import nbformat

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
#: A code cell carrying this tag (in ``metadata.tags``) is left out of the student copy entirely, e.g.
#: a cell that only demonstrates a reference result the student should discover on their own.
HIDDEN_SOLUTION_TAG = "hidden-solution"
STUB_COMMENT = "# YOUR CODE HERE"
STUB_RAISE = 'raise NotImplementedError("Exercise: replace this line with your solution.")'

__all__ = [
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "HIDDEN_SOLUTION_TAG",
    "StudentCopyError",
    "StudentCopy",
    "make_student_notebook",
    "strip_solutions",
    "find_notebooks",
    "write_student_copies",
]


class StudentCopyError(ValueError):
    """A solution notebook (or the command's arguments) cannot be turned into a student copy."""


@dataclass(frozen=True)
class StudentCopy:
    """One student copy written by :func:`write_student_copies`."""

    source: Path
    target: Path
    regions: int  # solution regions replaced by stubs
    hidden_cells: int  # cells removed because they carry the hidden-solution tag


def _marker(line: str) -> str | None:
    stripped = line.strip()
    if stripped.startswith(BEGIN_SOLUTION):
        return "begin"
    if stripped.startswith(END_SOLUTION):
        return "end"
    return None


def strip_solutions(source: str, where: str = "cell") -> tuple[str, int]:
    """Replace every solution region of one code cell's source by a stub.

    Returns ``(new_source, number_of_regions)``. A region runs from a line whose stripped text starts
    with ``### BEGIN SOLUTION`` to the next line starting with ``### END SOLUTION``, both marker lines
    included. It becomes two lines, ``# YOUR CODE HERE`` and ``raise NotImplementedError(...)``, with
    the indentation of the ``BEGIN`` line. Lines outside regions are kept byte for byte.

    Raises :class:`StudentCopyError`, naming ``where`` and the 1-based line, for a ``BEGIN`` inside a
    region (nesting), an ``END`` outside one, or a ``BEGIN`` never closed.
    """
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    begin_line: int | None = None
    regions = 0
    for number, line in enumerate(lines, start=1):
        kind = _marker(line)
        if kind == "begin":
            if begin_line is not None:
                raise StudentCopyError(
                    f"{where}, line {number}: '{BEGIN_SOLUTION}' inside the solution region opened on "
                    f"line {begin_line} (regions cannot be nested; close it with '{END_SOLUTION}' first)"
                )
            begin_line = number
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{STUB_COMMENT}\n{indent}{STUB_RAISE}\n")
        elif kind == "end":
            if begin_line is None:
                raise StudentCopyError(
                    f"{where}, line {number}: '{END_SOLUTION}' without a '{BEGIN_SOLUTION}' before it"
                )
            begin_line = None
            regions += 1
            if not line.endswith("\n"):  # the region ended the cell: so does the stub
                out[-1] = out[-1].rstrip("\n")
        elif begin_line is None:
            out.append(line)
    if begin_line is not None:
        raise StudentCopyError(
            f"{where}, line {begin_line}: '{BEGIN_SOLUTION}' is never closed by '{END_SOLUTION}'"
        )
    return "".join(out), regions


def _tags(cell) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, (list, tuple)) else []


def make_student_notebook(nb, name: str = "<notebook>"):
    """Return the student copy of the solution notebook ``nb`` (an nbformat v4 ``NotebookNode``).

    Specification:

    * ``nb`` is not modified; the result is a new notebook with the same nbformat version and notebook
      metadata.
    * Code cells tagged ``hidden-solution`` (:data:`HIDDEN_SOLUTION_TAG`) are removed.
    * In every other code cell each region between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
      is replaced by a stub raising ``NotImplementedError``, indented like the ``BEGIN`` line
      (see :func:`strip_solutions`).
    * Every code cell's outputs are cleared (``outputs == []``, ``execution_count is None``) and the
      execution timing metadata is dropped, so no answer leaks through a printed result.
    * Markdown and raw cells are kept as they are (the text may quote the markers).
    * Unbalanced markers raise :class:`StudentCopyError` naming ``name``, the 0-based cell index in
      ``nb`` and the line.

    The number of regions replaced and cells removed is recorded in the result's metadata under
    ``mlsys_lab.student_copy`` (``{"regions": int, "hidden_cells": int}``).
    """
    student = copy.deepcopy(nb)
    cells = []
    regions = hidden = 0
    for index, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        if HIDDEN_SOLUTION_TAG in _tags(cell):
            hidden += 1
            continue
        cell.source, n = strip_solutions(cell.source, where=f"{name}: cell {index}")
        regions += n
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
        cells.append(cell)
    student.cells = cells
    student.metadata.setdefault("mlsys_lab", {})["student_copy"] = {
        "regions": regions,
        "hidden_cells": hidden,
    }
    return student


def _is_checkpoint(path: Path) -> bool:
    return ".ipynb_checkpoints" in path.parts


def find_notebooks(src: Path, exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """The notebooks that ``src`` names, as ``(path, path relative to the output folder)`` pairs.

    A file must end in ``.ipynb``; a folder is searched recursively (checkpoints and anything under
    ``exclude``, i.e. the output folder, are skipped) and keeps its sub-folders in the output.
    """
    if not src.exists():
        raise StudentCopyError(f"{src}: no such file or folder")
    if src.is_file():
        if src.suffix != ".ipynb":
            raise StudentCopyError(f"{src}: not a notebook (expected a .ipynb file or a folder)")
        return [(src, Path(src.name))]
    found = []
    for path in sorted(src.rglob("*.ipynb")):
        if _is_checkpoint(path.relative_to(src)) or not path.is_file():
            continue
        if exclude is not None and _is_within(path, exclude):
            continue
        found.append((path, path.relative_to(src)))
    if not found:
        raise StudentCopyError(f"{src}: folder contains no notebooks (*.ipynb)")
    return found


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _read(path: Path):
    try:
        return nbformat.read(os.fspath(path), as_version=4)
    except Exception as exc:  # malformed JSON, not a notebook, unreadable
        raise StudentCopyError(f"{path}: cannot read notebook: {exc}") from exc


def write_student_copies(sources: Iterable[os.PathLike | str], out: os.PathLike | str) -> list[StudentCopy]:
    """Write the student copy of every notebook named by ``sources`` (files or folders) into ``out``.

    A notebook given as a file lands at ``out/<name>``; notebooks found in a folder keep their path
    relative to that folder. Every notebook is transformed before anything is written, so an error in
    one (unbalanced markers, unreadable file) writes nothing. It is an error when a source names no
    notebook, when two sources would write the same target, and when a target would overwrite a
    source notebook.
    """
    sources = [Path(s) for s in sources]
    out = Path(out)
    if not sources:
        raise StudentCopyError("no source notebooks or folders given")
    if out.exists() and not out.is_dir():
        raise StudentCopyError(f"{out}: output exists and is not a folder")

    plan: dict[Path, Path] = {}  # target -> source
    for src in sources:
        for path, relative in find_notebooks(src, exclude=out):
            target = out / relative
            if target in plan and plan[target].resolve() != path.resolve():
                raise StudentCopyError(f"{plan[target]} and {path} would both be written to {target}")
            plan[target] = path
    resolved_sources = {p.resolve() for p in plan.values()}
    for target, path in plan.items():
        if target.resolve() in resolved_sources:
            raise StudentCopyError(
                f"{target}: the student copy of {path} would overwrite a solution notebook; "
                "choose an --out folder outside the sources"
            )

    transformed = []
    for target, path in plan.items():
        student = make_student_notebook(_read(path), name=str(path))
        info = student.metadata["mlsys_lab"]["student_copy"]
        transformed.append((path, target, student, info))

    written = []
    for path, target, student, info in transformed:
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student, os.fspath(target))
        written.append(StudentCopy(path, target, info["regions"], info["hidden_cells"]))
    return written
