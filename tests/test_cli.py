"""The `adg` command's layout (adg.cli): every subcommand is registered by an `add_<command>`
function that sits in the same module as the `cmd_<command>` it runs, `COMMANDS` is the order
`adg --help` lists, and `python -m adg.cli` is the same command as the `adg` script."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from adg import cli


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_commands_are_registered_in_the_order_help_lists_them():
    names = list(subcommands(cli.build_parser()))
    assert [add.__name__ for add in cli.COMMANDS] == [f"add_{n.replace('-', '_')}" for n in names]
    assert names[:2] == ["ingest", "export"] and names[-1] == "prepare-model"


@pytest.mark.parametrize("add", cli.COMMANDS, ids=lambda f: f.__name__)
def test_each_parser_sits_beside_the_code_it_runs(add):
    parser = argparse.ArgumentParser()
    add(parser.add_subparsers(dest="command"))
    [(name, sub)] = subcommands(parser).items()
    func = sub.get_default("func")
    assert func.__name__ == f"cmd_{name.replace('-', '_')}"
    assert func.__module__ == add.__module__, f"{name}: parser in {add.__module__}"


@pytest.mark.subprocess
def test_python_m_adg_cli_is_the_adg_command():
    out = subprocess.run(
        [sys.executable, "-m", "adg.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("usage: ") and "prepare-model" in out.stdout
