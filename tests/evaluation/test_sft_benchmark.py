"""benchmarks/sft.py --quick end to end (a toy play built offline), and its AR number against the chain rule
computed here token by token from the saved model."""

import importlib.util
import json
import math
import pathlib

import numpy as np
import torch

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "sft.py"
MODELS = ["masked-pretrained", "ar-pretrained", "masked-sft", "ar-sft", "masked-scratch-sft"]


def _run(tmp_path) -> dict:
    spec = importlib.util.spec_from_file_location("_test_bench_sft", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        module.main(["--quick", "--models-dir", str(tmp_path / "models"), "--out", str(tmp_path / "out")])
    finally:
        torch.set_num_threads(threads)
    return json.loads((tmp_path / "out" / "sft.json").read_text())


def _chain_rule_nats(pre, tokens: torch.Tensor, scored: torch.Tensor) -> float:
    """-sum over scored positions j of log p(x_j | BOS, x_<j), one forward of the prefix per position."""
    vocab, total = pre.vocab_size, 0.0
    with torch.no_grad():
        for j in torch.nonzero(scored).flatten().tolist():
            prefix = torch.tensor([[pre.diffusion.bos_id] + tokens[:j].tolist()])
            log_probs = torch.log_softmax(pre.model(prefix, None)[0, -1, :vocab].double(), -1)
            total -= float(log_probs[tokens[j]])
    return total


def test_sft_quick_rows_and_the_exact_ar_value(tmp_path):
    from discdiff.data.splits import open_split
    from discdiff.training import from_pretrained

    saved = _run(tmp_path)
    rows, meta = saved["rows"], saved["meta"]
    assert [(r["split"], r["model"]) for r in rows["eval"]] == [(s, m) for s in ("validation", "test") for m in MODELS]
    by = {(r["split"], r["model"]): r for r in rows["eval"]}
    for r in rows["eval"]:
        lo, hi = r["ci_bits_per_token"]
        assert math.isfinite(r["bits_per_token"]) and 0 < lo <= r["bits_per_token"] <= hi, r["model"]
        assert r["exact"] == (r["kind"] == "ar") and r["data_hash"] == by[(r["split"], "ar-sft")]["data_hash"]
    ratio = by[("validation", "masked-sft")]["vs_ar"]
    assert ratio["ar"] == "ar-sft" and ratio["ci_ratio"][0] <= ratio["ratio"] <= ratio["ci_ratio"][1]
    expected = by[("validation", "masked-sft")]["bits_per_token"] / by[("validation", "ar-sft")]["bits_per_token"]
    assert abs(ratio["ratio"] - expected) < 1e-9  # same pairs, same token counts: a ratio of means
    assert rows["train"]["masked-sft"]["init_from"].endswith("masked-pretrained")
    assert rows["train"]["masked-scratch-sft"]["init_from"] is None
    assert len(rows["samples"]) == 2 and all(isinstance(s["ar-sft"], str) and s["real"] for s in rows["samples"])
    assert (tmp_path / "out" / "sft.md").read_text().count("### Prompt") == 2

    # the AR row's first pair, recomputed here: chain rule over the response and its EOS padding
    ar = by[("validation", "ar-sft")]["first_pairs"]
    pre = from_pretrained(tmp_path / "models" / "ar-sft")
    dataset = open_split(meta["pairs_data"], "validation", context=meta["context"], random_offset=False).dataset
    batch = dataset.get(np.array(ar["indices"][:1]), 0, randomize=False)
    tokens, scored = batch.tokens[0], batch.loss_mask[0]
    assert math.isclose(ar["nats"][0], _chain_rule_nats(pre, tokens, scored), rel_tol=1e-4)
    response = tokens[scored].tolist()
    assert ar["tokens"][0] == response.index(pre.tokenizer.eos_id) + 1  # the response and its one EOS
