"""The pieces every command's parser shares: a config dataclass's fields as flags (`add_flags`,
`from_flags`: adg.config is the one source of each default and help text), `--model`,
`--restart`, and `KEY=VALUE` arguments.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from adg.config import (
    SamplingConfig,
)
from adg.errors import InputError


def add_flags(
    p: argparse.ArgumentParser, cls: type, only: tuple[str, ...] = (), skip: tuple[str, ...] = ()
) -> None:
    """One flag per setting of the config dataclass `cls` (adg.config): its default, help text
    and choices come from the dataclass, the one source of every default."""
    for f in fields(cls):
        if f.name in skip or (only and f.name not in only) or f.type not in (int, float, str, bool):
            continue
        flag = "--" + f.metadata.get("flag", f.name.replace("_", "-"))
        kw: dict = {"dest": f.name, "help": f.metadata.get("help")}
        if f.default is MISSING:
            kw["required"] = True
        elif f.type is bool:
            kw.update(action="store_true", default=f.default)
        else:
            kw.update(type=f.type, default=f.default, choices=f.metadata.get("choices"))
            kw["metavar"] = None if kw["choices"] else flag[2:].replace("-", "_").upper()
            kw["help"] = f"{kw['help']} (default: %(default)s)"
        p.add_argument(flag, **kw)


def from_flags(cls: type, a: argparse.Namespace, **overrides):
    """An instance of the config dataclass `cls` from the parsed flags `add_flags` made."""
    values = {f.name: getattr(a, f.name) for f in fields(cls) if hasattr(a, f.name)}
    return cls(**{**values, **overrides})


def model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="",
        help="HF folder, .gguf file or s3:// prefix (default: the embedded SmolLM2-135M-Instruct)",
    )


def restart_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--restart",
        action="store_true",
        help="start over: keep an existing output (and its fingerprint) aside as "
        "OUTPUT.before-restart-N instead of resuming it (default: resume, and refuse an output "
        "made with other settings)",
    )


def sampling_config(a: argparse.Namespace) -> SamplingConfig:
    return from_flags(SamplingConfig, a)


def key_value(pair: str) -> tuple[str, str]:
    name, sep, value = pair.partition("=")
    if not sep or not name.strip():
        raise InputError(f"--param {pair!r}: expected key=value")
    return name.strip(), value.strip()
