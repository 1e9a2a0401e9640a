"""Bad command-line inputs: the case table. Every case expects a clear refusal (non-zero exit, no traceback)
unless its `expect` says "succeed". `serve` cases that start listening are silent acceptances (stopped at once).

Train cases run the tiny synthetic configuration for 3 steps, with one value replaced; sample / eval / serve
use the fixture run (a tiny model trained on a prepared .txt, so it has a tokenizer).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _reliability_run import SYNTHETIC, TINY, Case, classify, discdiff, first_line, run

LISTENING = re.compile(r"https?://")

TRAIN_SETS = [
    "log_every=0", "log_every=-1", "threads=-1", "data.dtype=bogus", "steps=0", "steps=-5", "save_every=-1",
    "eval_every=-1", "optim.warmup_steps=-10", "batch_size=0", "batch_size=-4", "micro_batch_size=3",
    "micro_batch_size=0", "optim.lr=-1", "optim.lr=.nan", "optim.lr=.inf", "optim.betas=[2.0, 0.5]",
    "optim.betas=[0.9]", "optim.ema_decay=1.5", "optim.ema_decay=-0.1", "optim.grad_clip=-1",
    "optim.min_lr_ratio=2", "optim.weight_decay=-1", "optim.eps=-1", "model.d_model=0", "model.d_model=-32",
    "model.n_heads=3", "model.n_heads=0", "model.n_layers=0", "model.n_layers=-1", "model.dropout=1.5",
    "model.dropout=-0.1", "model.mlp_ratio=0", "model.norm=bogus", "model.max_len=4", "data.context=0",
    "data.context=-1", "data.vocab_size=0", "data.vocab_size=1", "data.synthetic_tokens=0",
    "data.synthetic_tokens=10", "data.train=/nonexistent/corpus", "diffusion.kind=bogus", "diffusion.graph=bogus",
    "diffusion.schedule=bogus", "diffusion.parameterization=bogus", "diffusion.objective=bogus", "diffusion.eps=0",
    "diffusion.eps=2", "diffusion.t_min=-1", "diffusion.t_min=2", "diffusion.sigma_min=-1", "precision=bogus",
    "device=bogus", "device=cuda", "parallel=bogus", "keep_checkpoints=-1", "eval_batches=-1", "bogus_key=1",
    "model.bogus=1", "noequals", "steps=abc", "steps=1.5", "model.d_model=[1, 2]", "model=3",
]

BAD_YAML = {
    "an unclosed bracket": "model: [1, 2\n",
    "tab indentation": "model:\n\td_model: 32\n",
    "a list at the top": "- steps\n- 3\n",
    "a bare string": "just a string\n",
    "binary garbage": "\udcff\udcfe\x00\x01\udc80",
    "an unknown key": "modle:\n  d_model: 32\n",
    # not "steps: ten": every train case adds --set steps=3, and --set values replace the file's before the
    # config is parsed (training/config.py load_config: "a preset YAML ... with dotted overrides applied"), so
    # that file never had a wrong type in the config it asked for; optim.lr is set by no case's --set
    "a wrong type": "optim:\n  lr: fast\n",
}

SAMPLE_ARGS = [
    "--device cuda", "--device bogus", "--device cuda:7", "--out {dir}", "--out /nonexistent/dir/samples.jsonl",
    "--steps 1000000000", "--steps 0", "--steps -1", "--num-samples 100000000", "--num-samples 0",
    "--num-samples -1", "--length 0", "--length -5", "--length 100000", "--sampler confidence --threshold 0",
    "--sampler confidence --threshold 1.5", "--sampler confidence --threshold -1", "--threshold 0.5",
    "--sampler confidence --block-length 0", "--sampler confidence --block-length -1",
    "--sampler confidence --block-length 5", "--block-length 4", "--guidance 2", "--guidance -1 --prompt the",
    "--guidance nan --prompt the", "--sampler bogus", "--temperature 0", "--temperature -1", "--temperature nan",
    "--top-k 0", "--top-k -1", "--top-p 0", "--top-p 1.5", "--top-p nan",
    "--prompt the_quick_brown_fox_jumps_over_the_lazy_dog", "--prompt ζζζ", "--template {{999999}}",
    "--steps abc", "--num-samples 2.5",
]

# Sample flags that look odd but are valid, and the reason. Blocks of 5 over 16 tokens are LLaDA's semi-
# autoregressive decoding with a short last block (5, 5, 5, 1); the sample keeps all 16 tokens (checked by hand:
# `discdiff sample ... --sampler confidence --block-length 5 --out s.jsonl` gives 16 ids per row).
SAMPLE_EXPECT = {"--sampler confidence --block-length 5": "succeed"}

EVAL_ARGS = [
    "--context 0", "--context -1", "--context 100000", "--data {other_vocab}", "--data {ids_too_big}",
    "--data {float_ids}", "--data {empty_ids}", "--data /nonexistent/corpus", "--split bogus", "--batch-size 0",
    "--batch-size -1", "--max-batches 0", "--max-batches -1", "--draws 0", "--draws -1", "--objective bogus",
    "--device bogus", "--device cuda",
]

PREPARE_ARGS = [
    "{missing_txt}", "{empty_txt}", "{empty_dir}", "{blank_txt}", "{binary_txt}", "{bad_jsonl}",
    "{textless_jsonl}", "{empty_fasta}", "{txt} --opt noequals", "{txt} --opt bogus=1",
    "{txt} --opt tokenizer=bogus", "{txt} --opt validation_every=1", "{txt} --opt validation_every=-1",
    "{txt} --opt tokenizer=bpe --opt vocab_size=-1",
    "{txt} --data-dir {a_file}", "nosuchcorpus", "{txt} --opt levels=8",
]

SERVE_ARGS = [
    "--port 70000", "--port -1", "--device bogus", "--device cuda", "--checkpoint /nonexistent",
    "--checkpoint {a_file}", "--max-steps 0", "--max-samples -1", "--max-concurrent 0", "--max-queue -1",
    "--timeout -1", "--max-length 0", "--host bogus.invalid",
]


@dataclass
class Inputs:
    """Files the cases point at, made once under work/inputs."""

    root: Path
    paths: dict


def make_inputs(work: Path, fixture) -> Inputs:
    root = work / "inputs"
    (root / "empty_dir").mkdir(parents=True, exist_ok=True)
    (root / "a_dir").mkdir(exist_ok=True)
    files = {"empty_txt": "", "blank_txt": "   \n\n\t\n", "bad_jsonl": '{"text": "ok"}\n{not json\n',
             "textless_jsonl": '{"body": "no text field"}\n', "empty_fasta": ">\n", "a_file": "not a folder\n"}
    suffix = {"bad_jsonl": ".jsonl", "textless_jsonl": ".jsonl", "empty_fasta": ".fasta", "a_file": ".txt"}
    paths = {"dir": root / "a_dir", "empty_dir": root / "empty_dir", "missing_txt": root / "missing.txt",
             "txt": fixture.text, "other_vocab": fixture.other_corpus}
    for key, text in files.items():
        paths[key] = root / f"{key}{suffix.get(key, '.txt')}"
        paths[key].write_text(text)
    paths["binary_txt"] = root / "binary.txt"
    paths["binary_txt"].write_bytes(bytes(range(256)) * 8)
    for key, arr in {"ids_too_big": np.full(4096, 10_000, dtype=np.int64),
                     "float_ids": np.random.default_rng(0).random(4096),
                     "empty_ids": np.zeros(0, dtype=np.int64)}.items():
        paths[key] = root / f"{key}.npy"
        np.save(paths[key], arr)
    for key in ("run_a", "run_b"):  # copies of a finished run, for the cases that train into one
        paths[key] = root / key
        if not paths[key].exists():
            shutil.copytree(fixture.run, paths[key])
    for i, text in enumerate(BAD_YAML.values()):
        paths[f"yaml{i}"] = root / f"bad{i}.yaml"
        paths[f"yaml{i}"].write_bytes(text.encode("utf-8", "surrogateescape"))
    return Inputs(root, paths)


def _name(args: str) -> str:
    return args.replace("{{", "{").replace("}}", "}")


def _with(argv: list[str], *extra) -> list[str]:
    """argv of `discdiff train ...` with `extra` right after the command name."""
    return argv[:4] + [str(e) for e in extra] + argv[4:]


def _split(text: str, paths: dict) -> list[str]:
    return [part.format(**paths) for part in text.split(" ")]


def _tiny_train(out: Path, *extra: str, steps: int = 3) -> list[str]:
    sets = TINY + SYNTHETIC + [f"steps={steps}"] + list(extra)
    return discdiff("train", "--out", out, *[a for s in sets for a in ("--set", s)])


def cli_cases(inp: Inputs, fixture) -> list[tuple[str, str, list[str], str]]:
    """(group, case, argv, expect) for every command-line case."""
    p, out = inp.paths, inp.root / "train"
    cases = [("train --set", s, _tiny_train(out / f"set{i}", s), "refuse") for i, s in enumerate(TRAIN_SETS)]
    for i, name in enumerate(BAD_YAML):
        cases.append(("train --config", f"a YAML file with {name}",
                      _with(_tiny_train(out / f"yaml{i}"), "--config", p[f"yaml{i}"]), "refuse"))
    cases += [
        ("train --config", "a missing config file", _tiny_train(out / "nocfg") + ["--config", "/nonexistent.yaml"],
         "refuse"),
        ("train --out", "--out naming a file", _tiny_train(p["a_file"]), "refuse"),
        ("train --out", "--out under a file", _tiny_train(p["a_file"] / "sub"), "refuse"),
        ("train --out", "into an existing run without --resume", _tiny_train(p["run_a"]), "refuse"),
        ("train --resume", "--resume with a changed model", discdiff(
            "train", "--out", p["run_b"], "--resume", "--set", "model.d_model=64"), "refuse"),
        ("train --resume", "--resume, nothing to resume, no config", discdiff(
            "train", "--out", out / "nothing", "--resume"), "refuse"),
        ("train --resume", "--resume, nothing to resume, full config (starts fresh, saying so)",
         _with(_tiny_train(out / "fresh"), "--resume"), "succeed"),
    ]
    model = ["--model", str(fixture.run)]
    sample = discdiff("sample", *model, "--num-samples", 2, "--steps", 4)
    cases += [("sample", _name(a), sample + _split(a, p), SAMPLE_EXPECT.get(a, "refuse")) for a in SAMPLE_ARGS]
    cases += [("sample", f"--model {k}", discdiff("sample", "--model", p[k] if k in p else "/nonexistent"), "refuse")
              for k in ("a_file", "empty_dir", "nonexistent")]
    cases += [("eval", a, discdiff("eval", *model, "--data", fixture.corpus, "--batch-size", 4, "--max-batches",
                                   2, "--draws", 2, *_split(a, p)), "refuse") for a in EVAL_ARGS]
    cases += [("prepare", a, discdiff("prepare", *_split(a, p), *([] if "--data-dir" in a else
                                                              ["--data-dir", inp.root / "data"])), "refuse")
              for a in PREPARE_ARGS]
    cases += [("serve", a, discdiff("serve", "--checkpoint", fixture.run, "--port", 0, *_split(a, p)), "refuse")
              for a in SERVE_ARGS]
    return cases


def run_cli_case(group: str, name: str, argv: list[str], expect: str, inp: Inputs, k: int) -> Case:
    res = run(argv, inp.root / "logs" / f"cli{k:03d}", 90, stop_when=LISTENING if group == "serve" else None)
    outcome = classify(res, expect)
    return Case("bad input: CLI", group, name, res.command, expect, outcome, res.rc, res.seconds, first_line(res))
