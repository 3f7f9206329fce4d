"""The package's modules import each other without cycles (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import mmsent

PACKAGE = Path(mmsent.__file__).resolve().parent


def _graph() -> dict[str, set[str]]:
    files = {p: p.relative_to(PACKAGE.parent).with_suffix("") for p in PACKAGE.rglob("*.py")
             if "sample_data" not in p.parts}
    names = {p: ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts) for p, rel in files.items()}
    known = set(names.values())
    graph: dict[str, set[str]] = {}
    for path, name in names.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]) if node.level \
                    else node.module or ""
                targets = [base.rstrip(".")] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in known and t != name and not name.startswith(t + "."))
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n))), None)


def test_no_import_cycles():
    graph = _graph()
    assert "mmsent.pipeline" in graph and graph["mmsent.pipeline"]  # the graph was really built
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
