"""Loader for the tiny offline lm-eval tasks used by tests/test_evaluate.py.

lm-eval calls `load_splits` (named by `custom_dataset` in each task YAML) with the task's
`dataset_kwargs`; the JSONL files sit next to this module, so the tasks load the same way whatever
the working directory, and nothing is fetched from a hub.
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_splits(files=None, **_metadata):
    """{split: JSONL file name} -> a datasets.DatasetDict read from this folder."""
    import datasets

    splits = {}
    for split, name in (files or {}).items():
        with open(HERE / name, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        splits[split] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(splits)
