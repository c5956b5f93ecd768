"""The package's layout: rooms by concern whose imports run one way (module level or inside functions),
no import cycle, no stage module importing another stage module, no module over 600 lines, every
subpackage saying what lives in it, and a public face that resolves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dualdistill
from dualdistill.artifacts.stage_table import STAGES
from dualdistill.rollout.policy import BACKENDS

PACKAGE = Path(dualdistill.__file__).resolve().parent
MAX_LINES = 600
# The rooms, lowest first: a module may import its own room and the rooms before it, never one after
# (docs/ARCHITECTURE.md draws this). config and cli are single modules; everything else is a subpackage.
LAYERS = ("common", "formats", "config", "sandbox", "grading", "rollout", "world", "data", "algorithm",
          "artifacts", "training", "report", "stages", "pipeline", "cli")
TOP_LEVEL_MODULES = {"dualdistill", "dualdistill.config", "dualdistill.cli"}  # the face, and the two single rooms


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


def room(name: str) -> str:
    """The room of a module: its subpackage, or the module itself for config and cli."""
    return name.split(".")[1]


def test_the_walker_sees_imports_inside_functions_and_finds_cycles():
    assert "dualdistill.artifacts.paths" in GRAPH["dualdistill.stages.compose"]
    assert "dualdistill.training.tiny_model" in GRAPH["dualdistill.training.student"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    src = "def f():\n    from dualdistill.artifacts.stage_table import STAGES\n"
    tree_imports = {n.module for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)}
    assert tree_imports == {"dualdistill.artifacts.stage_table"}


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_module_lives_in_a_room_that_says_what_it_holds():
    loose = sorted(m for m, p in MODULES.items() if m not in TOP_LEVEL_MODULES and p.parent == PACKAGE)
    assert not loose, f"modules outside a subpackage: {loose}"
    rooms = {room(m) for m in MODULES if m != "dualdistill"}
    assert rooms == set(LAYERS), f"rooms not in LAYERS: {sorted(rooms - set(LAYERS))}; gone: {sorted(set(LAYERS) - rooms)}"
    for name in sorted(rooms - {"config", "cli"}):
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())) or ""
        assert len(doc.split()) >= 20, f"dualdistill/{name}/__init__.py: say in a paragraph what lives there"


def test_imports_between_rooms_run_one_way():
    order = {r: i for i, r in enumerate(LAYERS)}
    upward = sorted(f"{a} -> {b}" for a, targets in GRAPH.items() if a != "dualdistill" for b in targets
                    if b != "dualdistill" and order[room(b)] > order[room(a)])
    assert not upward, "imports from a lower room to a higher one: " + "; ".join(upward)


def test_the_layer_check_catches_an_upward_import():
    order = {r: i for i, r in enumerate(LAYERS)}
    assert order[room("dualdistill.formats.records")] < order[room("dualdistill.stages.compose")]
    assert order[room("dualdistill.config")] < order[room("dualdistill.sandbox.pool")]


def test_every_backend_is_listed_where_the_backends_live():
    doc = ast.get_docstring(ast.parse((PACKAGE / "rollout" / "backends" / "__init__.py").read_text())) or ""
    missing = [name for name in BACKENDS if f"``{name}``" not in doc]
    assert not missing, f"rollout/backends/__init__.py does not list {missing}"


def test_no_stage_module_imports_another():
    stage_modules = {f"dualdistill.stages.{s.module}" for s in STAGES}
    bad = {m: sorted(GRAPH[m] & stage_modules) for m in stage_modules if GRAPH[m] & stage_modules}
    assert not bad, f"stage modules import other stages: {bad}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (> {MAX_LINES}): split it"


def test_every_stage_module_exists_and_has_one_entry():
    for s in STAGES:
        assert f"dualdistill.stages.{s.module}" in MODULES, s
        fn = s.function()
        assert fn.stage is s and fn.__module__ == f"dualdistill.stages.{s.module}"


def test_public_face_resolves():
    for name in dualdistill.__all__:
        assert getattr(dualdistill, name) is not None, name
    with pytest.raises(AttributeError):
        dualdistill.nothing_like_this  # noqa: B018
