"""`VLLMSampler.sample` run against the installed vLLM, with vLLM's own classes.

Where vLLM is importable (the generate image: `make images-test` runs this file inside it, as the
image's user, without network; or a GPU machine) the sampler's own code runs: it builds real
`vllm.SamplingParams` and `TokensPrompt` requests, and reads back real `RequestOutput` /
`CompletionOutput` objects. Only the engine is stood in for (`Engine`, put where `vllm.LLM` is):
its constructor checks the sampler's engine arguments against `LLM.__init__`'s signature and
vLLM's own `EngineArgs` without starting anything, its tokenizer is the one vLLM's own loader
(`vllm.tokenizers.get_tokenizer`) gives for the model folder, and its `generate` samples every
request with the tiny test model on CPU, seeded by that request's `SamplingParams.seed`, and
answers with `RequestOutput` objects. Checked:

- one distinct seed per record, equal across processes (hash randomisation) and releases (fixed
  values), and different for the ids 1 and "1";
- the prompt token ids are exactly what the transformers backend (`HFSampler`) feeds
  `model.generate` for the same records, with one BOS (Alpaca: the tokenizer's; chat: the
  template's, not a second one);
- K answers per record, in the order the engine returned them, each record its own.

Without vLLM these tests are skipped (`pytest.importorskip`, the CI skip policy's designated
exception with the `gpu` marker); `record_seed`'s own tests run everywhere. The `gpu` test at
the end samples the embedded model with a real vLLM engine; bench.gpu calls `full_vllm_run`.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from typing import ClassVar

import pytest
from helpers import embedded_model_or_skip, sample_records

from adg.config import SamplingConfig
from adg.stages.generate import HFSampler, VLLMSampler, record_seed

# record_seed's values, fixed: a resumed run on a later release must seed a record as before.
KNOWN_SEEDS = {
    (0, 1): 8003828004978139229,
    (0, "1"): 1065198934167131875,
    (11, "x"): 3835323023055871857,
}


@pytest.fixture(scope="module")
def vllm():
    return pytest.importorskip(
        "vllm",
        reason="vLLM is not installed here (it runs in the generate image: make images-test)",
    )


# ----------------------------------------------------------------------------- record_seed


def test_record_seed_differs_for_an_int_id_and_its_text():
    assert record_seed(0, 1) != record_seed(0, "1")
    assert record_seed(0, 1) != record_seed(1, 1)
    assert len({record_seed(7, i) for i in range(1000)}) == 1000
    assert all(0 <= record_seed(s, i) < 2**63 for s in (0, 2**40) for i in (0, "x", -5))


def test_record_seed_keeps_its_values():
    assert {key: record_seed(*key) for key in KNOWN_SEEDS} == KNOWN_SEEDS


def test_record_seed_is_the_same_in_another_process():
    ids = [1, "1", "é", 10**12, "a b"]
    code = (
        "import json, sys; from adg.stages.generate import record_seed; "
        "print(json.dumps([record_seed(3, i) for i in json.loads(sys.argv[1])]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(ids)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert json.loads(out.stdout) == [record_seed(3, i) for i in ids]


# ----------------------------------------------------------------------------- the stand-in


class Engine:
    """Stands in for `vllm.LLM` (the engine) only; everything it takes and gives is vLLM's."""

    instances: ClassVar[list[Engine]] = []

    def __init__(self, model: str, **kwargs):
        import torch
        from transformers import AutoModelForCausalLM
        from vllm import LLM
        from vllm.engine.arg_utils import EngineArgs
        from vllm.tokenizers import get_tokenizer

        # The keywords the sampler passes exist on the real LLM and parse as engine arguments.
        inspect.signature(LLM.__init__).bind(None, model=model, **kwargs)
        self.engine_args = EngineArgs(model=model, **kwargs)
        self.tokenizer = get_tokenizer(model)
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        self.requests: list[tuple[dict, object]] = []
        self.answers: list[list[str]] = []
        self.token_count = 0
        Engine.instances.append(self)

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params, *, use_tqdm=True):
        import torch
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.outputs import CompletionOutput, RequestOutput

        assert isinstance(prompts, list) and isinstance(sampling_params, list)
        assert len(prompts) == len(sampling_params)
        outputs = []
        for n, (prompt, params) in enumerate(zip(prompts, sampling_params, strict=True)):
            assert isinstance(params, SamplingParams), type(params)
            assert isinstance(prompt, dict), type(prompt)
            keys = set(prompt)
            assert TokensPrompt.__required_keys__ <= keys, keys
            assert keys <= TokensPrompt.__required_keys__ | TokensPrompt.__optional_keys__, keys
            ids = prompt["prompt_token_ids"]
            assert all(isinstance(i, int) for i in ids)
            self.requests.append((prompt, params))
            torch.manual_seed(params.seed)
            with torch.inference_mode():
                out = self.model.generate(
                    torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    do_sample=True,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_new_tokens=params.max_tokens,
                    num_return_sequences=params.n,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            completions = []
            for index, row in enumerate(out[:, len(ids) :].tolist()):
                # As vLLM returns them: up to and with the EOS, no padding after it.
                eos = self.tokenizer.eos_token_id
                row = row[: row.index(eos) + 1] if eos in row else row
                self.token_count += len(row)
                text = self.tokenizer.decode(row, skip_special_tokens=True)
                completions.append(
                    CompletionOutput(
                        index=index,
                        text=text,
                        token_ids=row,
                        cumulative_logprob=None,
                        logprobs=None,
                        finish_reason="length",
                    )
                )
            self.answers.append([c.text.strip() for c in completions])
            outputs.append(
                RequestOutput(
                    request_id=str(n),
                    prompt=None,
                    prompt_token_ids=ids,
                    prompt_logprobs=None,
                    outputs=completions,
                    finished=True,
                )
            )
        return outputs


@pytest.fixture
def engine(vllm, monkeypatch):
    Engine.instances.clear()
    monkeypatch.setattr(vllm, "LLM", Engine)
    return Engine


def records_with_ids(ids) -> list[dict]:
    records = sample_records(len(ids))
    return [{**r, "id": i} for r, i in zip(records, ids, strict=True)]


# The samplers are called directly here, so the format is a concrete one: "auto" (the default) is
# decided for the whole pool by generate_file before any prompt is built.
CFG = SamplingConfig(
    num_samples=3, max_new_tokens=6, temperature=1.0, top_p=0.95, seed=11, prompt_format="alpaca"
)


def hf_prompt_ids(model_dir, cfg: SamplingConfig, records: list[dict]) -> list[list[int]]:
    """What the transformers backend feeds `model.generate` for these records, padding removed:
    its real `sample`, the model's `generate` only observed."""
    sampler = HFSampler(str(model_dir), cfg)
    seen = []
    real_generate = sampler.model.generate

    def observe(**kwargs):
        seen.append((kwargs["input_ids"], kwargs["attention_mask"]))
        return real_generate(**kwargs)

    sampler.model.generate = observe
    sampler.sample(records, 0)
    ((ids, mask),) = seen
    return [
        [t for t, m in zip(row, keep, strict=True) if m]
        for row, keep in zip(ids.tolist(), mask.tolist(), strict=True)
    ]


# ----------------------------------------------------------------------------- the checks


def test_every_record_gets_its_own_seed_stable_across_runs(engine, tiny_model_dir):
    ids = [1, "1", 2, "x", 3]
    records = records_with_ids(ids)
    runs = []
    for _ in range(2):
        sampler = VLLMSampler(str(tiny_model_dir), CFG)
        answers = sampler.sample(records, batch_index=0)
        runs.append(([p.seed for _, p in engine.instances[-1].requests], answers))
    (seeds, answers), (seeds_again, answers_again) = runs
    assert len(set(seeds)) == len(records), seeds
    assert seeds[0] != seeds[1]  # id 1 and id "1"
    assert seeds == seeds_again and answers == answers_again
    # Each record's seed is its own: alone, in another batch position, its answers are the same.
    sampler = VLLMSampler(str(tiny_model_dir), CFG)
    alone = sampler.sample([records[3]], batch_index=7)
    assert [p.seed for _, p in engine.instances[-1].requests] == [seeds[3]]
    assert alone == [answers[3]]


@pytest.mark.parametrize("prompt_format", ["alpaca", "chat"])
def test_prompt_token_ids_are_the_hf_paths_with_one_bos(engine, tiny_model_dir, prompt_format):
    cfg = SamplingConfig(**{**CFG.__dict__, "prompt_format": prompt_format})
    records = records_with_ids([10, 11, 12])
    VLLMSampler(str(tiny_model_dir), cfg).sample(records, batch_index=0)
    sent = [prompt["prompt_token_ids"] for prompt, _ in engine.instances[-1].requests]
    assert sent == hf_prompt_ids(tiny_model_dir, cfg, records)
    bos = engine.instances[-1].tokenizer.bos_token_id
    for ids in sent:
        assert ids[0] == bos and ids[1] != bos, ids[:4]
        if prompt_format == "alpaca":  # plain text: the only BOS is the one the tokenizer adds
            assert ids.count(bos) == 1


def test_k_answers_per_record_in_the_engines_order(engine, tiny_model_dir):
    records = records_with_ids([5, 6, 7, 8])
    sampler = VLLMSampler(str(tiny_model_dir), CFG)
    answers = sampler.sample(records, batch_index=0)
    stand_in = engine.instances[-1]
    assert [len(a) for a in answers] == [CFG.num_samples] * len(records)
    assert answers == stand_in.answers
    # The engine's answers differ within a record, so a shuffled or repeated one would show.
    assert all(len(set(a)) > 1 for a in stand_in.answers), stand_in.answers
    params = [p for _, p in stand_in.requests]
    assert {(p.n, p.temperature, p.top_p, p.max_tokens) for p in params} == {
        (CFG.num_samples, CFG.temperature, CFG.top_p, CFG.max_new_tokens)
    }
    assert stand_in.engine_args.seed == CFG.seed
    assert sampler.tokens == stand_in.token_count


# ----------------------------------------------------------------------------- a real engine


def full_vllm_run(model: str, records: list[dict] | None = None) -> dict:
    """Sample the model with a real vLLM engine (a CUDA GPU): twice the same batch, then each
    record alone; returns what was checked. Used by the `gpu` test below and by bench.gpu."""
    import time

    records = records or records_with_ids([1, "1", 2, 3, 4, 5])
    cfg = SamplingConfig(
        num_samples=4, max_new_tokens=32, temperature=1.0, top_p=0.9, seed=5, prompt_format="alpaca"
    )
    started = time.monotonic()
    sampler = VLLMSampler(model, cfg, gpu_memory_utilization=0.3)
    loaded = time.monotonic() - started
    first = sampler.sample(records, batch_index=0)
    again = sampler.sample(records, batch_index=1)
    alone = [sampler.sample([r], batch_index=9)[0] for r in records[:2]]
    assert [len(a) for a in first] == [cfg.num_samples] * len(records), first
    assert all(any(text for text in a) for a in first), first
    assert first == again, "the same records and seed gave other answers"
    assert alone == first[:2], "a record's answers changed with its batch"
    assert first[0] != first[1], "ids 1 and '1' were sampled alike"
    return {
        "records": len(records),
        "answers": sum(len(a) for a in first),
        "tokens": sampler.tokens,
        "load_s": round(loaded, 2),
        "sample_s": round(time.monotonic() - started - loaded, 2),
    }


@pytest.mark.gpu
def test_vllm_samples_the_embedded_model_on_a_gpu(vllm):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    full_vllm_run(str(embedded_model_or_skip()))
