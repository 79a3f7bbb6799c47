"""A fuzz test of generate's resume path: random sequences of settings changes, edits to the pool
and kills (the output cut after a random line, with or without a half-written line, as SIGKILL
leaves it) on one output file, run in-process with a tiny model.

After every step the output either was refused in one line (exit 2, not a byte changed) or is
exactly what this step's settings and pool ask for: every record of the pool once, with its
current text and K answers, under the current fingerprint; and, while no kept record's batch
has changed since the output was started, equal to an uninterrupted run on a fresh output. (The
transformers backend draws a batch's answers together, seeded by the batch's position: a record
dropped in the middle moves the records after it into other batches, and with batches of two an
edit, an append or a drop changes a kept record's batch-mate. Kept answers then remain valid
answers made with these settings, but no longer the ones a fresh run would draw; see
adg.stages.generate. Kills never change a batch, so they are held to the fresh run always.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from helpers import sample_records, write_jsonl

from adg.cli import main
from adg.io import fingerprint

# One setting changed at a time, each between two values.
SETTINGS = {
    "num_samples": ("--num-samples", (2, 3)),
    "temperature": ("--temperature", (1.4, 0.7)),
    "seed": ("--seed", (0, 5)),
    "max_new_tokens": ("--max-new-tokens", (3, 4)),
    "batch_size": ("--batch-size", (1, 2)),
}
STEPS = 14
FUZZ_SEEDS = (1, 2, 3)
EDITS = ("Name three colours.", "Say hello in French.", "Count to five.", "What is 2 + 2?")


def args(pool: Path, out: Path, model: Path, settings: dict, *extra: str) -> list[str]:
    argv = ["generate", "--input", str(pool), "--output", str(out), "--model", str(model)]
    argv += ["--backend", "hf"]
    for name, (flag, _values) in SETTINGS.items():
        argv += [flag, str(settings[name])]
    return [*argv, *extra]


def run(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def by_id(path: Path) -> dict[str, dict]:
    return {json.dumps(r["id"]): r for r in map(json.loads, path.read_text().splitlines())}


class Fresh:
    """Uninterrupted runs on fresh outputs, one per (settings, pool), computed once."""

    def __init__(self, folder: Path, model: Path, capsys):
        self.folder, self.model, self.capsys, self.runs = folder, model, capsys, {}

    def __call__(self, settings: dict, records: list[dict]) -> dict[str, dict]:
        key = json.dumps([settings, records], sort_keys=True)
        if key not in self.runs:
            n = len(self.runs)
            pool = write_jsonl(self.folder / f"pool-{n}.jsonl", records)
            out = self.folder / f"fresh-{n}.jsonl"
            assert run(self.capsys, args(pool, out, self.model, settings))[0] == 0
            self.runs[key] = by_id(out)
        return self.runs[key]


def kill(out: Path, rng: random.Random) -> None:
    """Cut the output as a kill mid-run leaves it: after a random line, maybe half a line more."""
    lines = out.read_bytes().splitlines(keepends=True)
    keep = rng.randrange(len(lines) + 1)
    tail = b""
    if keep < len(lines) and rng.random() < 0.5:
        tail = lines[keep][: rng.randrange(1, len(lines[keep]) - 1)]
    out.write_bytes(b"".join(lines[:keep]) + tail)


@pytest.mark.parametrize("fuzz_seed", FUZZ_SEEDS)
def test_resume_under_random_changes_edits_and_kills(fuzz_seed, tiny_model_dir, tmp_path, capsys):
    rng = random.Random(fuzz_seed)
    records = sample_records(6)
    spare = sample_records(12)[6:]  # records that may join the pool later
    settings = {name: values[0] for name, (_flag, values) in SETTINGS.items()}
    pool, out = tmp_path / "pool.jsonl", tmp_path / "g.jsonl"
    fresh = Fresh(tmp_path, tiny_model_dir, capsys)
    drifted = False  # a kept record's batch has changed since the output was started
    restarts = compared = 0
    write_jsonl(pool, records)
    assert run(capsys, args(pool, out, tiny_model_dir, settings))[0] == 0

    for _step in range(STEPS):
        op = rng.choice(("edit", "append", "drop", "kill", "kill", "setting", "restart"))
        extra: tuple[str, ...] = ()
        if op in ("edit", "append", "drop") and settings["batch_size"] > 1:
            drifted = True
        if op == "edit":
            i = rng.randrange(len(records))
            records[i] = {**records[i], "instruction": rng.choice(EDITS)}
        elif op == "append" and spare:
            records.append(spare.pop())
        elif op == "drop" and len(records) > 2:
            i = rng.randrange(len(records))
            drifted |= i < len(records) - 1
            records.pop(i)
        elif op == "kill":
            kill(out, rng)
        elif op in ("setting", "restart"):
            name = rng.choice(list(SETTINGS))
            values = SETTINGS[name][1]
            new = values[1] if settings[name] == values[0] else values[0]
            if op == "setting":  # refused: not one byte of the output changes
                before = out.read_bytes(), fingerprint.sidecar_path(out).read_bytes()
                changed = {**settings, name: new}
                code, err = run(capsys, args(pool, out, tiny_model_dir, changed))
                assert code == 2, (name, new)
                assert err.startswith(f"adg generate: error: {out} was made with {name}=")
                assert err.endswith("; use a new output or --restart\n") and err.count("\n") == 1
                assert (out.read_bytes(), fingerprint.sidecar_path(out).read_bytes()) == before
                continue
            settings[name] = new
            extra = ("--restart",)
            restarts += 1
            drifted = False
        write_jsonl(pool, records)
        code, err = run(capsys, args(pool, out, tiny_model_dir, settings, *extra))
        assert code == 0, err

        got = by_id(out)
        assert sorted(got) == sorted(json.dumps(r["id"]) for r in records)
        assert out.read_bytes().count(b"\n") == len(records)  # each id once, no half line
        for r in records:
            answers = got[json.dumps(r["id"])].pop("generated_answers")
            assert len(answers) == settings["num_samples"]
            assert got[json.dumps(r["id"])] == r  # the pool's current text
        made = fingerprint.read_sidecar(out)
        assert {k: made[k] for k in SETTINGS} == settings
        if not drifted:
            assert by_id(out) == fresh(settings, records)
            compared += 1
    assert compared >= 3  # the strongest check ran, not only the structural ones
    if restarts:
        assert Path(f"{out}.before-restart-{restarts}").exists()
