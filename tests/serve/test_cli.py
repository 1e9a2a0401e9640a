"""`discdiff serve`: flags, refusals at start-up, and a real process answering on loopback."""

import subprocess
import sys
import time

import pytest
from serve_helpers import request

from discdiff import cli
from discdiff.serve.cli import SERVE, _is_loopback, listen


@pytest.fixture
def registered(monkeypatch):
    # discdiff/cli.py registers it lazily as "discdiff.serve.cli:SERVE"; the same string here
    monkeypatch.setitem(cli.COMMANDS, "serve", "discdiff.serve.cli:SERVE")


def test_help_lists_every_flag(registered, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--checkpoint", "--host", "--port", "--device", "--max-length", "--max-steps", "--max-samples",
                 "--max-concurrent", "--max-queue", "--timeout"):
        assert flag in out
    assert "127.0.0.1" in out and SERVE.help


def test_missing_checkpoint_is_a_clear_error(registered, tmp_path, capsys):
    assert cli.main(["serve", "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_bad_limits_and_busy_port_are_clear_errors(registered, char_checkpoint, capsys):
    assert cli.main(["serve", "--checkpoint", str(char_checkpoint), "--max-steps", "0"]) == 2
    assert "max_steps must be a positive integer" in capsys.readouterr().err
    taken = listen("127.0.0.1", 0)
    taken.listen()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}"):
            listen("127.0.0.1", port)
    finally:
        taken.close()


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("[::1]", True), ("0.0.0.0", False), ("192.168.1.4", False)])
def test_loopback_detection(host, loopback):
    assert _is_loopback(host) is loopback


def test_the_command_serves_the_page(char_checkpoint):
    code = ("from discdiff.cli import main, register; register('serve', 'discdiff.serve.cli:SERVE'); "
            f"raise SystemExit(main(['serve', '--checkpoint', {str(char_checkpoint)!r}, '--port', '0']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "on http://127.0.0.1:" in line, line
        port = int(line.rsplit(":", 1)[1].strip(" /\n"))
        deadline = time.monotonic() + 15
        while True:  # the URL is printed just before uvicorn starts listening
            try:
                assert request(("127.0.0.1", port), "GET", "/api/health", timeout=5)[2]["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the server did not answer"
                time.sleep(0.1)
        assert "discdiff demo" in request(("127.0.0.1", port), "GET", "/")[2]
    finally:
        proc.terminate()
        proc.wait(10)
