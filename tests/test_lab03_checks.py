"""Lab 3's checks pass on the lab's own solutions and fail on planted bugs; the lab follows the conventions.

The solutions are taken from the solution cells of labs/lab03_runtime.ipynb (the whole cell that contains
``### BEGIN SOLUTION``), so these tests check the notebook's answers and the checks against each other.
Each planted bug is a mistake students make; its check must raise AssertionError with a message that
names the problem, never pass. The student copy of the lab, executed, runs every cell before its first
exercise check and stops there with NotImplementedError.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from mlsys_lab.course.checks import lab03 as checks
from mlsys_lab.course.student import BEGIN_SOLUTION, END_SOLUTION, STUB_RAISE, write_student_copies
from labtools import assert_notebook_conventions, code_cells, next_code_cell

ROOT = Path(__file__).resolve().parents[1]
LAB03 = ROOT / "labs" / "lab03_runtime.ipynb"
STUB = "# YOUR CODE HERE\n"

EXERCISES = {  # function defined in the solution cell -> the check the next cell calls
    "live_intervals": checks.check_live_intervals,
    "peak_live_bytes": checks.check_peak_live_bytes,
    "place_best_fit": checks.check_place_best_fit,
    "run_parallel": checks.check_run_parallel,
    "critical_path": checks.check_critical_path,
}


def solution_sources(nb, marker: str = BEGIN_SOLUTION) -> dict[str, str]:
    return {re.search(r"^def (\w+)\(", nb.cells[i].source, re.M).group(1): nb.cells[i].source
            for i in code_cells(nb, marker)}


def define(source: str, name: str):
    """Execute one exercise cell (they use NumPy, queue and threading) and return the function it defines."""
    namespace = {"np": np, "queue": queue, "threading": threading}
    exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace[name]


def mutate(source: str, old: str, new: str) -> str:
    assert old in source, f"the planted bug expects {old!r} in the notebook's solution"
    return source.replace(old, new)


@pytest.fixture(scope="module")
def lab03():
    return nbformat.read(LAB03, as_version=4)


@pytest.fixture(scope="module")
def solutions(lab03) -> dict[str, str]:
    return solution_sources(lab03)


# ------------------------------------------------------------------- the notebook's own solutions ----

def test_every_exercise_is_checked_by_its_own_check(lab03, solutions):
    assert list(solutions) == list(EXERCISES)            # in this order
    for i in code_cells(lab03, BEGIN_SOLUTION):
        name = re.search(r"^def (\w+)\(", lab03.cells[i].source, re.M).group(1)
        check = lab03.cells[next_code_cell(lab03, i)]
        assert check.source.strip() == f"checks.{EXERCISES[name].__name__}({name})"


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_passes_on_the_notebook_solution(name, solutions, capsys):
    EXERCISES[name](define(solutions[name], name))
    out = capsys.readouterr().out
    assert out.startswith("✓") and "passed" in out


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_lets_the_student_stub_raise_not_implemented(name, lab03_student):
    student = solution_sources(lab03_student, marker=STUB_RAISE)
    assert list(student) == list(EXERCISES)
    with pytest.raises(NotImplementedError):
        EXERCISES[name](define(student[name], name))


@pytest.mark.parametrize("name, words", [
    ("live_intervals", "returned None"),
    ("peak_live_bytes", "returned None"),
    ("place_best_fit", "returned None"),
    ("run_parallel", r"steps \[0, 1, 2, 3, 4\] had not started"),   # returning None is right, doing nothing is not
    ("critical_path", "returned None"),
])
def test_check_rejects_a_function_that_does_nothing(name, words):
    with pytest.raises(AssertionError, match=words):
        EXERCISES[name](lambda *args, **kwargs: None)


# ------------------------------------------------------- planted bugs: mutations of the solution ----

MUTATIONS = [  # (exercise, old, new, words the message must contain)
    ("live_intervals", "last[v] = len(steps)", "last[v] = len(steps) - 1", "is an output"),
    ("live_intervals", "last[v] = len(steps)", "pass", "is an output"),
    ("live_intervals", "            if v in first:          # a computed value (graph inputs were never written)\n"
                       "                last[v] = k",
                       "            if v in first and last[v] == first[v]:\n                last[v] = k",
     "last reader, not its first"),
    ("live_intervals", "first[out] = last[out] = k", "first[out] = k", "raised KeyError"),
    ("peak_live_bytes", "change[last + 1]", "change[last]", "include both ends"),
    ("peak_live_bytes", "peak = max(peak, live)", "peak = peak + max(live, 0)", "expected"),
    ("place_best_fit", "gap < best_size", "gap > best_size", "best fit takes the smallest"),
    ("place_best_fit", "(best_size is None or gap < best_size)", "best is None", "that is first fit"),
    ("place_best_fit", "top = max(top, hi)", "top = hi", "share bytes"),
    ("place_best_fit", "if not (intervals[u][1] < first or last < intervals[u][0])", "if True",
     "expected"),
    ("place_best_fit", "if not (intervals[u][1] < first or last < intervals[u][0])",
     "if not (intervals[u][1] <= first or last <= intervals[u][0])", "share bytes"),
    ("run_parallel", "for _ in range(num_threads)]", "for _ in range(1)]", "never ran at the same time"),
    ("run_parallel", "remaining = [len(ds) for ds in deps]", "remaining = [0 for ds in deps]",
     "which it depends on"),
    ("run_parallel", "                    if remaining[t] == 0:\n                        ready.put(t)",
     "                    pass", "deadlock"),
    ("run_parallel", "    all_done.wait()\n    for _ in workers:\n        ready.put(None)\n    for w in workers:\n"
                     "        w.join()\n", "",
     ("returned before", "still running after")),  # the second if every step finished before the check looked
    ("run_parallel", "    for _ in workers:\n        ready.put(None)\n    for w in workers:\n        w.join()\n", "",
     "still running after"),
    ("run_parallel", "    if not deps:\n        return\n", "", "no steps is done before it starts"),
    ("critical_path", "+ durations[s])", ")", "latest finish among its dependencies"),
    ("critical_path", "return finish[end], path[::-1]", "return finish[end], path", "looks reversed"),
    ("critical_path", "max(ds, key=lambda d: finish[d], default=None)", "min(ds, default=None)", "critical path"),
]


def _timeout_for(name: str) -> dict:
    return {"timeout": 2.0} if name == "run_parallel" else {}


@pytest.mark.parametrize("name, old, new, words", MUTATIONS,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MUTATIONS)])
def test_check_fails_on_a_mutated_solution(name, old, new, words, solutions, capsys):
    buggy = define(mutate(solutions[name], old, new), name)
    with pytest.raises(AssertionError) as info:
        EXERCISES[name](buggy, **_timeout_for(name))
    words = (words,) if isinstance(words, str) else words
    assert any(w in str(info.value) for w in words), str(info.value)
    assert "✓" not in capsys.readouterr().out


# ------------------------------------------------------ planted bugs: mistakes written from scratch ----

def intervals_include_graph_inputs(steps, outputs):
    first, last = {}, {}
    for k, (out, inputs) in enumerate(steps):
        for v in inputs:
            first.setdefault(v, 0)                 # an input is "live from the start"
            last[v] = k
        first[out] = last[out] = k
    for v in outputs:
        last[v] = len(steps)
    return {v: (first[v], last[v]) for v in first}


def intervals_start_at_first_read(steps, outputs):
    first, last = {}, {}
    written = {out for out, _ in steps}
    for k, (out, inputs) in enumerate(steps):
        for v in inputs:
            if v in written:
                first.setdefault(v, k)
                last[v] = k
        last.setdefault(out, k)
    for v in outputs:
        last[v] = len(steps)
    return {v: (first.get(v, last[v]), last[v]) for v in last}


def intervals_as_lists(steps, outputs):  # lists instead of tuples are fine
    first, last = {}, {}
    for k, (out, inputs) in enumerate(steps):
        for v in inputs:
            if v in first:
                last[v] = k
        first[out] = last[out] = k
    for v in outputs:
        last[v] = len(steps)
    return {v: [first[v], last[v]] for v in first}


def peak_sums_everything(intervals, sizes):
    return sum(sizes[v] for v in intervals)


def peak_returns_the_step(intervals, sizes):
    end = max((b for _, b in intervals.values()), default=0)
    live = [sum(sizes[v] for v, (a, b) in intervals.items() if a <= t <= b) for t in range(end + 1)]
    return int(np.argmax(live)) if live else 0


def peak_as_float(intervals, sizes):
    end = max((b for _, b in intervals.values()), default=0)
    return float(max((sum(sizes[v] for v, (a, b) in intervals.items() if a <= t <= b) for t in range(end + 1)),
                     default=0))


def place_everything_apart(intervals, sizes, order):
    offsets, top = {}, 0
    for v in order:
        offsets[v] = top
        top += sizes[v]
    return offsets


def place_on_top_of_the_arena(intervals, sizes, order):
    offsets = {}
    for v in order:
        first, last = intervals[v]
        busy = sorted((offsets[u], offsets[u] + sizes[u]) for u in offsets
                      if not (intervals[u][1] < first or last < intervals[u][0]))
        best = best_size = None
        top = 0
        for lo, hi in busy:
            if lo - top >= sizes[v] and (best_size is None or lo - top < best_size):
                best, best_size = top, lo - top
            top = max(top, hi)
        arena_top = max((offsets[u] + sizes[u] for u in offsets), default=0)
        offsets[v] = arena_top if best is None else best
    return offsets


def place_ignores_order(intervals, sizes, order):
    from itertools import chain  # noqa: F401  (a plausible import; the bug is the order)
    offsets = {}
    for v in sorted(order):
        first, last = intervals[v]
        busy = sorted((offsets[u], offsets[u] + sizes[u]) for u in offsets
                      if not (intervals[u][1] < first or last < intervals[u][0]))
        best = best_size = None
        top = 0
        for lo, hi in busy:
            if lo - top >= sizes[v] and (best_size is None or lo - top < best_size):
                best, best_size = top, lo - top
            top = max(top, hi)
        offsets[v] = top if best is None else best
    return offsets


def run_sequentially(deps, run_step, num_threads=2):
    for s in range(len(deps)):
        run_step(s)


def run_a_thread_per_step(deps, run_step, num_threads=2):
    done, started, lock, threads = set(), set(), threading.Lock(), []
    while len(done) < len(deps):
        with lock:
            ready = [s for s in range(len(deps)) if s not in started and all(d in done for d in deps[s])]
        for s in ready:
            started.add(s)

            def go(s=s):
                run_step(s)
                with lock:
                    done.add(s)

            t = threading.Thread(target=go)
            t.start()
            threads.append(t)
        time.sleep(0.0002)
    for t in threads:
        t.join()


def run_each_step_once_per_dependency(deps, run_step, num_threads=2):
    # Queues a step each time one of its dependencies finishes, instead of when the last one does.
    ready, lock = queue.SimpleQueue(), threading.Lock()
    dependents = [[] for _ in deps]
    for s, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(s)
    for s, ds in enumerate(deps):
        if not ds:
            ready.put(s)
    count = [0]
    expected = len(deps) + sum(max(len(ds) - 1, 0) for ds in deps)

    def worker():
        while True:
            s = ready.get()
            if s is None:
                return
            run_step(s)
            with lock:
                for t in dependents[s]:
                    ready.put(t)
                count[0] += 1
                if count[0] == expected:
                    for _ in range(num_threads):
                        ready.put(None)

    if not deps:
        return
    workers = [threading.Thread(target=worker) for _ in range(num_threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def critical_path_is_the_work(deps, durations):
    return sum(durations), list(range(len(durations)))


def critical_path_is_the_longest_step(deps, durations):
    s = int(np.argmax(durations))
    return durations[s], [s]


def critical_path_counts_steps(deps, durations):
    depth = []
    for s, ds in enumerate(deps):
        depth.append(1 + max((depth[d] for d in ds), default=0))
    end = int(np.argmax(depth))
    path = [end]
    while deps[path[-1]]:
        path.append(max(deps[path[-1]], key=lambda d: depth[d]))
    return float(max(depth)), path[::-1]


def critical_path_without_the_path(deps, durations):
    finish = []
    for s, ds in enumerate(deps):
        finish.append(max((finish[d] for d in ds), default=0.0) + durations[s])
    return max(finish), []


BUGS = [  # (check, buggy function, words the message must contain)
    (checks.check_live_intervals, intervals_include_graph_inputs, "graph input"),
    (checks.check_live_intervals, intervals_start_at_first_read, "becomes live at the step that writes it"),
    (checks.check_peak_live_bytes, peak_sums_everything, "naive total"),
    (checks.check_peak_live_bytes, peak_returns_the_step, "not the step"),
    (checks.check_peak_live_bytes, peak_as_float, "expected an int"),
    (checks.check_place_best_fit, place_everything_apart, "expected"),
    (checks.check_place_best_fit, place_on_top_of_the_arena, "not of the whole arena"),
    (checks.check_place_best_fit, place_ignores_order, "expected"),
    (checks.check_place_best_fit, lambda intervals, sizes, order: {v: 0 for v in order}, "share bytes"),
    (checks.check_place_best_fit, lambda intervals, sizes, order: {v: 0 for v in order[:-1]}, "missing"),
    (checks.check_run_parallel, run_sequentially, "never ran at the same time"),
    (checks.check_run_parallel, run_a_thread_per_step, "steps ran at the same time with num_threads="),
    (checks.check_run_parallel, run_each_step_once_per_dependency, "step 4 ran 2 times"),
    (checks.check_critical_path, critical_path_is_the_work, "total work"),
    (checks.check_critical_path, critical_path_is_the_longest_step, "longest single step"),
    (checks.check_critical_path, critical_path_counts_steps, "counts steps"),
    (checks.check_critical_path, critical_path_without_the_path, "non-empty list"),
]


@pytest.mark.parametrize("check, buggy, words", BUGS,
                         ids=[f"{c.__name__}:{getattr(b, '__name__', 'lambda')}-{i}"
                              for i, (c, b, _) in enumerate(BUGS)])
def test_check_fails_on_a_planted_bug(check, buggy, words, capsys):
    kwargs = {"timeout": 2.0} if check is checks.check_run_parallel else {}
    with pytest.raises(AssertionError) as info:
        check(buggy, **kwargs)
    assert words in str(info.value), str(info.value)
    assert "✓" not in capsys.readouterr().out


def test_liveness_accepts_lists_for_intervals(capsys):
    checks.check_live_intervals(intervals_as_lists)
    assert capsys.readouterr().out.startswith("✓")


def test_check_reports_an_exception_as_a_failure_naming_the_case():
    def crashes(steps, outputs):
        return {out: (k, steps[k + 1]) for k, (out, _) in enumerate(steps)}  # IndexError at the end

    with pytest.raises(AssertionError, match="(?s)live_intervals on a chain.*raised IndexError"):
        checks.check_live_intervals(crashes)

    def executor_crashes(deps, run_step, num_threads=2):
        raise RuntimeError("boom")

    with pytest.raises(AssertionError, match="raised RuntimeError: boom"):
        checks.check_run_parallel(executor_crashes)


# ----------------------------------------------------------------- the checks' own ground truth ----

def test_liveness_by_definition_on_a_hand_case():
    steps = [("a", ["x"]), ("b", ["a", "a"]), ("dead", ["b"]), ("c", ["a", "b"])]
    assert checks.liveness_by_definition(steps, ["c", "a"]) == {
        "a": (0, 4), "b": (1, 3), "dead": (2, 2), "c": (3, 4)}


def test_random_programs_are_seeded_and_well_formed():
    a = checks.random_program(np.random.default_rng(5))
    b = checks.random_program(np.random.default_rng(5))
    assert a == b
    steps, outputs = a
    written = set()
    for out, inputs in steps:
        assert all(v in written or v in ("x0", "x1") for v in inputs)
        written.add(out)
    assert steps[-1][0] in outputs and set(outputs) <= written


# --------------------------------------------------------------------- the notebook and its copy ----

@pytest.fixture(scope="module")
def lab03_student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    copies = write_student_copies([LAB03], out)
    assert [c.source.resolve() for c in copies] == [LAB03.resolve()]
    return nbformat.read(out / LAB03.name, as_version=4)


def expected_student_source(src: str) -> str:
    """The solution cell with each region cut out by a plain regex (independent of strip_solutions)."""
    pattern = re.compile(rf"^([ \t]*){re.escape(BEGIN_SOLUTION)}.*?^[ \t]*{re.escape(END_SOLUTION)}[^\n]*",
                         re.S | re.M)
    return pattern.sub(lambda m: f"{m.group(1)}{STUB}{m.group(1)}{STUB_RAISE}", src)


def test_lab03_solution_notebook_follows_the_conventions(lab03):
    assert lab03.metadata["kernelspec"]["name"] == "python3"
    assert_notebook_conventions(lab03)
    assert len(code_cells(lab03, BEGIN_SOLUTION)) == 5
    seeded = "\n".join(c.source for c in lab03.cells if c.cell_type == "code")
    assert "default_rng(0)" in seeded and "seed=0" in seeded


def test_lab03_student_copy_replaces_every_solution_region(lab03, lab03_student):
    assert len(lab03_student.cells) == len(lab03.cells)
    solution = set(code_cells(lab03, BEGIN_SOLUTION))
    assert lab03_student.metadata["mlsys_lab"]["student_copy"]["regions"] == len(solution) == 5
    for i, (sol, stu) in enumerate(zip(lab03.cells, lab03_student.cells)):
        assert sol.cell_type == stu.cell_type
        if stu.cell_type != "code":
            assert stu.source == sol.source
            continue
        assert BEGIN_SOLUTION not in stu.source and END_SOLUTION not in stu.source
        assert stu.source == (expected_student_source(sol.source) if i in solution else sol.source)
    text = nbformat.writes(lab03_student)
    for answer in ["last[v] = len(steps)", "change[last + 1]", "gap < best_size", "remaining[t] -= 1",
                   "finish[before]"]:
        assert answer in nbformat.writes(lab03) and answer not in text
    # the scaffolding given around an exercise stays in the student's copy
    assert "dependents[d].append(s)" in text and "offsets = {}" in text and "def program_of(plan):" in text

