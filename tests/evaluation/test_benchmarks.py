"""The likelihood and sampling-quality benchmarks run end to end in --quick mode (synthetic corpus, offline)."""

import importlib.util
import json
import pathlib

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_test_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_benchmarks_end_to_end(tmp_path):
    models = str(tmp_path / "models")
    rows = _load("likelihood").main(["--quick", "--corpora", "synthetic", "--models-dir", models,
                                     "--out", str(tmp_path / "lik")])
    assert [r["kind"] for r in rows] == ["masked-tdce", "masked-lambdadce", "sedd-absorb", "sedd-uniform", "ar"]
    saved = json.loads((tmp_path / "lik" / "likelihood.json").read_text())
    assert saved["rows"][0]["vs_ar"]["ratio"] > 0 and saved["rows"][-1]["results"]["exact_ar"]["exact"]
    assert "ratio to AR" in (tmp_path / "lik" / "likelihood.md").read_text()
    assert "k_dce" in saved["rows"][0]["results"]

    # --reuse-models evaluates the saved models again instead of training new ones: same steps, same bound
    again = _load("likelihood").main(["--quick", "--corpora", "synthetic", "--models-dir", models, "--reuse-models",
                                      "--out", str(tmp_path / "lik2")])
    assert [(r["steps"], r["results"][r["primary"]]["bits_per_token"]) for r in again] == \
        [(r["steps"], r["results"][r["primary"]]["bits_per_token"]) for r in saved["rows"]]

    # reuses the masked-tdce and ar models the likelihood benchmark just saved
    rows = _load("sampling_quality").main(["--quick", "--corpus", "synthetic", "--models-dir", models,
                                           "--out", str(tmp_path / "sq")])
    samplers = {(r["sampler"], r["categorical"]) for r in rows}
    assert ("ancestral", "gumbel_fp32") in samplers and ("data (validation)", "float64") in samplers
    for r in rows:
        (report,) = r["judges"].values()
        assert report["gen_ppl"] > 1 and report["unigram_entropy"] > 0
    assert (tmp_path / "sq" / "sampling_quality.md").is_file()
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "lik" / "likelihood.png").is_file() and (tmp_path / "sq" / "sampling_quality.png").is_file()


@pytest.mark.slow
def test_quick_block_diffusion_benchmark_end_to_end(tmp_path):
    import torch

    threads = torch.get_num_threads()
    try:
        rows = _load("block_diffusion").main(["--quick", "--models-dir", str(tmp_path / "models"),
                                              "--judge-dir", str(tmp_path / "judge"), "--out", str(tmp_path / "bd")])
    finally:
        torch.set_num_threads(threads)
    assert [r["method"] for r in rows["speed"]] == ["full ancestral (cached)", "block, no KV cache",
                                                    "block + KV cache", "AR + KV cache"]
    assert all(r["tokens_per_s"] > 0 and r["nfe"] > 0 for r in rows["speed"])
    assert [r["method"] for r in rows["train"]] == ["plain L pass (Diffusion)", "2L block pass (BlockDiffusion)"]
    assert [r["kind"] for r in rows["likelihood"]] == ["block-4", "block-L=32", "ar"]
    saved = json.loads((tmp_path / "bd" / "block_diffusion.json").read_text())
    assert set(saved["rows"]) == {"speed", "train", "likelihood", "quality"} and saved["meta"]["train_ratios"]
    table = (tmp_path / "bd" / "block_diffusion.md").read_text()
    assert "s / step" in table and "vs AR (ratio)" in table and "k_dce" in table
    # quality: the likelihood part's models reused, an independent judge trained, 64 tokens beyond the context 32
    assert [(r["length"], r["method"]) for r in rows["quality"]] == [
        (n, m) for n in (32, 64) for m in ("data (validation)", "full ancestral (cached)", "block, no KV cache",
                                           "block + KV cache", "AR + KV cache")]
    quality = {(r["length"], r["method"]): r for r in rows["quality"]}
    assert "no window to slide" in quality[64, "full ancestral (cached)"]["na"]
    assert all(quality[n, "block, no KV cache"]["identical_to_cached"] for n in (32, 64))
    assert all(r["judge"]["bits_per_token"] > 0 for r in rows["quality"] if "na" not in r)
    assert (tmp_path / "judge" / "synthetic" / "ar-judge" / "config.json").is_file()
    assert "judge bits/token" in table and "n/a: a full-sequence model" in table


@pytest.mark.slow
def test_quick_budget_and_ar_to_blocks_benchmarks_end_to_end(tmp_path):
    out = tmp_path / "budgets"
    _load("likelihood_budgets").main(["--quick", "--corpora", "synthetic", "--kinds", "masked-tdce", "ar",
                                      "--models-dir", str(tmp_path / "m"), "--out", str(out)])
    rows = [json.loads(line) for line in (out / "budgets.jsonl").read_text().splitlines()]
    assert sorted({(r["budget_s"], r["kind"]) for r in rows}) == [(0.3, "ar"), (0.3, "masked-tdce"),
                                                                   (0.6, "ar"), (0.6, "masked-tdce")]
    assert all(r["vs_ar"]["ratio"] > 0 for r in rows if r["kind"] != "ar")
    assert "ratio to AR" in (out / "budgets.md").read_text()

    _load("ar_to_blocks").main(["--quick", "--data", "synthetic", "--runs-dir", str(tmp_path / "r"),
                                "--out", str(tmp_path / "a2b")])
    result = json.loads((tmp_path / "a2b" / "ar_to_blocks.json").read_text())
    assert [s for s, _ in result["scratch"]["curve"]] == [4, 8] == [s for s, _ in result["from_ar"]["curve"]]
    assert result["target_bits"] == result["scratch"]["curve"][-1][1]
