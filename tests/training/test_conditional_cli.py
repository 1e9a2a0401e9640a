"""`discdiff sample` / `train` on conditional models: labels by name, and one line per bad input."""

import json

import pytest
from test_conditional_training import _labelled, _pairs, _trainer

from discdiff.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cond")
    data = _labelled(tmp)
    out = {"labelled": data}
    for name, dropout in (("plain", 0.0), ("dropped", 0.3)):
        _trainer(tmp / name, data, "data.context=4", "model.num_classes=3", f"condition_dropout={dropout}",
                 "steps=2").fit()
        out[name] = tmp / name / "run"
    _trainer(tmp / "sft", _pairs(tmp), "data.context=8", "steps=2").fit()
    out["sft"] = tmp / "sft" / "run"
    _trainer(tmp / "sft-dropped", _pairs(tmp), "data.context=8", "steps=2", "condition_dropout=0.3").fit()
    out["sft-dropped"] = tmp / "sft-dropped" / "run"
    return out


def _error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_label_by_name_with_guidance_against_the_null_label(runs, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--model", str(runs["dropped"]), "--label", "LIGHT", "--guidance", "2", "--steps", "4",
                 "--num-samples", "3", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in rows] == [2, 2, 2] and all(len(r["ids"]) == 4 for r in rows)


@pytest.mark.parametrize("run, argv, message", [
    ("dropped", ["--label", "7"], "--label 7 is outside this model's 3 classes (0=dark, 1=mid, 2=light)"),
    ("dropped", ["--label", "sandal"], "--label 'sandal' is not a class of this model; choose one of: 0=dark"),
    ("sft", ["--label", "1"], "--label needs a class-conditional model"),
    ("plain", ["--label", "dark", "--guidance", "1"], "needs a model trained with condition dropout"),
    ("sft", ["--prompt", "ab", "--guidance", "1"], "needs a model trained with condition dropout"),
    ("sft", ["--prompt", "abcabcabc"], "--prompt is 9 tokens, but the sequence holds 8"),
    ("dropped", ["--guidance", "1"], "--guidance needs a prompt: use --prompt or --template (or --label"),
])
def test_bad_conditional_input_is_one_line_naming_the_fix(runs, capsys, run, argv, message):
    assert message in _error(capsys, "sample", "--model", str(runs[run]), "--steps", "2", *argv)


def test_guidance_after_a_prompt_uses_the_branch_prompt_dropout_trained(runs, tmp_path, capsys):
    """A pair model trained with condition_dropout: --guidance (mode null) contrasts with the prompt masked."""
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--model", str(runs["sft-dropped"]), "--prompt", "ab", "--guidance", "2", "--steps", "4",
                 "--num-samples", "2", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(r["ids"][:2] == rows[0]["ids"][:2] for r in rows)
    from discdiff.training import from_pretrained

    assert from_pretrained(runs["sft-dropped"]).config["conditioning"]["condition_dropout"] == 0.3


def test_eval_of_a_class_conditional_model_conditions_on_the_labels(runs, capsys):
    """`discdiff eval` on labelled data reports -log p(x | c), as training-time validation does."""
    assert main(["eval", "--model", str(runs["dropped"]), "--data", runs["labelled"], "--draws", "2",
                 "--objective", "t_dce"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["results"]["t_dce"]["estimator"] == "t_dce_conditional"


def test_an_sft_model_answers_after_its_prompt(runs, capsys):
    assert main(["sample", "--model", str(runs["sft"]), "--prompt", "ab", "--steps", "4", "--num-samples", "2"]) == 0
    printed = capsys.readouterr().out
    assert "--- sample 1" in printed and "ab" not in printed.split("--- sample 0")[1][:3]  # the response alone


def test_init_from_a_different_architecture_is_one_line(runs, tmp_path, capsys):
    line = _error(capsys, "train", "--init-from", str(runs["sft"]), "--out", str(tmp_path / "x"),
                  "--set", f"data.train={runs['sft'].parents[1] / 'pairs.json'}", "--set", "data.context=8",
                  "--set", "model.d_model=64", "--set", "model.n_heads=2", "--set", "progress=false")
    assert "its architecture differs from this config's (d_model 32 vs 64" in line
