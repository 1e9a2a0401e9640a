"""Downloads land where they should when the data directory is given as a relative path."""

import sys
from pathlib import Path

import discdiff.data.sources as sources


def test_pip_download_with_a_relative_destination(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = {}

    def fake_run(cmd, cwd, what, hint):  # stands in for pip: saves where -d says, relative to cwd
        target = Path(cmd[cmd.index("-d") + 1])
        seen["cwd"], seen["d"] = cwd, target
        (target if target.is_absolute() else Path(cwd) / target).mkdir(parents=True, exist_ok=True)
        ((target if target.is_absolute() else Path(cwd) / target) / "pkg-1.0.tar.gz").write_bytes(b"x")

    monkeypatch.setattr(sources, "_run", fake_run)
    dest = Path("data/pkg/raw")
    dest.mkdir(parents=True)
    got = sources.pip_download_sdist("pkg==1.0", dest)
    assert got.resolve() == (tmp_path / "data/pkg/raw/pkg-1.0.tar.gz").resolve() and got.is_file()
    assert seen["d"].is_absolute() and sys.executable
