"""The ladder package has no import circle: a module's imports, read with ast, form a graph without
cycles. Imports inside functions count too: they only postpone the circle to the first call, and
a circle is what makes a layer impossible to read (or reuse) without the one above it. Imports
under `if TYPE_CHECKING:` count as well: they never run, but a module that names another's types
cannot be read without it either (a protocol in the lower module breaks such a circle)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str, modules: set[str], typing: bool = True) -> set[str]:
    """The ladder modules `path` (module `name`) imports, anywhere in the file (`typing`: those under
    `if TYPE_CHECKING:` too). `from a import b` names module a.b when that is a module, else a."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    tree = ast.parse(path.read_text(), str(path))
    typing_only = set() if typing else {
        id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _type_checking(block.test)
        for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return {m for m in out if m in modules and m != name}


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph(root: Path, package: str = "ladder", typing: bool = True) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in (root / package).rglob("*.py")}
    return {name: imports(path, name, set(files), typing) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), each
    written as a path that returns to its start."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(path_through(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def path_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A cycle inside a strongly connected component: breadth-first from its first module back to it."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return sorted(component)


# Circles tolerated for now (none: issue 13 removed the last run-time one, issue 24 the TYPE_CHECKING ones). An entry must still exist — a stale
# one would let the circle come back unnoticed — so remove it the moment its circle is gone.
KNOWN: list[set[str]] = []


def test_the_ladder_package_has_no_import_circle():
    found = cycles(import_graph(REPO))
    new = [c for c in found if set(c) not in KNOWN]
    assert not new, "import circles (each line: a → b means a imports b):\n" + "\n".join(
        " → ".join(c) for c in new)
    gone = [k for k in KNOWN if k not in [set(c) for c in found]]
    assert not gone, f"these import circles are gone: remove them from KNOWN in {__file__}: {gone}"


def test_the_check_finds_a_circle(tmp_path):
    """The check can fail: two modules that import each other (one inside a function) are a circle."""
    pkg = tmp_path / "ladder"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from ladder.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")
    (pkg / "c.py").write_text("import ladder.a\n")
    graph = import_graph(tmp_path)
    assert graph["ladder.a"] == {"ladder.sub.b"} and graph["ladder.sub.b"] == {"ladder.a"}
    assert cycles(graph) == [["ladder.a", "ladder.sub.b", "ladder.a"]]


def test_a_type_checking_import_closes_a_circle_too(tmp_path):
    """An import under `if TYPE_CHECKING:` (the way atlas_page.py once named atlas.py's Point) is an
    edge of the graph like any other."""
    pkg = tmp_path / "ladder"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from ladder import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ladder.a import A\n")
    assert cycles(import_graph(tmp_path)) == [["ladder.a", "ladder.b", "ladder.a"]]


# The package's floors, bottom to top. A package name stands for all its modules; a module not
# named here is on the top floor (the run: runner, cli, report, play/, ...). ladder.plugins (loading
# plugin files: config validation calls it) and ladder.earlier (what a stage reads of an earlier
# stage's outputs) come with the plugins and redteam branches (issue 24).
FLOORS: list[tuple[str, set[str]]] = [
    ("base", {"ladder.errors", "ladder.registry", "ladder.plugins", "ladder.store", "ladder.templates",
              "ladder.types", "ladder.cache", "ladder.progress", "ladder.marker", "ladder.digests",
              "ladder.stats", "ladder.result_sections"}),
    ("config", {"ladder.config"}),
    ("models and data", {"ladder.backends", "ladder.tasks"}),
    ("scoring", {"ladder.metrics", "ladder.scorers", "ladder.guards", "ladder.resolved"}),
    ("training", {"ladder.training", "ladder.estimate"}),
    ("stages", {"ladder.stages", "ladder.best_of_k", "ladder.earlier"}),
]


def floor(module: str) -> int:
    for i, (_, names) in enumerate(FLOORS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    return len(FLOORS)


def floor_name(i: int) -> str:
    return FLOORS[i][0] if i < len(FLOORS) else "the run"


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({floor_name(floor(a))}) → {b} ({floor_name(floor(b))})"
                  for a, targets in graph.items() for b in targets if floor(b) > floor(a))


def test_no_module_imports_from_a_higher_floor():
    """No module imports a module of a higher floor than its own at run time — anywhere in the file,
    inside a function included (it runs at the first call): a lower floor (a backend, a metric) must
    be usable without the floors above it (training, stages, the run). What both floors need lives
    in the lower one (ladder/marker.py: written by training, read by backends/hf.py). An import under
    `if TYPE_CHECKING:` never runs: it only has to close no circle (the test above)."""
    found = upward(import_graph(REPO, typing=False))
    assert not found, "imports from a lower floor to a higher one:\n" + "\n".join(found)


def test_the_floor_check_finds_an_upward_import(tmp_path):
    """The check can fail: a backend that imports training inside a function (as hf.py once read the
    RL marker from training/marker.py)."""
    for d in ("backends", "training"):
        (tmp_path / "ladder" / d).mkdir(parents=True)
        (tmp_path / "ladder" / d / "__init__.py").write_text("")
    (tmp_path / "ladder" / "__init__.py").write_text("")
    (tmp_path / "ladder" / "training" / "marker.py").write_text("")
    (tmp_path / "ladder" / "backends" / "hf.py").write_text("def f():\n    from ladder.training.marker import x\n")
    (tmp_path / "ladder" / "backends" / "api.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ladder.training import marker\n")
    assert upward(import_graph(tmp_path, typing=False)) == [
        "ladder.backends.hf (models and data) → ladder.training.marker (training)"]
