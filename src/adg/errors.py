"""The one base of user-facing errors: bad input, a missing file, a server that cannot be reached.

`adg` prints an `AdgError` (and an `OSError`) as one line, `adg <command>: error: ...`, with exit
status 2; every other exception is a bug and keeps its traceback. `ADG_DEBUG=1` shows the
traceback for these too. Raise `InputError` for a bad value, flag or file content; the stage
modules' own errors (`PoolError`, `StorageError`, `ScoreCollapse`, `AnalysisError`) derive from
`AdgError` as well.
"""


class AdgError(Exception):
    """A problem the user can fix, worth one line and no traceback."""


class InputError(AdgError, ValueError):
    """A bad value, flag or file content (still a ValueError for callers of the library)."""


class Terminated(BaseException):
    """SIGTERM arrived while a stage was writing a resumable output (a node draining, `kill`):
    raised between batches, so what was written is whole batches and a re-run resumes there.
    A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it."""
