"""Where prepared corpora live on disk, and how they get there without ever being torn or mixed up.

    data_dir/NAME[-OPTIONS]/       one directory per corpus and option set (see `corpus_dirname`)
    data_dir/.NAME[-OPTIONS].lock  the exclusive lock of that directory (fcntl.flock; the OS drops it when the
                                   holder dies, so a killed `prepare` never leaves a stale lock)
    data_dir/downloads/            archives fetched by pip / apt, shared by every option set of a corpus

A preparation is built in a temporary directory beside its target, unique to the process
(`.NAME.tmp-PID-XXXX`), and renamed into place only once it is complete, all under the lock. So a reader
never sees a half-written corpus, two concurrent `prepare`s of one target never interleave (the second waits
and then reuses the first's result), and what a killed process left behind is removed by the next holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from .readers import notice

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

DOWNLOADS = "downloads"
NOT_IN_NAME = ("path", "archive")  # where the input comes from: `path` names a user corpus, `archive` is a copy
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.]{1,24}")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _value_tag(value) -> str:
    """An option value as it appears in a directory name: plain values as they are, others by a short hash."""
    text = str(value).lower() if value is None or isinstance(value, bool) else str(value)
    return text if _PLAIN_VALUE.fullmatch(text) else _short_hash(text)


def corpus_dirname(name: str, options: dict, defaults: dict, user_path: str | None = None) -> str:
    """The directory of one corpus and option set, so that two different requests never share one.

    A built-in corpus with its default options is `name` (e.g. `fashion-mnist`); each option that differs
    from its default appends `-KEYVALUE` in the corpus's option order (`fashion-mnist-size14`,
    `fashion-mnist-levels8-size14`); a value that is not a short plain word appears as 8 hex digits of its
    sha256. Your own data (`user_path`) is `user-STEM-HASH`, HASH being 8 hex digits of the sha256 of the
    resolved path, so `a/corp.txt` and `b/corp.txt` get `user-corp-1f2e...` and `user-corp-9ab0...`.
    """
    if user_path is None:
        base = name
    else:
        resolved = Path(user_path).resolve()
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", resolved.name.split(".")[0]).strip("-") or "data"
        base = f"user-{stem}-{_short_hash(str(resolved))}"
    tags = [f"{key}{_value_tag(options[key])}" for key in defaults
            if key not in NOT_IN_NAME and key in options and options[key] != defaults[key]]
    return "-".join([base, *tags])


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created if missing) for the duration of the block.

    If another process holds it, print that we wait, then wait. The lock file itself stays (removing it
    would race with a process that has just opened it); it holds nothing."""
    if fcntl is None:  # pragma: no cover - not POSIX
        raise RuntimeError("preparing data needs POSIX file locks (the fcntl module), which this platform lacks")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            notice(f"{what}: another process is preparing it; waiting for it to finish ({lock_path})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def lock_path(data_dir: Path, dirname: str) -> Path:
    return data_dir / f".{dirname}.lock"


def remove_leftovers(data_dir: Path, dirname: str) -> None:
    """Temporary directories of earlier holders of this target's lock (killed mid-build): only a lock holder
    creates them, so while we hold the lock, any that exist are dead."""
    for prefix in (f".{dirname}.tmp-", f".{dirname}.old-"):
        for path in data_dir.glob(f"{glob_escape(prefix)}*"):
            shutil.rmtree(path, ignore_errors=True)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def new_build_dir(data_dir: Path, dirname: str) -> Path:
    """An empty directory beside the target, unique to this process and call."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f".{dirname}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir()  # unlike tempfile.mkdtemp (0o700), honours the umask: the published corpus is readable as before
    return path


def publish(build_dir: Path, target: Path) -> None:
    """Move a finished build into place, replacing an earlier preparation of the same target.

    Two renames (POSIX cannot atomically replace a non-empty directory): the old one is moved aside, the
    new one takes its name, the old one is deleted. Readers never see a partial directory; a crash between
    the renames leaves no target, and the next `prepare` builds it again."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{_short_hash(str(build_dir))}")
        target.rename(old)
    build_dir.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
