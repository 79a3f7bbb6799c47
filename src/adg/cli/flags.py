"""The pieces every command's parser shares: a config dataclass's fields as flags (`add_flags`,
and back, `flag_values` and `from_flags`: adg.config is the one source of each default and help
text), `--model`, `--restart`, and `--param KEY=VALUE` arguments.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, fields

from adg.config import STAGE_CONFIGS, SamplingConfig, parameter_fields
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
        p.add_argument(flag, **_flag_options(f, flag, f.name))


def _flag_options(f: Field, flag: str, dest: str) -> dict:
    """add_argument's keywords for the field `f` as `flag`, its value in `args.<dest>`."""
    kw: dict = {"dest": dest, "help": f.metadata.get("help")}
    if f.default is MISSING:
        kw["required"] = True
    elif f.type is bool:
        kw.update(action="store_true", default=f.default)
    else:
        kw.update(type=f.type, default=f.default, choices=f.metadata.get("choices"))
        kw["metavar"] = None if kw["choices"] else flag[2:].replace("-", "_").upper()
        kw["help"] = f"{kw['help']} (default: %(default)s)"
    return kw


def add_parameter_flags(p: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """One flag per pipeline parameter in `names`, `--<parameter>` with dashes, its value in
    `args.<parameter>`: default, help and choices from its field in adg.config."""
    known = parameter_fields()
    for name in names:
        stage, field_name, _type = known[name]
        f = next(f for f in fields(STAGE_CONFIGS[stage]) if f.name == field_name)
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, **_flag_options(f, flag, name))


def flag_values(cls: type, a: argparse.Namespace) -> dict:
    """The parsed values of the flags `add_flags(p, cls)` made, by field name: a stage function's
    keyword arguments where they are named as the fields."""
    return {f.name: getattr(a, f.name) for f in fields(cls) if hasattr(a, f.name)}


def from_flags(cls: type, a: argparse.Namespace, **overrides):
    """An instance of the config dataclass `cls` from the parsed flags `add_flags` made."""
    return cls(**{**flag_values(cls, a), **overrides})


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


def param_arg(p: argparse.ArgumentParser, help: str) -> None:
    """A repeatable `--param KEY=VALUE` (`key_value` splits one)."""
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help=help)


def key_value(pair: str) -> tuple[str, str]:
    name, sep, value = pair.partition("=")
    if not sep or not name.strip():
        raise InputError(f"--param {pair!r}: expected key=value")
    return name.strip(), value.strip()
