"""Ids that look alike after normalisation: `1` and `"1"` are two distinct ids everywhere (the
decision in README.md, "Decisions where the specification was silent"): ingest, stage inputs,
resume, select, compare and the curation index all keep them apart."""

import json

import numpy as np
from helpers import sample_records, selected_run, write_jsonl

from adg.io import reading
from adg.stages import curation, ingest
from adg.stages.compare import SelectorRun, compare_runs


def twin_records() -> list[dict]:
    base = sample_records(8)
    # Eight records whose ids pair up as 1 / "1", 2 / "2", ...: distinct text for each.
    return [
        {**r, "id": i // 2 + 1 if i % 2 == 0 else str(i // 2 + 1), "instruction": f"Task {i}"}
        for i, r in enumerate(base)
    ]


def test_ingest_keeps_both(tmp_path):
    src = write_jsonl(tmp_path / "pool.jsonl", twin_records())
    summary = ingest.ingest(src, tmp_path / "out.jsonl", tmp_path / "rej.jsonl")
    assert (summary.accepted, summary.rejected) == (8, 0)
    assert reading.check_records(tmp_path / "out.jsonl") == 8


def test_select_keeps_both(tmp_path):
    pool = twin_records()
    selected_run(tmp_path, pool, budget=8)
    chosen = []
    for group in ("top", "middle", "bottom"):
        path = tmp_path / f"{group}.json"
        if path.exists():
            chosen += [r["id"] for r in json.loads(path.read_text())]
    assert sorted(chosen, key=repr) == sorted((r["id"] for r in pool), key=repr)
    assert 1 in chosen and "1" in chosen


def test_compare_does_not_count_them_as_shared(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "instruction": "x", "score": 1.0}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "instruction": "x", "score": 1.0}])
    comp = compare_runs([SelectorRun("a", a), SelectorRun("b", b)])
    assert comp["overlap"][0]["shared"] == 0
    assert comp["selected_ids"] == {"a": [1], "b": ["1"]}


def test_curation_index_treats_them_as_two_records(tmp_path):
    index = str(tmp_path / "index")
    settings = curation.scoring_settings("tiny-a", generate_num_samples=3)
    first = [{"id": 1, "instruction": "one", "output": "x"}]
    scored = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {
                **first[0],
                "generated_answers": ["a", "b"],
                "score": 0.5,
                "dispersion": 0.5,
                "anisotropy": 0.5,
            }
        ],
    )
    np.save(tmp_path / "e.npy", np.ones((1, 4), dtype=np.float32) / 2)
    curation.add_entry(index, scored, tmp_path / "e.npy", settings, "run-1")
    pool = write_jsonl(
        tmp_path / "pool.jsonl", [*first, {"id": "1", "instruction": "another", "output": "y"}]
    )
    todo = tmp_path / "todo.jsonl"
    plan = curation.plan_batch(index, pool, todo, settings)
    assert [json.loads(line)["id"] for line in todo.read_text().splitlines()] == ["1"]
    assert plan.records == 1
