"""The package's layout: no import cycle (module level or inside functions), no stage module importing
another stage module, no module over 600 lines, and a public face that resolves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dualdistill
from dualdistill.stages import STAGES

PACKAGE = Path(dualdistill.__file__).resolve().parent
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """Package modules ``name`` imports anywhere in its file, and the packages above them that do
    not contain ``name`` (importing ``a.b.c`` from outside ``a.b`` runs ``a/b/__init__.py`` first)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    out = set()
    for t in targets:
        if t in MODULES:
            out.add(t)
            parts = t.split(".")
            parents = (".".join(parts[:i]) for i in range(2, len(parts)))  # not the top package
            out.update(pkg for pkg in parents if not name.startswith(pkg + "."))
    out.discard(name)
    return out


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_walker_sees_imports_inside_functions_and_finds_cycles():
    assert "dualdistill.artifacts" in GRAPH["dualdistill.compose"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    src = "def f():\n    from dualdistill.stages import STAGES\n"
    tree_imports = {n.module for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)}
    assert tree_imports == {"dualdistill.stages"}


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_stage_module_imports_another():
    stage_modules = {f"dualdistill.{s.module}" for s in STAGES}
    bad = {m: sorted(GRAPH[m] & stage_modules) for m in stage_modules if GRAPH[m] & stage_modules}
    assert not bad, f"stage modules import other stages: {bad}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (> {MAX_LINES}): split it"


def test_every_stage_module_exists_and_has_one_entry():
    for s in STAGES:
        assert f"dualdistill.{s.module}" in MODULES, s
        fn = s.function()
        assert fn.stage is s and fn.__module__ == f"dualdistill.{s.module}"


def test_public_face_resolves():
    for name in dualdistill.__all__:
        assert getattr(dualdistill, name) is not None, name
    with pytest.raises(AttributeError):
        dualdistill.nothing_like_this  # noqa: B018
