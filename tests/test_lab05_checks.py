"""Lab 5's checks pass on the lab's own kernels and fail on planted bugs; its student copy fails where it should.

The solutions are the exercise cells of labs/lab05_cuda_kernels.ipynb (each cell defines one ``@cuda.jit``
kernel and the constants it uses), executed here with ``cuda`` and ``float32`` from Numba, so these tests
check the notebook's answers and the checks against each other. Each planted bug is a mistake students
make (a missing barrier, a wrong bounds check on odd shapes, wrong tile indexing, an unpadded tile); its
check must raise AssertionError with a message that says what went wrong, never pass.

Kernels run on a GPU if one is usable, else on Numba's CUDA simulator (no GPU here or on CI). Messages
for out-of-bounds accesses differ between the two (the simulator raises IndexError at the access; on a
GPU the check's guard memory shows it), so those tests accept either; the planted races are only
asserted on the simulator, whose thread order exposes them every time.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

import mlsys_lab.kernels.cuda as kc  # first: chooses GPU or simulator before numba.cuda is imported
from mlsys_lab.course.checks import lab05 as checks
from mlsys_lab.course.student import (BEGIN_SOLUTION, END_SOLUTION, STUB_RAISE, make_student_notebook,
                                     write_student_copies)
from mlsys_lab.kernels.cuda.gemm import TILE as PACKAGE_TILE
from mlsys_lab.kernels.cuda.gemm import gemm_tiled
from mlsys_lab.kernels.cuda.reduce import block_partials, reduce_interleaved, reduce_neighbored
from mlsys_lab.kernels.cuda.transpose import transpose_naive, transpose_padded, transpose_tiled
from mlsys_lab.kernels.cuda.vector_add import vector_add_grid_stride, vector_add_kernel

from numba import cuda, float32  # noqa: E402  (after the choice above)
from labtools import assert_notebook_conventions, code_cells, next_code_cell

ROOT = Path(__file__).resolve().parents[1]
LAB05 = ROOT / "labs" / "lab05_cuda_kernels.ipynb"
STUB = "# YOUR CODE HERE\n"
SIMULATOR = kc.backend() == "simulator"
simulator_only = pytest.mark.skipif(not SIMULATOR, reason="races are exposed by the simulator's thread order")

EXERCISES = {  # kernel defined in the solution cell -> the check the next cell calls
    "vector_add": checks.check_vector_add,
    "block_sum": checks.check_block_sum,
    "gemm_tiled": checks.check_gemm_tiled,
    "transpose_padded": checks.check_transpose_padded,
}
CHECK_CALLS = {
    "vector_add": "checks.check_vector_add(vector_add)",
    "block_sum": "checks.check_block_sum(block_sum, threads_per_block=BLOCK)",
    "gemm_tiled": "checks.check_gemm_tiled(gemm_tiled, tile=TILE)",
    "transpose_padded": "checks.check_transpose_padded(transpose_padded, tile_dim=TILE_DIM, block_rows=BLOCK_ROWS)",
}


def kernel_name(source: str) -> str:
    return re.search(r"^def (\w+)\(", source, re.M).group(1)


def _sources(nb, marker: str) -> dict[str, str]:
    return {kernel_name(nb.cells[i].source): nb.cells[i].source for i in code_cells(nb, marker)}


@pytest.fixture(scope="module")
def lab05():
    return nbformat.read(LAB05, as_version=4)


@pytest.fixture(scope="module")
def solutions(lab05) -> dict[str, str]:
    return _sources(lab05, BEGIN_SOLUTION)


def define(source: str, name: str):
    """Execute one exercise cell and return the kernel it defines, with the cell's constants."""
    namespace = {"cuda": cuda, "float32": float32, "np": np}
    exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace


def call_check(name: str, namespace: dict) -> None:
    """Call the exercise's check exactly as the notebook does (the constants come from the cell)."""
    kwargs = {
        "vector_add": {},
        "block_sum": {"threads_per_block": namespace.get("BLOCK")},
        "gemm_tiled": {"tile": namespace.get("TILE")},
        "transpose_padded": {"tile_dim": namespace.get("TILE_DIM"), "block_rows": namespace.get("BLOCK_ROWS")},
    }[name]
    EXERCISES[name](namespace[name], **kwargs)


def mutate(source: str, old: str, new: str) -> str:
    assert old in source, f"the planted bug expects {old!r} in the notebook's solution"
    return source.replace(old, new)


# ------------------------------------------------------------------- the notebook's own solutions ----

def test_every_exercise_is_checked_by_its_own_check(lab05, solutions):
    assert set(solutions) == set(EXERCISES)
    for i in code_cells(lab05, BEGIN_SOLUTION):
        name = kernel_name(lab05.cells[i].source)
        assert lab05.cells[next_code_cell(lab05, i)].source.strip() == CHECK_CALLS[name]


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_passes_on_the_notebook_solution(name, solutions, capsys):
    call_check(name, define(solutions[name], name))
    out = capsys.readouterr().out
    assert out.startswith("✓") and "passed" in out


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_lets_the_student_stub_raise_not_implemented(name, lab05):
    student = _sources(make_student_notebook(lab05), STUB_RAISE)
    assert set(student) == set(EXERCISES)
    with pytest.raises(NotImplementedError, match="stub"):
        call_check(name, define(student[name], name))


def plain_python(*args):
    return None


@cuda.jit(device=True)
def device_function(a, b, out):
    return 0


@pytest.mark.parametrize("name", list(EXERCISES))
@pytest.mark.parametrize("kernel, words", [(plain_python, "@cuda.jit"), (device_function, "device function")],
                         ids=["plain-python", "device-function"])
def test_check_rejects_what_is_not_a_kernel(name, kernel, words):
    with pytest.raises(AssertionError, match=re.escape(words)):
        EXERCISES[name](kernel)


# ------------------------------------------------------- planted bugs: mutations of the solution ----

OUT_OF_BOUNDS = r"out of bounds|past the end|is NaN"  # simulator: IndexError; GPU: the guard memory

# The neighbour-pairs rung instead of sequential addressing (the whole loop of the solution replaced).
NEIGHBOURED_OLD = """    stride = cuda.blockDim.x // 2
    while stride > 0:
        if tid < stride:                           # the first `stride` threads: contiguous
            s[tid] += s[tid + stride]
        cuda.syncthreads()                         # this step's sums are in before the next reads them
        stride //= 2"""
NEIGHBOURED_NEW = """    stride = 1
    while stride < cuda.blockDim.x:
        if tid % (2 * stride) == 0:
            s[tid] += s[tid + stride]
        cuda.syncthreads()
        stride *= 2"""

MUTATIONS = [  # (exercise, old, new, regex the message must match, simulator only)
    # vector add
    ("vector_add", "range(start, out.size, stride)", "range(start, out.size - 1, stride)",
     r"never written.*\n.*hint: the last element was left out", False),
    ("vector_add", "start = cuda.grid(1) ", "start = cuda.threadIdx.x ",
     r"on 64 elements: out\[32\] was never written.*\n.*hint: .*not at threadIdx.x", False),
    ("vector_add", "for i in range(start, out.size, stride):\n        out[i] = a[i] + b[i]",
     "i = start\n    if i < out.size:\n        out[i] = a[i] + b[i]",
     r"on 33 elements: out\[32\] was never written.*\n.*cuda.gridsize\(1\)", False),
    ("vector_add", "range(start, out.size, stride)", "range(start, out.size + 1, stride)", OUT_OF_BOUNDS, False),
    ("vector_add", "a[i] + b[i]", "a[i] + a[i]", r"wrong values.*\n(.*\n)*.*hint: out\[i\] must be a\[i\] \+ b\[i\]",
     False),
    # block sum
    ("block_sum", "x[i] if i < x.size else float32(0)", "x[i]", OUT_OF_BOUNDS, False),
    ("block_sum", "s[tid] = x[i] if i < x.size else float32(0)", "if i < x.size:\n        s[tid] = x[i]",
     r"on 1 elements: partial\[0\] is NaN", True),
    ("block_sum", "    cuda.syncthreads()                             # every value",
     "    pass                                           # every value", r"is NaN|wrong values", True),
    ("block_sum", "        cuda.syncthreads()                         # this step's",
     "        pass                                       # this step's", r"wrong values", True),
    ("block_sum", "partial[cuda.blockIdx.x]", "partial[0]",
     r"partial\[1\] was never written.*\n.*hint: .*partial\[cuda.blockIdx.x\]", False),
    ("block_sum", "i = cuda.blockIdx.x * cuda.blockDim.x + tid", "i = tid",
     r"wrong values(.*\n)*.*hint: every block summed the same elements", False),
    ("block_sum", "while stride > 0:", "while stride > 1:", r"block_sum\[1, 64\] on 64 elements: wrong values", False),
    ("block_sum", NEIGHBOURED_OLD, NEIGHBOURED_NEW,  # right sums, added in another order
     r"the sums are right to float32 rounding but were not added in the order of sequential addressing", False),
    # tiled GEMM
    ("gemm_tiled", "range((k + TILE - 1) // TILE)", "range(k // TILE)",
     r"wrong values(.*\n)*.*hint: k = 1 is not a multiple of TILE = 8, and the last, partial tile was left out", False),
    ("gemm_tiled", "a[row, kk + tx] if row < m and kk + tx < k else float32(0)", "a[row, kk + tx]", OUT_OF_BOUNDS,
     False),
    ("gemm_tiled", "b[kk + ty, col] if kk + ty < k and col < n else float32(0)",
     "b[kk + tx, col] if kk + tx < k and col < n else float32(0)", r"a.shape=\(8, 8\).*wrong values", False),
    ("gemm_tiled", "acc += a_tile[ty, p] * b_tile[p, tx]", "acc += a_tile[ty, p] * b_tile[tx, p]",
     r"a.shape=\(8, 8\).*wrong values", False),
    ("gemm_tiled", "    if row < m and col < n:\n        c[row, col] = acc", "    c[row, col] = acc", OUT_OF_BOUNDS,
     False),
    ("gemm_tiled", "        cuda.syncthreads()                     # both tiles",
     "        pass                                   # both tiles", r"is NaN|wrong values", True),
    ("gemm_tiled", "        cuda.syncthreads()                     # everyone",
     "        pass                                   # everyone", r"wrong values|is NaN", True),
    ("gemm_tiled",  # a stale b tile: uninitialised shared memory times a zero is still NaN
     "b_tile[ty, tx] = b[kk + ty, col] if kk + ty < k and col < n else float32(0)",
     "if kk + ty < k and col < n:\n            b_tile[ty, tx] = b[kk + ty, col]", r"is NaN", True),
    # padded transpose
    ("transpose_padded", "(TILE_DIM, PADDED)", "(TILE_DIM, TILE_DIM)",
     r"the result is right, but your kernel uses .*32.*a 32-way bank conflict", False),
    ("transpose_padded", "PADDED = TILE_DIM + 1", "PADDED = TILE_DIM + 2", r"a 2-way bank conflict", False),
    ("transpose_padded", "    cuda.syncthreads()                                     # the whole tile",
     "    pass                                                   # the whole tile", r"is NaN|wrong values", True),
    ("transpose_padded", "if out_row0 + r < n and out_col < m:", "if out_row0 + r < m and out_col < n:",
     OUT_OF_BOUNDS + r"|never written", False),
    ("transpose_padded", "if row0 + r < m and col < n:", "if row0 + r < n and col < m:",
     OUT_OF_BOUNDS + r"|never written", False),
    ("transpose_padded", "out_col = cuda.blockIdx.y * TILE_DIM", "out_col = cuda.blockIdx.x * TILE_DIM",
     r"x.shape=\(33, 35\).*never written|wrong values", False),
    ("transpose_padded", "tile[cuda.threadIdx.x, r]   #", "tile[r, cuda.threadIdx.x]   #",
     r"x.shape=\(32, 32\).*wrong values", False),
]


@pytest.mark.parametrize(
    "name, old, new, pattern, sim_only",
    [pytest.param(*m, marks=simulator_only if m[4] else ()) for m in MUTATIONS],
    ids=[f"{i}-{m[0]}:{m[1].strip()[:40]}->{m[2].strip()[:30]}" for i, m in enumerate(MUTATIONS)],
)
def test_check_fails_on_a_mutated_solution(name, old, new, pattern, sim_only, solutions, capsys):
    source = mutate(solutions[name], old, new)
    with np.errstate(all="ignore"), pytest.raises(AssertionError) as info:
        call_check(name, define(source, name))
    assert re.search(pattern, str(info.value)), str(info.value)
    assert "✓" not in capsys.readouterr().out


# ----------------------------------------------- the package's own kernels, right and wrong rungs ----

PACKAGE_KERNELS = [  # (check, kernel, keyword arguments, None if it must pass else the regex of its failure)
    (checks.check_vector_add, vector_add_grid_stride, {}, None),
    (checks.check_vector_add, vector_add_kernel, {}, r"cuda.gridsize\(1\)"),
    (checks.check_block_sum, reduce_interleaved, {"threads_per_block": 64}, None),
    (checks.check_block_sum, reduce_neighbored, {"threads_per_block": 64}, r"sequential addressing"),
    (checks.check_gemm_tiled, gemm_tiled, {"tile": PACKAGE_TILE}, None),
    (checks.check_transpose_padded, transpose_padded, {}, None),
    (checks.check_transpose_padded, transpose_tiled, {}, r"32-way bank conflict"),
    (checks.check_transpose_padded, transpose_naive, {}, r"naive transpose"),
]


@pytest.mark.parametrize("check, kernel, kwargs, failure", PACKAGE_KERNELS,
                         ids=[k.py_func.__name__ for _, k, _, _ in PACKAGE_KERNELS])
def test_package_kernels_pass_or_fail_for_the_right_reason(check, kernel, kwargs, failure, capsys):
    if failure is None:
        check(kernel, **kwargs)
        assert capsys.readouterr().out.startswith("✓")
    else:
        with pytest.raises(AssertionError, match=failure):
            check(kernel, **kwargs)


# ----------------------------------------------------------------------------------- the helpers ----

def test_bank_conflict_degree_is_the_gcd_of_row_length_and_banks():
    for width in range(1, 70):
        assert checks.bank_conflict_degree(width) == np.gcd(width, 32), width
    assert checks.bank_conflict_degree(32, rows=8) == 8  # only 8 rows: 8 words of bank 0


def test_sequential_addressing_sums_are_the_package_rung_bit_for_bit():
    x = np.random.default_rng(1).standard_normal(300).astype(np.float32)
    expected = block_partials(x, "interleaved", threads_per_block=64)
    assert np.array_equal(checks.sequential_addressing_sums(x, 64), expected)
    assert checks.sequential_addressing_sums(np.ones(5, np.float32), 8).tolist() == [5.0]


def test_bad_launch_parameters_are_refused_before_launching():
    ns = define("@cuda.jit\ndef k(x, partial):\n    pass\n", "k")
    with pytest.raises(ValueError, match="power of two"):
        checks.check_block_sum(ns["k"], threads_per_block=48)
    with pytest.raises(ValueError, match="at most 1024"):
        checks.check_gemm_tiled(ns["k"], tile=40)


# ------------------------------------------------------------------------------ the notebook itself ----

def expected_student_source(src: str) -> str:
    """The solution cell with each region cut out by a plain regex (independent of strip_solutions)."""
    pattern = re.compile(rf"^([ \t]*){re.escape(BEGIN_SOLUTION)}.*?^[ \t]*{re.escape(END_SOLUTION)}[^\n]*",
                         re.S | re.M)
    return pattern.sub(lambda m: f"{m.group(1)}{STUB}{m.group(1)}{STUB_RAISE}", src)


@pytest.fixture(scope="module")
def lab05_student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    copies = write_student_copies([LAB05], out)
    assert [c.source.resolve() for c in copies] == [LAB05.resolve()]
    return nbformat.read(out / LAB05.name, as_version=4)


def test_lab05_solution_notebook_follows_the_conventions(lab05):
    assert lab05.metadata["kernelspec"]["name"] == "python3"
    assert_notebook_conventions(lab05)
    solution = code_cells(lab05, BEGIN_SOLUTION)
    assert len(solution) == 4
    code = "\n".join(c.source for c in lab05.cells if c.cell_type == "code")
    assert "default_rng(0)" in code and "print(kc.describe())" in code
    # the package that picks GPU or simulator is imported before numba.cuda
    setup = lab05.cells[code_cells(lab05, "import")[0]].source
    assert setup.index("import mlsys_lab.kernels.cuda") < setup.index("from numba import cuda")


def test_lab05_student_copy_replaces_every_solution_region(lab05, lab05_student):
    assert len(lab05_student.cells) == len(lab05.cells)
    solution = set(code_cells(lab05, BEGIN_SOLUTION))
    assert lab05_student.metadata["mlsys_lab"]["student_copy"]["regions"] == len(solution) == 4
    for i, (sol, stu) in enumerate(zip(lab05.cells, lab05_student.cells)):
        assert sol.cell_type == stu.cell_type
        if stu.cell_type != "code":
            assert stu.source == sol.source
            continue
        assert BEGIN_SOLUTION not in stu.source and END_SOLUTION not in stu.source
        if i in solution:
            assert stu.source == expected_student_source(sol.source)
        else:
            assert stu.source == sol.source
    text = nbformat.writes(lab05_student)
    for answer in ["stride = cuda.gridsize(1)", "s[tid] += s[tid + stride]", "acc += a_tile[ty, p] * b_tile[p, tx]",
                   "cuda.shared.array((TILE_DIM, PADDED), float32)"]:
        assert answer in nbformat.writes(lab05) and answer not in text
    # what the student is given stays: the shared arrays of the reduction and the GEMM, the constants
    for given in ["s = cuda.shared.array(BLOCK, float32)", "a_tile = cuda.shared.array((TILE, TILE), float32)",
                  "PADDED = TILE_DIM + 1"]:
        assert given in text

