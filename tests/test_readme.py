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


def test_readme_sampling_blocks_run_after_the_usage_block():
    usage = README.read_text().split("## Usage", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", usage, re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md (python block {i + 1})", "exec"), namespace)
    import torch

    import discdiff as dd

    again = dd.Diffusion(namespace["graph"], namespace["schedule"]).sample(
        namespace["score_model"], 8, 3, "euler", steps=128, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.samples, namespace["x"])  # the hand-written loop is the sampler, token for token


def test_quickstart_imports():
    # `make quickstart` runs before the suite; this catches a broken import in seconds rather than minutes
    import discdiff.quickstart as qs

    assert callable(qs.main)
