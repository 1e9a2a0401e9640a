"""Progress of a long loop: a live bar on a terminal, plain periodic lines anywhere else.

    with Progress(total=1000, desc="train") as bar:
        for step in range(1000):
            ...
            bar.update(1, loss=2.31)

On a terminal (the stream's isatty()) this is a tqdm bar. Anywhere else (a CI log, a file, a pipe) it
never writes a carriage return: it prints one plain line each time another `every` fraction of the total
is done (10% by default) or `interval_s` seconds have passed since its last line, and a last one at close:

    train: 400/1000 (40%) | 12.50 step/s | loss 2.3101 | 0:00:32 elapsed, 0:00:48 left

A leaf module: the standard library, plus tqdm only when a bar is drawn.
"""

from __future__ import annotations

import math
import sys
import time

__all__ = ["Progress", "is_terminal", "write"]

_live_bars = 0  # open tqdm bars; messages go through tqdm.write while any is drawn


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def write(message: str, file=None) -> None:
    """Print a message line (to stdout by default) without breaking a live progress bar."""
    if _live_bars:
        from tqdm import tqdm

        tqdm.write(message, file=file)
    else:
        print(message, file=file if file is not None else sys.stdout, flush=True)


class Progress:
    """Progress over `total` units, starting at `initial`; disabled (silent) when enabled=False.

    live: None decides by the stream (a tqdm bar on a terminal, plain lines otherwise); True / False force it.
    clock: seconds, monotonic (injectable so the line schedule is testable without waiting).
    """

    def __init__(self, total: int, *, initial: int = 0, desc: str = "", unit: str = "step", enabled: bool = True,
                 stream=None, every: float = 0.1, interval_s: float = 60.0, live: bool | None = None,
                 clock=time.monotonic):
        global _live_bars
        if total < 0 or not 0 <= initial <= max(total, initial):
            raise ValueError(f"progress needs 0 <= initial and total >= 0, got initial={initial}, total={total}")
        if not 0 < every <= 1 or not interval_s > 0:
            raise ValueError(f"every must be in (0, 1] and interval_s > 0, got {every} and {interval_s}")
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.metrics: dict[str, object] = {}
        self.every_n = max(1, math.ceil(total * every))
        self.interval_s, self.clock = interval_s, clock
        self._start = (initial, clock())
        self._last = self._start
        self._bar = None
        if enabled and (is_terminal(self.stream) if live is None else live):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True)
            _live_bars += 1

    @property
    def live(self) -> bool:
        return self._bar is not None

    def update(self, n: int = 1, **metrics) -> None:
        """Advance by n units; metrics (e.g. loss=2.31) are shown from now on."""
        self.n += n
        self.metrics.update(metrics)
        if self._bar is not None:
            if metrics:
                self._bar.set_postfix({k: _fmt(v) for k, v in self.metrics.items()}, refresh=False)
            self._bar.update(n)
        elif self.enabled and self._due():
            self._print_line()

    def _due(self) -> bool:
        last_n, last_t = self._last
        crossed = self.n // self.every_n > last_n // self.every_n or (self.n >= self.total > last_n)
        return crossed or self.clock() - last_t >= self.interval_s

    def line(self) -> str:
        """The plain status line: done/total (percent) | rate | metrics | elapsed, left."""
        now = self.clock()
        start_n, start_t = self._start
        elapsed = now - start_t
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.desc + ': ' if self.desc else ''}{self.n}/{self.total}{pct}"]
        rate = (self.n - start_n) / elapsed if elapsed > 0 else None
        if rate:
            parts.append(f"{rate:.2f} {self.unit}/s")
        parts += [f"{k} {_fmt(v)}" for k, v in self.metrics.items()]
        timing = f"{_clock(elapsed)} elapsed"
        if rate and self.n < self.total:
            timing += f", {_clock((self.total - self.n) / rate)} left"
        return " | ".join([*parts, timing])

    def _print_line(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last = (self.n, self.clock())

    def write(self, message: str, file=None) -> None:
        write(message, file)

    def close(self) -> None:
        global _live_bars
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            _live_bars -= 1
        elif self.enabled and self.n != self._last[0]:
            self._print_line()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
