"""`discdiff eval --split test`: the held-out test split of a prepared corpus is evaluated like validation,
and a corpus prepared before test splits existed is one line naming the command that fixes it."""

import json
import shutil

import torch

from discdiff import cli
from discdiff.data import prepare

TINY = ["data.context=16", "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.cond_dim=16",
        "progress=false", "threads=1", "eval_every=0", "batch_size=4", "optim.warmup_steps=1", "eval_batches=1",
        "steps=2"]


def test_eval_on_the_test_split_and_on_a_corpus_without_one(tmp_path, capsys):
    threads = torch.get_num_threads()
    text = tmp_path / "text"
    text.mkdir()
    for i in range(10):
        (text / f"doc{i}.txt").write_text(f"document {i}: " + "the quick brown fox jumps over the lazy dog " * 4)
    m = prepare(str(text), tmp_path / "data", verbose=False)
    run = tmp_path / "run"
    sets = [a for item in [*TINY, f"data.train={m.root}"] for a in ("--set", item)]
    try:
        assert cli.main(["train", *sets, "--out", str(run)]) == 0
        capsys.readouterr()
        args = ["eval", "--model", str(run), "--max-batches", "1", "--batch-size", "2", "--draws", "2"]
        assert cli.main([*args, "--data", str(m.root), "--split", "test"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["data"]["split"] == "test" and report["data"]["source"] == str(m.root)  # what it measured
        result = report["results"][report["primary"]]
        assert result["tokens"] == 2 * 16 and 0 < result["bits_per_token"] < 10

        old = tmp_path / "old"  # the same corpus as a version-2 preparation left it: no test split
        shutil.copytree(m.root, old)
        manifest = json.loads((old / "manifest.json").read_text())
        manifest["version"] = 2
        del manifest["splits"]["test"]
        (old / "manifest.json").write_text(json.dumps(manifest))
        assert cli.main([*args, "--data", str(old), "--split", "test"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"discdiff eval: error: {old}: no 'test' split: prepared before discdiff held one "
                              "out (manifest v2); prepare it again: `discdiff prepare ")
        assert err.endswith(" --force`\n") and err.count("\n") == 1
    finally:
        torch.set_num_threads(threads)
