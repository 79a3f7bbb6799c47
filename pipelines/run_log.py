"""What `adg run` shows while kfp.local runs the pipeline: one line per task as it starts and as
it ends (its duration and the one or two numbers that matter), the long stages' progress bars, and
on a failure the failed task's last lines with the path to its log.

Everything else kfp.local writes (its log of every task's executor input and outputs, the tasks'
own output) goes to `<output_dir>/logs/kfp-local.log`, and each task's own lines also to
`<output_dir>/logs/<task>.log`; `verbose` shows all of it on the terminal too, as kfp.local
prints it.

kfp.local writes through `print` and through `logging` handlers on `sys.stdout` (created per
task), from the task threads it runs: `sys.stdout` is swapped for a stream that files each line
under the task of the thread that wrote it. Tasks are seen through
`kfp.local.task_dispatcher.run_single_task_implementation`, which kfp.local's orchestrator calls
once per container task with the task's arguments and returns its outputs and status.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, TextIO

from kfp.local import task_dispatcher

from adg.errors import AdgError

# kfp.local's colours, stripped from the log files.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A bar of adg.progress as a task writes it (known total, or a count and a rate); the bars of the
# libraries underneath (transformers loading weights) stay in the log.
_BAR = re.compile(
    r"^(generate|score( \(\w+\))?|embed|analyse): +(\d+%\|.*\| *\d+/\d+ \[|\d+\S* \[\d+:\d+)"
)
# Lines of a failed task shown on the terminal.
TAIL_LINES = 20


class TaskFailed(AdgError):
    """A task of the run failed: its last lines and log were shown."""


def _records(outputs: dict, name: str, key: str = "records") -> Any:
    """An artifact's count. Metadata comes back through a protobuf Struct, whose numbers are all
    floats: a count is made an int again."""
    value = getattr(outputs.get(name), "metadata", {}).get(key)
    return int(value) if isinstance(value, float) and value.is_integer() else value


def task_numbers(task: str, arguments: dict, outputs: dict) -> str:
    """The one or two numbers of a finished task that a person looks for, from its outputs (and
    its arguments); "" for a task with none."""
    stage = re.sub(r"-\d+$", "", task)  # kfp.local names a stage's second task `<stage>-2`
    n = _records(outputs, "pool")
    if stage == "ingest" and n is not None:
        return f"{n} records read, {_records(outputs, 'rejects')} rejected"
    if stage == "generate" and _records(outputs, "generated") is not None:
        n, k = _records(outputs, "generated"), arguments.get("num_samples", 0)
        return f"{n * k} answers ({k} for each of {n} records)"
    if stage in ("score", "score-baseline") and _records(outputs, "scored") is not None:
        return f"{_records(outputs, 'scored')} records scored"
    if stage == "merge" and "Output" in outputs:
        return f"{outputs['Output']} records"
    if stage == "embed" and _records(outputs, "embeddings", "rows") is not None:
        return f"{_records(outputs, 'embeddings', 'rows')} instruction vectors"
    if stage == "cluster" and "Output" in outputs:
        return f"{outputs['Output']} bins"
    if "select" in stage and _records(outputs, "top") is not None:
        return f"{_records(outputs, 'top')} selected"
    if stage == "export" and _records(outputs, "selected") is not None:
        return f"{_records(outputs, 'selected')} records in the pool's shape"
    return ""


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:02.0f}s"


class RunLog:
    """A context manager around one kfp.local run (see the module docstring)."""

    def __init__(self, log_dir: Path, verbose: bool = False, terminal: TextIO | None = None):
        self.log_dir = Path(log_dir)
        self.verbose = verbose
        self.terminal = terminal or sys.stdout
        self.path = self.log_dir / "kfp-local.log"
        self._lock = threading.Lock()
        self._task = threading.local()
        self._pending: dict[int, str] = {}  # an unfinished line, per thread
        self._files: dict[str, TextIO] = {}
        self._tails: dict[str, deque[str]] = {}
        self._bar_shown = False  # a progress bar drawn in place on the terminal, not ended yet
        self.failed: list[str] = []  # the failed tasks' names
        self.tty = self.terminal.isatty()

    # --- the context ---------------------------------------------------------------------

    def __enter__(self) -> RunLog:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.path.open("w", encoding="utf-8")
        self._stdout, sys.stdout = sys.stdout, self  # type: ignore[assignment]
        self._run_task = task_dispatcher.run_single_task_implementation
        task_dispatcher.run_single_task_implementation = self._run_one
        # On a terminal the tasks' bars redraw every second (adg.progress); into a log, every 30 s.
        self._interval = os.environ.get("ADG_PROGRESS_INTERVAL")
        if self.tty and not self.verbose:
            os.environ["ADG_PROGRESS_INTERVAL"] = "1"
        return self

    def __exit__(self, *exc: object) -> None:
        for thread in list(self._pending):
            self._line(self._pending.pop(thread), None)
        sys.stdout = self._stdout
        task_dispatcher.run_single_task_implementation = self._run_task
        _drop_handlers_writing_to(self)
        if self._interval is None:
            os.environ.pop("ADG_PROGRESS_INTERVAL", None)
        else:
            os.environ["ADG_PROGRESS_INTERVAL"] = self._interval
        self._end_bar()
        for f in [self._log, *self._files.values()]:
            f.close()

    # --- what kfp.local and the tasks write (sys.stdout) ------------------------------------

    def write(self, text: str) -> int:
        me = threading.get_ident()
        with self._lock:
            text = self._pending.pop(me, "") + text
            *lines, rest = text.split("\n")
            if rest:
                self._pending[me] = rest
            task = getattr(self._task, "name", None)
            for line in lines:
                self._line(line, task)
        return len(text)

    def flush(self) -> None:
        self._log.flush()

    def isatty(self) -> bool:
        return False

    def failure(self, err: Exception) -> Exception:
        """kfp.local's error for a failed run, as the user-facing error naming the task."""
        if not self.failed:
            return err
        task = self.failed[0]
        return TaskFailed(f"task {task} failed; its log: {self.log_dir / (task + '.log')}")

    def _line(self, line: str, task: str | None) -> None:
        plain = _ANSI.sub("", line)
        self._log.write(plain + "\n")
        if task in self._files:
            self._files[task].write(plain + "\n")
            self._tails[task].append(plain)
        if self.verbose:
            self._show(line)
        elif _BAR.match(plain.strip()):
            self._show_bar(plain.strip())

    # --- the terminal --------------------------------------------------------------------

    def _show(self, line: str) -> None:
        self._end_bar()
        self.terminal.write(line + "\n")
        self.terminal.flush()

    def _show_bar(self, bar: str) -> None:
        if self.tty:  # redrawn in place: one line however often it moves
            self.terminal.write("\r\x1b[2K    " + bar)
            self._bar_shown = True
        else:
            self.terminal.write("    " + bar + "\n")
        self.terminal.flush()

    def _end_bar(self) -> None:
        if self._bar_shown:
            self.terminal.write("\n")
            self._bar_shown = False

    def say(self, line: str) -> None:
        """One of our own lines on the terminal (and in the log)."""
        with self._lock:
            self._log.write(line + "\n")
            self._show(line)

    # --- one task ------------------------------------------------------------------------

    def _run_one(self, **kwargs: Any):
        from kfp.local import executor_input_utils, status

        task = executor_input_utils.get_local_task_resource_name(kwargs["component_name"])
        path = self.log_dir / f"{task}.log"
        with self._lock:
            self._files[task] = path.open("w", encoding="utf-8")
            self._tails[task] = deque(maxlen=TAIL_LINES)
        self._task.name = task
        self.say(f"adg run: {task} ...")
        started = time.time()
        try:
            outputs, state = self._run_task(**kwargs)
        finally:
            self._task.name = None
            with self._lock:
                self._files[task].flush()
        took = _duration(time.time() - started)
        if state == status.Status.SUCCESS:
            numbers = task_numbers(task, kwargs.get("arguments", {}), outputs or {})
            self.say(f"adg run: {task} done in {took}" + (f": {numbers}" if numbers else ""))
        else:
            tail = "\n".join(f"    {line}" for line in self._tails[task] if line.strip())
            self.say(f"adg run: {task} FAILED after {took}; its last lines:\n{tail}")
            self.say(f"adg run: {task}'s log: {path} (every task: {self.path})")
            self.failed.append(task)
        return outputs, state


def _drop_handlers_writing_to(stream: object) -> None:
    """Remove every logging handler left writing to `stream`. kfp.local gives the root logger a
    handler on whatever sys.stdout is (here, the RunLog) and puts the old handlers back after a
    run; one left behind (a CI run of the whole suite found one) would write to this closed log
    forever after, and every later warning in the process would end in a logging traceback."""
    loggers = [logging.getLogger()]
    loggers += [
        x for x in logging.Logger.manager.loggerDict.values() if isinstance(x, logging.Logger)
    ]
    for logger in loggers:
        for handler in list(logger.handlers):
            if getattr(handler, "stream", None) is stream:
                logger.removeHandler(handler)
