"""Task-type classifiers measured against human labels: accuracy, per-category recall, the confusion
matrix and the majority-class baseline, per source and overall, in one table per classifier.

Labelled records come from the shared pools (Dolly `category`, WizardLM `skill`, CoT `source`,
mapped by `adg.method.task_types.SOURCE_MAPS`), or from the in-repository sample
`data/task_types_eval.jsonl` when the shared pools are absent (or `--eval-file` is given). Records
in the seed set are never evaluated; WizardLM contributes nothing to the seed set, so its rows
measure the classifiers on a source they never saw.

    .venv/bin/python -m bench.task_types                               # every local classifier
    .venv/bin/python -m bench.task_types --classifiers vectors --write # store vectors' accuracy
    .venv/bin/python -m bench.task_types --classifiers endpoint --endpoint http://vllm:8000/v1
    .venv/bin/python -m bench.task_types --loso --write               # what `adg analyse` states

`--loso` measures the `vectors` classifier leave-one-source-out, as a user's pool meets it: for
each human-labelled source (Dolly, CoT, WizardLM), the classifier is fitted on the seed records of
every other source and tested on that source's records (its seed records and its labelled records
not in the seed); Alpaca's hand labels (the project's own) are always in the fit. The overall
figure pools the three folds' predictions. `--write` stores it in data/task_types_benchmark.json,
the figure the report states.

Classifiers (`--classifiers`, comma-separated):
- `vectors`: the default, logistic regression on the backbone's instruction vectors (seed set);
- `vectors-knn`: 5 nearest seed instructions by cosine, majority vote;
- `likelihood`: calibrated label likelihood (the previous default);
- `likelihood-raw`: the same without calibration;
- `fewshot`: label likelihood after one balanced example per category from the seed set;
- `endpoint`: an OpenAI-compatible server (`--endpoint`, `--endpoint-model`).
`--write` stores each local classifier's overall result in data/task_types_benchmark.json,
which `adg analyse` quotes in the report. Per-record time is wall time on this machine, as
measured (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from adg.io import models
from adg.io.reading import read_records
from adg.method import task_classifiers as classifiers
from adg.method.task_types import LABEL_FIELDS, measure, measure_lines, seed_records

REPO = Path(__file__).resolve().parents[1]
POOLS = {
    "dolly": "dolly_3k_full.jsonl.gz",
    "wizardlm": "wizardlm_testset_218.jsonl",
    "cot": "cot_full.jsonl.gz",
}


def labelled_records(data: Path | None, eval_file: Path | None, per_label: int) -> list[dict]:
    """Mapped human-labelled records not in the seed set: `per_label` per source label (seeded
    draw), or the in-repository sample."""
    if eval_file or data is None:
        return read_records(eval_file or REPO / "data" / "task_types_eval.jsonl")
    from adg.method.task_types import mapped_category

    seeded = {(r["source"], r["source_id"]) for r in seed_records()}
    rng = random.Random(0)
    out = []
    for source, name in POOLS.items():
        rows = [r for r in read_records(data / name) if mapped_category(source, r)]
        rows = [r for r in rows if (source, r["id"]) not in seeded]
        rng.shuffle(rows)
        taken: dict[str, int] = {}
        for r in rows:
            label = str(r[LABEL_FIELDS[source]])
            if taken.get(label, 0) < per_label:
                taken[label] = taken.get(label, 0) + 1
                out.append(
                    {
                        "instruction": r["instruction"],
                        "input": r.get("input", ""),
                        "category": mapped_category(source, r),
                        "source": source,
                        "source_id": r["id"],
                        "source_label": label,
                    }
                )
    return out


class KnnClassifier(classifiers.VectorClassifier):
    """The k nearest seed instructions by cosine of the standardised vectors, majority vote."""

    name = "vectors-knn"

    def __init__(self, base: classifiers.VectorClassifier, k: int = 5):
        self.__dict__.update(base.__dict__)  # same encoder, seed vectors and scaler
        self.k = k
        self.scale = self.fit[0]  # the StandardScaler fitted on the seed vectors
        self.seed_z = self._unit(self.scale.transform(self.seed_x))
        self.seed_y = np.array(self.seed_y)
        self.description = f"vectors-knn: {self.model_label} standardised vectors, {k} neighbours"

    @staticmethod
    def _unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def classify(self, records):
        x = self.encoder.instruction_vectors([r["instruction"] for r in records])
        near = np.argsort(-(self._unit(self.scale.transform(x)) @ self.seed_z.T), axis=1)
        out = []
        for row in near[:, : self.k]:
            votes = list(self.seed_y[row])
            out.append(max(votes, key=lambda c: (votes.count(c), -votes.index(c))))
        return out


class RawLikelihood(classifiers.ModelClassifier):
    """Label likelihood without the content-free calibration."""

    name = "likelihood-raw"

    def classify(self, records):
        self._prior = np.zeros(len(classifiers.CATEGORIES), dtype=np.float32)
        return super().classify(records)


class FewShotLikelihood(classifiers.ModelClassifier):
    """Calibrated label likelihood after one seed example per category (balanced, fixed order)."""

    name = "fewshot"

    def __init__(self, tokenizer, lm, batch_size: int = 4):
        super().__init__(tokenizer=tokenizer, lm=lm, batch_size=batch_size)
        first: dict[str, str] = {}
        for r in seed_records():
            first.setdefault(r["category"], r["instruction"].strip()[:200])
        shots = "".join(
            f"Instruction: {first[c]}\nCategory: {classifiers.SPOKEN[c]}\n\n"
            for c in classifiers.CATEGORIES
        )
        self.shots = shots

    def _scores(self, prompts):
        return super()._scores([self.shots + p.split("\n\n", 1)[1] for p in prompts])


def build(name: str, tokenizer, lm, encoder, args, built: dict):
    if name in ("vectors", "vectors-knn") and "vectors" not in built:
        built["vectors"] = classifiers.VectorClassifier(encoder=encoder)
    if name == "vectors":
        return built["vectors"]
    if name == "vectors-knn":
        return KnnClassifier(built["vectors"])
    if name == "likelihood":
        return classifiers.ModelClassifier(tokenizer=tokenizer, lm=lm, batch_size=args.batch_size)
    if name == "likelihood-raw":
        return RawLikelihood(tokenizer=tokenizer, lm=lm, batch_size=args.batch_size)
    if name == "fewshot":
        return FewShotLikelihood(tokenizer, lm, batch_size=max(1, args.batch_size // 2))
    if name == "endpoint":
        return classifiers.EndpointClassifier(args.endpoint, args.endpoint_model, batch_size=8)
    raise SystemExit(f"unknown classifier {name!r}")


# The human-labelled sources a leave-one-source-out fold holds out, in the table's order.
LOSO_SOURCES = ("dolly", "cot", "wizardlm")


def leave_one_source_out(clf: classifiers.VectorClassifier, tests: list[dict]) -> dict:
    """Per held-out source and overall: the vector classifier's measure when fitted on the seed
    records of the other sources only (see the module docstring)."""
    from sklearn.base import clone

    seed = seed_records()
    test_x = clf.encoder.instruction_vectors([r["instruction"] for r in tests])
    truth, predicted, res = [], [], {}
    for source in LOSO_SOURCES:
        fit = [i for i, r in enumerate(seed) if r["source"] != source]
        held = [i for i, r in enumerate(seed) if r["source"] == source]
        own = [i for i, r in enumerate(tests) if r["source"] == source]
        model = clone(clf.fit).fit(clf.seed_x[fit], [seed[i]["category"] for i in fit])
        x = np.concatenate([clf.seed_x[held], test_x[own]])
        y = [seed[i]["category"] for i in held] + [tests[i]["category"] for i in own]
        got = list(model.predict(x))
        res[source] = measure(y, got, classifiers.CATEGORIES)
        truth += y
        predicted += got
    return {"overall": measure(truth, predicted, classifiers.CATEGORIES), **res}


def write_loso(res: dict, model: str | None, evaluated: str, command: str) -> Path:
    """Store the leave-one-source-out figure as the vectors classifier's benchmark (the one the
    report states), with the in-distribution one kept beside it for comparison."""
    path = classifiers.BENCHMARK_PATH
    table = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    key = f"vectors/{classifiers.model_label(model)}"
    o = res["overall"]
    table[key] = {
        "protocol": "leave-one-source-out",
        "n": o["n"],
        "accuracy": round(o["accuracy"], 4),
        "majority_accuracy": round(o["majority_accuracy"], 4),
        "by_source": {
            s: {
                "n": res[s]["n"],
                "accuracy": round(res[s]["accuracy"], 4),
                "majority_accuracy": round(res[s]["majority_accuracy"], 4),
            }
            for s in LOSO_SOURCES
        },
        "recall": {c: round(r, 4) for c, r in o["recall"].items() if r is not None},
        "evaluated_on": evaluated,
        "command": command,
    }
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def write_benchmark(results: dict, model: str | None, evaluated: str, command: str) -> Path:
    """Store each local classifier's overall result where `adg analyse` looks it up."""
    path = classifiers.BENCHMARK_PATH
    table = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for name, res in results.items():
        if name not in classifiers.CLASSIFIERS or name == "endpoint":
            continue
        o = res["overall"]
        sources = [s for s, v in res.items() if isinstance(v, dict) and s != "overall"]
        table[f"{name}/{classifiers.model_label(model)}"] = {
            "n": o["n"],
            "accuracy": round(o["accuracy"], 4),
            "majority_accuracy": round(o["majority_accuracy"], 4),
            "by_source": {s: round(res[s]["accuracy"], 4) for s in sources},
            "recall": {c: round(r, 4) for c, r in o["recall"].items() if r is not None},
            "seconds_per_100": res["seconds_per_100"],
            "evaluated_on": evaluated,
            "command": command,
        }
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classifiers", default="vectors,vectors-knn,likelihood,likelihood-raw")
    ap.add_argument("--data", default=str(REPO.parent.parent / "shared" / "data"))
    ap.add_argument("--eval-file", default=None, help="labelled JSONL instead of the pools")
    ap.add_argument("--per-label", type=int, default=20, help="records per source label")
    ap.add_argument("--limit", type=int, default=0, help="at most this many records (seeded)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--endpoint", default="")
    ap.add_argument("--endpoint-model", default="")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--write", action="store_true", help="store results for `adg analyse`")
    ap.add_argument("--json", default=None, help="also write all results to this file")
    ap.add_argument(
        "--loso", action="store_true", help="the vectors classifier, leave-one-source-out"
    )
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    data = Path(a.data)
    if not (data / POOLS["dolly"]).exists():
        data = None
    records = labelled_records(data, Path(a.eval_file) if a.eval_file else None, a.per_label)
    if a.limit and len(records) > a.limit:
        records = random.Random(1).sample(records, a.limit)
    where = a.eval_file or (str(data) if data else "data/task_types_eval.jsonl")
    print(f"{len(records)} labelled records from {where}", file=sys.stderr)
    if a.loso:
        clf = classifiers.VectorClassifier(model=a.model)
        t0 = time.perf_counter()
        res = leave_one_source_out(clf, records)
        print(f"leave-one-source-out, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for part, m in res.items():
            print("\n".join(measure_lines(m, f"[{part} held out]")))
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        if a.write:
            evaluated = where if data is None else f"shared pools, {a.per_label} per source label"
            command = "bench/task_types.py " + " ".join(sys.argv[1:])
            print(f"\nwritten: {write_loso(res, a.model, evaluated, command)}")
        return
    names = [n for n in a.classifiers.split(",") if n]
    tokenizer = lm = encoder = None
    if any(n != "endpoint" for n in names):
        from adg.method.hidden import HiddenStateEncoder

        tokenizer, lm = models.load(a.model)
        encoder = HiddenStateEncoder(tokenizer, lm)
    results: dict = {}
    built: dict = {}
    for name in names:
        t0 = time.perf_counter()
        clf = build(name, tokenizer, lm, encoder, a, built)
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        predicted = clf.classify(records)
        took = time.perf_counter() - t0
        res = {
            "overall": measure([r["category"] for r in records], predicted, classifiers.CATEGORIES)
        }
        for source in sorted({r["source"] for r in records}):
            idx = [i for i, r in enumerate(records) if r["source"] == source]
            res[source] = measure(
                [records[i]["category"] for i in idx],
                [predicted[i] for i in idx],
                classifiers.CATEGORIES,
            )
        per100 = 100 * took / len(records)
        print(f"\n== {clf.description}: setup {setup:.1f} s, {per100:.1f} s per 100 instructions")
        for part, m in res.items():
            print("\n".join(measure_lines(m, f"[{part}]")))
        results[name] = {
            "description": clf.description,
            "setup_s": round(setup, 2),
            "seconds_per_100": round(per100, 2),
            **res,
        }
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    if a.write:
        evaluated = where if data is None else f"shared pools, {a.per_label} per source label"
        command = "bench/task_types.py " + " ".join(sys.argv[1:])
        print(f"\nwritten: {write_benchmark(results, a.model, evaluated, command)}")


if __name__ == "__main__":
    main()
