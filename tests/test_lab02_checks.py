"""Lab 2's checks pass on the lab's own solutions and fail on planted bugs.

The solutions are the solution cells of labs/lab02_graph_passes.ipynb (the whole cell, so that helpers
given next to an exercise, such as ``attrs_key`` and ``is_const``, come along), executed after the
notebook's import cell. Each planted bug is a mistake students make; its check must raise AssertionError
with a message that points at it, never pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from mlsys_lab.course.checks import lab02 as checks
from mlsys_lab.course.student import BEGIN_SOLUTION, STUB_RAISE, make_student_notebook
from mlsys_lab.graph import CycleError, Graph

ROOT = Path(__file__).resolve().parents[1]
LAB02 = ROOT / "labs" / "lab02_graph_passes.ipynb"

EXERCISES = {  # function defined in the solution cell -> the check the next code cell calls
    "topological_order": checks.check_topological_order,
    "dead_code_elimination": checks.check_dead_code_elimination,
    "common_subexpression_elimination": checks.check_common_subexpression_elimination,
    "simplify_rule": checks.check_simplify_rule,
    "fusion_groups": checks.check_fusion_groups,
}


def exercise_name(source: str, marker: str) -> str:
    """The function whose body holds the marker: the last ``def`` before it."""
    head = source[: source.index(marker)]
    return re.findall(r"^def (\w+)\(", head, re.M)[-1]


def solution_cells(nb, marker: str = BEGIN_SOLUTION) -> dict[str, str]:
    return {exercise_name(c.source, marker): c.source for c in nb.cells
            if c.cell_type == "code" and marker in c.source}


@pytest.fixture(scope="module")
def lab02():
    return nbformat.read(LAB02, as_version=4)


@pytest.fixture(scope="module")
def solutions(lab02) -> dict[str, str]:
    return solution_cells(lab02)


@pytest.fixture(scope="module")
def setup_namespace(lab02) -> dict:
    """The names the notebook's first code cell (its imports) defines."""
    namespace: dict = {}
    first = next(c for c in lab02.cells if c.cell_type == "code")
    exec(compile(first.source, "<lab02 imports>", "exec"), namespace)
    return namespace


@pytest.fixture
def define(setup_namespace):
    def define(source: str, name: str):
        """Execute one exercise cell in a copy of the notebook's namespace; return its function."""
        namespace = dict(setup_namespace)
        exec(compile(source, f"<{name}>", "exec"), namespace)
        return namespace[name]
    return define


def mutate(source: str, old: str, new: str) -> str:
    assert old in source, f"the planted bug expects {old!r} in the notebook's solution"
    return source.replace(old, new)


# ------------------------------------------------------------------- the notebook's own solutions ----

def test_every_exercise_is_checked_by_its_own_check(lab02, solutions):
    assert set(solutions) == set(EXERCISES)
    cells = lab02.cells
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and BEGIN_SOLUTION in cell.source:
            name = exercise_name(cell.source, BEGIN_SOLUTION)
            check = next(c for c in cells[i + 1:] if c.cell_type == "code")
            assert check.source.strip() == f"checks.{EXERCISES[name].__name__}({name})"


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_passes_on_the_notebook_solution(name, solutions, define, capsys):
    EXERCISES[name](define(solutions[name], name))
    out = capsys.readouterr().out
    assert out.startswith("✓") and "passed" in out


@pytest.mark.parametrize("name", list(EXERCISES))
def test_checks_pass_with_other_seeds(name, solutions, define, capsys):
    fn = define(solutions[name], name)
    for seed in (1, 2, 3):
        EXERCISES[name](fn, seed=seed)
    assert capsys.readouterr().out.count("✓") == 3


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_lets_the_student_stub_raise_not_implemented(name, lab02, define):
    student = solution_cells(make_student_notebook(lab02), marker=STUB_RAISE)
    assert set(student) == set(EXERCISES)
    with pytest.raises(NotImplementedError):
        EXERCISES[name](define(student[name], name))


@pytest.mark.parametrize("name", list(EXERCISES))
def test_check_rejects_a_function_returning_none(name):
    words = {  # a pass that does nothing and returns None is caught at its first case
        "topological_order": "returned None",
        "dead_code_elimination": "dead node(s) remain",
        "common_subexpression_elimination": "ops remain",
        "simplify_rule": "expected {}",  # None means "no rule applies", so x * 1 stays
        "fusion_groups": "returned None",
    }[name]
    with pytest.raises(AssertionError, match=re.escape(words)):
        EXERCISES[name](lambda *args, **kwargs: None)


# ------------------------------------------------------- planted bugs: mutations of the solution ----

MUTATIONS = [  # (exercise, old, new, words the message must contain)
    ("topological_order", "readers[i].append(n)", "readers[i].append(n) if n not in readers[i] else None",
     "raised CycleError"),
    ("topological_order", "if len(order) < len(graph.nodes):", "if False:", "instead of raising CycleError"),
    ("topological_order", "ready = [n for n in graph.nodes if waiting[n] == 0]", "ready = list(graph.inputs)",
     "your function raised"),
    ("topological_order", "order.append(n)", "order.insert(0, n)", "comes later"),
    ("topological_order", "waiting[r] -= 1", "waiting[r] -= 2", "topological_order on"),
    ("dead_code_elimination", 'if n not in live and n.op != "input":', "if n not in live:", "graph input"),
    ("dead_code_elimination", "live, stack = set(), list(graph.outputs)", "live, stack = set(), list(graph.inputs)",
     "raised GraphError: cannot remove"),
    ("dead_code_elimination", "            stack.extend(n.inputs)", "            pass",
     "raised GraphError: cannot remove"),
    ("dead_code_elimination", "removed += 1", "removed += 0", "expected the number of nodes removed"),
    ("dead_code_elimination", "return removed", "return len(graph.nodes)", "expected the number of nodes removed"),
    ("common_subexpression_elimination", "if n.op in COMMUTATIVE:", "if False:", "add and mul are commutative"),
    ("common_subexpression_elimination", 'COMMUTATIVE = {"add", "mul"}', 'COMMUTATIVE = {"add", "mul", "sub"}',
     "changed value"),
    ("common_subexpression_elimination", "key = (n.op, inputs, attrs_key(n))", "key = (n.op, inputs)",
     "sum(x, axis=0), sum(x, axis=1) twice"),
    ("common_subexpression_elimination", "for n in graph.topological_order():",
     "for n in reversed(graph.topological_order()):", "ops remain"),
    ("common_subexpression_elimination", "            graph.remove(n)\n", "            pass\n", "ops remain"),
    ("common_subexpression_elimination", "removed += 1", "removed += 2", "expected the number of nodes removed"),
    ("simplify_rule", "if is_const(y, unit) and same_type(x):", "if is_const(y, unit):",
     "exactly the node's shape and dtype"),
    ("simplify_rule", "tuple(p[a] for a in axes)", "tuple(axes[a] for a in p)", "p[q[i]]"),
    ("simplify_rule", 'if node.op in ("add", "mul") and is_const(x, unit)', "if is_const(x, unit)", "0 - x"),
    ("simplify_rule", 'unit = 1 if node.op in ("mul", "div") else 0', "unit = 1", "x + 0"),
    ("simplify_rule", 'return graph.add_node("transpose", [x], {"axes": axes})', "return None",
     "transpose(transpose(x, (1, 0, 2)), (0, 2, 1))"),
    ("simplify_rule", "if x is not node.inputs[0]:", "if True:", "still rewrites the graph"),
    ("fusion_groups", "\n                        and all(r in group for r in readers[p])", "",
     "values leaving it"),
    ("fusion_groups", "p not in group and p not in outputs", "p not in group", "a graph output"),
    ("fusion_groups", "if len(group) >= 2:", "if len(group) >= 1:", "fuses nothing"),
    ("fusion_groups", "                    todo.append(p)", "                    pass", "could be one kernel"),
    ("fusion_groups", 'if (p.kind == "elementwise" and p not in group', "if (p not in group", "not elementwise"),
    ("fusion_groups", "taken |= group", "pass", "in two groups"),
]


@pytest.mark.parametrize("name, old, new, words", MUTATIONS,
                         ids=[f"{m[0]}:{m[1][:40]}->{m[2][:20]}" for m in MUTATIONS])
def test_check_fails_on_a_mutated_solution(name, old, new, words, solutions, define, capsys):
    buggy = define(mutate(solutions[name], old, new), name)
    with np.errstate(all="ignore"), pytest.raises(AssertionError) as info:
        EXERCISES[name](buggy)
    assert words in str(info.value), str(info.value)
    assert "✓" not in capsys.readouterr().out


# ------------------------------------------------------ planted bugs: mistakes written from scratch ----

def topo_recursive(graph):  # Lab 1's depth-first search, over every node: right, but recursive
    order, seen = [], set()

    def visit(n):
        if n not in seen:
            seen.add(n)
            for i in n.inputs:
                visit(i)
            order.append(n)

    for n in graph.nodes:
        visit(n)
    return order


def topo_from_outputs(graph):  # forgets the nodes no output needs, and unused inputs
    order, seen, stack = [], set(), [(o, False) for o in graph.outputs]
    while stack:
        n, done = stack.pop()
        if done:
            order.append(n)
        elif n not in seen:
            seen.add(n)
            stack.append((n, True))
            stack.extend((i, False) for i in n.inputs)
    return order


def topo_stored_order(graph):
    return list(graph.nodes)


def topo_wrong_error(graph):
    try:
        return graph.topological_order()
    except CycleError as e:
        raise ValueError(str(e)) from None


def dce_no_readers_once(graph):  # one sweep: drops nodes nobody reads, graph outputs among them
    readers = graph.users()
    dead = [n for n in graph.nodes if not readers[n] and n.op != "input"]
    for n in dead:
        if n in graph.outputs:
            continue
        graph.remove(n)
    return len(dead)


def dce_returns_new_graph(graph):
    g = graph.copy()
    return g


def dce_drops_outputs_without_readers(graph):
    removed = 0
    changed = True
    while changed:
        changed = False
        readers = graph.users()
        for n in list(graph.nodes):
            if not readers[n] and n.op != "input":
                graph.replace_all_uses(n, n.inputs[0] if n.inputs else n)
                graph.nodes.remove(n)
                removed += 1
                changed = True
                break
    return removed


def cse_rewires_readers_not_outputs(graph):
    seen, removed = {}, 0
    for n in graph.topological_order():
        if n.op in ("input", "constant"):
            continue
        ins = tuple(id(i) for i in n.inputs)
        key = (n.op, tuple(sorted(ins)) if n.op in ("add", "mul") else ins, repr(sorted(n.attrs.items())))
        if key in seen:
            for r in graph.users()[n]:  # readers rewired by hand; the outputs forgotten
                r.inputs = tuple(seen[key] if i is n else i for i in r.inputs)
            graph.remove(n)
            removed += 1
        else:
            seen[key] = n
    return removed


def cse_by_name_prefix(graph):  # "same op and same input names" with names compared as strings
    seen, removed = {}, 0
    for n in graph.topological_order():
        if n.op in ("input", "constant"):
            continue
        key = (n.op, tuple(sorted(i.op for i in n.inputs)))  # compares what the inputs are, not which
        if key in seen and seen[key].shape == n.shape:
            graph.replace_all_uses(n, seen[key])
            graph.remove(n)
            removed += 1
        else:
            seen[key] = n
    return removed


def simplify_never(node, graph):
    return None


def simplify_copies_transposes(node, graph):  # identities right, but a fresh copy of every transpose
    from mlsys_lab.graph.passes.simplify import _identity

    if node.op == "transpose":
        return graph.add_node("transpose", [node.inputs[0]], dict(node.attrs))
    return _identity(node, graph)


def simplify_any_constant(node, graph):  # treats every constant as neutral: x * 2 -> x
    if node.op not in ("add", "sub", "mul", "div"):
        return None
    x, y = node.inputs
    for value, const in ((x, y), (y, x) if node.op in ("add", "mul") else (None, None)):
        if value is not None and const.op == "constant" and value.shape == node.shape \
                and value.dtype == node.dtype:
            return value
    return None


def simplify_returns_foreign_node(node, graph):
    if node.op == "mul":
        other = Graph("other")
        return other.input("x", node.shape, node.dtype)
    return None


def fusion_nothing(graph):
    return []


def fusion_everything(graph):
    group = {n for n in graph.nodes if n.kind == "elementwise"}
    return [group] if len(group) >= 2 else []


def fusion_single_reader_chains(graph):  # grows chains forwards: a producer joins only its sole reader
    readers, outputs = graph.users(), set(graph.outputs)
    owner, groups = {}, []
    for n in graph.topological_order():
        if n.kind != "elementwise":
            continue
        for p in n.inputs:
            if p in owner and len(readers[p]) == 1 and p not in outputs and n not in owner:
                owner[n] = owner[p]
                owner[n].add(n)
        if n not in owner:
            owner[n] = {n}
            groups.append(owner[n])
    return [g for g in groups if len(g) >= 2]


def fusion_fuses_in_place(graph):
    from mlsys_lab.graph.passes import fuse_elementwise

    fuse_elementwise(graph)
    return []


BUGS = [  # (check, buggy function, words the message must contain)
    (checks.check_topological_order, topo_recursive, "Kahn's algorithm"),
    (checks.check_topological_order, topo_from_outputs, "missing from the order"),
    (checks.check_topological_order, topo_stored_order, "comes later"),
    (checks.check_topological_order, topo_wrong_error, "expected CycleError, but your function raised ValueError"),
    (checks.check_topological_order, lambda g: [], "missing from the order"),
    (checks.check_topological_order, lambda g: list(g.topological_order()) * 2, "appears twice"),
    (checks.check_dead_code_elimination, dce_no_readers_once, "dead node(s) remain"),
    (checks.check_dead_code_elimination, dce_returns_new_graph, "returned a Graph"),
    (checks.check_dead_code_elimination, dce_drops_outputs_without_readers, "outputs"),
    (checks.check_dead_code_elimination, lambda g: 0, "dead node(s) remain"),
    (checks.check_common_subexpression_elimination, cse_rewires_readers_not_outputs, "raised GraphError"),
    (checks.check_common_subexpression_elimination, cse_by_name_prefix, "cse on"),
    (checks.check_common_subexpression_elimination, lambda g: 0, "ops remain"),
    (checks.check_simplify_rule, simplify_never, "expected {}"),
    (checks.check_simplify_rule, simplify_copies_transposes, "still rewrites the graph"),
    (checks.check_simplify_rule, simplify_any_constant, "x * 2: output 0"),
    (checks.check_simplify_rule, simplify_returns_foreign_node, "not a node of the graph"),
    (checks.check_fusion_groups, fusion_nothing, "could be one kernel"),
    (checks.check_fusion_groups, fusion_everything, "values leaving it"),
    (checks.check_fusion_groups, fusion_single_reader_chains, "could be one kernel"),
    (checks.check_fusion_groups, fusion_fuses_in_place, "changed the graph"),
    (checks.check_fusion_groups, lambda g: 3, "expected a list of groups"),
]


@pytest.mark.parametrize("check, buggy, words", BUGS,
                         ids=[f"{c.__name__}:{getattr(b, '__name__', 'lambda')}-{i}"
                              for i, (c, b, _) in enumerate(BUGS)])
def test_check_fails_on_a_planted_bug(check, buggy, words, capsys):
    with np.errstate(all="ignore"), pytest.raises(AssertionError) as info:
        check(buggy)
    assert words in str(info.value), str(info.value)
    assert "✓" not in capsys.readouterr().out


# --------------------------------------------------------------- the ground truth the checks use ----

def test_random_cse_cases_really_contain_duplicates_and_dce_cases_dead_code():
    rng = np.random.default_rng(0)
    dupes = [g.num_ops() - distinct for g, distinct in (checks._cse_random(rng, k) for k in range(8))]
    assert all(d >= 0 for d in dupes) and sum(d > 0 for d in dupes) >= 6
    dead = [len(g) - len(live) for g, live in (checks._dce_random(rng, k) for k in range(6))]
    assert min(dead) >= 4


def test_random_graphs_have_fusable_groups_and_bounded_values():
    from mlsys_lab.graph import interpret
    from mlsys_lab.graph.passes import elementwise_groups

    rng = np.random.default_rng(0)
    sizes = []
    for k in range(6):
        g, _ = checks._random_dag(rng, n_ops=20, name=f"r{k}")
        sizes += [len(group) for _, group in elementwise_groups(g)]
        for value in interpret(g, *[rng.standard_normal(i.shape) * 3 for i in g.inputs]):
            assert np.all(np.isfinite(value)) and np.abs(value).max() < 1e5
    assert len(sizes) >= 6 and max(sizes) >= 3


def test_the_package_passes_pass_the_checks(capsys):
    """The package's own passes (written independently of the notebook) agree with the checks."""
    from mlsys_lab.graph.passes import dce, elementwise_groups
    from mlsys_lab.graph.passes.simplify import RULES

    def package_rule(node, graph):
        for rule in RULES:
            if node.op in ("neg", "pow_scalar", "reshape", "broadcast_to", "sum_to"):
                return None  # outside the exercise's rule set
            new = rule(node, graph)
            if new is not None:
                return new
        return None

    checks.check_topological_order(lambda g: g.topological_order())
    checks.check_dead_code_elimination(dce)
    checks.check_simplify_rule(package_rule)
    checks.check_fusion_groups(lambda g: [group for _, group in elementwise_groups(g)])
    out = capsys.readouterr().out
    assert out.count("✓") == 4
