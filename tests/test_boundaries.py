"""Module boundaries: no import cycle anywhere in the package (function-level imports
included), the .tflite reader never imports the exporter, and the normalisation and
ignore-label constants are written in one module (mobile_seg/spec.py)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mobile_seg", "converters", "demo")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body (`from a.b import c` is
    a.b.c when that is a module, else a.b)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):  # a package's own __init__ is no cycle
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    assert "converters.export" in graph["mobile_seg.qat"] or "mobile_seg.qat" in graph["converters.export"]
    assert find_cycles(graph) == []


def test_the_runtime_reader_does_not_import_the_exporter():
    graph = import_graph()

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for dep in graph.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    for reader in ("mobile_seg.tflite_model", "mobile_seg.model_metadata", "mobile_seg.spec"):
        assert not {m for m in reach(reader) if m.startswith("converters")}, reader
    # the bottom row: spec imports nothing of ours but errors, which imports nothing of ours
    assert not reach("mobile_seg.spec") - {"mobile_seg", "mobile_seg.errors"}
    assert not reach("mobile_seg.errors") - {"mobile_seg"}


def _constants(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, float) and node.value == 127.5:
            yield node.lineno, "127.5"
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "IGNORE_LABEL" for t in node.targets):
            yield node.lineno, "IGNORE_LABEL ="


def test_normalisation_and_ignore_constants_live_in_spec_only():
    found = [f"{path.relative_to(REPO)}:{line}: {what}" for name, path in _modules().items()
             if name != "mobile_seg.spec" for line, what in _constants(path)]
    assert found == []
    assert [w for _, w in _constants(REPO / "mobile_seg/spec.py")].count("IGNORE_LABEL =") == 1
