"""Training conditional models: labels with dropout, prompt-response pairs (loss mask != attention mask),
--init-from, and the conditioning record that sampling checks. Tiny models, a few steps."""

import json

import numpy as np
import pytest
import torch
from train_helpers import tiny_config

from discdiff.data.packing import TokenWriter
from discdiff.data.tokenizer import CharTokenizer, PixelTokenizer
from discdiff.training import Trainer
from discdiff.training.conditioning import drop_labels


def _labelled(tmp_path, n=64):
    """2x2 images of 4 grey levels with labels 0..2 and their names: a labelled records corpus."""
    tok = PixelTokenizer(4, 2, 2)
    tok.save(tmp_path / "tok")
    rng = np.random.default_rng(0)
    with TokenWriter(tmp_path / "train", tok.vocab_size, "records", tmp_path / "tok",
                     label_names=["dark", "mid", "light"]) as w:
        for i in range(n):
            w.add(np.full(4, i % 3) + rng.integers(0, 2, 4) * (i % 3 < 2), i % 3)
    return str(tmp_path / "train.json")


def _pairs(tmp_path, n=32):
    """Prompt-response pairs over a character vocabulary (EOS = 0)."""
    tok = CharTokenizer.from_texts(["abcdxyz"], specials=("eos",))
    tok.save(tmp_path / "tok")
    with TokenWriter(tmp_path / "pairs", tok.vocab_size, "pairs", tmp_path / "tok") as w:
        for i in range(n):
            prompt, response = tok.encode("ab" if i % 2 else "abc"), tok.encode("xyz"[: 1 + i % 3])
            w.add(np.asarray(prompt + response), prompt_length=len(prompt))
    return str(tmp_path / "pairs.json")


def _trainer(tmp_path, data, *extra):
    cfg = tiny_config(tmp_path / "run", f"data.train={data}", "data.vocab_size=null", "batch_size=8",
                      "eval_batches=1", *extra)
    return Trainer(cfg)


def test_label_dropout_uses_the_null_label_at_its_rate():
    labels = torch.zeros(20_000, dtype=torch.long)
    dropped = drop_labels(labels, 0.25, 10, torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0, 10}
    assert abs((dropped == 10).double().mean().item() - 0.25) < 0.015


def test_a_class_conditional_run_records_its_labels_and_dropout(tmp_path):
    trainer = _trainer(tmp_path, _labelled(tmp_path), "data.context=4", "model.num_classes=3",
                       "condition_dropout=0.2", "steps=2")
    seen = []
    model = trainer.forward_model

    def spy(x_t, sigma_bar, label=None):
        seen.append(label)
        return model(x_t, sigma_bar, label=label)

    trainer.forward_model = spy
    trainer.fit()
    assert seen and all(lab is not None and lab.max() <= 3 for lab in seen)  # labels reach the model
    config = json.loads((tmp_path / "run" / "pretrained" / "config.json").read_text())
    assert config["conditioning"] == {"num_classes": 3, "label_names": ["dark", "mid", "light"],
                                      "condition_dropout": 0.2, "prompt_response": False}


@pytest.mark.parametrize("extra, match", [
    (("model.num_classes=2",), r"labels lie in \[0, 2\]; model.num_classes=2 must exceed them"),
    (("condition_dropout=0.1",), "condition_dropout drops class labels"),
])
def test_bad_conditioning_configs_are_refused(tmp_path, extra, match):
    with pytest.raises(ValueError, match=match):
        _trainer(tmp_path, _labelled(tmp_path), "data.context=4", *extra)


def test_labels_on_unlabelled_data_are_refused(tmp_path):
    with pytest.raises(ValueError, match="needs labelled data"):
        Trainer(tiny_config(tmp_path, "model.num_classes=3"))


def test_the_trainer_never_noises_the_prompt_and_lets_the_response_see_it(tmp_path):
    """Fails if the loss mask were used as the attention mask (the prompt would be hidden) or if prompt
    positions were noised."""
    trainer = _trainer(tmp_path, _pairs(tmp_path), "data.context=8", "steps=1")
    batch = next(iter(trainer.loader))
    assert batch.loss_mask is not None and bool(batch.mask.all())  # EOS padding is real and trained
    seen = []
    model = trainer.forward_model

    def spy(x_t, sigma_bar, padding_mask=None):
        seen.append((x_t.clone(), padding_mask))
        return model(x_t, sigma_bar, padding_mask=padding_mask)

    trainer.forward_model = spy
    trainer.train_step(batch)
    x_t, attention = seen[0]
    prompt = ~batch.loss_mask
    assert torch.equal(x_t[prompt], batch.tokens[prompt])  # never noised
    assert (x_t[batch.loss_mask] == trainer.diffusion.graph.mask_id).any()  # the response is
    assert attention is None or bool(attention[prompt].all())  # always visible
    trainer.close()


def test_init_from_starts_a_new_run_from_matching_weights_and_names_a_mismatch(tmp_path):
    first = _trainer(tmp_path / "a", _pairs(tmp_path), "data.context=8", "steps=2")
    first.fit()
    source = tmp_path / "a" / "run"
    second = _trainer(tmp_path / "b", _pairs(tmp_path), "data.context=8", "steps=2", f"init_from={source}")
    assert second.step == 0
    from discdiff.training import from_pretrained

    ref = from_pretrained(source).model.state_dict()
    assert all(torch.equal(v, second.model.state_dict()[k]) for k, v in ref.items())
    second.close()
    with pytest.raises(ValueError, match=r"architecture differs from this config's \(d_model 32 vs 64"):
        _trainer(tmp_path / "c", _pairs(tmp_path), "data.context=8", "model.d_model=64", f"init_from={source}")


def test_prompt_dropout_shows_dropped_prompts_as_mask_at_its_rate(tmp_path):
    """condition_dropout on pairs: a dropped row's prompt is all MASK in the model's input (LLaDA's unconditional
    branch), a kept row's prompt is clean, and rows are dropped at the configured rate. Refused by the old code."""
    trainer = _trainer(tmp_path, _pairs(tmp_path), "data.context=8", "steps=1", "condition_dropout=0.5",
                       "batch_size=32")
    mask_id = trainer.diffusion.graph.mask_id
    seen, model = [], trainer.forward_model

    def spy(x_t, sigma_bar, padding_mask=None):
        seen.append(x_t.clone())
        return model(x_t, sigma_bar, padding_mask=padding_mask)

    trainer.forward_model = spy
    dropped_rows = 0
    for _ in range(8):
        batch = next(iter(trainer.loader))
        seen.clear()
        trainer.train_step(batch)
        x_t, prompt = torch.cat(seen), ~batch.loss_mask
        hidden = (x_t == mask_id) & prompt
        dropped = hidden.any(1)
        assert torch.equal(hidden[dropped], prompt[dropped])  # the whole prompt, never part of it
        assert torch.equal(x_t[~dropped][prompt[~dropped]], batch.tokens[~dropped][prompt[~dropped]])
        dropped_rows += int(dropped.sum())
    assert abs(dropped_rows / (8 * 32) - 0.5) < 0.12  # 256 rows at p = 0.5: 4 standard errors
    trainer.close()


UNIFORM = ("diffusion.graph=uniform", "diffusion.objective=score_entropy", "diffusion.parameterization=score")


@pytest.mark.parametrize("extra", [("diffusion.kind=ar",), UNIFORM, ("model.block_size=4",)])
def test_prompt_dropout_needs_a_masked_full_sequence_model(tmp_path, extra):
    with pytest.raises(ValueError, match="masks the dropped prompt"):
        _trainer(tmp_path, _pairs(tmp_path), "data.context=8", "condition_dropout=0.2", *extra)
