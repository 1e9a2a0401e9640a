"""Progress: a bar on a terminal, plain lines (never a carriage return) anywhere else."""

import io

import pytest

from discdiff.progress import Progress
from discdiff.training import Trainer


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_plain_lines_every_tenth_without_carriage_returns():
    out, clock = io.StringIO(), FakeClock()
    with Progress(200, desc="train", stream=out, clock=clock) as bar:
        assert not bar.live  # a StringIO is not a terminal
        for i in range(200):
            clock.now += 0.5
            bar.update(1, loss=3.0 - i / 100)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 10
    assert lines[0] == "train: 20/200 (10%) | 2.00 step/s | loss 2.8100 | 0:00:10 elapsed, 0:01:30 left"
    assert lines[-1] == "train: 200/200 (100%) | 2.00 step/s | loss 1.0100 | 0:01:40 elapsed"


def test_plain_lines_also_every_interval_and_at_close():
    out, clock = io.StringIO(), FakeClock()
    bar = Progress(1000, initial=100, stream=out, clock=clock, interval_s=30)
    for _ in range(5):
        clock.now += 31
        bar.update(1)
    bar.update(3)
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split(" |")[0] for line in lines] == ["101/1000 (10%)", "102/1000 (10%)", "103/1000 (10%)",
                                                       "104/1000 (10%)", "105/1000 (10%)", "108/1000 (11%)"]
    bar.update(1)  # closed: silent
    assert len(out.getvalue().splitlines()) == 6


def test_disabled_progress_writes_nothing():
    out = io.StringIO()
    with Progress(10, stream=out, enabled=False) as bar:
        bar.update(10)
    assert out.getvalue() == ""


def test_a_terminal_gets_a_live_bar():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    with Progress(50, desc="train", stream=out, live=True) as bar:
        for _ in range(50):
            bar.update(1, loss=1.5)
    assert "\r" in out.getvalue() and "50/50" in out.getvalue()


def test_training_into_a_log_prints_lines_not_redrawn_bars(tiny, capsys):
    Trainer(tiny("steps=20", "progress=true", "log_every=5")).fit()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("train: ")]
    assert [line.split(" |")[0] for line in lines] == [f"train: {s}/20 ({s * 5}%)" for s in range(2, 21, 2)]
    assert all(" loss " in line for line in lines[2:])
