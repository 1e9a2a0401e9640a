"""A class-conditional block model end to end: trained with labels, validated under them, sampled by label from
the command line with per-row seeds (row i is the same whatever --num-samples)."""

import json

import torch
from test_conditional_training import _labelled, _trainer

from discdiff import cli
from discdiff.training import from_pretrained


def test_a_labelled_block_model_trains_and_samples_row_by_row(tmp_path, capsys):
    threads = torch.get_num_threads()
    trainer = _trainer(tmp_path, _labelled(tmp_path), "data.context=4", "model.block_size=2", "model.num_classes=3",
                       "condition_dropout=0.2", "diffusion.objective=k_dce", "steps=2")
    seen, model = [], trainer.forward_model

    def spy(x_t, sigma_bar, x0=None, padding_mask=None, label=None):
        seen.append(label)
        return model(x_t, sigma_bar, x0=x0, padding_mask=padding_mask, label=label)

    trainer.forward_model = spy
    trainer.fit()
    torch.set_num_threads(threads)
    assert seen and all(label is not None for label in seen)  # the labels reach the block model in training
    run = tmp_path / "run"
    assert from_pretrained(run).model.config.block_size == 2
    rows = {}
    for n in (3, 1):
        out = tmp_path / f"s{n}.jsonl"
        assert cli.main(["sample", "--model", str(run), "--label", "light", "--num-samples", str(n), "--seed", "5",
                         "--steps", "3", "--out", str(out)]) == 0
        rows[n] = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[1][0] == rows[3][0] and rows[3][0]["label"] == 2  # row 0 alone == row 0 of three
    capsys.readouterr()
