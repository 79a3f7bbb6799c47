"""Files shipped with the package: the in-repository `data/` folder, package `adg.data` in the wheel
(the sample pool `adg run` reads by default, the task-type seed set and its benchmark results)."""

from __future__ import annotations

from pathlib import Path


def path(name: str) -> Path:
    """The shipped file `name`, in a checkout or an installed wheel alike."""
    import adg.data

    return next(Path(p) for p in adg.data.__path__ if Path(p).is_dir()) / name
