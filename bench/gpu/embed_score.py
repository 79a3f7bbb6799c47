"""The `embed_score` part: `adg.stages.embed.embed_file` on the instructions and
`adg.stages.score.score_file` with the batched `HiddenStateEncoder` on the generated answers
(tokens, padding, MFU, the `adg plan` forward factor), bench/baselines/reference_scoring.py's
per-answer loop on a sample of the same records, and examples/s end to end beside the paper's.
"""

from __future__ import annotations

import logging
from typing import Any

from bench.gpu.run import Run
from bench.gpu.settings import PAPER_EXAMPLES_PER_S, PAPER_GPUS
from bench.gpu.timing import peak_memory, timed

log = logging.getLogger(__name__)


def embed_score(run: Run, shape: str) -> None:
    from adg.io.reading import read_records
    from adg.stages.embed import embed_file
    from adg.stages.score import score_file
    from bench.baselines import reference_scoring as ref

    obj = run.objects[shape]
    res = run.shape_results(shape)
    generated = run.need(shape, "generated", "generate")
    batch = obj["batch"]
    enc, tok, model = obj["encoder"], obj["tokenizer"], obj["model"]
    mm = run.results["ceilings"]["matmul_flops"]
    peak = run.results["ceilings"]["vendor_peak_flops"]
    p_read = res["parameters"]["read"]
    pool = run.work / f"{shape}-pool-{batch}.jsonl"

    # Warm-up: the encoder's first passes (kernels, allocator) stay out of the stage times.
    enc.instruction_vectors(["Name a colour."])
    enc.answers_batch(["Name a colour."], [["Blue.", "Red."]])
    embed: dict[str, Any] = {"instructions": batch}
    enc.real_tokens = enc.padded_tokens = 0
    with peak_memory(embed):
        _, t_embed = timed(lambda: embed_file(pool, run.work / f"{shape}-emb.npy", encoder=enc))
    embed.update(seconds=round(t_embed, 4), **token_stats(enc, p_read, t_embed, mm, peak))

    score: dict[str, Any] = {"instructions": batch}
    scored = run.work / f"{shape}-scored.jsonl"
    scored.unlink(missing_ok=True)
    enc.real_tokens = enc.padded_tokens = 0
    with peak_memory(score):
        _, t_score = timed(lambda: score_file(generated, scored, encoder=enc))
    score.update(seconds=round(t_score, 4), **token_stats(enc, p_read, t_score, mm, peak))
    records = read_records(generated)
    answers = [a for r in records for a in r["generated_answers"]]
    answer_tokens = [len(x) for x in tok(answers, add_special_tokens=False)["input_ids"]]
    score["texts"] = len(answers)
    score["answer_tokens_mean"] = sum(answer_tokens) / len(answer_tokens)
    score["answer_tokens_max"] = max(answer_tokens)

    n_loop = min(run.sizes.loop_records[shape], len(records))
    loop: dict[str, Any] = {"records": n_loop}
    with peak_memory(loop):
        _, t_loop = timed(lambda: [ref.score_record(tok, model, r) for r in records[:n_loop]])
    loop["seconds"] = round(t_loop, 4)
    loop["seconds_per_record"] = t_loop / n_loop
    loop["batched_seconds_per_record"] = t_score / batch
    loop["speedup_batched"] = loop["seconds_per_record"] / (t_score / batch)

    t_gen = res["generate"]["chosen"]["seconds"]
    e2e = {
        "instructions": batch,
        "generate_s": t_gen,
        "embed_s": t_embed,
        "score_s": t_score,
        "examples_per_s": batch / (t_gen + t_embed + t_score),
        "generate_share": t_gen / (t_gen + t_embed + t_score),
        "paper_examples_per_s_per_gpu": PAPER_EXAMPLES_PER_S / PAPER_GPUS,
        "generate_path": "HF transformers (the cluster's vLLM path was not measured: a floor)",
    }
    e2e["ratio_to_paper"] = e2e["examples_per_s"] / e2e["paper_examples_per_s_per_gpu"]
    res.update(embed=embed, score=score, score_per_answer_loop=loop, end_to_end=e2e)
    log.info(
        "   %s end to end: %.2f examples/s on one %s (paper: %.2f per GPU, vLLM); "
        "generate %.0f%% of it",
        shape,
        e2e["examples_per_s"],
        run.device,
        e2e["paper_examples_per_s_per_gpu"],
        100 * e2e["generate_share"],
    )


def token_stats(
    enc, params: int, seconds: float, matmul: float, peak: float | None
) -> dict[str, Any]:
    useful = 2 * params * enc.real_tokens
    return {
        "real_tokens": enc.real_tokens,
        "padded_tokens": enc.padded_tokens,
        "padded_over_real": enc.padded_tokens / max(1, enc.real_tokens),
        "tokens_per_s": enc.real_tokens / seconds,
        "mfu": useful / seconds / matmul,
        "plan_efficiency": useful / seconds / peak if peak else None,
    }
