"""The `diagnose` part: why generate is where it is. Prefill alone (one new token), a bare decode
step of the model on a KV cache of mid length, transformers' sampling warpers on [sequences, vocab]
logits, and what is left (generate's own loop); against the card's decode bound, and generate's
decode rate against the vendor peak (`adg plan`'s decode factor).
"""

from __future__ import annotations

import logging
from typing import Any

from bench.gpu.generate import decode_bound, generate_once, sampling_config
from bench.gpu.run import Run
from bench.gpu.timing import free_memory, is_oom, ms, timed

log = logging.getLogger(__name__)


def diagnose(run: Run, shape: str) -> None:
    obj = run.objects[shape]
    res = run.shape_results(shape)
    batch = run.need(shape, "batch", "generate")
    model, fields = obj["model"], run.shapes[shape]
    chosen = res["generate"]["chosen"]
    max_new = chosen["max_new_tokens"]
    diag: dict[str, Any] = res.setdefault("diagnose", {"batch_size": batch})

    # Twice, the faster counts: the first call at a new shape can pay one-time costs.
    prefill = min(
        (generate_once(run, shape, batch, 1, {}, "prefill-only") for _ in range(2)),
        key=lambda r: r["seconds"],
    )
    diag["prefill_only"] = prefill
    step_generate = (chosen["seconds"] - prefill["seconds"]) / max(1, max_new - 1)
    diag["decode_step_generate_s"] = step_generate

    cfg = sampling_config(batch, max_new)
    seq = batch * cfg.num_samples
    context = chosen["prompt_tokens_max"] + max_new // 2
    vocab = fields["vocab_size"]
    try:
        diag["decode_step_model_s"] = model_step_seconds(model, seq, context, vocab)
        diag["decode_step_model_context"] = context
    except Exception as err:
        if not is_oom(err):
            raise
        diag["decode_step_model_s"] = None
        diag["decode_step_model_error"] = str(err)[:300]
    free_memory()
    diag["sampling_step_s"] = sampling_step_seconds(seq, vocab, cfg, model.device)
    free_memory()

    model_step = diag.get("decode_step_model_s")
    if model_step is not None:
        diag["generate_loop_overhead_step_s"] = step_generate - model_step - diag["sampling_step_s"]
    bound = decode_bound(run, shape, seq, chosen["prompt_tokens_max"], max_new, 0)
    diag["bound_step_s"] = bound["bound_step_s"]
    diag["bound_step_kind"] = bound["bound_step_kind"]
    diag["decode_step_fraction_of_bound"] = bound["bound_step_s"] / step_generate
    diag["prompt_padding_fraction"] = chosen["prompt_padding_fraction"]
    diag["kv_cache_bytes_at_end"] = chosen["kv_cache_bytes_at_end"]
    # generate's decode rate against the vendor peak: adg plan's decode factor
    peak = run.results["ceilings"]["vendor_peak_flops"]
    decode_s = chosen["seconds"] - prefill["seconds"]
    p = res["parameters"]["generate"]
    diag["decode_plan_efficiency"] = (
        2 * p * chosen["new_tokens"] / decode_s / peak if peak and decode_s > 0 else None
    )
    parts = {
        "model forward": model_step,
        "sampling (temperature, top-p, multinomial)": diag["sampling_step_s"],
        "generate loop (the rest)": diag.get("generate_loop_overhead_step_s"),
    }
    known = {k: v for k, v in parts.items() if v is not None}
    diag["largest_share"] = max(known, key=lambda k: known[k]) if known else None
    log.info(
        "   %s decode step: generate %.1f ms = model %s + sampling %.1f ms + loop %s; "
        "bound %.1f ms (%s)",
        shape,
        1e3 * step_generate,
        ms(model_step),
        1e3 * diag["sampling_step_s"],
        ms(diag.get("generate_loop_overhead_step_s")),
        1e3 * bound["bound_step_s"],
        bound["bound_step_kind"],
    )


def model_step_seconds(model, sequences: int, context: int, vocab: int, steps: int = 8) -> float:
    """One bare decode step of the model (no sampling, no generate loop): `sequences` rows on a
    dynamic KV cache already holding `context` positions (random keys and values, so no prefill's
    activations are needed), the mean of `steps` steps after one warm-up."""
    import warnings

    import torch
    from transformers import DynamicCache

    config = model.config
    shape = (sequences, config.num_key_value_heads, context, config.head_dim)
    dtype, device = next(model.parameters()).dtype, model.device
    gen = torch.Generator(device=device).manual_seed(0)
    cache = DynamicCache()
    for layer in range(config.num_hidden_layers):
        k = torch.randn(shape, dtype=dtype, device=device, generator=gen)
        cache.update(k, torch.randn(shape, dtype=dtype, device=device, generator=gen), layer)
    nxt = torch.randint(3, vocab, (sequences, 1), device=device, generator=gen)

    def steps_():
        for _ in range(steps):
            model(input_ids=nxt, past_key_values=cache, use_cache=True)

    # `past_key_values` is what the device's transformers (5.17) takes; later ones call it
    # `cache` and warn about the old name.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model(input_ids=nxt, past_key_values=cache, use_cache=True)
        _, t = timed(steps_)
    return t / steps


def sampling_step_seconds(sequences: int, vocab: int, cfg, device, steps: int = 8) -> float:
    """One sampling step as transformers' generate does it (temperature and top-p warpers,
    softmax, multinomial) on random [sequences, vocab] float32 logits."""
    import torch
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = LogitsProcessorList(
        [TemperatureLogitsWarper(cfg.temperature), TopPLogitsWarper(cfg.top_p)]
    )
    gen = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(sequences, vocab, device=device, generator=gen, dtype=torch.float32)
    prefix = torch.zeros(sequences, 1, dtype=torch.long, device=device)

    def steps_():
        for _ in range(steps):
            scores = warpers(prefix, logits.clone())
            torch.multinomial(torch.softmax(scores, dim=-1), 1)

    steps_()
    _, t = timed(steps_)
    return t / steps
