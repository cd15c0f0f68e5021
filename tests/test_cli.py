"""The command line: ``python -m mlsys_lab student SRC... --out DIR``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mlsys_lab.__main__ import main
from mlsys_lab.course.student import BEGIN_SOLUTION, END_SOLUTION, STUB_RAISE

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mlsys_lab", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def write_nb(path: Path, *sources):
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(cells=[new_markdown_cell("# T")] + [new_code_cell(s) for s in sources])
    nbformat.write(nb, path)
    return path


GOOD = f"def f():\n    {BEGIN_SOLUTION}\n    return 1\n    {END_SOLUTION}\n"


def test_student_on_the_labs_folder(tmp_path):
    out = tmp_path / "student"
    result = run_cli("student", "labs", "--out", out)
    assert result.returncode == 0, result.stderr
    labs = sorted(p.relative_to(ROOT / "labs") for p in (ROOT / "labs").rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts)
    assert labs and sorted(p.relative_to(out) for p in out.rglob("*.ipynb")) == labs
    for rel in labs:
        assert f"wrote {out / rel}" in result.stdout
        student = nbformat.read(out / rel, as_version=4)
        assert all(BEGIN_SOLUTION not in c.source and c.outputs == []
                   for c in student.cells if c.cell_type == "code")
    lab01 = nbformat.read(out / "lab01_autograd.ipynb", as_version=4)
    assert sum(c.source.count(STUB_RAISE) for c in lab01.cells) >= 5
    assert f"{len(labs)} student cop" in result.stdout


def test_student_error_exits_nonzero_with_a_message(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("student", tmp_path / "empty", "--out", tmp_path / "out")
    assert result.returncode == 1
    assert "error" in result.stderr and "contains no notebooks" in result.stderr
    assert result.stdout == ""


def test_files_and_folders_together(tmp_path, capsys):
    one = write_nb(tmp_path / "a" / "one.ipynb", GOOD)
    write_nb(tmp_path / "b" / "two.ipynb", GOOD, GOOD)
    write_nb(tmp_path / "b" / "sub" / "three.ipynb", "print(3)")
    out = tmp_path / "out"
    assert main(["student", str(one), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.ipynb")) == [
        "one.ipynb", "sub/three.ipynb", "two.ipynb"]
    printed = capsys.readouterr().out
    assert f"wrote {out / 'two.ipynb'} (2 solution region(s) replaced)" in printed
    assert f"wrote {out / 'sub' / 'three.ipynb'} (0 solution region(s) replaced)" in printed
    assert "3 student copies" in printed


@pytest.mark.parametrize(
    "make_args, words",
    [
        (lambda d: [d / "missing"], "missing: no such file or folder"),
        (lambda d: [d / "empty"], "contains no notebooks"),
        (lambda d: [d / "notes.txt"], "not a notebook"),
        (lambda d: [d / "bad" / "broken.ipynb"], "broken.ipynb: cell 1, line 2: '### BEGIN SOLUTION' is never closed"),
        (lambda d: [d / "bad" / "nested.ipynb"], "nested.ipynb: cell 2, line 3"),
        (lambda d: [d / "bad" / "garbage.ipynb"], "garbage.ipynb: cannot read notebook"),
        (lambda d: [d / "x" / "same.ipynb", d / "y" / "same.ipynb"], "would both be written to"),
    ],
    ids=["missing", "empty-folder", "not-a-notebook", "unclosed", "nested", "malformed-json", "collision"],
)
def test_errors_exit_1_with_a_clear_message(tmp_path, capsys, make_args, words):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    write_nb(tmp_path / "bad" / "broken.ipynb", f"def f():\n    {BEGIN_SOLUTION}\n    return 1\n")
    write_nb(tmp_path / "bad" / "nested.ipynb", "x = 1", f"{BEGIN_SOLUTION}\na = 1\n{BEGIN_SOLUTION}\n")
    (tmp_path / "bad" / "garbage.ipynb").write_text("{not json")
    write_nb(tmp_path / "x" / "same.ipynb", GOOD)
    write_nb(tmp_path / "y" / "same.ipynb", GOOD)
    out = tmp_path / "out"
    assert main(["student", *map(str, make_args(tmp_path)), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("python -m mlsys_lab student: error: ")
    assert words in captured.err
    assert not out.exists()  # nothing written


def test_refuses_to_overwrite_the_solution_notebook(tmp_path, capsys):
    src = write_nb(tmp_path / "labs" / "lab.ipynb", GOOD)
    before = src.read_text()
    assert main(["student", str(src), "--out", str(tmp_path / "labs")]) == 1
    assert "would overwrite a solution notebook" in capsys.readouterr().err
    assert src.read_text() == before


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["student", "labs"], ["student", "--out", "x"], ["frobnicate"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "usage: python -m mlsys_lab" in capsys.readouterr().err


def test_help_lists_the_student_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "student" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["student", "--help"])
    assert "--out" in capsys.readouterr().out
