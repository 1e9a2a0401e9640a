"""The README's usage block runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_usage_block_runs():
    text = README.read_text()
    usage = text.split("## Usage", 1)[1]
    block = re.search(r"```python\n(.*?)```", usage, re.S).group(1)
    assert 10 <= len(block.strip().splitlines()) <= 15
    exec(compile(block, "README.md", "exec"), {})


def test_quickstart_imports():
    # `make quickstart` runs before the suite; this catches a broken import in seconds rather than minutes
    import discdiff.quickstart as qs

    assert callable(qs.main)
