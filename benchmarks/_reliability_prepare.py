"""`discdiff prepare` under races and reuse: concurrent prepares of one file, an edited input prepared again,
two inputs with the same file name into one --data-dir.

Correct: every process succeeds (or refuses with a clear line) and the prepared data is byte-for-byte what a
lone prepare of the same input writes into a fresh directory. A torn, stale or overwritten corpus after an
exit 0 is a silent failure.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

from _reliability_kills import worst
from _reliability_run import Case, classify, discdiff, finish, first_line, run, start

WORDS = "the quick brown fox jumps over a lazy dog while cats sit on warm mats and birds sing".split()
VOLATILE = ("created", "seconds", "path")  # manifest entries that legitimately differ between two prepares
# The manifest's "command" (the line that prepares this corpus again) names the --data-dir it was prepared
# into (data/corpora.py `Request.command`), so it differs from the lone reference's, which is prepared into a
# directory of its own: it is compared with that directory written as DATA_DIR, every other word exactly.
DATA_DIR = "$DATA_DIR"
# A deliberate refusal of a concurrent prepare names the other process; a race error ("No such file ...") does not.
RACE_WORDS = ("lock", "another", "in progress", "concurrent", "busy", "running", "being prepared", "wait")


def write_corpus(path: Path, seed: int, lines: int = 300) -> Path:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    alphabet = WORDS if seed % 2 == 0 else [w.upper() for w in WORDS]  # different inputs, different vocabularies
    path.write_text("\n".join(" ".join(rng.choice(alphabet) for _ in range(10)) for _ in range(lines)) + "\n")
    return path


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def prepared_dirs(data_dir: Path) -> list[Path]:
    """Every published corpus under data_dir (a folder holding manifest.json, hidden temporaries excluded)."""
    return sorted(p.parent for p in Path(data_dir).rglob("manifest.json")
                  if not any(part.startswith(".") for part in p.relative_to(data_dir).parts))


def signature(corpus: Path) -> dict:
    """sha256 of every file of a prepared corpus; the manifest without VOLATILE entries, its data dir as DATA_DIR.

    The folder's own name (user-STEM-HASH: the hash is of the input's path, not of the data dir) is part of it."""
    sig = {"(folder name)": corpus.name}
    for p in sorted(corpus.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(corpus).parts):
            rel = p.relative_to(corpus).as_posix()
            if p.name == "manifest.json":
                try:
                    manifest = _strip(json.loads(p.read_text()))
                    if isinstance(manifest.get("command"), str):
                        manifest["command"] = manifest["command"].replace(str(corpus.parent), DATA_DIR)
                    sig[rel] = json.dumps(manifest, sort_keys=True)
                except ValueError:
                    sig[rel] = "unreadable manifest"
            else:
                sig[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return sig


def reference(text: Path, work: Path, tag: str) -> dict:
    data = work / f"prep-ref-{tag}"
    res = run(discdiff("prepare", text, "--data-dir", data), work / "logs" / f"prep-ref-{tag}", 120)
    dirs = prepared_dirs(data)
    if res.rc != 0 or len(dirs) != 1:
        raise SystemExit(f"reference prepare failed ({res.rc}): {first_line(res)}")
    return signature(dirs[0])


def _has(data_dir: Path, sig: dict) -> bool:
    return any(signature(d) == sig for d in prepared_dirs(data_dir))


def concurrent_trial(work: Path, i: int, processes: int) -> Case:
    # ~2 MB: long enough to write that the processes' preparations overlap
    text = write_corpus(work / f"prep{i}" / "corp.txt", seed=100 + i, lines=40_000)
    want = reference(text, work, f"c{i}")
    data = work / f"prep{i}" / "data"
    argv = discdiff("prepare", text, "--data-dir", data)
    t0 = time.monotonic()
    procs = [start(argv, work / "logs" / f"prep{i}-{k}") for k in range(processes)]
    results = [finish(p, argv, t0, 180) for p in procs]
    outcomes = [classify(r, "succeed", RACE_WORDS) for r in results]
    dirs = prepared_dirs(data)
    intact = len(dirs) == 1 and signature(dirs[0]) == want
    outcome = worst(*outcomes)
    if outcome in ("ok", "clear") and not intact:
        outcome = "silent"
    bad = next((r for r, o in zip(results, outcomes, strict=True) if o != "ok"), results[0])
    detail = (f"{outcomes.count('ok')}/{processes} succeeded ({', '.join(outcomes)}); "
              f"{len(dirs)} corpus folder(s), data {'identical to a lone prepare' if intact else 'DIFFERS'}")
    return Case("concurrent prepare", f"{processes} at once", f"trial #{i}", bad.command, "succeed", outcome,
                bad.rc, max(r.seconds for r in results), first_line(bad), detail)


def stale_case(work: Path) -> Case:
    """Prepare, edit the input, prepare again: the new tokens, or a clear refusal; never the old ones."""
    text = write_corpus(work / "stale" / "corp.txt", seed=200)
    data = work / "stale" / "data"
    run(discdiff("prepare", text, "--data-dir", data), work / "logs" / "stale-1", 120)
    write_corpus(text, seed=202, lines=310)
    want = reference(text, work, "stale")
    res = run(discdiff("prepare", text, "--data-dir", data), work / "logs" / "stale-2", 120)
    outcome = classify(res, "recover", recovered=lambda r: _has(data, want))
    return Case("prepare reuse", "edited input", "edit the .txt, prepare again", res.command, "recover", outcome,
                res.rc, res.seconds, first_line(res), "prepared data matches the edited input"
                if outcome == "ok" else "the old tokens are served" if outcome == "silent" else "")


def collide_case(work: Path) -> Case:
    """a/corp.txt and b/corp.txt (different text) into one --data-dir: both must survive, or one is refused."""
    a = write_corpus(work / "collide" / "a" / "corp.txt", seed=300)
    b = write_corpus(work / "collide" / "b" / "corp.txt", seed=301)
    want_a, want_b = reference(a, work, "a"), reference(b, work, "b")
    data = work / "collide" / "data"
    first = run(discdiff("prepare", a, "--data-dir", data), work / "logs" / "collide-a", 120)
    res = run(discdiff("prepare", b, "--data-dir", data), work / "logs" / "collide-b", 120)
    both = _has(data, want_a) and _has(data, want_b)
    outcome = worst(classify(first, "succeed"), classify(res, "recover", recovered=lambda r: both))
    if outcome == "clear" and not _has(data, want_a):
        outcome = "silent"  # refused, but after destroying the first corpus
    detail = "both corpora intact" if both else "a/corp.txt's corpus intact" if _has(data, want_a) else \
        "a/corp.txt's corpus was overwritten"
    return Case("prepare reuse", "same file name", "a/corp.txt then b/corp.txt", res.command, "recover", outcome,
                res.rc, res.seconds, first_line(res), detail)
