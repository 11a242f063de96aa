"""The layering, checked by walking the imports of the source tree (``ast``, nothing imported).

- apps do not import each other in a cycle at module level, and apps/ does not import workers/
  at module level (workers/ is Celery wiring over the apps, never the other way round);
- apps/ and workers/ use only public names of models/ (a private name they need belongs in
  models/ as public API);
- no file in apps/ is longer than ~600 lines without saying why at its top.

``apps.frugal`` is the project itself (settings, root URLs, WSGI, the Celery app's loading), not
an app: it may import anything and is left out of the graph.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGE = "apps.frugal"
MAX_LINES = 600
LONG_FILE_MARKER = "Why this file is long:"

# Imports that close cycles and predate this check, each with its way out and the only files
# allowed to carry it. Without them the graph must be acyclic; the test fails when one disappears
# (take it off), when another file adds the same edge, or when a new cycle appears.
KNOWN_BACK_EDGES: dict[tuple[str, str], set[str]] = {}
# apps.projects is the bottom of the domain (projects, membership, roles: every app imports it).
# Its pages and its delete show or remove what the apps above hold, so they ask those apps inside
# functions, from these files only (the reads themselves live above: e.g. the example counts in
# apps/datasets/overview.py). A new place fails here: put the read in the app that owns the data.
PROJECTS_REACH_UP_FROM = {
    "apps.accounts": {"apps/projects/middleware.py", "apps/projects/views.py"},
    "apps.alignment": {"apps/projects/views.py"},
    "apps.datasets": {
        "apps/projects/lifecycle.py",
        "apps/projects/services.py",
        "apps/projects/views.py",
    },
    "apps.jobs": {"apps/projects/lifecycle.py", "apps/projects/views.py"},
}
# Files over MAX_LINES that are being split elsewhere (issue 15, item 2).
KNOWN_LONG_FILES: set[str] = set()


def _sources() -> list[Path]:
    paths = [*ROOT.glob("apps/**/*.py"), *ROOT.glob("workers/**/*.py")]
    return sorted(p for p in paths if "migrations" not in p.parts)


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _unit(module: str) -> str | None:
    """The app (``apps.<name>``), ``workers`` or ``models`` a module belongs to."""
    parts = module.split(".")
    if parts[0] == "apps" and len(parts) > 1:
        unit = f"apps.{parts[1]}"
        return None if unit == PROJECT_PACKAGE else unit
    if parts[0] in ("workers", "models"):
        return parts[0]
    return None


def _imports(tree: ast.Module, *, module_level: bool):
    """(imported module, names, node) for each import, only those run at import time if
    ``module_level`` (not inside functions; ``if TYPE_CHECKING:`` blocks never run)."""

    def walk(node, top: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inside = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import) and (inside or not module_level):
                for alias in child.names:
                    yield alias.name, [], child
            elif (
                isinstance(child, ast.ImportFrom)
                and child.level == 0
                and child.module
                and (inside or not module_level)
            ):
                yield child.module, [a.name for a in child.names], child
            yield from walk(child, inside)

    yield from walk(tree, True)


def _graph(*, module_level: bool = True) -> dict[str, dict[str, set[str]]]:
    """unit → imported unit → the files that import it."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in _sources():
        source = _unit(_module(path))
        if source is None:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for imported, names, _ in _imports(tree, module_level=module_level):
            targets = [f"{imported}.{n}" for n in names] or [imported]
            for target in [imported, *targets]:
                unit = _unit(target)
                if unit is not None and unit != source:
                    graph[source][unit].add(str(path.relative_to(ROOT)))
    return graph


def _cycles(graph) -> list[frozenset[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_new_import_cycle_between_apps_or_with_workers():
    graph = _graph()
    gone = sorted(edge for edge in KNOWN_BACK_EDGES if edge[1] not in graph[edge[0]])
    assert not gone, f"these imports are gone: take them off KNOWN_BACK_EDGES: {gone}"
    spread = {
        edge: sorted(graph[edge[0]][edge[1]] - files)
        for edge, files in KNOWN_BACK_EDGES.items()
        if graph[edge[0]][edge[1]] - files
    }
    assert not spread, f"a known back edge is carried by more files than its own: {spread}"
    pruned = {
        a: {b: files for b, files in targets.items() if (a, b) not in KNOWN_BACK_EDGES}
        for a, targets in graph.items()
    }
    cycles = [sorted(c) for c in _cycles(pruned)]
    assert not cycles, "import cycles at module level: " + "; ".join(
        " ↔ ".join(c)
        + " ("
        + ", ".join(f"{a}→{b}: {sorted(pruned[a][b])}" for a in c for b in c if b in pruned[a])
        + ")"
        for c in cycles
    )


def test_apps_do_not_import_workers_at_module_level():
    graph = _graph()
    importers = {app: sorted(graph[app]["workers"]) for app in graph if "workers" in graph[app]}
    assert importers == {}, f"apps/ imports workers/ (workers/ is wiring over apps/): {importers}"


def test_projects_reaches_the_apps_above_it_only_from_its_pages_and_lifecycle():
    module_level, lazy = _graph(), _graph(module_level=False)
    above = {
        unit
        for unit, targets in module_level.items()
        if "apps.projects" in targets and (unit, "apps.projects") not in KNOWN_BACK_EDGES
    }
    reaches = {unit: lazy["apps.projects"][unit] for unit in above if unit in lazy["apps.projects"]}
    assert reaches == PROJECTS_REACH_UP_FROM
    assert not above & set(module_level["apps.projects"]), "apps.projects imports an app above it"


def test_rules_and_datasets_do_not_import_each_other_any_more():
    graph = _graph(module_level=False)  # lazy imports included
    assert "apps.rules" not in graph["apps.datasets"], graph["apps.datasets"]["apps.rules"]


def test_apps_and_workers_use_only_public_names_of_models():
    offenders = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        bound: set[str] = set()  # local names bound to models/ modules
        for imported, _, node in _imports(tree, module_level=False):
            if imported.split(".")[0] != "models":
                continue
            for alias in node.names:
                name = alias.name.split(".")[-1]
                if name.startswith("_") and not name.startswith("__"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
                if isinstance(node, ast.Import) or name[:1].islower():
                    bound.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.attr}")
    assert offenders == [], offenders


def test_no_long_file_in_apps_without_a_reason_at_its_top():
    long_files = []
    for path in ROOT.glob("apps/**/*.py"):
        if "migrations" in path.parts:
            continue
        text = path.read_text()
        relative = str(path.relative_to(ROOT))
        if text.count("\n") > MAX_LINES and relative not in KNOWN_LONG_FILES:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if LONG_FILE_MARKER not in docstring:
                long_files.append(f"{relative} ({text.count(chr(10))} lines)")
    assert long_files == [], (
        f"split these, or say why at the top ('{LONG_FILE_MARKER} ...'): {long_files}"
    )


def test_the_walk_sees_what_it_checks():
    """Guards the checks above against passing vacuously (e.g. after a move of the tree)."""
    graph = _graph()
    assert "apps.projects" in graph["apps.rules"] and "apps.jobs" in graph["workers"]
    assert "models" in graph["apps.rules"]
    assert _cycles({"a": {"b": set()}, "b": {"a": set()}}) == [frozenset({"a", "b"})]
