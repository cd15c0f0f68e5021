"""Lab 6's checks pass on the lab's own solutions and fail on planted bugs; its student copy fails where it should.

The solutions are the solution cells of labs/lab06_batching_server.ipynb, executed in order in one
namespace (``batching_loop`` calls the ``gather``, ``scatter`` and ``plan_batch`` defined before it).
Each planted bug is a mistake students make; its check must raise AssertionError with a message that
points at it, never pass. The rule the ``plan_batch`` check holds students to must be the server's rule.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from pathlib import Path

import nbformat
import numpy as np
import pytest

from mlsys_lab.course.checks import lab06 as checks
from mlsys_lab.course.student import BEGIN_SOLUTION, END_SOLUTION, STUB_RAISE, make_student_notebook
from mlsys_lab.serving import plan_batch as server_plan_batch
from labtools import assert_notebook_conventions

ROOT = Path(__file__).resolve().parents[1]
LAB06 = ROOT / "labs" / "lab06_batching_server.ipynb"

EXERCISES = {  # function defined in the solution cell -> the check the next code cell calls
    "gather": checks.check_gather,
    "scatter": checks.check_scatter,
    "plan_batch": checks.check_plan_batch,
    "batching_loop": checks.check_batching_loop,
}
ORDER = list(EXERCISES)


def exercise_name(source: str, marker: str) -> str:
    head = source[: source.index(marker)]
    return re.findall(r"^(?:async )?def (\w+)\(", head, re.M)[-1]


def solution_cells(nb, marker: str = BEGIN_SOLUTION) -> dict[str, str]:
    return {exercise_name(c.source, marker): c.source for c in nb.cells
            if c.cell_type == "code" and marker in c.source}


@pytest.fixture(scope="module")
def lab06():
    return nbformat.read(LAB06, as_version=4)


@pytest.fixture(scope="module")
def solutions(lab06) -> dict[str, str]:
    return solution_cells(lab06)


def define(sources: dict[str, str], upto: str, replace: dict[str, str] | None = None):
    """Execute the solution cells up to ``upto`` in one namespace (optionally swapping some sources)."""
    namespace = {"np": np, "asyncio": asyncio, "time": time, "deque": deque}
    for name in ORDER[: ORDER.index(upto) + 1]:
        source = (replace or {}).get(name, sources[name])
        exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace[upto]


def mutate(source: str, old: str, new: str) -> str:
    assert old in source, f"the planted bug expects {old!r} in the notebook's solution"
    return source.replace(old, new)


# --------------------------------------------------------------------------- the notebook itself ----

def test_lab06_follows_the_conventions(lab06):
    assert lab06.metadata["kernelspec"]["name"] == "python3"
    assert_notebook_conventions(lab06)
    code = "\n".join(c.source for c in lab06.cells if c.cell_type == "code")
    assert "default_rng(0)" in code
    assert '"--http-port", "0"' in code and "SIGTERM" in code      # a free port, and a clean shutdown


def test_every_exercise_is_checked_by_its_own_check(lab06, solutions):
    assert list(solutions) == ORDER
    cells = lab06.cells
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and BEGIN_SOLUTION in cell.source:
            name = exercise_name(cell.source, BEGIN_SOLUTION)
            check = next(c for c in cells[i + 1:] if c.cell_type == "code")
            assert check.source.strip() == f"checks.{EXERCISES[name].__name__}({name})"


@pytest.mark.parametrize("name", ORDER)
def test_check_passes_on_the_notebook_solution(name, solutions, capsys):
    EXERCISES[name](define(solutions, name))
    out = capsys.readouterr().out
    assert out.startswith("✓") and "passed" in out


@pytest.mark.parametrize("name", ORDER)
def test_check_lets_the_student_stub_raise_not_implemented(name, lab06, solutions):
    student = solution_cells(make_student_notebook(lab06), marker=STUB_RAISE)
    assert set(student) == set(EXERCISES)
    # The student's stub for this exercise, with working answers to the earlier ones.
    with pytest.raises(NotImplementedError):
        EXERCISES[name](define(solutions, name, replace={name: student[name]}))


@pytest.mark.parametrize("name", ["gather", "scatter", "plan_batch"])
def test_check_rejects_a_function_returning_none(name):
    with pytest.raises(AssertionError, match="None|expected a pair"):
        EXERCISES[name](lambda *args, **kwargs: None)


def test_the_plan_batch_rule_is_the_servers_rule():
    rng = np.random.default_rng(1)
    for _ in range(3000):
        max_b = int(rng.choice([2, 4, 8, 16, 32]))
        n = int(rng.integers(0, 14))
        sizes = [int(s) for s in rng.choice([1, 1, 1, 2, 3, 5], size=n) if s <= max_b]
        arrivals = sorted(int(a) for a in rng.integers(0, 30_000_000, size=len(sizes)))
        now = (arrivals[-1] if arrivals else 0) + int(rng.integers(0, 20_000_000))
        pref = tuple(sorted({int(p) for p in rng.integers(1, max_b + 1, size=int(rng.integers(0, 4)))}))
        delay = int(rng.choice([0, 1_000_000, 10_000_000]))
        expected = checks.expected_plan(sizes, arrivals, now, max_batch_size=max_b, preferred=pref,
                                        max_delay_ns=delay)
        server = server_plan_batch(sizes, [()] * len(sizes), arrivals, now, max_batch_size=max_b,
                                   preferred_batch_sizes=pref, max_queue_delay_ns=delay)
        assert expected == (server.take, server.wait_ns), (sizes, arrivals, now, max_b, pref, delay)


# ------------------------------------------------------- planted bugs: mutations of the solution ----

MUTATIONS = [  # (exercise, old, new, words the message must contain)
    ("gather", "np.concatenate([r[name] for r in requests], axis=0)", "np.stack([r[name] for r in requests])",
     "np.stack adds a new axis"),
    ("gather", "len(next(iter(r.values())))", "1", "expected sizes"),
    ("scatter", "array[start:start + b]", "array[start:start + b + 1]", "must get 1 row"),
    ("scatter", "start += b", "start += 1", "scatter with sizes [2, 2]"),
    ("plan_batch", "best = count                  # the longest", "pass                          # the longest",
     "preferred"),
    ("plan_batch", "if count < len(sizes) or total >= cap:", "if count < len(sizes):", "cannot grow"),
    ("plan_batch", "return 0, max_delay_ns - waited", "return 0, max_delay_ns", "expected to wait"),
    ("plan_batch", "min(arrivals_ns[:count])", "max(arrivals_ns[:count])", "oldest"),
    ("plan_batch", "if exceeded or max_delay_ns == 0:", "if exceeded:", "nothing ever waits"),
    ("plan_batch", "if count and total + size > max_batch_size:", "if count and total + size > 2 * max_batch_size:",
     "max_batch_size"),
    ("batching_loop", "requests = [batcher.queue.popleft() for _ in range(take)]",
     "requests = [batcher.queue.popleft() for _ in range(len(batcher.queue))]", "scenario 1"),
    ("batching_loop", "await asyncio.wait_for(batcher.wakeup.wait(), wait_ns / 1e9)",
     "await batcher.wakeup.wait()", "scenario 3"),
    ("batching_loop", "zip(requests, scatter(outputs, sizes))", "zip(requests[::-1], scatter(outputs, sizes))",
     "its own inputs"),
    ("batching_loop", "            if batcher.stopping:\n                return\n", "", "must return"),
    ("batching_loop", "        except Exception as exc:\n            for r in requests:\n"
                      "                if not r.future.done():\n"
                      "                    r.future.set_exception(exc)\n            continue\n",
     "        except Exception as exc:\n            raise\n", "scenario 6"),
]


@pytest.mark.parametrize("name, old, new, words", MUTATIONS,
                         ids=[f"{m[0]}:{i}" for i, m in enumerate(MUTATIONS)])
def test_check_fails_on_a_mutated_solution(name, old, new, words, solutions, capsys):
    buggy = define(solutions, name, replace={name: mutate(solutions[name], old, new)})
    with pytest.raises(AssertionError) as info:
        EXERCISES[name](buggy)
    assert words in str(info.value), str(info.value)
    assert "✓ " + name.replace("_", " ") not in capsys.readouterr().out


# ------------------------------------------------------ planted bugs: mistakes written from scratch ----

def gather_first_input_only(requests):
    name = next(iter(requests[0]))
    return {name: np.concatenate([r[name] for r in requests])}, [len(r[name]) for r in requests]


def gather_counts_requests(requests):
    return ({k: np.concatenate([r[k] for r in requests]) for k in requests[0]}, [1] * len(requests))


def gather_casts_to_float(requests):
    return ({k: np.concatenate([r[k] for r in requests]).astype(np.float32) for k in requests[0]},
            [len(next(iter(r.values()))) for r in requests])


def scatter_equal_split(outputs, sizes):
    parts = {k: np.array_split(v, len(sizes)) for k, v in outputs.items()}
    return [{k: parts[k][i] for k in outputs} for i in range(len(sizes))]


def scatter_offsets_by_index(outputs, sizes):
    return [{k: v[i * b:i * b + b] for k, v in outputs.items()} for i, b in enumerate(sizes)]


def plan_always_everything(sizes, arrivals_ns, now_ns, *, max_batch_size, preferred=(), max_delay_ns=0):
    return (len(sizes), None) if sizes else (0, None)


def plan_requests_not_samples(sizes, arrivals_ns, now_ns, *, max_batch_size, preferred=(), max_delay_ns=0):
    if not sizes:
        return 0, None
    take = min(len(sizes), max_batch_size)          # counts requests where samples are meant
    if take in preferred or take == max_batch_size or max_delay_ns == 0 or now_ns - arrivals_ns[0] >= max_delay_ns:
        return take, None
    return 0, max_delay_ns - (now_ns - arrivals_ns[0])


def plan_never_waits(sizes, arrivals_ns, now_ns, *, max_batch_size, preferred=(), max_delay_ns=0):
    total = count = 0
    for s in sizes:
        if total + s > max_batch_size:
            break
        total, count = total + s, count + 1
    return (count, None) if sizes else (0, None)


async def loop_one_at_a_time(batcher):
    while True:
        if not batcher.queue:
            if batcher.stopping:
                return
            batcher.wakeup.clear()
            await batcher.wakeup.wait()
            continue
        r = batcher.queue.popleft()
        try:
            out = await batcher.execute(r.inputs)
            r.future.set_result(out)
        except Exception as exc:
            r.future.set_exception(exc)


async def loop_that_blocks(batcher):
    while not batcher.queue:
        await asyncio.sleep(0.001)
    time.sleep(6.5)                                 # blocks the event loop: nothing else can run


BUGS = [  # (check, buggy function, words the message must contain)
    (checks.check_gather, gather_first_input_only, "IN0 and IN1"),
    (checks.check_gather, gather_counts_requests, "expected sizes"),
    (checks.check_gather, gather_casts_to_float, "dtype"),
    (checks.check_scatter, scatter_equal_split, "scatter with sizes [3, 1]"),
    (checks.check_scatter, scatter_offsets_by_index, "not at i * its own size"),
    (checks.check_plan_batch, plan_always_everything, "plan_batch"),
    (checks.check_plan_batch, plan_requests_not_samples, "expected take"),
    (checks.check_plan_batch, plan_never_waits, "wait"),
    (checks.check_batching_loop, loop_one_at_a_time, "scenario 1"),
]


@pytest.mark.parametrize("check, buggy, words", BUGS,
                         ids=[f"{c.__name__}:{b.__name__}" for c, b, _ in BUGS])
def test_check_fails_on_a_planted_bug(check, buggy, words, capsys):
    with pytest.raises(AssertionError) as info:
        check(buggy)
    assert words in str(info.value), str(info.value)
    assert "✓" not in capsys.readouterr().out


@pytest.mark.slow
def test_a_loop_that_blocks_the_event_loop_fails_instead_of_hanging():
    t0 = time.perf_counter()
    with pytest.raises(AssertionError, match="blocking the event loop|not every request|scenario 1"):
        checks.check_batching_loop(loop_that_blocks)
    assert time.perf_counter() - t0 < 30


# -------------------------------------------------------------------------------- the student copy ----

def test_student_copy_strips_every_answer(lab06):
    student = make_student_notebook(lab06)
    text = "\n".join(c.source for c in student.cells)
    solution = "\n".join(c.source for c in lab06.cells)
    assert BEGIN_SOLUTION not in text and END_SOLUTION not in text
    assert text.count(STUB_RAISE) == len(EXERCISES)
    for answer in ["np.concatenate([r[name] for r in requests], axis=0)", "start += b", "best = count",
                   "batcher.queue.popleft() for _ in range(take)"]:
        assert answer in solution and answer not in text
    # What the student builds on stays: the MiniBatcher class and the empty-queue guard of plan_batch.
    assert "class MiniBatcher:" in text and "if len(sizes) == 0:" in text

