"""Build the task-type seed set (data/task_types_seed.jsonl) and the in-repository
evaluation sample (data/task_types_eval.jsonl) from the shared labelled pools.

Seed set, 278 records:
- 20 per mapped category from Dolly (Knowledge, Summarization, Writing, Discrete_Decision) and from
  CoT (Math from AQuA, Reasoning from StrategyQA and Sen-Making), drawn with a seeded shuffle;
  the label is the source's own, mapped by `adg.method.task_types.SOURCE_MAPS`;
- Coding, Translation, Instruction_Following and Others have no human label in any pool: the ids
  in `HAND_LABELLED` are Alpaca records labelled by this project (one annotator, by reading each),
  as are 58 Alpaca records of Knowledge, Math, Summarization and Discrete_Decision (a second source
  for the categories only Dolly or CoT label);
- 25 WizardLM records (`WIZARDLM_SEED`: Knowledge from its domain skills, Math, Reasoning,
  Writing), a seeded draw.
Each category is then labelled in at least two sources, so the leave-one-source-out benchmark
(`bench/task_types.py --loso`) measures a classifier on a source it never saw for every category
but Translation, Instruction_Following and Others.

Evaluation sample (tests and users without the shared data): 20 Dolly records per mapped Dolly label
(100; 40 % Knowledge) and the mapped WizardLM records not in the seed.

    .venv/bin/python -m bench.build_task_seed [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from adg.io.reading import read_records
from adg.method.task_types import LABEL_FIELDS, SEED_FILE, mapped_category

REPO = Path(__file__).resolve().parents[1]
PER_CATEGORY = 20
SHUFFLE_SEED = 17
EVAL_PER_LABEL = 20

# file -> {id: category}: Alpaca instructions labelled by hand for the categories no pool labels.
HAND_LABELLED = {
    "alpaca_gpt4_sample_1k.jsonl": {
        # Coding: write, fix or explain code
        **dict.fromkeys(
            [
                27,
                172,
                201,
                244,
                269,
                288,
                323,
                395,
                455,
                501,
                503,
                509,
                534,
                625,
                819,
                822,
                863,
                906,
                966,
                972,
            ],
            "Coding",
        ),
        # Instruction_Following: transform the given text exactly as told (tense, voice, register)
        **dict.fromkeys(
            [
                16,
                64,
                152,
                186,
                188,
                216,
                334,
                336,
                387,
                394,
                446,
                496,
                516,
                535,
                590,
                602,
                635,
                641,
                715,
                952,
            ],
            "Instruction_Following",
        ),
        **dict.fromkeys([268, 541, 597, 653, 734], "Translation"),
        # Knowledge, Math, Summarization and Discrete_Decision from a second source than Dolly's and
        # CoT's labels, so that a classifier trained without either still knows the category
        # (the leave-one-source-out benchmark, bench/task_types.py --loso): factual and
        # explanatory questions; arithmetic and algebra; summaries of a given text; a choice
        # among given classes.
        **dict.fromkeys(
            [
                9,
                19,
                41,
                142,
                313,
                359,
                375,
                402,
                404,
                451,
                484,
                553,
                555,
                666,
                714,
                763,
                811,
                826,
                902,
                913,
            ],
            "Knowledge",
        ),
        **dict.fromkeys(
            [
                28,
                96,
                169,
                183,
                194,
                362,
                422,
                433,
                454,
                467,
                473,
                537,
                547,
                565,
                637,
                661,
                985,
                992,
            ],
            "Math",
        ),
        **dict.fromkeys([79, 151, 159, 205, 297, 421, 791, 825], "Summarization"),
        **dict.fromkeys(
            [48, 136, 147, 225, 231, 271, 343, 425, 729, 864, 915, 993], "Discrete_Decision"
        ),
        # Others: suggestions, lists and advice, none of the other nine
        **dict.fromkeys(
            [67, 164, 197, 312, 339, 494, 521, 549, 627, 654, 667, 674, 862, 918, 925], "Others"
        ),
    },
    "stanford_alpaca_random9k_full.jsonl.gz": dict.fromkeys(
        [274, 396, 1122, 1324, 1379, 1434, 1957, 2229, 2457, 2687, 2855, 3734, 3771, 3786, 3876],
        "Translation",
    ),
}
# WizardLM records per category in the seed (seeded draw): a second labelled source for the
# categories Dolly and CoT alone label (domain-knowledge questions of many fields among them).
WIZARDLM_SEED = {"Knowledge": 10, "Math": 5, "Reasoning": 5, "Writing": 5}
POOLS = {
    "dolly": "dolly_3k_full.jsonl.gz",
    "cot": "cot_full.jsonl.gz",
    "wizardlm": "wizardlm_testset_218.jsonl",
}


def labelled(source: str, records: list[dict]) -> list[dict]:
    """Mapped records as {instruction, input, category, source, source_id, source_label}."""
    out = []
    for r in records:
        cat = mapped_category(source, r)
        if cat:
            out.append(
                {
                    "instruction": r["instruction"],
                    "input": r.get("input", ""),
                    "category": cat,
                    "source": source,
                    "source_id": r["id"],
                    "source_label": r[LABEL_FIELDS[source]],
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent.parent / "shared" / "data"))
    a = ap.parse_args()
    data = Path(a.data)
    if not (data / POOLS["dolly"]).exists():
        data = Path("/work/shared/data")
    rng = random.Random(SHUFFLE_SEED)
    seed: list[dict] = []
    rest: dict[str, list[dict]] = {}
    for source in ("dolly", "cot"):
        rows = labelled(source, read_records(data / POOLS[source]))
        rng.shuffle(rows)
        taken: dict[str, int] = {}
        rest[source] = []
        for row in rows:
            if taken.get(row["category"], 0) < PER_CATEGORY:
                taken[row["category"]] = taken.get(row["category"], 0) + 1
                seed.append(row)
            else:
                rest[source].append(row)
    for name, labels in HAND_LABELLED.items():
        by_id = {r["id"]: r for r in read_records(data / name)}
        for rid, cat in labels.items():
            r = by_id[rid]
            seed.append(
                {
                    "instruction": r["instruction"],
                    "input": r.get("input", ""),
                    "category": cat,
                    "source": name.split(".")[0],
                    "source_id": rid,
                    "source_label": "hand-labelled",
                }
            )
    wizard = labelled("wizardlm", read_records(data / POOLS["wizardlm"]))
    rng.shuffle(wizard)
    taken = {}
    for row in wizard:
        if taken.get(row["category"], 0) < WIZARDLM_SEED.get(row["category"], 0):
            taken[row["category"]] = taken.get(row["category"], 0) + 1
            seed.append(row)
    seeded = {(r["source"], r["source_id"]) for r in seed}
    wizard = sorted(
        (r for r in wizard if ("wizardlm", r["source_id"]) not in seeded),
        key=lambda r: r["source_id"],
    )
    out = REPO / "data" / SEED_FILE
    out.parent.mkdir(exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for row in seed:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    per_label: dict[str, int] = {}
    sample = []
    for row in rest["dolly"]:  # 20 per Dolly label: 40 % Knowledge (open_qa and closed_qa)
        if per_label.get(row["source_label"], 0) < EVAL_PER_LABEL:
            per_label[row["source_label"]] = per_label.get(row["source_label"], 0) + 1
            sample.append(row)
    sample += wizard
    with open(REPO / "data" / "task_types_eval.jsonl", "w", encoding="utf-8") as fh:
        for n, row in enumerate(sample):
            fh.write(json.dumps({"id": n, **row}, ensure_ascii=False) + "\n")
    print(f"seed {len(seed)} -> {out}; eval sample {len(sample)} -> data/task_types_eval.jsonl")


if __name__ == "__main__":
    main()
