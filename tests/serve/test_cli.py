"""`discdiff serve`: flags, refusals at start-up (one line, exit 2, no traceback), and a real process answering
on loopback."""

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_helpers import request

import discdiff.serve.cli as serve_cli
from discdiff import cli
from discdiff.serve.cli import is_loopback, listen


def test_help_lists_every_flag_and_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--checkpoint", "--host", "--port", "--device", "--max-length", "--max-steps", "--max-samples",
                 "--max-concurrent", "--max-queue", "--timeout"):
        assert flag in out
    assert "127.0.0.1" in out and "discdiff serve --checkpoint runs/sc" in out
    assert "pip install 'discdiff[serve]'" in out


def test_serve_cli_does_not_import_the_top_level_cli():
    """Floors point down: discdiff/cli.py names the serve command module; the module never imports it back."""
    tree = ast.parse(Path(serve_cli.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert "discdiff.cli" not in imported and not any(m.startswith("discdiff.cli.") for m in imported)
    assert not any(isinstance(node, ast.ImportFrom) and node.level == 2 and node.module == "cli"
                   for node in ast.walk(tree))
    # nor through anything it imports
    code = "import sys, discdiff.serve.cli, discdiff.serve.app; print('discdiff.cli' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("entry", ["discdiff.serve.cli", cli.Lazy("discdiff.serve.cli", "the web demo")])
def test_serve_registers_by_module_name(monkeypatch, entry, capsys):
    monkeypatch.setitem(cli.COMMANDS, "demo", entry)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--help"])
    assert exit_.value.code == 0 and "--max-queue" in capsys.readouterr().out


def _argparse_refusal(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("flags, message", [
    (["--port", "70000"], "argument --port: a TCP port lies in 0-65535 (0: any free one), got 70000"),
    (["--port", "-1"], "argument --port: a TCP port lies in 0-65535 (0: any free one), got -1"),
    (["--port", "http"], "argument --port: expected a port number 0-65535, got 'http'"),
    (["--device", "bogus"], "argument --device: unknown device 'bogus'"),
    (["--max-steps", "0"], "argument --max-steps: expected a positive integer, got 0"),
    (["--max-queue", "-1"], "argument --max-queue: expected an integer >= 0, got -1"),
    (["--timeout", "nan"], "argument --timeout: expected a positive finite number, got nan"),
])
def test_bad_flags_are_refused_at_the_flag(tmp_path, capsys, flags, message):
    line = _argparse_refusal(["serve", "--checkpoint", str(tmp_path), *flags], capsys)
    assert line.startswith("discdiff serve: error: " + message)


def test_missing_and_corrupted_checkpoints_are_one_line(char_checkpoint, tmp_path, capsys):
    assert cli.main(["serve", "--checkpoint", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("discdiff serve: error: ") and "no config.json" in err and err.count("\n") == 1
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in char_checkpoint.iterdir():
        if item.is_file():
            (broken / item.name).write_bytes(item.read_bytes())
    (broken / "config.json").write_text('{"format": "discdiff-pretrained", ')  # cut short
    assert cli.main(["serve", "--checkpoint", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("discdiff serve: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_truncated_weights_are_one_line(char_checkpoint, tmp_path, capsys):
    """The loader refuses damaged weights with a ValueError (training/ verifies checkpoints); serve says so in
    one line rather than a safetensors traceback."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in char_checkpoint.iterdir():
        if item.is_file():
            (broken / item.name).write_bytes(item.read_bytes())
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert cli.main(["serve", "--checkpoint", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("discdiff serve: error: ") and err.count("\n") == 1


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        cli.main(["--debug", "serve", "--checkpoint", str(tmp_path / "nope")])
    with pytest.raises(FileNotFoundError, match="no config.json"):
        cli.main(["serve", "--checkpoint", str(tmp_path / "nope"), "--debug"])


def test_busy_or_impossible_ports_are_value_errors():
    taken = listen("127.0.0.1", 0)
    taken.listen()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}"):
            listen("127.0.0.1", port)
    finally:
        taken.close()
    with pytest.raises(ValueError, match="cannot listen on 127.0.0.1:70000"):
        listen("127.0.0.1", 70000)  # the flag refuses it; a Python caller gets a ValueError, not OverflowError


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("[::1]", True), ("0.0.0.0", False), ("192.168.1.4", False)])
def test_loopback_detection(host, loopback):
    assert is_loopback(host) is loopback


def test_the_command_serves_the_page(char_checkpoint):
    argv = ["serve", "--checkpoint", str(char_checkpoint), "--port", "0"]
    code = f"from discdiff.cli import main; raise SystemExit(main({argv!r}))"
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
