import argparse
import json
import re

import pytest
import torch

from discdiff import cli

TINY = ["data.vocab_size=12", "data.context=16", "data.synthetic_tokens=5000", "model.d_model=32",
        "model.n_layers=1", "model.n_heads=2", "model.cond_dim=16", "progress=false", "threads=1",
        "eval_every=0", "batch_size=4", "optim.warmup_steps=1", "eval_batches=1"]


def sets(*items):
    return [a for item in [*TINY, *items] for a in ("--set", item)]


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("train", "sample", "eval"):
        assert name in out


@pytest.mark.parametrize("name", ["prepare", "train", "sample", "eval", "serve", "convert", "bench"])
def test_every_flag_has_help(name, capsys):
    parser = argparse.ArgumentParser()
    command = cli.resolve_command(cli.COMMANDS[name])
    command.add_arguments(parser)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, f"{name} {action.option_strings} lacks help"
    with pytest.raises(SystemExit):
        cli.main([name, "--help"])
    assert "--" in capsys.readouterr().out


def test_unknown_key_is_a_clear_error(capsys):
    assert cli.main(["train", "--set", "model.n_layer=2"]) == 2
    assert "did you mean 'model.n_layers'" in capsys.readouterr().err


def test_lazy_registration(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "hello", cli.Lazy("tests.test_cli_commands:HELLO", "say hello"))
    assert cli.main(["hello", "--name", "x"]) == 0
    assert capsys.readouterr().out == "hello x\n"
    monkeypatch.setitem(cli.COMMANDS, "broken", cli.Lazy("discdiff.no_such_module:X", "never works"))
    with pytest.raises(SystemExit, match="not available"):
        cli.main(["broken"])
    with pytest.raises(SystemExit) as e:  # the top-level help lists it without importing it
        cli.main(["--help"])
    assert e.value.code == 0 and "never works" in capsys.readouterr().out


HELLO = cli.Command("say hello", lambda p: p.add_argument("--name", help="who to greet here"),
                    lambda a: print(f"hello {a.name}"))


def test_train_resume_sample_eval(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *sets("steps=3", "save_every=2"), "--out", str(run)]) == 0
    # continue the finished run for two more steps from its stored config
    assert cli.main(["train", "--resume", "--out", str(run), "--set", "steps=5"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert json.loads((run / "checkpoints" / "step_00000005" / "state.json").read_text())["step"] == 5

    assert cli.main(["eval", "--model", str(run), "--data", "synthetic", "--max-batches", "2", "--draws", "2",
                     "--batch-size", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    result = report["results"][report["primary"]]
    assert result["tokens"] == 2 * 4 * 16 and not result["exact"]
    assert 0 < result["bits_per_token"] < 10 and result["stderr_nats_per_token"] > 0
    lo, hi = result["ci_bits_per_token"]
    assert lo < result["bits_per_token"] < hi


def test_ar_train_sample_eval(tmp_path, capsys):
    run = tmp_path / "ar"
    assert cli.main(["train", *sets("steps=2", "diffusion.kind=ar"), "--out", str(run)]) == 0
    out_file = tmp_path / "samples.jsonl"
    args = ["--model", str(run), "--num-samples", "3", "--length", "10", "--out", str(out_file)]
    assert cli.main(["sample", *args]) == 0
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["ids"]) == 10 and 0 <= min(r["ids"]) <= max(r["ids"]) < 12 for r in rows)
    assert cli.main(["sample", *args]) == 0  # same seed, same samples
    assert [json.loads(line) for line in out_file.read_text().splitlines()] == rows
    capsys.readouterr()
    assert cli.main(["eval", "--model", str(run), "--data", "synthetic", "--max-batches", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["results"][report["primary"]]["exact"] is True


def test_diffusion_sample(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *sets("steps=2"), "--out", str(run)]) == 0
    assert cli.main(["sample", "--model", str(run), "--num-samples", "2", "--length", "8", "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"--- sample", out)) == 2


def test_prepare_packs_a_users_text_file(tmp_path, capsys):
    from discdiff import cli
    from discdiff.data import Manifest

    text = tmp_path / "poems.txt"
    text.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(200)))
    assert cli.main(["prepare", str(text), "--data-dir", str(tmp_path / "data")]) == 0
    assert "prepared" in capsys.readouterr().out
    manifests = list((tmp_path / "data").glob("*/manifest.json"))
    assert len(manifests) == 1 and Manifest.load(manifests[0]).vocab_size > 10


def test_prepare_rejects_malformed_options_and_unknown_corpora(tmp_path, capsys):
    from discdiff import cli

    assert cli.main(["prepare", "shakespeare", "--opt", "novalue", "--data-dir", str(tmp_path)]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert cli.main(["prepare", "no-such-corpus", "--data-dir", str(tmp_path)]) == 2
    assert "unknown corpus" in capsys.readouterr().err


def test_sample_with_a_template_or_a_prompt_keeps_the_known_text(tmp_path, capsys):
    text = tmp_path / "lines.txt"
    text.write_text("".join(f"to be or not to be, line {i}\n" for i in range(300)))
    assert cli.main(["prepare", str(text), "--data-dir", str(tmp_path / "data")]) == 0
    corpus = next((tmp_path / "data").glob("*/manifest.json")).parent
    run = tmp_path / "run"
    assert cli.main(["train", *sets("steps=2", f"data.train={corpus}", "data.context=32"), "--out", str(run)]) == 0
    out_file = tmp_path / "s.jsonl"
    common = ["--model", str(run), "--num-samples", "3", "--out", str(out_file), "--steps", "4"]
    assert cli.main(["sample", *common, "--template", "to be{3}not_to be"]) == 0
    for row in map(json.loads, out_file.read_text().splitlines()):
        assert len(row["text"]) == 17 and row["text"].startswith("to be") and row["text"][8:11] == "not"
        assert row["text"].endswith("to be")
    assert cli.main(["sample", *common, "--prompt", "to be", "--length", "12"]) == 0
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert all(r["text"].startswith("to be") and len(r["ids"]) == 12 for r in rows)
    capsys.readouterr()
    assert cli.main(["sample", *common, "--template", "to be{99}"]) == 2
    assert "blanks" in capsys.readouterr().err


def test_bench_runs_a_benchmark_script_and_rejects_unknown_names(tmp_path, capsys):
    assert cli.main(["bench", "no-such-bench"]) == 2
    assert "sampling" in capsys.readouterr().err  # the error lists what exists
    assert cli.main(["bench", "sampler-exactness", "--quick", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "sampler_exactness.json").read_text())
    assert rows[0]["sampler"] == "p_data itself" and any(r["sampler"] == "first_hitting" for r in rows)
    assert (tmp_path / "sampler_exactness.md").read_text().count("|") > 20


def test_the_ar_baseline_continues_prompts_of_different_lengths(tmp_path, capsys):
    from discdiff.data import CharTokenizer
    from discdiff.training import DiffusionConfig, ModelConfig, build_model, save_pretrained

    tok = CharTokenizer.from_texts(["to be or not to be, that is the question"])
    cfg, diffusion = ModelConfig(d_model=16, n_layers=1, n_heads=2, time_conditioning=False), DiffusionConfig(kind="ar")
    torch.manual_seed(0)
    model = build_model(cfg, diffusion, tok.vocab_size, 16)
    path = save_pretrained(tmp_path / "ar", model.eval(), model_cfg=cfg, diffusion_cfg=diffusion,
                           vocab_size=tok.vocab_size, context=16, tokenizer_dir=tok.save(tmp_path / "tok"))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("to be\nthe\n")
    out = tmp_path / "s.jsonl"
    assert cli.main(["sample", "--model", str(path), "--prompts-file", str(prompts), "--num-samples", "2",
                     "--length", "12", "--out", str(out)]) == 0
    texts = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert len(texts) == 4 and all(len(t) == 12 for t in texts)
    assert [t[:5] for t in texts[:2]] == ["to be", "to be"] and [t[:3] for t in texts[2:]] == ["the", "the"]
    assert cli.main(["sample", "--model", str(path), "--template", "to _ be"]) == 2
    assert "the AR baseline continues a --prompt" in capsys.readouterr().err
