"""Imports run one way: the CLI and the adapters build on the core, never the reverse, and no modules import
each other in a circle.

Read from the source text with ``ast`` (nothing is imported, so it takes a fraction of a second): every import
statement, at module level or inside a function, except those under ``if TYPE_CHECKING:``, which never run.
``adapters/`` and ``cli/`` are installed as ``tda_plugin.adapters`` and ``tda_plugin.cli`` (pyproject.toml).
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"tda_plugin": ROOT / "tda_plugin", "tda_plugin.adapters": ROOT / "adapters", "tda_plugin.cli": ROOT / "cli"}
ADAPTERS, CLI, DEMO = "tda_plugin.adapters", "tda_plugin.cli", "tda_plugin.demo"
#: (importer, imported) pairs allowed to cross a layer, each with its reason. Empty: none does.
ALLOWED: set[tuple[str, str]] = set()


@lru_cache(maxsize=1)
def project_imports() -> dict[str, set[str]]:
    """The project's import graph, read once for all the tests here."""
    return imports(modules())


def modules() -> dict[str, Path]:
    """Every module's dotted name -> its file."""
    found = {}
    for prefix, base in SOURCES.items():
        for path in base.rglob("*.py"):
            parts = [p for p in path.relative_to(base).with_suffix("").parts if p != "__init__"]
            found[".".join([prefix, *parts])] = path
    return found


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that can run: all of them but those under ``if TYPE_CHECKING:``."""
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def imports(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's own ancestors left out: they are already loaded)."""
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets |= {base} | {f"{base}.{a.name}" for a in node.names}
        graph[name] = set()
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def _layer(name: str) -> str:
    for prefix in (ADAPTERS, CLI, DEMO):
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    return "core"


#: what each layer may not import: the core neither adapters nor the CLI; the adapters and the demo (which runs
#: the adapters' demo models, so it may use them) not the CLI, which sits on top of everything
FORBIDDEN = {"core": {ADAPTERS, CLI, DEMO}, ADAPTERS: {CLI, DEMO}, DEMO: {CLI}, CLI: set()}


def test_no_import_cycles() -> None:
    graph = project_imports()
    assert len(graph) > 50 and graph["tda_plugin.cli.app"]  # the walk found the project and its imports
    assert cycles(graph) == []


def test_imports_run_one_way() -> None:
    crossing = sorted((a, b) for a, targets in project_imports().items() for b in targets
                      if _layer(b) in FORBIDDEN[_layer(a)])
    assert [pair for pair in crossing if pair not in ALLOWED] == []


def test_the_checks_see_cycles_and_crossings() -> None:
    """The graph code itself: a made-up cycle is found, and so is a core module importing the CLI."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert _layer("tda_plugin.cli.app") in FORBIDDEN[_layer("tda_plugin.attributor")]
    assert _layer("tda_plugin.adapters.stable_audio") not in FORBIDDEN[_layer("tda_plugin.demo.pipeline")]
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\nelse:\n    import y\ndef f():\n    import z\n"
    assert sorted(n.names[0].name for n in _runtime_imports(ast.parse(source)) if isinstance(n, ast.Import)) == ["y", "z"]
