"""The house rules of DESIGN.md, checked on the source tree: floors point down, no import cycle between the
library's rooms, no file over 400 lines and no function over 60 (docstrings not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "discdiff"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

# The rooms of the library, lowest floor first. A room may import rooms on its own floor or below, never above.
FLOORS = {
    "leaf": -1,  # discdiff/seeding.py: imports nothing from discdiff, usable by every room
    "core": 0,  # graphs, schedules, losses, diffusion, sampling, nn, ... (imports torch and numpy only)
    "data": 0,  # tokenizers and corpora: beside the core, never importing it upward
    "training": 1,
    "evaluation": 1,
    "serve": 2,
    "hf": 2,  # transformers in and out: builds on training (configs, Pretrained); imports transformers lazily
    "convert": 2,  # importers of SEDD / MDLM checkpoints: builds on training (save_pretrained) and data (GPT-2)
    "harness": 2,  # lm-evaluation-harness adapter: builds on evaluation's estimator and hf's loader; imports lm_eval
    "cli": 3,
}
UPPER_ROOMS = {"data", "training", "evaluation", "serve", "hf", "convert", "harness"}
LEAVES = {"seeding"}


def _room(module: str) -> str:
    """discdiff.<room>.x -> room; top-level modules are core except the command line and the quickstart."""
    parts = module.split(".")
    if len(parts) < 2:
        return "core"
    if parts[1] in LEAVES:
        return "leaf"
    if parts[1] in UPPER_ROOMS:
        return parts[1]
    if parts[1] in ("cli", "cli_sample", "__main__", "quickstart"):
        return "cli"
    return "core"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    """Every discdiff module imported anywhere in the file (function-level imports too: a lazy import is an edge)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "discdiff")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "discdiff":
                found.add(name)
                found.update(f"{name}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    edges = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(name, path):
            # resolve `from pkg import submodule` to the submodule, else to the longest known module prefix
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def test_floors_point_down():
    wrong = []
    for module, targets in _graph().items():
        here = _room(module)
        for target in targets:
            there = _room(target)
            if here != there and FLOORS[there] > FLOORS[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there})")
            if {here, there} == {"core", "data"}:
                wrong.append(f"{module} ({here}) imports {target} ({there}): the core and data stay apart")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle_between_rooms_or_modules():
    edges = _graph()
    rooms: dict[str, set[str]] = {}
    for module, targets in edges.items():
        rooms.setdefault(_room(module), set()).update(_room(t) for t in targets if _room(t) != _room(module))
    for graph, what in ((rooms, "rooms"), (edges, "modules")):
        cycle = _find_cycle(graph)
        assert cycle is None, f"import cycle between {what}: {' -> '.join(cycle)}"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if _is_package_of(node, nxt) or _is_package_of(nxt, node):
                continue  # a package and its own submodules
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _is_package_of(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def _files():
    return sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_file_and_function_sizes(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{path.name} has {len(lines)} lines (limit {MAX_FILE_LINES}): split it"
    long = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            size = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                size -= first.end_lineno - first.lineno + 1
            if size > MAX_FUNCTION_LINES:
                long.append(f"{node.name} ({size} lines)")
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_checker_sees_a_cycle_and_an_upward_import():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
    assert _room("discdiff.graphs") == "core" and _room("discdiff.serve.app") == "serve"
    assert FLOORS[_room("discdiff.cli")] > FLOORS[_room("discdiff.training.trainer")]
