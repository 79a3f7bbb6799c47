"""Task-type analysis: label every instruction with one of ten task categories and compare the
category mix of the pool with that of the selected subset.

Categories (the paper's analysis): Math, Knowledge, Reasoning, Writing, Coding, Summarization,
Translation, Discrete_Decision, Instruction_Following, Others. Two classifiers, picked by a plain
dict (`CLASSIFIERS`):

* `model` (default) — the backbone itself, no external service, deterministic. Each instruction is
  put into a short prompt listing the categories (`PROMPT`), and every category name is scored as a
  continuation of it. For a chunk of B records, the B × 10 sequences (prompt + label) go through the
  model in one left-padded forward pass; only the last positions' logits are computed. A label's
  score is the *summed* (not length-normalised) log-likelihood of its tokens, minus the same
  quantity under a content-free instruction (contextual calibration):

      s(c | x) = Σ_t log p(label_c[t] | prompt(x), label_c[<t])  −  s₀(c)
      s₀(c)    = mean over x₀ ∈ {"", "N/A"} of the same sum for prompt(x₀)

  Summing keeps the score a log-probability of the whole label string; calibration removes the
  model's prior preference for some label strings, which small models have strongly. On the
  embedded 135M model this takes 8 of 16 hand-labelled obvious instructions right, against 4 / 16
  for the plain sum and 5 / 16 for the per-token mean (see docs/report.md).
* `endpoint` — any OpenAI-compatible chat-completions server (an in-cluster vLLM, for example),
  asked with temperature 0 to answer with a category name; the first category named in the answer
  wins, an answer naming none counts as Others. The key comes from `ADG_ENDPOINT_API_KEY`.

Outputs: labels JSONL (`{"id", "category"}` per record, pool order) and a composition dict: counts
and shares per category for the pool and, when given, for the selected subset, and the shift
(selected share − pool share).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adg import progress
from adg.config import AnalyseConfig
from adg.errors import AdgError
from adg.records import PoolError, id_key, read_records, write_jsonl

CATEGORIES = (
    "Math",
    "Knowledge",
    "Reasoning",
    "Writing",
    "Coding",
    "Summarization",
    "Translation",
    "Discrete_Decision",
    "Instruction_Following",
    "Others",
)
# How a category is written in prompts and looked for in answers.
SPOKEN = {c: c.replace("_", " ") for c in CATEGORIES}
PROMPT = (
    "Classify the task type of the instruction. Categories: {categories}.\n\n"
    "Instruction: {instruction}\nCategory:"
)
CONTENT_FREE = ("", "N/A")
ENDPOINT_SYSTEM = (
    "You classify instructions by task type. Answer with exactly one category name from this "
    "list and nothing else: {categories}."
)
API_KEY_ENV = "ADG_ENDPOINT_API_KEY"
MAX_INSTRUCTION_CHARS = 2000


class AnalysisError(AdgError, RuntimeError):
    """A classifier that cannot run (endpoint unreachable, bad answer): one line for the user."""


def classifier_prompt(instruction: str) -> str:
    categories = ", ".join(SPOKEN[c] for c in CATEGORIES)
    text = instruction.strip()[:MAX_INSTRUCTION_CHARS]
    return PROMPT.format(categories=categories, instruction=text)


def _record_text(record: dict[str, Any]) -> str:
    extra = (record.get("input") or "").strip()
    return record["instruction"] + (f"\n{extra}" if extra else "")


class ModelClassifier:
    """Label-likelihood classification with a causal LM (see the module docstring)."""

    name = "model"

    def __init__(self, model: str | None = None, batch_size: int = 8, tokenizer=None, lm=None):
        from adg import models

        if lm is None:
            tokenizer, lm = models.load(model)
        self.tokenizer, self.model = tokenizer, lm
        self.batch_size = max(1, batch_size)
        self.description = f"model {model or 'embedded'} (calibrated label likelihood)"
        self.label_ids = [
            tokenizer(" " + SPOKEN[c], add_special_tokens=False)["input_ids"] for c in CATEGORIES
        ]
        self._prior = None

    def _scores(self, prompts: Sequence[str]):
        """float32 [len(prompts), 10]: summed label log-likelihood after each prompt."""
        import torch

        pad = self.tokenizer.pad_token_id
        prompt_ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        seqs = [p + lab for p in prompt_ids for lab in self.label_ids]
        width = max(map(len, seqs))
        keep = max(map(len, self.label_ids)) + 1
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):  # left padding: every label ends at the last position
            ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, width - len(s) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = self.model.device
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                logits_to_keep=keep,
            ).logits
        logp = logits.float().log_softmax(-1).cpu()  # [S, keep, V]; row j predicts token W-keep+j+1
        out = torch.zeros(len(seqs))
        for i in range(len(seqs)):
            lab = self.label_ids[i % len(CATEGORIES)]
            n = len(lab)
            rows = logp[i, keep - 1 - n : keep - 1]
            out[i] = rows.gather(-1, torch.tensor(lab)[:, None]).sum()
        return out.view(len(prompts), len(CATEGORIES)).numpy()

    def classify(self, records: Sequence[dict[str, Any]]) -> list[str]:
        if self._prior is None:
            self._prior = self._scores([classifier_prompt(x) for x in CONTENT_FREE]).mean(0)
        prompts = [classifier_prompt(_record_text(r)) for r in records]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        labels: list[str] = [""] * len(prompts)
        with progress.bar(len(order), "analyse") as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                scores = self._scores([prompts[i] for i in idx]) - self._prior
                for i, row in zip(idx, scores, strict=True):
                    labels[i] = CATEGORIES[int(row.argmax())]
                bar.update(len(idx))
        return labels


def parse_category(answer: str) -> str | None:
    """The category named first in a free-text answer, or None."""
    text = answer.lower().replace("_", " ").replace("-", " ")
    found = [(text.find(SPOKEN[c].lower()), c) for c in CATEGORIES]
    found = [(pos, c) for pos, c in found if pos >= 0]
    return min(found)[1] if found else None


def chat_completions_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class EndpointClassifier:
    """Asks an OpenAI-compatible chat-completions endpoint, one request per record."""

    name = "endpoint"

    def __init__(self, url: str, model_name: str = "", timeout: float = 60.0):
        if not url.startswith(("http://", "https://")):
            raise AnalysisError(f"endpoint {url!r}: expected an http:// or https:// URL")
        self.url = chat_completions_url(url)
        self.model_name = model_name
        self.timeout = timeout
        self.api_key = os.environ.get(API_KEY_ENV, "")
        self.description = f"endpoint {self.url}" + (f" ({model_name})" if model_name else "")
        self.unparsed = 0

    def ask(self, instruction: str) -> str:
        categories = ", ".join(SPOKEN[c] for c in CATEGORIES)
        body: dict[str, Any] = {
            "messages": [
                {"role": "system", "content": ENDPOINT_SYSTEM.format(categories=categories)},
                {"role": "user", "content": instruction[:MAX_INSTRUCTION_CHARS]},
            ],
            "temperature": 0,
            "max_tokens": 16,
        }
        if self.model_name:
            body["model"] = self.model_name
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:200]
            raise AnalysisError(f"endpoint {self.url}: HTTP {err.code} {detail}") from None
        except urllib.error.URLError as err:
            raise AnalysisError(f"endpoint {self.url}: cannot connect ({err.reason})") from None
        except TimeoutError:
            raise AnalysisError(f"endpoint {self.url}: no answer in {self.timeout:g}s") from None
        except json.JSONDecodeError:
            raise AnalysisError(f"endpoint {self.url}: answer is not JSON") from None
        try:
            return str(payload["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise AnalysisError(
                f"endpoint {self.url}: answer has no choices[0].message.content"
            ) from None

    def classify(self, records: Sequence[dict[str, Any]]) -> list[str]:
        labels = []
        with progress.bar(len(records), "analyse") as bar:
            for r in records:
                category = parse_category(self.ask(_record_text(r)))
                if category is None:
                    self.unparsed += 1
                labels.append(category or "Others")
                bar.update(1)
        return labels


CLASSIFIERS = {"model": ModelClassifier, "endpoint": EndpointClassifier}


def make_classifier(
    model: str | None = None,
    endpoint: str = "",
    endpoint_model: str = "",
    batch_size: int = 8,
    timeout: float = 60.0,
):
    """The endpoint classifier when `endpoint` is set, else the backbone model."""
    if endpoint:
        return CLASSIFIERS["endpoint"](endpoint, endpoint_model, timeout=timeout)
    return CLASSIFIERS["model"](model, batch_size=batch_size)


def _mix(labels: Sequence[str]) -> dict[str, Any]:
    counts = {c: 0 for c in CATEGORIES}
    for label in labels:
        counts[label] += 1
    total = len(labels)
    shares = {c: (counts[c] / total if total else 0.0) for c in CATEGORIES}
    return {"count": total, "counts": counts, "shares": shares}


def composition(
    pool_labels: Sequence[str], selected_labels: Sequence[str] | None, classifier: str = ""
) -> dict[str, Any]:
    """Category counts and shares of the pool and the selected subset, and the shift between."""
    pool = _mix(pool_labels)
    out: dict[str, Any] = {
        "categories": list(CATEGORIES),
        "classifier": classifier,
        "pool": pool,
        "selected": None,
        "shift": None,
    }
    if selected_labels is not None:
        sel = _mix(selected_labels)
        out["selected"] = sel
        out["shift"] = {c: sel["shares"][c] - pool["shares"][c] for c in CATEGORIES}
    return out


def composition_lines(comp: dict[str, Any]) -> list[str]:
    """The composition as a plain-text table."""
    sel = comp["selected"]
    head = f"{'category':<22} {'pool':>12}" + (f" {'selected':>12} {'shift':>8}" if sel else "")
    lines = [f"task types by {comp['classifier']}", head]
    for c in comp["categories"]:
        row = f"{c:<22} {comp['pool']['counts'][c]:>5} {comp['pool']['shares'][c]:>6.1%}"
        if sel:
            row += f" {sel['counts'][c]:>5} {sel['shares'][c]:>6.1%} {comp['shift'][c]:>+8.1%}"
        lines.append(row)
    return lines


def analyse_records(
    pool: Sequence[dict[str, Any]],
    selected: Sequence[dict[str, Any]] | None,
    classifier,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Label the pool (and selected records missing from it); return (labels, composition)."""
    keys = [id_key(r["id"]) for r in pool]
    known = set(keys)
    extra = [r for r in selected or () if id_key(r["id"]) not in known]
    todo = list(pool) + extra
    labels = classifier.classify(todo)
    by_key = {id_key(r["id"]): lab for r, lab in zip(todo, labels, strict=True)}
    rows = [{"id": r["id"], "category": lab} for r, lab in zip(pool, labels, strict=False)]
    sel_labels = None if selected is None else [by_key[id_key(r["id"])] for r in selected]
    comp = composition(labels[: len(pool)], sel_labels, classifier.description)
    return rows, comp


def analyse_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    selected_path: str | os.PathLike | None = None,
    model: str | None = None,
    endpoint: str = "",
    endpoint_model: str = "",
    batch_size: int = AnalyseConfig.batch_size,
    timeout: float = AnalyseConfig.timeout,
    composition_output: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The analyse stage: write the labels JSONL (and the composition as JSON to
    `composition_output` when given); return the composition."""
    pool = read_records(input_path)
    if not pool:
        raise PoolError(f"{input_path}: no records to analyse")
    for n, r in enumerate(pool, start=1):
        if not isinstance(r.get("instruction"), str) or not r["instruction"].strip():
            raise PoolError(
                f"{input_path}: record {n} (id {r['id']!r}): field 'instruction' missing"
            )
    selected = read_records(selected_path) if selected_path else None
    classifier = make_classifier(model, endpoint, endpoint_model, batch_size, timeout)
    rows, comp = analyse_records(pool, selected, classifier)
    write_jsonl(output_path, rows)
    if composition_output:
        with open(composition_output, "w", encoding="utf-8") as fh:
            json.dump(comp, fh, indent=2)
            fh.write("\n")
    return comp


def composition_path(labels_path: str | os.PathLike) -> Path:
    """Where `analyse_file` writes the composition next to a labels file."""
    p = Path(labels_path)
    return p.with_name(p.stem + ".composition.json")
