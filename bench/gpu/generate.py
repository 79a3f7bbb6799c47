"""The generate parts: `adg.stages.generate.generate_file` with an `HFSampler` over the in-memory
model, the batch-size sweep (each size predicted from the ones that ran, for memory and time) and
the default it picks, the card's decode bound, the static KV cache (eager, and compiled), and the
vLLM sampler's `gpu` test where vLLM is importable.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

from bench.gpu.models import pool_records, save_model, write_pool
from bench.gpu.run import Run
from bench.gpu.settings import REPO
from bench.gpu.timing import free_memory, gib, is_oom, peak_memory, timed

log = logging.getLogger(__name__)


def sampling_config(batch_size: int, max_new_tokens: int):
    from adg.config import SamplingConfig

    # The published settings are SamplingConfig's defaults (K=5, T=1.4, top-p 0.9).
    return SamplingConfig(batch_size=batch_size, max_new_tokens=max_new_tokens, seed=0)


def generate_once(
    run: Run, shape: str, batch: int, max_new_tokens: int, options: dict[str, Any], tag: str
) -> dict[str, Any]:
    """One `generate_file` call on `batch` records in one batch; its measurements."""
    from adg.method.prompts import alpaca_prompt
    from adg.stages.generate import HFSampler, generate_file

    obj = run.objects[shape]
    res = run.shape_results(shape)
    tok, model = obj["tokenizer"], obj["model"]
    cfg = sampling_config(batch, max_new_tokens)
    sampler = obj.get("sampler")
    if sampler is None:
        sampler = obj["sampler"] = HFSampler(None, cfg, loaded=(tok, model))
    sampler.cfg = cfg
    sampler.generate_options = {"min_new_tokens": max_new_tokens, **options}
    pool = write_pool(run.work / f"{shape}-pool-{batch}.jsonl", batch)
    out = run.work / f"{shape}-generated-{batch}-{tag}.jsonl"
    out.unlink(missing_ok=True)
    before = sampler.tokens
    row: dict[str, Any] = {
        "batch_size": batch,
        "sequences": batch * cfg.num_samples,
        "variant": tag,
    }
    with peak_memory(row):
        _, seconds = timed(lambda: generate_file(pool, out, sampler=sampler))
    new_tokens = sampler.tokens - before
    lengths = [len(x) for x in tok([alpaca_prompt(r) for r in pool_records(batch)])["input_ids"]]
    prompt_mean, prompt_max = sum(lengths) / len(lengths), max(lengths)
    p = res["parameters"]["generate"]
    mm = run.results["ceilings"]["matmul_flops"]
    useful = 2 * p * (sum(lengths) + new_tokens)  # prompts once per instruction (vLLM shares)
    computed = 2 * p * (row["sequences"] * prompt_max + new_tokens)  # HF prefills K padded copies
    row.update(
        seconds=round(seconds, 3),
        max_new_tokens=max_new_tokens,
        new_tokens=new_tokens,
        tokens_per_s=new_tokens / seconds,
        instructions_per_s=batch / seconds,
        prompt_tokens_mean=prompt_mean,
        prompt_tokens_max=prompt_max,
        prompt_padding_fraction=1 - prompt_mean / prompt_max,
        kv_cache_bytes_at_end=row["sequences"]
        * (prompt_max + max_new_tokens)
        * res["kv_bytes_per_token"],
        mfu=useful / seconds / mm,
        mfu_computed=computed / seconds / mm,
        output=str(out),
    )
    bound = decode_bound(run, shape, row["sequences"], prompt_max, max_new_tokens, sum(lengths))
    row.update(bound)
    row["bound_tokens_per_s"] = new_tokens / bound["bound_s"]
    row["fraction_of_bound"] = bound["bound_s"] / seconds
    log.info(
        "   %s generate b=%d (%s): %.2f s, %.0f tokens/s, MFU %.1f%%, %.0f%% of bound, peak %s",
        shape,
        batch,
        tag,
        seconds,
        row["tokens_per_s"],
        100 * row["mfu"],
        100 * (row["fraction_of_bound"] or 0),
        gib(row["peak_bytes"]),
    )
    return row


def decode_bound(
    run: Run, shape: str, sequences: int, context: int, new: int, prefill_tokens: int
) -> dict[str, Any]:
    """The card's floor for a generate call: each of the `new` steps reads the weights and the
    KV cache (as held: `context` positions per sequence at the start, left padding included)
    once at the measured copy bandwidth, or does 2·P·sequences FLOPs at the measured matmul
    rate, whichever is slower; the prompts are prefilled once (`prefill_tokens`, as vLLM does
    for K samples) at the matmul rate."""
    res = run.shape_results(shape)
    c = run.results["ceilings"]
    p = res["parameters"]["generate"]
    kv_mean = sequences * (context + new / 2) * res["kv_bytes_per_token"]
    memory = (p * res["dtype_bytes"] + kv_mean) / c["copy_bytes_per_s"]
    compute = 2 * p * sequences / c["matmul_flops"]
    step = max(memory, compute)
    return {
        "bound_step_s": step,
        "bound_step_kind": "memory" if memory >= compute else "compute",
        "bound_s": 2 * p * prefill_tokens / c["matmul_flops"] + new * step,
    }


def generate(run: Run, shape: str) -> None:
    """Warm-up, then the batch sweep; picks the default batch size."""
    import torch

    res = run.shape_results(shape)
    gen = res["generate"] = {"sweep": []}
    max_new = run.sizes.max_new_tokens
    generate_once(run, shape, 2, min(4, max_new), {}, "warmup")
    usable = None
    if run.device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        usable = 0.9 * (free + torch.cuda.memory_reserved())  # reserved: held by this process
        gen["memory_usable_bytes"] = usable
    reserve = run.reserve_after(f"{shape}.generate")
    done: list[dict[str, Any]] = []
    for batch in run.sizes.batches[shape]:
        predicted = predict(done, batch, res["weights_bytes"])
        if usable and predicted["peak_bytes"] and predicted["peak_bytes"] > usable:
            gen["sweep"].append(
                {
                    "batch_size": batch,
                    "status": "skipped",
                    "reason": (f"predicted peak {gib(predicted['peak_bytes'])} > {gib(usable)}"),
                }
            )
            break
        if predicted["seconds"] and run.budget.left() - reserve < predicted["seconds"]:
            gen["sweep"].append(
                {
                    "batch_size": batch,
                    "status": "skipped",
                    "reason": (
                        f"time: predicted {predicted['seconds']:.0f} s, "
                        f"{run.budget.left() - reserve:.0f} s left before the later parts"
                    ),
                }
            )
            break
        oom = None
        try:
            row = generate_once(run, shape, batch, max_new, {}, "dynamic")
        except Exception as err:
            if not is_oom(err):
                raise
            oom = str(err)[:300]
        if oom is not None:  # outside the handler: its traceback holds the tensors
            free_memory()
            gen["sweep"].append({"batch_size": batch, "status": "oom", "error": oom})
            break
        row["status"] = "ok"
        row["predicted_peak_bytes"] = predicted["peak_bytes"]
        done.append(row)
        gen["sweep"].append(row)
    if not done:
        raise RuntimeError("no batch size of the sweep ran")
    best = max(r["tokens_per_s"] for r in done)
    chosen = min(
        (r for r in done if r["tokens_per_s"] >= 0.95 * best), key=lambda r: r["batch_size"]
    )
    gen["chosen_batch_size"] = chosen["batch_size"]
    gen["chosen"] = chosen
    gen["rule"] = "smallest batch within 5% of the best tokens/s among the sizes that ran"
    slope = memory_slope(done)
    if slope and usable:
        base, per_instruction = slope
        gen["memory_per_instruction_bytes"] = per_instruction
        gen["memory_base_bytes"] = base
        gen["largest_fitting_batch_size"] = int((usable - base) // per_instruction)
    run.objects[shape]["generated"] = Path(chosen["output"])
    run.objects[shape]["batch"] = chosen["batch_size"]


def predict(done: list[dict[str, Any]], batch: int, weights: int) -> dict[str, float | None]:
    """Peak memory and seconds of the next sweep size from the sizes that ran: memory linear in
    the batch (through the two largest points, or from the weights), time at most proportional."""
    if not done:
        return {"peak_bytes": None, "seconds": None}
    last = done[-1]
    slope = memory_slope(done)
    if slope:
        base, per = slope
        peak = base + per * batch
    elif last["peak_bytes"] is not None:
        peak = weights + (last["peak_bytes"] - weights) * batch / last["batch_size"]
    else:
        peak = None
    return {"peak_bytes": peak, "seconds": last["seconds"] * batch / last["batch_size"]}


def memory_slope(done: list[dict[str, Any]]) -> tuple[float, float] | None:
    rows = [r for r in done if r.get("peak_bytes") is not None]
    if len(rows) < 2 or rows[-1]["batch_size"] == rows[-2]["batch_size"]:
        return None
    a, b = rows[-2], rows[-1]
    per = (b["peak_bytes"] - a["peak_bytes"]) / (b["batch_size"] - a["batch_size"])
    if per <= 0:
        return None
    return b["peak_bytes"] - per * b["batch_size"], per


def static_cache(run: Run, shape: str, compiled: bool = False) -> str | None:
    """generate at the chosen batch with a static KV cache (eager), or static and compiled
    (transformers compiles the forward itself for a static cache on a GPU)."""
    res = run.shape_results(shape)
    batch = run.need(shape, "batch", "generate")
    max_new = res["generate"]["chosen"]["max_new_tokens"]
    if compiled:
        if run.device != "cuda":
            return "transformers compiles generate's forward on a GPU only"
        options = {"cache_implementation": "static"}
        first = generate_once(run, shape, batch, max_new, options, "static-compiled-first")
        second = generate_once(run, shape, batch, max_new, options, "static-compiled")
        res.setdefault("generate", {})["static_compiled"] = {
            "first_call": first,
            "second_call": second,
            "compile_s": first["seconds"] - second["seconds"],
            "speedup_over_dynamic": res["generate"]["chosen"]["seconds"] / second["seconds"],
        }
        return None
    options = {"cache_implementation": "static", "disable_compile": True}
    row = generate_once(run, shape, batch, max_new, options, "static")
    row["speedup_over_dynamic"] = res["generate"]["chosen"]["seconds"] / row["seconds"]
    res["generate"]["static"] = row
    return None


def vllm(run: Run, shape: str) -> str | None:
    """The vLLM sampler's `gpu` test (tests/test_vllm_sampler.py, `full_vllm_run`): the
    project's `VLLMSampler` with a real engine on the saved model, the same records sampled
    twice and alone, answers compared."""
    if run.device != "cuda":
        return "vLLM needs a CUDA GPU"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed here (the generate image carries it)"
    # The test module imports tests/helpers.py as `helpers`, as pytest's rootdir makes it.
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from test_vllm_sampler import full_vllm_run

    entry = full_vllm_run(str(save_model(run, shape)))
    entry["vllm_version"] = importlib.metadata.version("vllm")
    run.shape_results(shape)["vllm"] = entry
    return None
