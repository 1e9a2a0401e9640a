"""The data room's own floors: no import cycle among its modules (tokenizer.py and bpe.py used to import each
other), and the template syntax lives with the tokenizers, not in the web demo."""

import ast
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "discdiff" / "data"


def _data_imports(path: Path) -> set[str]:
    """The discdiff.data modules a file imports, lazy (function-level) imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found.update([node.module] if node.module else [a.name for a in node.names])
            elif (node.module or "").startswith("discdiff.data."):
                found.add(node.module.split(".")[2])
    return {name.split(".")[0] for name in found} & {p.stem for p in DATA.glob("*.py")}


def test_no_import_cycle_inside_data():
    graph = {p.stem: _data_imports(p) - {p.stem} for p in DATA.glob("*.py") if p.stem != "__init__"}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    cycles = sorted(m for m in graph if reaches(m, m, {m}))
    assert not cycles, f"modules on an import cycle: {cycles}"
    assert "bpe" not in graph["tokenizer"] and "kinds" not in graph["tokenizer"]


def test_templates_are_a_tokenizer_concern():
    from discdiff.data.template import template_ids
    from discdiff.serve import template_ids as served

    assert served is template_ids
    assert not (DATA.parent / "serve" / "template.py").exists()
    assert "template" not in _data_imports(DATA / "tokenizer.py")  # the template sits above the tokenizers
