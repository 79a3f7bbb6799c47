"""The task-type classifiers: label an instruction with one of the paper's ten task categories.

Categories (the paper's analysis): Math, Knowledge, Reasoning, Writing, Coding, Summarization,
Translation, Discrete_Decision, Instruction_Following, Others. Three classifiers, picked by a plain
dict (`CLASSIFIERS`):

* `vectors` (default) — the backbone's instruction vectors (the embed stage's pooling,
  `HiddenStateEncoder.instruction_vectors`), standardised, and a logistic regression fitted on the
  labelled seed set shipped with the package (`adg.method.task_types.seed_records`, 195 instructions
  over all ten categories). One truncated forward pass per instruction, no generation;
  deterministic.
* `likelihood` — the backbone scores every category name as a continuation of a prompt listing
  the categories (`PROMPT`); B × 10 sequences per left-padded pass, only the last positions'
  logits. The score is the summed label log-likelihood minus the same under content-free inputs
  (contextual calibration):

      s(c | x) = Σ_t log p(label_c[t] | prompt(x), label_c[<t])  −  s₀(c)
      s₀(c)    = mean over x₀ ∈ {"", "N/A"} of the same sum for prompt(x₀)

* `endpoint` — any OpenAI-compatible chat-completions server (an in-cluster vLLM, for example)
  through the `openai` client, asked with temperature 0 to answer with a category name; the first
  category named in the answer wins. A single answer naming none counts as Others; a server that
  mostly answers none is an error. The key comes from `ADG_ENDPOINT_API_KEY`.

`bench/task_types.py` measures them against human labels (docs/report.md has the numbers); the
measured accuracy of the local classifiers is stored in `data/task_types_benchmark.json`
(package `adg.data`, read by `benchmark_of`). Every classifier has `name`, `description` and
`classify(records) -> list of categories`; the analyse stage (adg.stages.analyse) runs one over a
pool and its selected subset.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adg import package_data, progress
from adg.config import adg_home
from adg.errors import AdgError
from adg.method.task_types import SEED_PATH, seed_records

logger = logging.getLogger(__name__)

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
# Inverse L2 strength of the vector classifier's logistic regression (bench/task_types.py).
VECTOR_C = 1.0
# After this many endpoint answers, more than half naming no category stops the run.
MIN_ANSWERS_CHECKED = 16
# Measured accuracies, written by `bench/task_types.py --write`.
BENCHMARK_PATH = package_data.path("task_types_benchmark.json")


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

    name = "likelihood"

    def __init__(self, model: str | None = None, batch_size: int = 8, tokenizer=None, lm=None):
        from adg.io import models

        if lm is None:
            tokenizer, lm = models.load(model)
        self.tokenizer, self.model = tokenizer, lm
        self.batch_size = max(1, batch_size)
        self.description = f"likelihood: {model_label(model)} calibrated label likelihood"
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


class VectorClassifier:
    """Logistic regression over the backbone's instruction vectors (the embed stage's pooling),
    fitted on the labelled seed set shipped with the package (see the module docstring)."""

    name = "vectors"

    def __init__(self, model: str | None = None, tokenizer=None, lm=None, encoder=None):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from adg.io import models
        from adg.method.hidden import HiddenStateEncoder

        where = None  # the backbone's location, when loaded here: the seed vectors' cache key
        if encoder is None:
            if lm is None:
                tokenizer, lm = models.load(model)
                where = str(model or models.find_embedded_model() or models.embedded_model_dir())
                where = where if "://" in where else str(Path(where).resolve())
            encoder = HiddenStateEncoder(tokenizer, lm)
        self.encoder = encoder
        self.model_label = model_label(model)
        self.description = f"vectors: {self.model_label} instruction vectors + logistic regression"
        seed = seed_records()
        self.seed_x = self._seed_vectors(seed, where)
        self.seed_y = [r["category"] for r in seed]
        self.fit = make_pipeline(StandardScaler(), LogisticRegression(C=VECTOR_C, max_iter=3000))
        self.fit.fit(self.seed_x, self.seed_y)

    def _seed_vectors(self, seed: list[dict[str, Any]], where: str | None):
        """The seed set's vectors, cached under $ADG_HOME per backbone and seed file: a later run
        on 100 instructions then embeds only those."""
        import hashlib

        import numpy as np

        cache = None
        if where:
            key = hashlib.sha256(SEED_PATH.read_bytes() + where.encode()).hexdigest()[:16]
            cache = adg_home() / "task_types" / f"{self.model_label}-{key}.npy"
            try:
                x = np.load(cache) if cache.is_file() else None
            except (OSError, ValueError, EOFError):  # a truncated entry is recomputed
                x = None
            if x is not None and x.shape == (len(seed), self.encoder.hidden_size):
                return x
        x = self.encoder.instruction_vectors([r["instruction"] for r in seed])
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, x)
                tmp.replace(cache)
            except OSError as err:  # a read-only home only costs the next run the seed pass
                logger.warning("analyse: cannot cache the seed vectors in %s: %s", cache, err)
        return x

    def classify(self, records: Sequence[dict[str, Any]]) -> list[str]:
        labels: list[str] = []
        chunk = 512
        with progress.bar(len(records), "analyse") as bar:
            for start in range(0, len(records), chunk):
                part = records[start : start + chunk]
                x = self.encoder.instruction_vectors([r["instruction"] for r in part])
                labels += [str(c) for c in self.fit.predict(x)]
                bar.update(len(part))
        return labels


def endpoint_base_url(url: str) -> str:
    """The client's base URL: the endpoint URL without a trailing /chat/completions."""
    url = url.rstrip("/")
    return url[: -len("/chat/completions")] if url.endswith("/chat/completions") else url


class EndpointClassifier:
    """Asks an OpenAI-compatible chat-completions server through the `openai` client: `batch_size`
    requests in flight at once (the server batches them), each retried by the client on connection
    errors, 408/429 and 5xx (`retries` times, with backoff) and bounded by `timeout` seconds."""

    name = "endpoint"

    def __init__(
        self,
        url: str,
        model_name: str = "",
        timeout: float = 60.0,
        batch_size: int = 8,
        retries: int = 2,
    ):
        if not url.startswith(("http://", "https://")):
            raise AnalysisError(f"endpoint {url!r}: expected an http:// or https:// URL")
        try:
            import openai
        except ImportError:
            raise AnalysisError(
                "the endpoint classifier needs the openai client: pip install 'adg[endpoint]'"
            ) from None
        self.openai = openai
        self.base_url = endpoint_base_url(url)
        self.url = self.base_url + "/chat/completions"
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(API_KEY_ENV) or "none",
            timeout=timeout,
            max_retries=retries,
        )
        self.model_name = model_name
        self.timeout = timeout
        self.batch_size = max(1, batch_size)
        self.description = f"endpoint {self.url}" + (f" ({model_name})" if model_name else "")
        self.unparsed = 0

    def _call(self, what: str, fn):
        """Run one client call; the client's errors become one line for the user."""
        o = self.openai
        try:
            return fn()
        except o.APITimeoutError:
            raise AnalysisError(f"endpoint {self.url}: no answer in {self.timeout:g}s") from None
        except o.APIConnectionError as err:
            raise AnalysisError(f"endpoint {self.url}: cannot connect ({err})") from None
        except o.APIStatusError as err:
            detail = err.response.text[:200] if err.response is not None else ""
            raise AnalysisError(f"endpoint {self.url}: HTTP {err.status_code} {detail}") from None
        except (o.APIResponseValidationError, ValueError) as err:
            raise AnalysisError(f"endpoint {self.url}: {what}: malformed answer ({err})") from None

    def served_model(self) -> str:
        """The model to ask: the one given, else the first the server lists (/v1/models)."""
        if not self.model_name:
            listed = self._call("models", lambda: list(self.client.models.list()))
            if not listed:
                raise AnalysisError(f"endpoint {self.base_url}/models: lists no model")
            self.model_name = str(listed[0].id)
            self.description = f"endpoint {self.url} ({self.model_name})"
        return self.model_name

    def ask(self, instruction: str) -> str:
        categories = ", ".join(SPOKEN[c] for c in CATEGORIES)
        resp = self._call(
            "chat completion",
            lambda: self.client.chat.completions.create(
                model=self.served_model(),
                messages=[
                    {"role": "system", "content": ENDPOINT_SYSTEM.format(categories=categories)},
                    {"role": "user", "content": instruction[:MAX_INSTRUCTION_CHARS]},
                ],
                temperature=0,
                max_tokens=16,
            ),
        )
        try:
            return str(resp.choices[0].message.content or "")
        except (AttributeError, IndexError, TypeError):
            raise AnalysisError(
                f"endpoint {self.url}: answer has no choices[0].message.content: "
                f"{str(resp)[:120]!r}"
            ) from None

    def classify(self, records: Sequence[dict[str, Any]]) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        self.served_model()
        labels: list[str] = []
        with (
            ThreadPoolExecutor(self.batch_size) as pool,
            progress.bar(len(records), "analyse") as bar,
        ):
            for start in range(0, len(records), self.batch_size):
                part = records[start : start + self.batch_size]
                answers = list(pool.map(self.ask, [_record_text(r) for r in part]))
                for answer in answers:
                    category = parse_category(answer)
                    if category is None:
                        self.unparsed += 1
                        self.last_unparsed = answer
                    labels.append(category or "Others")
                # A server that mostly answers no category name is not classifying: stop early.
                if len(labels) >= MIN_ANSWERS_CHECKED and self.unparsed > len(labels) / 2:
                    raise AnalysisError(
                        f"endpoint {self.url}: {self.unparsed} of {len(labels)} answers name no "
                        f"category (e.g. {self.last_unparsed[:80]!r}); is it an instruction-tuned "
                        "model?"
                    )
                bar.update(len(part))
        if self.unparsed:
            logger.warning(
                "analyse: %d answers named no category; counted as Others", self.unparsed
            )
        return labels


CLASSIFIERS = {
    "vectors": VectorClassifier,
    "likelihood": ModelClassifier,
    "endpoint": EndpointClassifier,
}


def make_classifier(
    model: str | None = None,
    endpoint: str = "",
    endpoint_model: str = "",
    batch_size: int = 8,
    timeout: float = 60.0,
    classifier: str = "vectors",
    retries: int = 2,
):
    """The endpoint classifier when `endpoint` is set, else the local `classifier` on `model`."""
    if endpoint:
        return CLASSIFIERS["endpoint"](endpoint, endpoint_model, timeout, batch_size, retries)
    if classifier == "likelihood":
        return CLASSIFIERS["likelihood"](model, batch_size=batch_size)
    if classifier == "vectors":
        return CLASSIFIERS["vectors"](model)
    raise AnalysisError(f"classifier {classifier!r}: expected one of vectors, likelihood")


def model_label(model: str | None) -> str:
    """How a backbone is named in the benchmark table: its folder or file name."""
    from adg.io import models

    return Path(str(model).rstrip("/")).name if model else models.EMBEDDED_NAME


def benchmark_of(name: str, model: str | None) -> dict[str, Any] | None:
    """The measured accuracy of a classifier on this backbone (bench/task_types.py), or None."""
    if name == "endpoint" or not BENCHMARK_PATH.is_file():
        return None
    table = json.loads(BENCHMARK_PATH.read_text(encoding="utf-8"))
    return table.get(f"{name}/{model_label(model)}")
