"""Re-render the markdown tables and plots of saved benchmark results, without re-running anything.

    python benchmarks/report.py docs/results/likelihood/likelihood.json \\
        docs/results/sampling_quality/sampling_quality.json

Each JSON is rendered by the benchmark that wrote it (likelihood.py or sampling_quality.py), next to itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
RENDERERS = {"likelihood.json": "likelihood", "sampling_quality.json": "sampling_quality"}


def render(path: pathlib.Path) -> None:
    if path.name not in RENDERERS:
        raise ValueError(f"{path}: expected one of {sorted(RENDERERS)}")
    name = RENDERERS[path.name]
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved = json.loads(path.read_text())
    path.with_suffix(".md").write_text(module.markdown(saved["rows"], saved["meta"]))
    module.plot(saved["rows"], path.with_suffix(".png"))
    print(f"rendered {path.with_suffix('.md')} and {path.with_suffix('.png').name}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=pathlib.Path, help="likelihood.json / sampling_quality.json files")
    for path in parser.parse_args(argv).results:
        render(path)


if __name__ == "__main__":
    main()
