"""What a run reports: the per-shape summary kept in the results JSON, and the log's table (a
Markdown row per measurement, then the end-to-end lines and the parts that did not run).
"""

from __future__ import annotations

from typing import Any

from bench.gpu.timing import gib, ms, pct


def summary(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shape, res in results["shapes"].items():
        gen = res.get("generate", {})
        chosen = gen.get("chosen") or {}
        e2e = res.get("end_to_end") or {}
        out[shape] = {
            "chosen_batch_size": gen.get("chosen_batch_size"),
            "generate_tokens_per_s": chosen.get("tokens_per_s"),
            "generate_mfu": chosen.get("mfu"),
            "generate_fraction_of_decode_bound": chosen.get("fraction_of_bound"),
            "static_cache_speedup": (gen.get("static") or {}).get("speedup_over_dynamic"),
            "examples_per_s": e2e.get("examples_per_s"),
            "paper_examples_per_s_per_gpu": e2e.get("paper_examples_per_s_per_gpu"),
            "score_mfu": (res.get("score") or {}).get("mfu"),
            "score_speedup_over_per_answer_loop": (res.get("score_per_answer_loop") or {}).get(
                "speedup_batched"
            ),
            "peak_bytes": {
                stage: (res.get(stage) or {}).get("peak_bytes")
                for stage in ("build", "embed", "score", "train", "evaluate")
            }
            | {"generate": chosen.get("peak_bytes")},
        }
    return out


def table(results: dict[str, Any]) -> list[str]:
    """The log's summary: a Markdown table of every measured row, then the end-to-end lines."""
    dev, c = results.get("device", {}), results.get("ceilings", {})
    lines = [
        "",
        f"# bench/gpu  {results['date']}  {dev.get('name')}  torch {dev.get('torch')}  "
        f"transformers {dev.get('transformers')}"
        + ("  (DRY RUN: tiny models on CPU)" if results["dry_run"] else ""),
        f"matmul {c.get('matmul_flops', 0) / 1e12:.3g} TFLOP/s, copy "
        f"{c.get('copy_bytes_per_s', 0) / 1e12:.3g} TB/s (measured here); {results['command']}",
        "",
        "| shape | stage | batch | seconds | tokens/s | MFU | of bound | peak memory | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def add(shape: str, stage: str, batch: Any = "", seconds: str = "", tps: str = "",
            mfu: str = "", bound: str = "", peak: str = "", note: str = "") -> None:  # fmt: skip
        cells = (shape, stage, batch, seconds, tps, mfu, bound, peak, note)
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")

    def gen_row(shape: str, label: str, row: dict[str, Any], batch: Any, note: str = "") -> None:
        add(shape, label, batch, f"{row['seconds']:.2f}", f"{row['tokens_per_s']:.0f}",
            pct(row["mfu"]), pct(row["fraction_of_bound"]), gib(row["peak_bytes"]),
            note)  # fmt: skip

    for shape, res in results["shapes"].items():
        gen = res.get("generate", {})
        for row in gen.get("sweep", []):
            if row.get("status") != "ok":
                why = row.get("reason") or row.get("error", "")
                add(shape, "generate", row["batch_size"], note=f"{row['status']}: {why}")
                continue
            default = " (default)" if row["batch_size"] == gen.get("chosen_batch_size") else ""
            gen_row(shape, "generate, dynamic cache", row, f"{row['batch_size']}{default}")
        if gen.get("static"):
            row = gen["static"]
            note = f"{row['speedup_over_dynamic']:.2f}x dynamic"
            gen_row(shape, "generate, static cache", row, row["batch_size"], note)
        if gen.get("static_compiled"):
            row = gen["static_compiled"]["second_call"]
            note = f"compile {gen['static_compiled']['compile_s']:.0f} s"
            gen_row(shape, "generate, static + compiled", row, row["batch_size"], note)
        for stage in ("embed", "score"):
            row = res.get(stage)
            if row:
                add(shape, stage, row["instructions"], f"{row['seconds']:.2f}",
                    f"{row['tokens_per_s']:.0f}", pct(row["mfu"]), peak=gib(row["peak_bytes"]),
                    note=f"padded/real {row['padded_over_real']:.2f}")  # fmt: skip
        loop = res.get("score_per_answer_loop")
        if loop:
            add(shape, "score, per-answer loop", loop["records"], f"{loop['seconds']:.2f}",
                peak=gib(loop["peak_bytes"]),
                note=f"batched {loop['speedup_batched']:.1f}x faster")  # fmt: skip
        diag = res.get("diagnose")
        if diag:
            loop_s = diag.get("generate_loop_overhead_step_s")
            note = (
                f"model {ms(diag.get('decode_step_model_s'))}, sampling "
                f"{ms(diag['sampling_step_s'])}, loop {ms(loop_s)}"
            )
            add(shape, f"one decode step at batch {diag['batch_size']}",
                seconds=ms(diag["decode_step_generate_s"]),
                bound=pct(diag["decode_step_fraction_of_bound"]), note=note)  # fmt: skip
        for stage in ("train", "train_zero2"):
            row = res.get(stage)
            if row:
                add(shape, f"{stage} ({row['steps']} steps, {row['batch']})",
                    seconds=f"{row['seconds']:.2f}", tps=f"~{row['tokens_per_s_approx']:.0f}",
                    peak=gib(row["peak_bytes"]),
                    note=f"loss {row['first_loss']:.3g} -> {row['final_loss']:.3g}")  # fmt: skip
        if res.get("evaluate"):
            ev = res["evaluate"]
            add(shape, "evaluate (lm-eval, local tasks)", seconds=f"{ev['seconds']:.2f}",
                peak=gib(ev["peak_bytes"]))  # fmt: skip
    lines.append("")
    where = "CPU (dry run)" if results["dry_run"] else "GPU"
    for shape, res in results["shapes"].items():
        e2e = res.get("end_to_end")
        if e2e:
            lines.append(
                f"{shape}: {e2e['examples_per_s']:.2f} examples/s end to end on one {where} "
                f"(generate {100 * e2e['generate_share']:.0f}% of it); the paper: "
                f"{e2e['paper_examples_per_s_per_gpu']:.2f} per GPU with vLLM. HF decode, measured "
                "here, is a floor; vLLM was not measured."
            )
    for p in results["parts"]:
        if p["status"] != "ok":
            lines.append(f"part {p['name']}: {p['status']} ({p.get('reason') or p.get('error')})")
    return lines
