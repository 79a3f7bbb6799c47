"""`adg plan`: token counts equal the tokenizer's; FLOPs, time and storage follow the formula."""

import pytest
from helpers import sample_records, write_jsonl
from transformers import AutoTokenizer

from adg.cli import main
from adg.method.prompts import alpaca_prompt
from adg.planning.plan import count_parameters, make_plan


def test_token_counts_equal_the_tokenizer(tmp_path, tiny_model_dir, tiny):
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
    # Parameters counted by hand from the tiny model's shape (helpers.build_model: hidden 32,
    # MLP 64, 4 heads of 8, 2 KV heads, 4 blocks, head tied to the embedding) and from the loaded
    # model's real tensors, not from count_parameters (the code under test).
    _, model = tiny
    h, mlp, kv = 32, 64, 2 * 8
    per_block = 2 * h * h + 2 * h * kv + 3 * h * mlp + 2 * h  # q, o; k, v; gate, up, down; norms
    assert per_block == 9280
    layers = model.get_decoder().layers
    assert [sum(p.numel() for p in b.parameters()) for b in layers] == [per_block] * 4
    head = model.config.vocab_size * h
    assert model.lm_head.weight.numel() == head
    full, read = 4 * per_block + head, 3 * per_block  # embed/score read block 3's input: no head
    assert plan["parameters"] == {"full": full, "read": read}
    assert stages["generate (prefill)"].flops == pytest.approx(2 * full * prompt)
    assert stages["generate (decode)"].flops == pytest.approx(2 * full * 7 * 3 * 10)
    assert stages["embed"].flops == pytest.approx(2 * read * instr)
    assert stages["score"].flops == pytest.approx(2 * read * 3 * (instr + 7 * 11))
    assert count_parameters(str(tiny_model_dir)) == (per_block, 4, head, h)
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
