"""What every benchmark does with its results: a JSON record, a markdown table and, when matplotlib is
installed (the ``bench`` extra), a PNG plot, all under one output directory."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable

__all__ = ["pyplot", "save_results"]


def pyplot(path: pathlib.Path):
    """``matplotlib.pyplot`` on the headless Agg backend, or None after saying that ``path`` is skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no {path.name} (pip install -e '.[bench]')")
        return None
    return plt


def save_results(out, stem: str, rows: list, meta: dict, markdown: Callable[[list, dict], str],
                 plot: Callable[[list, pathlib.Path], None] | None = None, default=None) -> str:
    """Write ``{stem}.json`` ({"meta", "rows"}), ``{stem}.md`` and ``{stem}.png`` into ``out``; return the table."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=default))
    table = markdown(rows, meta)
    (out / f"{stem}.md").write_text(table)
    if plot is not None:
        plot(rows, out / f"{stem}.png")
    return table
