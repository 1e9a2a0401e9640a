"""What a command-line user sees: flag types that refuse a bad value where it is typed, and one line
(never a traceback) for a user's mistake.

    p.add_argument("--length", type=positive_int)          # "--length 0" -> argparse error at the flag
    p.add_argument("--device", type=device, default="cpu")  # "--device cuda" on a CPU machine -> one line
    message = user_error_message(exc)                      # None: not a user error, show the traceback

A leaf module (argparse and the standard library; torch only inside ``device``): ``discdiff/cli.py``,
``discdiff/serve/cli.py`` and ``discdiff/quickstart.py`` share it without importing each other.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable

__all__ = ["MISSING_EXTRAS", "UserError", "device", "int_at_least", "port", "positive_float", "positive_int",
           "refuse_unknown_arguments", "seed", "silence_stdout", "user_error_message",
           "warning_printer"]

# Optional module -> (the package pip installs, the discdiff extra that brings it).
MISSING_EXTRAS: dict[str, tuple[str, str]] = {
    "safetensors": ("safetensors", "train"),
    "yaml": ("pyyaml", "train"),
    "tqdm": ("tqdm", "train"),
    "tokenizers": ("tokenizers", "train"),
    "starlette": ("starlette", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "transformers": ("transformers", "judge"),
    "gguf": ("gguf", "judge"),
    "accelerate": ("accelerate", "judge"),
    "matplotlib": ("matplotlib", "bench"),
}

class UserError(Exception):
    """A failure whose message is all a user needs (a source that cannot be reached, a tool not installed):
    reported in one line like a ValueError, although the input itself was not invalid."""


# User errors: bad values, paths that are missing / of the wrong kind / not ours to touch.
_USER_OS_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def int_at_least(minimum: int, what: str | None = None) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``; anything else is refused at the flag."""
    what = what or f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    parse.__name__ = f"int_at_least_{minimum}"
    return parse


positive_int = int_at_least(1, "a positive integer")


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port lies in 0-65535 (0: any free one), got {value}")
    return value


def seed(text: str) -> int:
    """An argparse type: a seed for torch.Generator.manual_seed, 0 <= seed < 2^63."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"a seed lies in [0, 2^63), got {value}")
    return value


def device(text: str):
    """An argparse type: a torch.device this machine has (see discdiff.devices.resolve_device)."""
    from discdiff.devices import resolve_device

    try:
        return resolve_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def user_error_message(error: BaseException) -> str | None:
    """One line describing a user's mistake, or None when ``error`` is a defect (show the traceback).

    User errors: ValueError and its subclasses (bad values, malformed files), UserError, missing paths and
    paths of the wrong kind, permission errors, and a missing optional dependency (named with the extra to
    install).
    """
    if isinstance(error, ModuleNotFoundError):
        top = (error.name or "").split(".")[0]
        if top not in MISSING_EXTRAS:
            return None  # a module of discdiff itself or of a required dependency: a broken installation
        package, extra = MISSING_EXTRAS[top]
        return (f"this needs the optional package {package!r}, which is not installed: "
                f"pip install 'discdiff[{extra}]'")
    if isinstance(error, _USER_OS_ERRORS):
        if error.filename is not None and error.strerror:
            return _one_line(f"{error.filename}: {error.strerror.lower()}")
        return _one_line(str(error) or type(error).__name__)
    if isinstance(error, (ValueError, UserError)):
        return _one_line(str(error) or type(error).__name__)
    return None


def _one_line(text: str, limit: int = 500) -> str:
    """One line of at most ``limit`` characters (a message may quote a whole file or value back)."""
    text = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def refuse_unknown_arguments(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """argparse's "unrecognized arguments" (exit 2), said by the command's own parser, with its closest flag."""
    flags = [s for action in parser._actions for s in action.option_strings]
    message = f"unrecognized arguments: {' '.join(unknown)}"
    for word in unknown:
        close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.7) if word.startswith("--") else []
        if close:
            message += f" (did you mean {close[0]}?)"
            break
    parser.error(message)


def silence_stdout() -> None:
    """After a BrokenPipeError (`discdiff sample | head -1`): point stdout at /dev/null so the interpreter's
    final flush does not fail on the closed pipe."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def warning_printer(prefix: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints ``{prefix}: warning: <message>`` on one line (no source line)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{prefix}: warning: {_one_line(str(message))}", file=file or sys.stderr)

    return show
