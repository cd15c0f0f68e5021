"""Lab 4's checks pass on the lab's own solutions and fail on planted bugs; its student copy fails where it should.

The solutions are taken from the exercise cells of labs/lab04_cpu_kernels.ipynb (each cell defines the
exercise's function, and for ``reduce_sum`` the given ``sum_rows`` kernel next to it), executed here in
one namespace with ``np``, ``math`` and ``njit``, so these tests check the notebook's answers and the
checks against each other. Each planted bug is a mistake students make (a missing remainder loop, a tile
that runs past the edge, the wrong rescaling in the online softmax, ...): its check must raise
AssertionError with a message that says what went wrong, never pass.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from numba import njit

import mlsys_lab.kernels.cpu  # noqa: F401  (first: it configures Numba before anything is compiled)
from mlsys_lab.course.checks import lab04 as checks
from mlsys_lab.course.student import (BEGIN_SOLUTION, END_SOLUTION, STUB_RAISE, make_student_notebook,
                                     write_student_copies)
from labtools import assert_notebook_conventions, code_cells, next_code_cell

ROOT = Path(__file__).resolve().parents[1]
LAB04 = ROOT / "labs" / "lab04_cpu_kernels.ipynb"
STUB = "# YOUR CODE HERE\n"

EXERCISES = {  # function with the solution region -> the check the next code cell calls
    "sum_4x4": checks.check_sum_4x4,
    "gemm_ikj": checks.check_gemm_ikj,
    "gemm_blocked": checks.check_gemm_blocked,
    "reduce_sum": checks.check_reduce_sum,
    "online_update": checks.check_online_update,
    "softmax_online": checks.check_softmax_online,
}


def exercise_name(source: str, marker: str = BEGIN_SOLUTION) -> str:
    """The function whose body holds the marker (the last ``def`` before it)."""
    before = source[:source.index(marker)]
    return re.findall(r"^def (\w+)\(", before, re.M)[-1]


def exercise_sources(nb, marker: str = BEGIN_SOLUTION) -> dict[str, str]:
    return {exercise_name(nb.cells[i].source, marker): nb.cells[i].source for i in code_cells(nb, marker)}


def define(sources: dict[str, str], name: str, source: str | None = None):
    """Execute the exercise cells up to ``name`` (``source`` replacing its own cell) and return ``name``."""
    namespace = {"np": np, "math": math, "njit": njit}
    for key, src in sources.items():
        exec(compile(source if key == name and source is not None else src, f"<{key}>", "exec"), namespace)
        if key == name:
            return namespace[name]
    raise KeyError(name)


def mutate(source: str, old: str, new: str) -> str:
    assert old in source, f"the planted bug expects {old!r} in the notebook's solution"
    return source.replace(old, new)


def expected_student_source(src: str) -> str:
    """The solution cell with each region cut out by a plain regex (independent of strip_solutions)."""
    pattern = re.compile(rf"^([ \t]*){re.escape(BEGIN_SOLUTION)}.*?^[ \t]*{re.escape(END_SOLUTION)}[^\n]*",
                         re.S | re.M)
    return pattern.sub(lambda m: f"{m.group(1)}{STUB}{m.group(1)}{STUB_RAISE}", src)


@pytest.fixture(scope="module")
def lab04():
    return nbformat.read(LAB04, as_version=4)


@pytest.fixture(scope="module")
def solutions(lab04) -> dict[str, str]:
    return exercise_sources(lab04)


# ------------------------------------------------------------------- the notebook's own solutions ----

def test_every_exercise_is_checked_by_its_own_check(lab04, solutions):
    assert list(solutions) == list(EXERCISES)            # in the lab's order
    for i in code_cells(lab04, BEGIN_SOLUTION):
        name = exercise_name(lab04.cells[i].source)
        check = lab04.cells[next_code_cell(lab04, i)]
        assert check.source.strip() == f"checks.{EXERCISES[name].__name__}({name})"


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_passes_on_the_notebook_solution(name, solutions, capsys):
    EXERCISES[name](define(solutions, name))
    out = capsys.readouterr().out
    assert out.startswith("✓") and "passed" in out


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_lets_the_student_stub_raise_not_implemented(name, lab04):
    student = exercise_sources(make_student_notebook(lab04), marker=STUB_RAISE)
    assert list(student) == list(EXERCISES)
    with pytest.raises(NotImplementedError):
        EXERCISES[name](define(student, name))


@pytest.mark.parametrize("name", [n for n in EXERCISES if n != "reduce_sum"])
def test_kernel_checks_ask_for_a_compiled_function(name, solutions):
    plain = define(solutions, name).py_func                # the same code, not compiled
    with pytest.raises(AssertionError, match="decorate it with @njit"):
        EXERCISES[name](plain)


def test_reduce_sum_check_rejects_a_function_returning_none():
    with pytest.raises(AssertionError, match="returned None"):
        checks.check_reduce_sum(lambda x, axis=None, keepdims=False: None)


# ------------------------------------------------------- planted bugs: mutations of the solution ----

MUTATIONS = [  # (exercise, old, new, words the message must contain)
    # sum_4x4
    ("sum_4x4", "    for i in range(limit, n):\n        acc0 += x[i]\n", "", "remainder loop must add them"),
    ("sum_4x4", "limit = n - n % 4", "limit = n + 3 - (n + 3) % 4", "read past the end of x"),
    ("sum_4x4", "acc1 += x[i + 1]\n        acc2 += x[i + 2]\n        acc3 += x[i + 3]",
     "acc0 += x[i + 1]\n        acc0 += x[i + 2]\n        acc0 += x[i + 3]", "a single running sum"),
    ("sum_4x4", "acc1 += x[i + 1]\n        acc2 += x[i + 2]\n        acc3 += x[i + 3]",
     "acc1 += x[i + 1]\n        acc0 += x[i + 2]\n        acc1 += x[i + 3]", "two accumulators"),
    ("sum_4x4", "acc0 += x[i]\n        acc1 += x[i + 1]\n        acc2 += x[i + 2]\n        acc3 += x[i + 3]",
     "acc0 += (x[i] + x[i + 1]) + (x[i + 2] + x[i + 3])", "reassociation"),
    ("sum_4x4", "return (acc0 + acc1) + (acc2 + acc3)", "return (acc0 + acc1) + acc2", "sum_4x4 on random normal"),
    ("sum_4x4", "acc0 = acc1 = acc2 = acc3 = 0.0", "acc0 = x[0] if n else 0.0\n    acc1 = acc2 = acc3 = 0.0",
     "added twice"),
    # gemm_ikj
    ("gemm_ikj", "c[i, j] += aip * b[p, j]", "c[i, j] = aip * b[p, j]", "gemm_ikj with"),
    ("gemm_ikj", "for p in range(k):", "for p in range(n):", "gemm_ikj with a.shape"),
    ("gemm_ikj", "aip = a[i, p]", "aip = a[p, i]", "gemm_ikj with"),
    ("gemm_ikj", "for i in range(m):", "for i in range(m - 1):", "wrong values"),
    # gemm_blocked
    ("gemm_blocked", "i1 = min(i0 + bs, m)", "i1 = i0 + bs", "min(start + bs, size)"),
    ("gemm_blocked", "p1 = min(p0 + bs, k)", "p1 = p0 + bs", "min(start + bs, size)"),
    ("gemm_blocked", "j1 = min(j0 + bs, n)", "j1 = j0 + bs", "min(start + bs, size)"),
    ("gemm_blocked", "for i0 in range(0, m, bs):", "for i0 in range(0, m - m % bs, bs):", "last partial tile"),
    ("gemm_blocked", "for j0 in range(0, n, bs):", "for j0 in range(0, n - n % bs, bs):", "last partial tile"),
    ("gemm_blocked", "for p0 in range(0, k, bs):", "for p0 in range(0, k - k % bs, bs):", "not a multiple of bs"),
    ("gemm_blocked", "crow[j] += aip * brow[j]", "crow[j] = aip * brow[j]", "gemm_blocked with"),
    # reduce_sum
    ("reduce_sum", "tuple(sorted(a % x.ndim for a in axis))", "tuple(axis)", "negative axes count from the end"),
    ("reduce_sum", "if keepdims:", "if False:", "keepdims=True every reduced axis stays"),
    ("reduce_sum", "x.transpose(kept + reduced)", "x.transpose(reduced + kept)", "kept axes first"),
    ("reduce_sum", "np.ascontiguousarray(x.transpose(kept + reduced))", "x", "reduce_sum(x of shape"),
    # online_update
    ("online_update", "    d = d * np.exp(m - m_new)\n", "", "multiply d by exp(m - m_new)"),
    ("online_update", "np.exp(m - m_new)", "np.exp(m_new - m)", "not finite"),
    ("online_update", "d += np.exp(xs[j] - m_new)", "d += np.exp(xs[j] - m)", "not finite"),
    ("online_update", "return m_new, d", "return m, d", "expected (m, d)"),
    ("online_update", "return m_new, d", "return m_new", "expected a pair"),
    # softmax_online
    ("softmax_online", "for b0 in range(0, n, block):", "for b0 in range(0, n - n % block, block):",
     "last block of a row is shorter"),
    ("softmax_online", "orow[j] = np.exp(row[j] - m) * inv", "orow[j] = np.exp(row[j] - m)", "do not sum to 1"),
    ("softmax_online", "m, d = -np.inf, 0.0", "m, d = 0.0, 0.0", "underflowed"),
    ("softmax_online", "for j in range(n):\n            orow[j]", "for j in range(n + 1):\n            orow[j]",
     "wrote outside the output `out`"),
]


@pytest.mark.parametrize("name, old, new, words", MUTATIONS,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MUTATIONS)])
def test_check_fails_on_a_mutated_solution(name, old, new, words, solutions, capsys):
    buggy = define(solutions, name, mutate(solutions[name], old, new))
    with np.errstate(all="ignore"), pytest.raises(AssertionError) as info:
        EXERCISES[name](buggy)
    assert words in str(info.value), str(info.value)
    assert "✓" not in capsys.readouterr().out


def test_softmax_check_fails_when_the_update_it_calls_is_wrong(solutions):
    # the kernel is right, but the online_update it calls forgets to rescale: the composition must fail
    sources = dict(solutions)
    sources["online_update"] = mutate(sources["online_update"], "    d = d * np.exp(m - m_new)\n", "")
    with np.errstate(all="ignore"), pytest.raises(AssertionError, match="softmax_online"):
        checks.check_softmax_online(define(sources, "softmax_online"))


# ------------------------------------------------------ planted bugs: mistakes written from scratch ----

@njit
def sum_forgets_the_last_group(x):
    n = x.size
    acc0 = acc1 = acc2 = acc3 = 0.0
    for i in range(0, n - 4, 4):                  # off by one group when n is a multiple of 4
        acc0 += x[i]
        acc1 += x[i + 1]
        acc2 += x[i + 2]
        acc3 += x[i + 3]
    for i in range(n - n % 4, n):
        acc0 += x[i]
    return (acc0 + acc1) + (acc2 + acc3)


@njit
def sum_fastmath_free_grouping(x):
    s = 0.0
    for i in range(x.size):
        s += x[i]
    return s


@njit
def gemm_blocked_ignores_edges_by_padding(a, b, c, bs):
    # tiles always bs wide, the out-of-range part "handled" by skipping only the k edge
    m, k = a.shape
    n = b.shape[1]
    for i0 in range(0, m, bs):
        for p0 in range(0, k, bs):
            for j0 in range(0, n, bs):
                for i in range(i0, i0 + bs):
                    for p in range(p0, min(p0 + bs, k)):
                        for j in range(j0, j0 + bs):
                            c[i, j] += a[i, p] * b[p, j]


@njit
def gemm_transposes_b(a, b, c):
    m, k = a.shape
    n = b.shape[1]
    for i in range(m):
        for p in range(k):
            for j in range(n):
                c[i, j] += a[i, p] * b[j, p] if j < k and p < n else 0.0


def reduce_forgets_axis_none(x, axis=None, keepdims=False):
    return np.sum(x, axis=axis if axis is not None else 0, keepdims=keepdims)


def reduce_copies_numpy_but_modifies_input(x, axis=None, keepdims=False):
    result = np.sum(x, axis=axis, keepdims=keepdims)
    x[...] = 0.0
    return result


@njit
def update_with_two_pass_max_only(m, d, xs):
    # forgets the old maximum: the running max can go down
    m_new = xs[0] if xs.size else m
    for j in range(xs.size):
        m_new = max(m_new, xs[j])
    d = d * np.exp(m - m_new)
    for j in range(xs.size):
        d += np.exp(xs[j] - m_new)
    return m_new, d


@njit
def softmax_without_max(x2, out, block):
    n_rows, n = x2.shape
    for i in range(n_rows):
        s = 0.0
        for j in range(n):
            s += np.exp(x2[i, j])
        for j in range(n):
            out[i, j] = np.exp(x2[i, j]) / s


BUGS = [  # (check, buggy function, words the message must contain)
    (checks.check_sum_4x4, sum_forgets_the_last_group, "sum_4x4 on random normal, n=4"),
    (checks.check_sum_4x4, sum_fastmath_free_grouping, "a single running sum"),
    (checks.check_sum_4x4, lambda x: float(np.sum(x)), "decorate it with @njit"),
    (checks.check_gemm_blocked, gemm_blocked_ignores_edges_by_padding, "gemm_blocked with"),
    (checks.check_gemm_ikj, gemm_transposes_b, "gemm_ikj with"),
    (checks.check_reduce_sum, reduce_forgets_axis_none, "axis=None"),
    (checks.check_reduce_sum, reduce_copies_numpy_but_modifies_input, "modified its input"),
    (checks.check_online_update, update_with_two_pass_max_only, "can never decrease"),
    (checks.check_softmax_online, softmax_without_max, "underflowed"),
]


@pytest.mark.parametrize("check, buggy, words", BUGS,
                         ids=[f"{c.__name__}:{getattr(b, '__name__', 'lambda')}-{i}" for i, (c, b, _) in enumerate(BUGS)])
def test_check_fails_on_a_planted_bug(check, buggy, words, capsys):
    with np.errstate(all="ignore"), pytest.raises(AssertionError) as info:
        check(buggy)
    assert words in str(info.value), str(info.value)
    assert "✓" not in capsys.readouterr().out


# ----------------------------------------------------------------- the notebook and its student copy ----

@pytest.fixture(scope="module")
def lab04_student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    copies = write_student_copies([LAB04], out)
    assert [c.source.resolve() for c in copies] == [LAB04.resolve()]
    return nbformat.read(out / LAB04.name, as_version=4)


def test_lab04_solution_notebook_follows_the_conventions(lab04):
    assert lab04.metadata["kernelspec"]["name"] == "python3"
    assert_notebook_conventions(lab04)
    code = "\n".join(c.source for c in lab04.cells if c.cell_type == "code")
    assert "default_rng(0)" in code
    assert code.index("import mlsys_lab.kernels.cpu") < code.index("@njit")   # configures Numba first


def test_lab04_student_copy_replaces_every_solution_region(lab04, lab04_student):
    assert len(lab04_student.cells) == len(lab04.cells)
    solution = set(code_cells(lab04, BEGIN_SOLUTION))
    assert lab04_student.metadata["mlsys_lab"]["student_copy"]["regions"] == len(solution) == len(EXERCISES)
    for i, (sol, stu) in enumerate(zip(lab04.cells, lab04_student.cells)):
        assert sol.cell_type == stu.cell_type
        if stu.cell_type != "code":
            assert stu.source == sol.source
            continue
        assert BEGIN_SOLUTION not in stu.source and END_SOLUTION not in stu.source
        assert stu.source == (expected_student_source(sol.source) if i in solution else sol.source)
    text = nbformat.writes(lab04_student)
    for answer in ["acc3 += x[i + 3]", "i1 = min(i0 + bs, m)", "j1 = min(j0 + bs, n)",
                   ".reshape(rows, cols)", "d = d * np.exp(m - m_new)", "online_update(m, d, row["]:
        assert answer in nbformat.writes(lab04) and answer not in text
    # the given code next to the exercises stays in the student's copy
    assert "def sum_rows(x2):" in text and "def gemm_naive(" in text and "def online_update(m, d, xs):" in text

