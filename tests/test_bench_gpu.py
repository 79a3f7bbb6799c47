"""bench/gpu (`python -m bench.gpu`) without a GPU: `--dry-run` runs the same code as the GPU
run (tiny models of the same two families, on CPU), so the benchmark is known to work before a lent
GPU's minutes are spent.

`make test` runs `--dry-run --quick` in this process (about 10 s of CPU: one batch size, six new
tokens, one training step, lm-eval left out) and the whole `--dry-run`, lm-eval included; the
fast tier runs the time-guard check (a 3 s budget, so most parts are skipped). The factors writer
is checked on what the quick run writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO, sample_records, write_jsonl

from bench.gpu import cli, device, generate, report, settings
from bench.gpu.factors import write_factors

SHAPES = ("llama3-8b", "smollm2-135m")


def run_dry(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "gpu.json"
    args = ["--dry-run", "--output", str(out), "--workdir", str(tmp_path / "work"), *extra]
    assert cli.main(args) == 0
    return json.loads(out.read_text())


def parts(results: dict) -> dict[str, dict]:
    return {p["name"]: p for p in results["parts"]}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:
    return run_dry(tmp_path_factory.mktemp("gpu-quick"), "--quick")


@pytest.mark.slow
def test_quick_dry_run_measures_every_stage_through_the_library(quick):
    status = {name: p["status"] for name, p in parts(quick).items()}
    not_run = {
        "smollm2-135m.evaluate": "--quick",
        "smollm2-135m.train_zero2": "CUDA GPU",
        "smollm2-135m.compiled": "GPU only",
        "smollm2-135m.vllm": "CUDA GPU",
    }
    for name, why in not_run.items():
        assert status.pop(name) == "skipped" and why in parts(quick)[name]["reason"]
    assert set(status.values()) == {"ok"}, status
    assert quick["dry_run"] and quick["device"]["plan_gpu"] is None
    for shape in SHAPES:
        res = quick["shapes"][shape]
        fields = settings.DRY_SHAPES[shape]
        # the tokenizer covers the model's vocabulary, so every sampled id decodes
        assert (
            res["tokenizer"]["padded_to"] == fields["vocab_size"] > res["tokenizer"]["bpe_tokens"]
        )
        row = res["generate"]["chosen"]
        # K answers per instruction, each forced to the cap
        assert row["sequences"] == row["batch_size"] * 5
        assert row["new_tokens"] == row["sequences"] * settings.QUICK_SIZES.max_new_tokens
        records = [json.loads(line) for line in Path(row["output"]).read_text().splitlines()]
        assert len(records) == row["batch_size"]
        assert all(len(r["generated_answers"]) == 5 for r in records)
        assert res["score"]["texts"] == row["sequences"] and res["score"]["real_tokens"] > 0
        assert res["embed"]["real_tokens"] > 0
        assert res["score_per_answer_loop"]["records"] == 1
        assert res["generate"]["static"]["new_tokens"] == row["new_tokens"]
        diag = res["diagnose"]
        assert diag["sampling_step_s"] > 0 and diag["decode_step_model_s"] > 0
        e2e = res["end_to_end"]
        assert e2e["examples_per_s"] > 0 and e2e["paper_examples_per_s_per_gpu"] == 8.10 / 4
    train = quick["shapes"]["smollm2-135m"]["train"]
    assert train["steps"] == 1 and Path(train["output_dir"], "config.json").is_file()
    assert "vLLM was not measured" in " ".join(report.table(quick))


def test_a_short_budget_skips_parts_and_still_writes_the_results(tmp_path):
    results = run_dry(tmp_path, "--quick", "--budget-s", "3", "--shapes", "smollm2-135m")
    found = parts(results)
    assert found["env"]["status"] == "ok"
    skipped = [p for p in found.values() if p["status"] == "skipped"]
    assert skipped and all(p["reason"] for p in skipped)
    assert any(p["reason"].startswith("time:") for p in skipped)
    assert "summary" in results


def test_sweep_prediction_and_device_names():
    done = [
        {"batch_size": 8, "peak_bytes": 1000 + 8 * 50, "seconds": 2.0},
        {"batch_size": 32, "peak_bytes": 1000 + 32 * 50, "seconds": 4.0},
    ]
    assert generate.memory_slope(done) == (1000, 50)
    assert generate.predict(done, 64, weights=900) == {"peak_bytes": 1000 + 64 * 50, "seconds": 8.0}
    # one point: linear from the weights
    assert generate.predict(done[:1], 16, weights=1000)["peak_bytes"] == 1000 + 16 * 50
    assert device.vendor_key("NVIDIA H200") == "h200"
    assert device.vendor_key("NVIDIA H100 80GB HBM3") == "h100"
    assert device.vendor_key("NVIDIA A100-SXM4-80GB") == "a100"
    assert device.vendor_key("NVIDIA GeForce RTX 4090") is None


@pytest.mark.slow
def test_factors_are_written_from_a_gpu_result_only(quick, tmp_path, monkeypatch):
    factors = tmp_path / "gpu_factors.json"
    factors.write_text(json.dumps({"devices": {}}))
    dry = tmp_path / "dry.json"
    dry.write_text(json.dumps(quick))
    with pytest.raises(SystemExit, match="dry run"):
        write_factors(dry, factors)
    # The shape of a GPU result, as the writer reads it (test data, not a measurement).
    result = {
        "dry_run": False,
        "date": "2000-01-01 00:00:00 UTC",
        "command": "python -m bench.gpu --output x.json",
        "device": {"name": "NVIDIA H200", "plan_gpu": "h200"},
        "shapes": {
            "llama3-8b": {
                "score": {"plan_efficiency": 0.5},
                "diagnose": {"decode_plan_efficiency": 0.05},
            }
        },
    }
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(result))
    write_factors(path, factors)
    entry = json.loads(factors.read_text())["devices"]["h200"]
    assert entry == {
        "forward": 0.5,
        "decode": 0.05,
        "device": "NVIDIA H200",
        "date": "2000-01-01 00:00:00 UTC",
        "shape": "llama3-8b",
        "command": "python -m bench.gpu --output x.json",
    }
    # adg plan takes them, and says where they come from
    from adg.planning.plan import format_plan, make_plan

    monkeypatch.setenv("ADG_GPU_FACTORS", str(factors))
    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(4))
    model = tmp_path / "model"
    from helpers import save_tiny

    save_tiny(model)
    plan = make_plan(str(pool), str(model), gpu="h200")
    a = plan["assumptions"]
    assert (a["efficiency_forward"], a["efficiency_decode"]) == (0.5, 0.05)
    assert "measured by `python -m bench.gpu` on NVIDIA H200, 2000-01-01" in a["efficiency_source"]
    assert "measured by `python -m bench.gpu`" in "\n".join(format_plan(plan))
    # another card keeps the assumed factors
    assert (
        "assumed"
        in make_plan(str(pool), str(model), gpu="a100")["assumptions"]["efficiency_source"]
    )


@pytest.mark.slow
def test_full_dry_run_with_lm_eval(tmp_path):
    results = run_dry(tmp_path)
    found = parts(results)
    assert found["smollm2-135m.evaluate"]["status"] == "ok", found["smollm2-135m.evaluate"]
    metrics = results["shapes"]["smollm2-135m"]["evaluate"]["metrics"]
    assert {"adg_tiny_mc/acc", "adg_tiny_gen/exact_match,first-number"} <= set(metrics)
    for shape in SHAPES:
        sweep = results["shapes"][shape]["generate"]["sweep"]
        assert [r["batch_size"] for r in sweep] == list(settings.DRY_SIZES.batches[shape])
    assert REPO.joinpath("data", "gpu_factors.json").is_file()
