"""Damage to a real run directory, then `train --resume` (checkpoint damage) or `sample` / `eval` / `serve`
(damage to pretrained/, which is what those commands read).

The case table (what counts as correct):
    checkpoint damage (any file of the newest step folder deleted, truncated, emptied, bytes flipped; NaN / inf /
    reshaped / missing / float64 weights written as valid safetensors; state.json with a bad step or config;
    `latest` missing, empty, garbage, naming a missing folder, a folder outside the run, a folder of another run)
        -> `train --resume`: a clear refusal naming the damaged file / folder, OR a resume from an older
           checkpoint that says why (RECOVERY_WORDS) and names it; exit 0 without that is silent.
           A `latest` that names anything but an existing step folder of this run is damage too: the resume
           must say so ("... latest: names ..., ignoring it" counts: it names the pointer and says it was not
           used).
    `latest` deleted, step folders intact
        -> `train --resume` from the newest step folder, with or without a word about `latest`: a SIGKILL
           between publishing a step folder and writing `latest` (checkpoint.py `_publish`) leaves exactly this
           state on a run's first save, and resume reads the step folders, not the pointer (checkpoint.py:
           "Resuming (find_resumable): the newest checkpoint that verifies"), so no warning can be required.
    Lost checkpoints (any outcome): a step folder that was there before the command and is changed or gone
    after it, UNLESS it is gone and a newer step folder that this command wrote loads completely (pruning by
    keep_checkpoints deletes checkpoints superseded by newer verified ones, by design: checkpoint.py
    "Pruning deletes only checkpoints older than the one this process has just written and verified").
    A checkpoint deleted with nothing newer and loadable, or one rewritten in place, is lost.
    metrics.jsonl with a torn last line
        -> `train --resume`: a clear refusal naming metrics.jsonl, or a resume that continues (the line is
           lost with the kill that tore it; nothing trained depends on it).
    pretrained/ damage (the same file damages, semantic weight damage, config.json vocab_size / context changed)
        -> `sample`, `eval` (and `serve` for three of them): a clear refusal naming the file or folder;
           exit 0 (serve: listening) is silent.
    pretrained/ deleted (checkpoints intact)
        -> `sample`, `eval`: a clear refusal naming pretrained/, OR the documented fallback (from_pretrained on a
           run directory: "its pretrained/, or else its newest checkpoint that verifies") that SAYS so: exit 0
           with a line naming the step folder it used; a silent fallback is silent.
Kinds are enumerated from the files a run holds today, so a new checkpoint format gets its own files damaged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _reliability_run import (
    RECOVERY_WORDS,
    Case,
    classify,
    discdiff,
    first_line,
    latest_step,
    run,
    run_problems,
    step_files,
    step_problems,
)

LISTENING = re.compile(r"https?://")


@dataclass
class Damage:
    name: str
    target: str  # "checkpoint" (read by --resume) or "pretrained" (read by sample / eval / serve)
    apply: Callable[[Path], tuple[str, ...]]  # damages a run dir, returns names a good error mentions
    expect: str = "recover"
    serve: bool = False
    recover: str = ""  # how a successful recovery must look (see _recovered); "" = as for other damage


# ------------------------------------------------------------------ byte-level damage


def _flip(path: Path, offset: int | None = None, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if offset is None else min(offset, max(len(data) - count, 0))
    for k in range(start, min(start + count, len(data))):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


BYTE_DAMAGE = {
    "deleted": lambda p: p.unlink(),
    "truncated to half": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "emptied": lambda p: p.write_bytes(b""),
    "bytes flipped mid-file": lambda p: _flip(p),
}


def _file_damage(rel_dir: Callable[[Path], Path], rel: str, how: str) -> Callable[[Path], tuple[str, ...]]:
    def apply(run_dir: Path) -> tuple[str, ...]:
        folder = rel_dir(run_dir)
        if how == "header bytes flipped":
            _flip(folder / rel, offset=12)
        else:
            BYTE_DAMAGE[how](folder / rel)
        return Path(rel).name, folder.name

    return apply


# ------------------------------------------------------------------ valid files, damaged content


def _rewrite_tensors(path: Path, edit: Callable[[dict], dict]) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    save_file(edit(load_file(str(path))), str(path), metadata=metadata)


def _first_float(tensors: dict) -> str:
    return next(k for k, t in sorted(tensors.items()) if t.is_floating_point() and t.numel() > 1)


def _fill(value: float):
    def edit(t: dict) -> dict:
        t[_first_float(t)].fill_(value)
        return t

    return edit


def _reshape(t: dict) -> dict:
    key = _first_float(t)
    t[key] = t[key].flatten()[:-1].clone()
    return t


def _drop(t: dict) -> dict:
    t.pop(_first_float(t))
    return t


def _float64(t: dict) -> dict:
    return {k: v.double() if v.is_floating_point() else v for k, v in t.items()}


TENSOR_DAMAGE = {"NaN weights (valid safetensors)": _fill(float("nan")),
                 "inf weights (valid safetensors)": _fill(float("inf")),
                 "a tensor of the wrong shape": _reshape, "a tensor missing": _drop,
                 "weights stored as float64": _float64}


def _tensor_damage(rel_dir, rel: str, edit) -> Callable[[Path], tuple[str, ...]]:
    def apply(run_dir: Path) -> tuple[str, ...]:
        folder = rel_dir(run_dir)
        _rewrite_tensors(folder / rel, edit)
        return Path(rel).name, folder.name

    return apply


def _edit_json(rel_dir, rel: str, edit) -> Callable[[Path], tuple[str, ...]]:
    def apply(run_dir: Path) -> tuple[str, ...]:
        path = rel_dir(run_dir) / rel
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        return rel, rel_dir(run_dir).name

    return apply


def _set(path: str, value):
    def edit(d: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value

    return edit


def _pop(key: str):
    return lambda d: d.pop(key)


# ------------------------------------------------------------------ `latest`


def _latest(text: Callable[[Path], str] | None) -> Callable[[Path], tuple[str, ...]]:
    def apply(run_dir: Path) -> tuple[str, ...]:
        pointer = run_dir / "checkpoints" / "latest"
        if text is None:
            pointer.unlink()
        else:
            pointer.write_bytes(text(run_dir).encode("utf-8", "surrogateescape"))
        return ("latest",)

    return apply


def _outside(run_dir: Path) -> str:
    """An exact copy of the newest checkpoint, outside any run: loading it is accepting a foreign path."""
    step = latest_step(run_dir)
    copy = run_dir.parent / f"{run_dir.name}-c" / step.name
    shutil.copytree(step, copy)
    return str(copy.resolve()) + "\n"


def _other_run(run_dir: Path) -> str:
    other = run_dir.parent / f"{run_dir.name}-b"
    shutil.copytree(run_dir, other)
    return os.path.relpath(latest_step(other), run_dir / "checkpoints") + "\n"


def damages(fixture_run: Path) -> list[Damage]:
    """Every damage kind, enumerated from the files of the fixture run's newest checkpoint and pretrained/."""
    step_of = latest_step
    pre_of = lambda r: r / "pretrained"  # noqa: E731
    out = []
    for rel in sorted(step_files(latest_step(fixture_run))):
        hows = list(BYTE_DAMAGE) + (["header bytes flipped"] if rel.endswith(".safetensors") else [])
        out += [Damage(f"checkpoint {rel} {how}", "checkpoint", _file_damage(step_of, rel, how)) for how in hows]
    out += [Damage(f"checkpoint model.safetensors: {k}", "checkpoint", _tensor_damage(step_of, "model.safetensors", e))
            for k, e in TENSOR_DAMAGE.items()]
    state = [("step -5", _set("step", -5)), ("step 10^15", _set("step", 10**15)), ("step 'ten'", _set("step", "ten")),
             ("an unknown config key", _set("config.bogus_key", 1)), ("no data position", _pop("data")),
             ("model.d_model changed", _set("config.model.d_model", 64))]
    out += [Damage(f"checkpoint state.json: {k}", "checkpoint", _edit_json(step_of, "state.json", e)) for k, e in state]
    latest = [("to a missing folder", lambda r: "step_99999999\n"), ("empty", lambda r: ""),
              ("garbage bytes", lambda r: "\udcff\udcfe\x00\x01garbage"), ("to a folder outside the run", _outside),
              ("into another run", _other_run)]
    out += [Damage(f"latest {k}", "checkpoint", _latest(t)) for k, t in latest]
    out.append(Damage("latest deleted (step folders still there)", "checkpoint", _latest(None), expect="succeed"))
    out.append(Damage("metrics.jsonl: torn last line", "checkpoint", _torn_metrics))
    for rel in sorted(p.relative_to(fixture_run / "pretrained").as_posix()
                      for p in (fixture_run / "pretrained").rglob("*") if p.is_file()):
        hows = list(BYTE_DAMAGE) + (["header bytes flipped"] if rel.endswith(".safetensors") else [])
        out += [Damage(f"pretrained {rel} {how}", "pretrained", _file_damage(pre_of, rel, how),
                       serve=(rel == "model.safetensors" and how in ("truncated to half", "bytes flipped mid-file")))
                for how in hows]
    out += [Damage(f"pretrained model.safetensors: {k}", "pretrained", _tensor_damage(pre_of, "model.safetensors", e),
                   serve=k.startswith("NaN")) for k, e in TENSOR_DAMAGE.items()]
    out += [Damage(f"pretrained config.json: {k}", "pretrained", _edit_json(pre_of, "config.json", e))
            for k, e in [("vocab_size 5", _set("vocab_size", 5)), ("context 0", _set("context", 0))]]
    out.append(Damage("pretrained/ deleted", "pretrained", _delete_pretrained, recover="fallback"))
    return out


def _torn_metrics(run_dir: Path) -> tuple[str, ...]:
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "loss": 2.9')
    return ("metrics.jsonl",)


def _delete_pretrained(run_dir: Path) -> tuple[str, ...]:
    shutil.rmtree(run_dir / "pretrained")
    return "pretrained", "config.json"


# ------------------------------------------------------------------ running the cases


def _hashes(run_dir: Path, skip: str) -> dict:
    root = run_dir / "checkpoints"
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.glob("step_*/**/*") if p.is_file() and not p.relative_to(root).as_posix().startswith(skip)}


def _recovered(run_dir: Path, damaged_step: str | None, expected: set[str]):
    """A resume that continued from another checkpoint, saying why, and left a loadable run."""
    def check(res) -> bool:
        steps = set(re.findall(r"step_\d+", res.output)) - {damaged_step}
        words = re.sub(r"\S*/\S*", " ", res.output)  # the words of the messages, not of the paths they print
        return (bool(steps) and bool(RECOVERY_WORDS.search(words)) and "from scratch" not in res.output
                and not run_problems(run_dir, expected))

    return check


def _step_number(name: str) -> int:
    return int(name.removeprefix("step_"))


def _lost(before: dict, after: dict, run_dir: Path, expected: set[str]) -> list[str]:
    """Checkpoint files that were there before the command and are changed or gone after it, except those of a
    step folder that is gone as a whole and superseded: a newer step folder, written by this command, loads
    completely (step_problems: every expected file present, every tensor finite)."""
    old_steps = {k.split("/")[0] for k in before}
    new_steps = {k.split("/")[0] for k in after} - old_steps
    good_new = [_step_number(s) for s in new_steps if not step_problems(run_dir / "checkpoints" / s, expected)]
    lost = []
    for key, digest in before.items():
        if after.get(key) == digest:
            continue
        folder = key.split("/")[0]
        gone = not (run_dir / "checkpoints" / folder).exists()
        if gone and any(n > _step_number(folder) for n in good_new):
            continue  # pruned: superseded by a newer verified checkpoint (keep_checkpoints), not lost
        lost.append(key)
    return lost


def resume_case(d: Damage, fixture, work: Path, resume_steps: int) -> Case:
    run_dir = work / "cases" / _slug(d.name)
    shutil.copytree(fixture.run, run_dir)
    damaged_step = latest_step(run_dir).name
    names = d.apply(run_dir)
    skip = damaged_step if d.name.startswith("checkpoint") else "\0"  # the damaged folder may change; others not
    before = _hashes(run_dir, skip)
    res = run(discdiff("train", "--out", run_dir, "--resume", "--set", f"steps={resume_steps}"),
              work / "logs" / "corrupt" / _slug(d.name), 180)
    if d.name.startswith("metrics.jsonl"):
        recovered = lambda r: not run_problems(run_dir, fixture.files)  # noqa: E731
    else:
        recovered = _recovered(run_dir, damaged_step if d.name.startswith("checkpoint") else None, fixture.files)
    outcome = classify(res, d.expect, names, recovered)
    detail = ""
    if outcome == "ok" and d.expect == "succeed" and (damaged_step not in res.output or "from scratch" in res.output
                                                      or run_problems(run_dir, fixture.files)):
        outcome, detail = "silent", f"did not resume from {damaged_step}, the newest checkpoint; "
    if outcome == "silent" and not detail:
        detail = f"exit 0 without a line saying why it did not use {'/'.join(names)} (RECOVERY_WORDS); "
    lost = _lost(before, _hashes(run_dir, skip), run_dir, fixture.files)
    detail += f"older checkpoint files changed or gone (not superseded): {lost[:3]}" if lost else ""
    return Case("corruption", "train --resume", d.name, res.command, d.expect, outcome, res.rc, res.seconds,
                first_line(res), detail, lost=int(bool(lost)))


def _fallback_named(run_dir: Path):
    """The documented fallback of a run directory without pretrained/ (its newest checkpoint that verifies),
    taken visibly: exit 0 and a line on stderr naming the step folder it used."""
    newest = latest_step(run_dir).name
    return lambda res: newest in res.stderr


def read_cases(d: Damage, fixture, work: Path) -> list[Case]:
    run_dir = work / "cases" / _slug(d.name)
    shutil.copytree(fixture.run, run_dir)
    names = d.apply(run_dir)
    recovered = _fallback_named(run_dir) if d.recover == "fallback" else None
    logs = work / "logs" / "corrupt" / _slug(d.name)
    commands = {"sample": discdiff("sample", "--model", run_dir, "--num-samples", 2, "--steps", 4),
                "eval": discdiff("eval", "--model", run_dir, "--data", fixture.corpus, "--batch-size", 4,
                                 "--max-batches", 2, "--draws", 2)}
    if d.serve:
        commands["serve"] = discdiff("serve", "--checkpoint", run_dir, "--port", 0)
    cases = []
    expect = "recover" if recovered else "refuse"
    for cmd, argv in commands.items():
        res = run(argv, logs / cmd, 120, stop_when=LISTENING if cmd == "serve" else None)
        outcome = classify(res, expect, names, recovered)
        detail = "" if outcome != "silent" or not recovered else \
            f"exit 0 without a line naming the checkpoint it fell back to ({latest_step(run_dir).name})"
        cases.append(Case("corruption", cmd, d.name, res.command, expect, outcome, res.rc, res.seconds,
                          first_line(res), detail))
    return cases


def _slug(name: str) -> str:
    """A neutral folder name: a path that spelled the damage would put its words into every error message."""
    return "c" + hashlib.sha1(name.encode()).hexdigest()[:8]
