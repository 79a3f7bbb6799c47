"""`adg plan`: token counts equal the tokenizer's; FLOPs, time and storage follow the formula."""

import pytest
from helpers import sample_records, write_jsonl
from transformers import AutoTokenizer

from adg.cli import main
from adg.plan import count_parameters, make_plan
from adg.prompts import alpaca_prompt


def test_token_counts_equal_the_tokenizer(tmp_path, tiny_model_dir):
    recs = sample_records(7)
    pool = write_jsonl(tmp_path / "pool.jsonl", recs)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    plan = make_plan(str(pool), str(tiny_model_dir), gpu="h100", num_samples=3, max_new_tokens=10)
    prompt = sum(len(tok(alpaca_prompt(r))["input_ids"]) for r in recs)  # BOS too, as generated
    instr = sum(len(tok(r["instruction"])["input_ids"]) for r in recs)
    stages = {s.stage: s for s in plan["stages"]}
    assert stages["generate (prefill)"].tokens == pytest.approx(prompt)
    assert stages["generate (decode)"].tokens == 7 * 3 * 10
    assert stages["embed"].tokens == pytest.approx(instr)
    assert stages["score"].tokens == pytest.approx(3 * (instr + 7 * 11))
    per_block, blocks, _head, hidden = count_parameters(str(tiny_model_dir))
    assert (blocks, hidden) == (4, 32)
    assert stages["embed"].flops == pytest.approx(2 * per_block * 3 * instr)
    a = plan["assumptions"]
    want_s = stages["embed"].flops / (a["peak_flops"] * a["efficiency_forward"])
    assert stages["embed"].seconds == pytest.approx(want_s)
    assert plan["storage"]["embeddings.npy"] == 7 * 32 * 4 + 128


def test_cli_prints_table(tmp_path, tiny_model_dir, capsys):
    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(5))
    args = ["plan", "--input", str(pool), "--model", str(tiny_model_dir), "--gpu", "a100"]
    assert main([*args, "--gpus", "4"]) == 0
    out = capsys.readouterr().out
    assert "| generate (decode) |" in out and "GPU-hours" in out and "assumed" in out
    assert "| embeddings.npy |" in out
