"""`discdiff sample` on record models (data.records=eos) and with prompts of different lengths in one batch."""

import json

import pytest
import torch

from discdiff import cli
from discdiff.data import DNATokenizer
from discdiff.training import DiffusionConfig, ModelConfig, build_model, save_pretrained

TINY = ModelConfig(d_model=16, n_layers=1, n_heads=2, cond_dim=8)
LETTERS = set(range(3, 8))  # A C G T N
LAYOUT = {"padding": "eos", "eos_id": 2, "bos_id": 1, "pad_id": 0, "length_counts": [0, 0, 0, 5, 5]}


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _save(directory, records):
    tok = DNATokenizer()
    torch.manual_seed(0)
    model = build_model(TINY, DiffusionConfig(), tok.vocab_size, 12)
    tok_dir = tok.save(directory.parent / f"{directory.name}-tokenizer")
    return save_pretrained(directory, model.eval(), model_cfg=TINY, diffusion_cfg=DiffusionConfig(),
                           vocab_size=tok.vocab_size, context=12, tokenizer_dir=tok_dir, records=records)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("ckpt") / "records", LAYOUT)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("ckpt") / "plain", None)


def _sample(tmp_path, model, *argv):
    out = tmp_path / "s.jsonl"
    assert cli.main(["sample", "--model", str(model), "--steps", "6", "--out", str(out), *argv]) == 0
    return [json.loads(line)["ids"] for line in out.read_text().splitlines()]


def test_records_are_cut_at_their_first_eos_and_hold_no_special_token(records, tmp_path):
    # a random model puts EOS anywhere: the printed record stops there; BOS and PAD are never drawn
    rows = _sample(tmp_path, records, "--num-samples", "16")
    assert len(rows) == 16 and all(set(r) <= LETTERS for r in rows)
    assert any(len(r) < 10 for r in rows)


def test_a_random_record_model_samples_well_formed_records_by_default(records, tmp_path, capsys):
    """No --sampler / --steps: first_hitting on the record support, so even a random model's every row is one
    well-formed record (its raw ids: BOS at 0, letters, EOS, then EOS only) of the model's own length."""
    out = tmp_path / "s.jsonl"
    assert cli.main(["sample", "--model", str(records), "--num-samples", "24", "--out", str(out), "--stats"]) == 0
    err = capsys.readouterr().err
    assert "sampler: first_hitting" in err and "records: 100.0% well-formed of 24" in err
    lengths = {len(json.loads(line)["ids"]) for line in out.read_text().splitlines()}
    assert len(lengths) > 2 and max(lengths) <= 10  # lengths vary; BOS + body + at least one EOS fit 12


def test_record_length_pins_the_length(records, tmp_path, capsys):
    rows = _sample(tmp_path, records, "--num-samples", "6", "--record-length", "7", "--stats")
    assert all(len(r) == 7 and set(r) <= LETTERS for r in rows)
    assert "records: 100.0% well-formed of 6; mean length 7.0" in capsys.readouterr().err
    auto = _sample(tmp_path, records, "--num-samples", "20", "--record-length", "auto")
    assert {len(r) for r in auto} <= {3, 4} and {len(r) for r in auto} == {3, 4}  # the recorded histogram


def test_prompts_of_different_lengths_share_a_batch_and_do_not_touch(records, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("ACGT\nG\nTTTTTT\n")
    both = _sample(tmp_path, records, "--prompts-file", str(prompts), "--num-samples", "2", "--record-length", "8")
    assert [r[:len(p)] for r, p in zip(both, ["ACGT"] * 2 + ["G"] * 2 + ["TTTTTT"] * 2, strict=True)] == [
        DNATokenizer().encode(p) for p in ["ACGT"] * 2 + ["G"] * 2 + ["TTTTTT"] * 2]
    # row 0 alone is row 0 of the batch (its own seed, its own prompt)
    alone = _sample(tmp_path, records, "--prompt", "ACGT", "--num-samples", "1", "--record-length", "8")
    assert alone[0] == both[0]


@pytest.mark.parametrize("argv,message", [
    (["--record-length", "3"], "--record-length needs a model trained on records"),
    (["--stats"], "--stats needs a model trained on records"),
])
def test_record_flags_need_a_record_model(plain, argv, message, capsys):
    assert cli.main(["sample", "--model", str(plain), "--steps", "2", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "11", "x"])
def test_a_record_length_that_does_not_fit_is_refused(records, value, capsys):
    assert cli.main(["sample", "--model", str(records), "--steps", "2", "--record-length", value]) == 2
    assert "--record-length must be auto or an integer in [1, 10]" in capsys.readouterr().err


def test_a_missing_prompts_file_is_refused(records, tmp_path, capsys):
    assert cli.main(["sample", "--model", str(records), "--prompts-file", str(tmp_path / "none.txt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_block_record_model_ends_its_records_anywhere_in_the_canvas(tmp_path):
    """Block samplers call the model on the finished blocks plus the current one: the record support must force
    EOS only at the canvas's last position, not at the last position of every call (which ended every record
    inside the first block)."""
    tok = DNATokenizer()
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, cond_dim=8, block_size=4)
    model = build_model(cfg, DiffusionConfig(), tok.vocab_size, 12)
    tok_dir = tok.save(tmp_path / "tokenizer")
    path = save_pretrained(tmp_path / "blocks", model.eval(), model_cfg=cfg, diffusion_cfg=DiffusionConfig(),
                           vocab_size=tok.vocab_size, context=12, tokenizer_dir=tok_dir, records=LAYOUT)
    out = tmp_path / "s.jsonl"
    assert cli.main(["sample", "--model", str(path), "--num-samples", "32", "--out", str(out)]) == 0
    rows = [json.loads(line)["ids"] for line in out.read_text().splitlines()]
    assert len(rows) == 32 and all(r and set(r) <= LETTERS for r in rows)
    assert max(len(r) for r in rows) > 4  # records cross block boundaries (the bug: every body <= 2 letters)
