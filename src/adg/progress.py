"""Messages and progress bars of the long stages (generate, score, embed, train, analyse).

Messages go through `logging` under the `adg` logger; `adg` (the CLI) and the stage containers
show INFO and above on stderr (`configure_logging`). Progress bars are tqdm on stderr: records
done, records/s, and tokens/s where the stage counts its tokens. On a terminal a bar redraws a few
times a second; without one (a pod's log, kfp.local's subprocesses) it writes one line every 30 s
instead of flooding the log (`ADG_PROGRESS_INTERVAL` seconds, when set: `adg run` on a terminal
asks its tasks for a redraw every second, as it shows their bars in place). `ADG_PROGRESS=0`
turns the bars off (the test suite does).
"""

from __future__ import annotations

import logging
import os
import sys
import time

from tqdm import tqdm

log = logging.getLogger("adg")


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is at the time (pytest swaps it per test)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # a closed stream: logging must never fail the stage
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    """Show the `adg` logger's messages on stderr, once per process."""
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        log.addHandler(_Stderr())
    log.setLevel(level)


def enabled() -> bool:
    return os.environ.get("ADG_PROGRESS", "1") != "0"


def bar(total: int | None, desc: str, unit: str = "rec") -> tqdm:
    """A progress bar on stderr (see the module docstring)."""
    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not enabled(),
        mininterval=0.5 if tty else float(os.environ.get("ADG_PROGRESS_INTERVAL", 30.0)),
        dynamic_ncols=tty,
    )


class Tokens:
    """Tokens/s shown beside a bar: `add(n)` after each batch."""

    def __init__(self, progress: tqdm):
        self.progress = progress
        self.count = 0
        self.started = time.perf_counter()

    def add(self, n: int) -> None:
        self.count += n
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.progress.set_postfix_str(f"{self.count / elapsed:.1f} tok/s", refresh=False)
