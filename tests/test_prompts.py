"""Prompt format `auto`: one format per pool (chat when any record has a system prompt or earlier
turns, else Alpaca), a model without a chat template refused before any model work, the model's
template read from its files (local, s3://), and training rendering the subset in one format."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import failed_local_run, sample_records, write_jsonl

from adg.cli import main
from adg.errors import InputError
from adg.io.models import has_chat_template
from adg.method.prompts import alpaca_prompt, build_prompt, resolve_prompt_format
from adg.stages.train import encode_all

SYSTEM = "You are terse."


def plain(n: int) -> list[dict]:
    return [{"id": i, **r} for i, r in enumerate(sample_records(n))]


def never() -> bool:
    raise AssertionError("the template is asked about only when chat is the answer")


def test_auto_is_alpaca_for_plain_pools_and_chat_for_any_conversation():
    pool = plain(4)
    assert resolve_prompt_format("auto", pool, never) == "alpaca"
    mixed = [*pool[:2], {**pool[2], "system": SYSTEM}, pool[3]]
    assert resolve_prompt_format("auto", mixed, lambda: True) == "chat"
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert resolve_prompt_format("auto", [*pool, {**pool[0], "history": turns}], lambda: True) == (
        "chat"
    )
    assert resolve_prompt_format("chat", pool, lambda: True) == "chat"


def test_a_pool_the_format_or_model_cannot_render_is_one_line_naming_the_record():
    mixed = [*plain(2), {**plain(3)[2], "system": SYSTEM}]
    with pytest.raises(InputError) as err:
        resolve_prompt_format("auto", mixed, lambda: False, "models/base")
    text = str(err.value)
    assert "\n" not in text and text.startswith("record 2: a conversation with a system prompt")
    assert "model models/base has none" in text
    with pytest.raises(
        InputError, match="record 2: a conversation with a system prompt; the alpaca"
    ):
        resolve_prompt_format("alpaca", mixed, never)
    with pytest.raises(InputError, match="has no chat template"):
        resolve_prompt_format("chat", plain(2), lambda: False)
    with pytest.raises(InputError, match="unknown prompt format"):
        resolve_prompt_format("vicuna", plain(2), never)


def test_a_prompt_is_never_built_in_the_unresolved_auto_format():
    # A sampler called directly with the default config (as the vLLM image check once did) is
    # told what to do, not that "auto" is unknown.
    with pytest.raises(InputError, match="'auto' is decided for the whole pool"):
        build_prompt(plain(1)[0], "auto")


@pytest.fixture
def templateless(tiny_model_dir, tmp_path):
    """The tiny model with its chat template removed (its files, as a base model ships)."""
    folder = tmp_path / "base-model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data.pop("chat_template", None)
    config.write_text(json.dumps(data))
    return folder


def test_the_template_is_read_from_the_models_files(tiny_model_dir, templateless):
    from transformers import AutoTokenizer

    assert has_chat_template(tiny_model_dir) is True
    assert has_chat_template(templateless) is False
    # What transformers itself loads agrees.
    assert AutoTokenizer.from_pretrained(tiny_model_dir).chat_template
    assert not AutoTokenizer.from_pretrained(templateless).chat_template


def test_the_template_of_an_s3_model_without_downloading_it(bucket, tiny_model_dir, templateless):
    from adg.io import storage

    for name, folder in (("chat", tiny_model_dir), ("base", templateless)):
        for path in folder.iterdir():
            if path.name != "model.safetensors":  # the weights are never needed here
                storage.upload(path, f"s3://{bucket}/models/{name}/{path.name}")
    assert has_chat_template(f"s3://{bucket}/models/chat") is True
    assert has_chat_template(f"s3://{bucket}/models/base") is False


def test_training_renders_the_subset_in_one_format(tiny):
    tokenizer, _ = tiny
    pool = plain(3)
    mixed = [{**pool[0], "system": SYSTEM}, pool[1], pool[2]]
    alpaca_ids = tokenizer(alpaca_prompt(pool[1]), add_special_tokens=True)["input_ids"]
    (_, plain_ex, _), _ = encode_all(pool, tokenizer, 2048)  # auto: all plain -> alpaca
    assert plain_ex["input_ids"][: len(alpaca_ids)] == alpaca_ids
    (_, chat_ex, _), _ = encode_all(mixed, tokenizer, 2048)  # auto: one system prompt -> chat
    assert chat_ex["input_ids"][: len(alpaca_ids)] != alpaca_ids
    text = tokenizer.decode(chat_ex["input_ids"])
    assert pool[1]["instruction"] in text and "### Instruction" not in text
    with pytest.raises(InputError, match="alpaca prompt has no place"):
        encode_all(mixed, tokenizer, 2048, prompt_format="alpaca")


def test_adg_run_refuses_a_chat_pool_for_a_model_without_a_template(templateless, tmp_path, capsys):
    """Before any task starts (the embed task in particular): one line naming the record."""
    pool = plain(6)
    pool[4] = {**pool[4], "system": SYSTEM}
    src = write_jsonl(tmp_path / "pool.jsonl", pool)
    out = tmp_path / "run"
    args = ["run", "--input", str(src), "--model", str(templateless), "--budget", "2"]
    assert main([*args, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "record 4: a conversation with a system prompt" in err
    assert not (out / "kfp-local").exists()


@pytest.mark.kfp_local
def test_the_pipeline_refuses_it_right_after_ingest(templateless, tmp_path, capfd):
    """Through the pipeline (the path of a cluster run): curation_route fails, on CPU, after
    preflight and ingest; no shard, generate, embed or score task starts."""
    pool = plain(6)
    pool[3] = {**pool[3], "system": SYSTEM}
    src = write_jsonl(tmp_path / "pool.jsonl", pool)
    ran = failed_local_run(
        tmp_path / "root",
        ingest_input=str(src),
        model=str(templateless),
        select_budget=2,
        cluster_count=2,
    )
    out = capfd.readouterr()
    assert "preflight: record 3: a conversation with a system prompt needs the model's chat" in (
        out.out + out.err
    )
    assert {"preflight", "ingest"} <= ran
    assert not ran & {"shard", "generate", "embed", "score", "cluster", "select"}
