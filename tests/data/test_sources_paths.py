"""Downloads land where they should when the data directory is given as a relative path."""

import sys
from pathlib import Path

import pytest

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


def test_each_download_gets_its_own_scratch_folder_and_a_failed_one_leaves_nothing(tmp_path, monkeypatch):
    scratches = []

    def fake_apt(cmd, cwd, what, hint):  # stands in for apt-get download: writes into its working directory
        scratches.append(Path(cwd))
        if len(scratches) == 3:
            raise sources.SourceUnavailable("network down")
        (Path(cwd) / f"pkg_{len(scratches)}_all.deb").write_bytes(b"!<arch>\n")

    monkeypatch.setattr(sources, "_run", fake_apt)
    first, second = sources.apt_download("pkg", tmp_path), sources.apt_download("pkg", tmp_path)
    assert scratches[0] != scratches[1]  # two concurrent downloads never share (and delete) one folder
    assert first.name == "pkg_1_all.deb" and second.name == "pkg_2_all.deb"
    with pytest.raises(sources.SourceUnavailable, match="network down"):
        sources.apt_download("pkg", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg_1_all.deb", "pkg_2_all.deb"]
