"""Reliability probe, replayable: real SIGKILLs of `discdiff train`, corrupted run directories, bad inputs to the
command line, the library and the web demo, two writers on one run, concurrent `discdiff prepare`.

Every case has a timeout and one outcome (see benchmarks/_reliability_run.py):
ok / clear error (the right behaviour) and vague error / traceback / silent / hang (defects), plus, for kills,
lost checkpoints (a `latest` or step folder that does not load) and bit-identical resumes (final weights equal
to an uninterrupted run of the same config). What counts as correct is written next to each case table:
_reliability_corrupt.py (damage kinds), _reliability_inputs.py (CLI), _reliability_lib.py (library),
_reliability_http.py (web demo), _reliability_kills.py (kills, two writers), _reliability_prepare.py.

Writes {name}.json (every case) and {name}.md (the table, then every non-clear case) to --out, and prints the
table and one line per non-clear case: case, command, outcome, first line of stderr.

    python benchmarks/reliability.py --out docs/results/reliability            # full: ~25 min on 2 busy cores
    python benchmarks/reliability.py --quick --out /tmp/rel                    # a slice of every category, ~4 min
    python benchmarks/reliability.py --only kills,corruption --out /tmp/rel    # some categories only
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from _reliability_corrupt import damages, read_cases, resume_case
from _reliability_http import http_cases
from _reliability_inputs import cli_cases, make_inputs, run_cli_case
from _reliability_kills import Reference, kill_trial, writers_trial
from _reliability_prepare import collide_case, concurrent_trial, prepared_dirs, stale_case, write_corpus
from _reliability_run import OUTCOMES, REPO, SYNTHETIC, TINY, Case, discdiff, first_line, latest_step, run, step_files

from discdiff.evaluation.results import save_results

CATEGORIES = ("kills", "corruption", "inputs", "writers", "prepare")


@dataclass
class Fixture:
    """A tiny model trained on a prepared .txt (so it has a tokenizer): steps 2, 4, 6 kept, pretrained/ written."""

    text: Path
    corpus: Path
    other_corpus: Path
    run: Path
    files: set


def _prepare(text: Path, data: Path, logs: Path) -> Path:
    res = run(discdiff("prepare", text, "--data-dir", data), logs, 180)
    dirs = prepared_dirs(data)
    if res.rc != 0 or len(dirs) != 1:
        raise SystemExit(f"fixture: prepare failed ({res.rc}): {first_line(res)}\n{res.command}")
    return dirs[0]


def make_fixture(work: Path) -> Fixture:
    text = write_corpus(work / "fixture" / "corp.txt", seed=0, lines=400)
    corpus = _prepare(text, work / "fixture" / "data", work / "logs" / "fixture-prepare")
    other = write_corpus(work / "fixture" / "other" / "upper.txt", seed=1, lines=200)
    other_corpus = _prepare(other, work / "fixture" / "data-other", work / "logs" / "fixture-prepare-other")
    run_dir = work / "fixture" / "run"
    sets = TINY + [f"data.train={corpus}", "steps=6", "save_every=2", "keep_checkpoints=3"]
    res = run(discdiff("train", "--out", run_dir, *[a for s in sets for a in ("--set", s)]),
              work / "logs" / "fixture-train", 300)
    if res.rc != 0 or latest_step(run_dir) is None:
        raise SystemExit(f"fixture: train failed ({res.rc}): {first_line(res)}\n{res.command}")
    return Fixture(text, corpus, other_corpus, run_dir, step_files(latest_step(run_dir)))


def _map(fn, items, jobs: int) -> list:
    if jobs <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(fn, items))


# ------------------------------------------------------------------ categories


def kills(args, work: Path, rng: random.Random) -> tuple[list[Case], Reference]:
    ref = Reference(work, steps=12 if args.quick else 20)
    n = 2 if args.quick else args.kills
    print(f"reference run: {ref.steps} steps, a checkpoint after each, {ref.seconds:.1f} s; {n} kills", flush=True)
    return [kill_trial(ref, work, i, rng, mid_write=i % 2 == 1) for i in range(n)], ref


def writers(args, work: Path, rng: random.Random, ref: Reference | None) -> list[Case]:
    ref = ref or Reference(work, steps=12 if args.quick else 20)
    return [writers_trial(ref, work, i, rng) for i in range(1 if args.quick else args.writer_trials)]


def corruption(args, fixture: Fixture, work: Path) -> list[Case]:
    kinds = damages(fixture.run)[:: 8 if args.quick else 1]
    print(f"{len(kinds)} damage kinds", flush=True)

    def one(d) -> list[Case]:
        if d.target == "checkpoint":
            return [resume_case(d, fixture, work, resume_steps=10)]
        return read_cases(d, fixture, work)

    return [c for cases in _map(one, kinds, args.jobs) for c in cases]


def inputs(args, fixture: Fixture, work: Path) -> list[Case]:
    inp = make_inputs(work, fixture)
    table = cli_cases(inp, fixture)[:: 10 if args.quick else 1]
    print(f"{len(table)} command-line cases", flush=True)
    cases = _map(lambda kc: run_cli_case(*kc[1], inp, kc[0]), list(enumerate(table)), args.jobs)
    cases += library_cases(args.quick, work)
    cases += http_cases(fixture.run, work / "logs" / "serve", every=6 if args.quick else 1)
    return cases


def library_cases(quick: bool, work: Path) -> list[Case]:
    import json

    argv = [sys.executable, str(Path(__file__).with_name("_reliability_lib.py"))] + (["--quick"] if quick else [])
    res = run(argv, work / "logs" / "library", 1800)
    cases = []
    for line in res.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            cases.append(Case("bad input: library", "dd", row["case"], "in-process call", "refuse", row["outcome"],
                              message=row["message"]))
    if res.rc != 0:
        cases.append(Case("bad input: library", "dd", "the library runner itself", res.command, "succeed",
                          "hang" if res.timed_out else "traceback", res.rc, res.seconds, first_line(res)))
    return cases


def prepare(args, work: Path) -> list[Case]:
    trials, procs = (1, 3) if args.quick else (args.prepare_trials, 6)
    return [concurrent_trial(work, i, procs) for i in range(trials)] + [stale_case(work), collide_case(work)]


# ------------------------------------------------------------------ report


def abbreviations(work: Path) -> dict[str, str]:
    """Long, repeated parts of the commands, shortened in the report (the JSON keeps every command whole)."""
    sets = lambda xs: " ".join(f"--set {x}" for x in xs)  # noqa: E731
    return {"$TINY_SYNTHETIC": sets(TINY + SYNTHETIC), "$TINY": sets(TINY), "$WORK": str(work),
            "python": f"{sys.executable}"}


def shorten(text: str, abbrev: dict[str, str]) -> str:
    for short, long in abbrev.items():
        text = text.replace(long, short)
    return text


def _row_label(c: dict) -> str:
    if c["category"] == "SIGKILL + resume":
        return f"SIGKILL + resume ({c['group']})"
    if c["category"] == "corruption":
        return f"corruption × `{c['group']}`"
    if c["category"] == "bad input: CLI":
        return f"bad input: CLI `{c['group'].split()[0]}`"
    return c["category"]


def summary(rows: list[dict]) -> list[dict]:
    labels = list(dict.fromkeys(_row_label(c) for c in rows))
    out = []
    for label in labels + ["total"]:
        sel = [c for c in rows if label == "total" or _row_label(c) == label]
        ident = [c["bit_identical"] for c in sel if c["bit_identical"] is not None]
        out.append({"row": label, "tried": len(sel), **{o: sum(c["outcome"] == o for c in sel) for o in OUTCOMES},
                    "lost": sum(c["lost"] for c in sel),
                    "bit_identical": f"{sum(ident)}/{len(ident)}" if ident else "–"})
    return out


def markdown(rows: list[dict], meta: dict) -> str:
    head = ["| | tried | ok | clear error | vague error | traceback | silent | hang | lost ckpts | bit-identical |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    body = [f"| {'**total**' if s['row'] == 'total' else s['row']} | {s['tried']} | "
            + " | ".join(str(s[o]) for o in OUTCOMES) + f" | {s['lost']} | {s['bit_identical']} |"
            for s in summary(rows)]
    bad = [c for c in rows if c["outcome"] not in ("ok", "clear") or c["lost"]]
    lines = [f"# Reliability probe ({meta['mode']})", "",
             f"`{meta['command']}` — commit {meta['commit']}, {meta['date']}, {meta['seconds'] / 60:.1f} min "
             f"on {meta['machine']}.", "", *head, *body, "",
             "ok / clear error: the right behaviour (a successful resume or documented recovery; a refusal with a "
             "clear line). vague error: refused without a traceback but without naming the cause (the damaged "
             "file; for races, the other process). traceback: a Python traceback, "
             "a crash, an HTTP 5xx or dropped connection, a library exception other than ValueError. silent: "
             "accepted where it should have refused. hang: past its timeout. Cases and their expected outcomes: "
             "benchmarks/_reliability_*.py.", "", f"## Non-clear cases ({len(bad)})", ""]
    abbrev = meta["abbreviations"]
    lines += [f"- **{c['outcome']}**{' + lost checkpoint' if c['lost'] else ''} — {c['category']} / {c['group']} / "
              f"{c['case']}: `{shorten(c['command'], abbrev)}` → {_said(c)}" for c in bad]
    lines += ["", "Abbreviations in the commands:", ""]
    lines += [f"- `{k}` = `{v}`" for k, v in abbrev.items() if k != "$WORK" and k != "python"]
    lines += ["- `$WORK`: the scratch directory of the run; `python`: the interpreter that ran the probe"]
    return "\n".join(lines) + "\n"


def _said(c: dict) -> str:
    """What the command said, and the probe's finding when it has one."""
    said = c["message"] or ""
    return f"{said} — *{c['detail']}*" if said and c["detail"] else said or c["detail"]


def failure_line(c: dict, abbrev: dict[str, str]) -> str:
    return (f"[{c['outcome']}{' +lost' if c['lost'] else ''}] {c['category']} / {c['case']} :: "
            f"{shorten(c['command'], abbrev)} :: rc={c['rc']} :: {_said(c)}")


def _meta(args, seconds: float, timings: dict, work: Path) -> dict:
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return {"command": "python benchmarks/reliability.py " + " ".join(sys.argv[1:]),
            "mode": "quick" if args.quick else "full" if set(args.only) == set(CATEGORIES) else "partial",
            "commit": commit.stdout.strip() or "unknown", "date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end",
            "python": platform.python_version(), "torch": torch.__version__, "seed": args.seed,
            "seconds": round(seconds, 1), "seconds_per_category": timings, "abbreviations": abbreviations(work)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/reliability", help="directory for {name}.json and {name}.md")
    p.add_argument("--name", default="results", help="file stem of the outputs (e.g. before, after)")
    p.add_argument("--quick", action="store_true", help="a slice of every category (a few minutes)")
    p.add_argument("--only", default=",".join(CATEGORIES), help=f"comma-separated subset of {CATEGORIES}")
    p.add_argument("--kills", type=int, default=24, help="SIGKILL trials (half of them mid-checkpoint-write)")
    p.add_argument("--writer-trials", type=int, default=4, help="two-writer trials")
    p.add_argument("--prepare-trials", type=int, default=4, help="concurrent-prepare trials (6 processes each)")
    p.add_argument("--jobs", type=int, default=1, help="corruption and CLI cases run this many at a time")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--work", default=None, help="scratch directory (default: a fresh temporary one, removed)")
    args = p.parse_args()
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(args.only) - set(CATEGORIES))
    if unknown:
        p.error(f"unknown categories {unknown}; choose from {CATEGORIES}")
    work = Path(args.work or tempfile.mkdtemp(prefix="discdiff-reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    rng, rows, timings, t_start = random.Random(args.seed), [], {}, time.monotonic()
    fixture = make_fixture(work) if {"corruption", "inputs"} & set(args.only) else None
    ref = None
    for category in [c for c in CATEGORIES if c in args.only]:
        t0 = time.monotonic()
        print(f"--- {category}", flush=True)
        if category == "kills":
            cases, ref = kills(args, work, rng)
        elif category == "writers":
            cases = writers(args, work, rng, ref)
        elif category == "corruption":
            cases = corruption(args, fixture, work)
        elif category == "inputs":
            cases = inputs(args, fixture, work)
        else:
            cases = prepare(args, work)
        rows += [c.to_dict() for c in cases]
        timings[category] = round(time.monotonic() - t0, 1)
        print(f"    {len(cases)} cases in {timings[category]:.0f} s", flush=True)
    meta = _meta(args, time.monotonic() - t_start, timings, work)
    print(save_results(args.out, args.name, rows, meta, markdown))
    for c in rows:
        if c["outcome"] not in ("ok", "clear") or c["lost"]:
            print(failure_line(c, meta["abbreviations"]))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
