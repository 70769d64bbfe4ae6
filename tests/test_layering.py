"""The import rules of the layers, read from the source with ast: arrows point down, nothing points back.

scenarios, tests -> fixtures (the pytest plugin) -> environment, chaos, reports -> bridge. bridge/ is the
system under test and imports none of the suite; chaos/ and environment/ are plain libraries without
pytest or allure; only tests/ imports from tests/; no module imports a test module (pytest collects it,
and an import loads it a second time under another name); and no two packages, nor two modules, import
each other. Every import counts, also one inside a function or under ``if TYPE_CHECKING:``: each is a
dependency a reader must follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bridge", "chaos", "environment", "reports", "fixtures", "scenarios", "benchmarks")
SUITE = (*PACKAGES, "tests")  # every package scanned
TEST_FRAMEWORKS = ("pytest", "_pytest", "allure", "allure_commons", "allure_pytest")

# Top-level names each package must not import.
FORBIDDEN: Mapping[str, frozenset[str]] = {
    "bridge": frozenset(SUITE) - {"bridge"} | frozenset(TEST_FRAMEWORKS),
    "chaos": frozenset({"environment", "fixtures", "reports", "scenarios", "benchmarks", "tests"})
    | frozenset(TEST_FRAMEWORKS),
    "environment": frozenset({"fixtures", "reports", "scenarios", "benchmarks", "tests"})
    | frozenset(TEST_FRAMEWORKS),
    "reports": frozenset({"fixtures", "scenarios", "benchmarks", "tests"}),
    "fixtures": frozenset({"scenarios", "benchmarks", "tests"}),
    "scenarios": frozenset({"benchmarks", "tests"}),
    "benchmarks": frozenset({"fixtures", "reports", "scenarios", "tests"}) | frozenset(TEST_FRAMEWORKS),
}


def module_name(root: Path, path: Path) -> str:
    """chaos/checkers.py -> chaos.checkers; chaos/__init__.py -> chaos."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_statements(module: str, path: Path, tree: ast.AST) -> Iterable[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import statement of tree, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base, [alias.name for alias in node.names], node.lineno


Imports = dict[str, list[tuple[str, list[str], int]]]


def import_graph(root: Path, packages: Iterable[str] = SUITE) -> Imports:
    """Module -> its import statements, for every module under the packages of root."""
    graph: Imports = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(root, path)
            tree = ast.parse(path.read_bytes(), str(path))
            graph[module] = sorted(import_statements(module, path, tree), key=lambda s: (s[2], s[0]))
    return graph


def _cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in edges.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def layering_violations(root: Path, packages: Iterable[str] = SUITE) -> list[str]:
    """Every broken import rule under root, one line each, naming the module, the import and the rule."""
    graph = import_graph(root, packages)
    problems = []
    for module, statements in sorted(graph.items()):
        layer = module.split(".")[0]
        for name, _, line in statements:
            top = name.split(".")[0]
            if top in FORBIDDEN.get(layer, ()):
                problems.append(f"{module} imports {name} (line {line}): {layer}/ must not import {top}")
            elif top == "tests" and layer != "tests":
                problems.append(f"{module} imports {name} (line {line}): only tests/ imports from tests/")
            if any(part.startswith("test_") for part in name.split(".")[1:]):
                problems.append(f"{module} imports {name} (line {line}): a test module is never imported")
    # Edges between our own modules: `from a import b` is an edge to a.b when that is a module, else to a.
    modules: dict[str, set[str]] = {}
    for module, statements in graph.items():
        targets = set()
        for name, names, _ in statements:
            submodules = {f"{name}.{x}" for x in names} & graph.keys()
            targets |= submodules | ({name} if len(submodules) < len(names) or not names else set())
        modules[module] = {t for t in targets if t in graph and t != module}
    problems += [f"import cycle between modules: {' <-> '.join(c)}" for c in _cycles(modules)]
    tops: dict[str, set[str]] = {}
    for module, targets in modules.items():
        layer = module.split(".")[0]
        tops.setdefault(layer, set()).update(t.split(".")[0] for t in targets if t.split(".")[0] != layer)
    problems += [f"import cycle between packages: {' <-> '.join(c)}" for c in _cycles(tops)]
    return problems


def test_the_suite_keeps_its_import_rules() -> None:
    assert {m.split(".")[0] for m in import_graph(PROJECT_ROOT)} == set(SUITE)  # nothing vacuous
    assert layering_violations(PROJECT_ROOT) == []


def test_the_rules_fail_on_pytest_in_chaos_and_on_a_scenario_importing_from_tests(tmp_path: Path) -> None:
    files = {
        "chaos/__init__.py": "",
        "chaos/x.py": "import pytest\n",
        "chaos/y.py": "from chaos import x\n",
        "scenarios/__init__.py": "",
        "scenarios/y.py": "from tests.z import helper\n",
        "tests/__init__.py": "",
        "tests/z.py": "helper = 1\n",
        "tests/test_q.py": "from tests.test_r import case\n",
        "tests/test_r.py": "case = 1\n",
        "environment/__init__.py": "",
        "environment/a.py": "from environment import b\n",
        "environment/b.py": "import environment.a\n",
        "bridge/__init__.py": "",
        "bridge/store.py": "import chaos.y\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    problems = layering_violations(tmp_path)

    assert "chaos.x imports pytest (line 1): chaos/ must not import pytest" in problems
    assert "scenarios.y imports tests.z (line 1): scenarios/ must not import tests" in problems
    assert "bridge.store imports chaos.y (line 1): bridge/ must not import chaos" in problems
    assert "import cycle between modules: environment.a <-> environment.b" in problems
    assert "tests.test_q imports tests.test_r (line 1): a test module is never imported" in problems
    assert len(problems) == 5, problems


def test_a_cycle_between_packages_is_reported(tmp_path: Path) -> None:
    for name, text in {"reports/r.py": "import chaos.c\n", "chaos/c.py": "from reports import r\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    problems = layering_violations(tmp_path)

    assert "import cycle between packages: chaos <-> reports" in problems
    assert "chaos.c imports reports (line 1): chaos/ must not import reports" in problems
