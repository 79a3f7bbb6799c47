"""The clock and the memory gauge every part shares: the run's time `Budget` (and the alarm that
interrupts a part at its deadline), synchronised timing, peak GPU memory of a block, freeing memory,
telling an out-of-memory error, and the units the log prints.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import threading
import time
from collections.abc import Callable
from typing import Any


class TimeUp(Exception):
    """Raised by the alarm at the budget's deadline inside a part that overran."""


class Budget:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.monotonic()

    def used(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.used()

    @contextlib.contextmanager
    def alarm(self):
        """SIGALRM at the deadline, when this is the main thread and nobody else uses SIGALRM
        (pytest-timeout does, while a test runs)."""
        usable = (
            threading.current_thread() is threading.main_thread()
            and hasattr(signal, "SIGALRM")
            and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
        )
        if not usable:
            yield
            return

        def ring(_signum, _frame):
            raise TimeUp(f"budget of {self.seconds:.0f} s reached")

        signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, max(0.01, self.left()))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t


@contextlib.contextmanager
def peak_memory(into: dict[str, Any]):
    """Peak GPU memory allocated inside the block (`peak_bytes`; None on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    try:
        yield
    finally:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            into["peak_bytes"] = int(torch.cuda.max_memory_allocated())
        else:
            into["peak_bytes"] = None


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def gib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.1f} GiB"


def ms(s: float | None) -> str:
    return "n/a" if s is None else f"{1e3 * s:.1f} ms"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
