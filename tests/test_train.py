"""Fine-tuning: prompt masking token by token, padding, a real short training run, resume, CLI.

The runs train the tiny in-test Llama for a few steps on CPU (fp32, no DeepSpeed), then reload the
saved folder and generate from it. The integration test does two steps on the embedded SmolLM2.
"""

import json
from pathlib import Path

import pytest
from helpers import REPO, build_tokenizer, sample_records, write_jsonl

import adg.stages.train
from adg.cli import main
from adg.method.prompts import ALPACA_NO_INPUT, ALPACA_WITH_INPUT
from adg.stages.train import (
    DEEPSPEED_CONFIGS,
    IGNORE_INDEX,
    METRICS_FILE,
    SFTCollator,
    TrainConfig,
    configs_dir,
    curve_points,
    encode,
    launch,
    load_examples,
    resolve_deepspeed,
    run_checkpoint_dir,
    train,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models run far faster on one thread than on a few contended ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def fast_config(data: Path, out: Path, model: Path, **overrides) -> TrainConfig:
    """A few big-step updates on CPU: enough for the loss to fall on a handful of records."""
    values = {
        "data": str(data),
        "output_dir": str(out),
        "model": str(model),
        "max_steps": 12,
        "per_device_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.0,
        "model_max_length": 128,
        "save_steps": 1000,
    }
    values.update(overrides)
    return TrainConfig(**values)


# ----------------------------------------------------------------------------- masking


@pytest.mark.parametrize("extra", ["", "the context"])
def test_prompt_tokens_are_masked_token_by_token(tok, extra):
    record = {"instruction": "Name a colour.", "input": extra, "output": "Blue is a colour."}
    template = ALPACA_WITH_INPUT if extra else ALPACA_NO_INPUT
    prompt = template.format(instruction=record["instruction"], input=extra)
    prompt_ids = tok(prompt)["input_ids"]
    response_ids = tok(record["output"], add_special_tokens=False)["input_ids"]

    ex = encode(record, tok, max_length=512)

    assert ex["input_ids"] == prompt_ids + response_ids + [tok.eos_token_id]
    assert ex["input_ids"][0] == tok.bos_token_id
    assert len(ex["labels"]) == len(ex["input_ids"])
    for i, (token, label) in enumerate(zip(ex["input_ids"], ex["labels"], strict=True)):
        if i < len(prompt_ids):
            assert label == IGNORE_INDEX, f"prompt token {i} ({tok.decode([token])!r}) not masked"
        else:
            assert label == token, f"response token {i} not a target"
    learned = [t for t in ex["labels"] if t != IGNORE_INDEX]
    assert tok.decode(learned) == record["output"] + tok.eos_token
    assert tok.decode(ex["input_ids"], skip_special_tokens=True) == prompt + record["output"]


def test_blank_input_uses_the_prompt_without_input(tok):
    with_blank = encode({"instruction": "Say hi.", "input": "  ", "output": "hi"}, tok, 512)
    without = encode({"instruction": "Say hi.", "output": "hi"}, tok, 512)
    assert with_blank == without
    assert "### Input" not in tok.decode(without["input_ids"])


def test_long_records_are_cut_and_prompt_only_records_skipped(tok, tmp_path):
    record = {"instruction": "Explain.", "output": "word " * 400}
    n_prompt = len(tok(ALPACA_NO_INPUT.format(instruction="Explain."))["input_ids"])
    ex = encode(record, tok, max_length=n_prompt + 5)
    assert len(ex["input_ids"]) == n_prompt + 5
    assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert encode(record, tok, max_length=n_prompt) is None

    data = write_jsonl(tmp_path / "d.jsonl", [record, {"instruction": "x " * 300, "output": "y"}])
    examples, skipped = load_examples(data, tok, max_length=n_prompt + 5)
    assert (len(examples), skipped) == (1, 1)


def test_collator_pads_right_with_ignored_labels(tok):
    a = encode({"instruction": "A?", "output": "a"}, tok, 512)
    b = encode({"instruction": "A longer question here?", "output": "a longer answer"}, tok, 512)
    batch = SFTCollator(tok.pad_token_id)([a, b])
    width = len(b["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, width)
    pad = width - len(a["input_ids"])
    assert batch["input_ids"][0, -pad:].tolist() == [tok.pad_token_id] * pad
    assert batch["labels"][0, -pad:].tolist() == [IGNORE_INDEX] * pad
    assert batch["attention_mask"][0].tolist() == [1] * len(a["input_ids"]) + [0] * pad
    assert batch["attention_mask"][1].tolist() == [1] * width
    assert batch["labels"][1].tolist() == b["labels"]


def test_json_array_subsets_are_read(tok, tmp_path):
    records = sample_records(3)
    data = tmp_path / "top.json"
    data.write_text(json.dumps(records))
    examples, skipped = load_examples(data, tok, 2048)
    assert (len(examples), skipped) == (3, 0)
    assert examples[0] == encode(records[0], tok, 2048)


# ----------------------------------------------------------------------------- training


def test_train_lowers_the_loss_and_saves_a_model_that_generates(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "top.jsonl", sample_records(4))
    out = tmp_path / "tuned"

    metrics = train(fast_config(data, out, tiny_model_dir))

    assert metrics["steps"] == 12 and metrics["examples"] == 4 and metrics["skipped"] == 0
    curve = metrics["loss_curve"]
    assert [p["step"] for p in curve] == list(range(1, 13))
    assert curve[-1]["loss"] < curve[0]["loss"]
    assert json.loads((out / METRICS_FILE).read_text())["loss_curve"] == curve
    assert not (out / "checkpoints").exists(), "checkpoints are removed after a finished run"

    import torch

    from adg.io import models

    tokenizer, model = models.load(str(out), device="cpu")
    assert tokenizer.model_max_length == 128
    assert tokenizer.eos_token == "</s>"
    prompt = tokenizer("### Instruction:\nSay hi.\n\n### Response:\n", return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    assert isinstance(tokenizer.decode(generated[0]), str)


def test_restart_resumes_from_the_last_checkpoint(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "top.jsonl", sample_records(4))
    out, ckpt = tmp_path / "tuned", tmp_path / "ckpt"
    first = train(
        fast_config(data, out, tiny_model_dir, max_steps=4, save_steps=2, keep_checkpoints=True,
                    checkpoint_dir=str(ckpt))
    )  # fmt: skip
    assert first["resumed_from"] == ""
    assert (ckpt / "checkpoint-4").is_dir()

    # The pod comes back with a longer schedule in the same checkpoint folder.
    second = train(
        fast_config(data, out, tiny_model_dir, max_steps=6, save_steps=2, checkpoint_dir=str(ckpt))
    )
    assert second["resumed_from"].endswith("checkpoint-4")
    assert second["steps"] == 6
    assert [p["step"] for p in second["loss_curve"]][-2:] == [5, 6]
    assert not ckpt.exists()


@pytest.mark.subprocess
def test_two_workers_under_torchrun_share_the_data(tiny_model_dir, tmp_path):
    # On CPU torchrun's workers use gloo: the same launch path as one worker per GPU in a pod.
    data = write_jsonl(tmp_path / "top.jsonl", sample_records(4))
    cfg = fast_config(
        data, tmp_path / "tuned", tiny_model_dir, max_steps=3, per_device_batch_size=1
    )
    metrics = launch(cfg, num_gpus=2)
    assert metrics["steps"] == 3
    assert metrics["epochs"] == pytest.approx(1.5)  # 2 workers x 1 record per step, 4 records
    assert (tmp_path / "tuned" / "model.safetensors").is_file()


def test_cli_train(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "top.json"
    data.write_text(json.dumps(sample_records(2)))
    out = tmp_path / "cli-out"
    rc = main(
        ["train", "--data", str(data), "--output-dir", str(out), "--model", str(tiny_model_dir),
         "--max-steps", "2", "--gradient-accumulation-steps", "1", "--model-max-length", "512",
         "--learning-rate", "1e-3"]
    )  # fmt: skip
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("train: 2 examples (0 skipped), 2 steps, loss ")
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()


def test_cli_train_bad_record_names_file_and_line(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "ok", "output": "fine"}\n{"output": "no instruction"}\n')
    rc = main(["train", "--data", str(data), "--output-dir", str(tmp_path / "o"),
               "--model", str(tiny_model_dir)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0
    assert f"{data}:2" in err and "instruction" in err


def test_deepspeed_is_refused_on_cpu_and_unknown_configs_named(tiny_model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", sample_records(2))
    args = ["train", "--data", str(data), "--output-dir", str(tmp_path / "o"),
            "--model", str(tiny_model_dir), "--max-steps", "1"]  # fmt: skip
    assert main([*args, "--deepspeed", "zero7"]) == 2
    assert "--deepspeed zero7: no such file" in capsys.readouterr().err
    assert resolve_deepspeed("auto") == ""  # no GPU here: auto means no DeepSpeed
    pytest.importorskip("deepspeed", reason="deepspeed not installed (the dev and train extras)")
    assert main([*args, "--deepspeed", "zero3"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(DEEPSPEED_CONFIGS))
def test_deepspeed_configs_are_zero3_and_save_gathered_weights(name):
    path = configs_dir() / DEEPSPEED_CONFIGS[name]
    # Package data (pyproject's package-data), so a non-editable install such as the train image
    # has the configs too.
    assert path.parent == Path(adg.stages.train.__file__).parents[1] / "deepspeed_configs"
    assert '"adg.deepspeed_configs" = ["*.json"]' in (REPO / "pyproject.toml").read_text()
    config = json.loads(path.read_text())
    zero = config["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert "scheduler" not in config, "the Trainer's cosine schedule must be the one used"
    assert config["train_micro_batch_size_per_gpu"] == "auto"
    assert ("offload_optimizer" in zero) == name.endswith("offload")


def test_curve_points_keep_the_last_point():
    curve = [{"step": i, "loss": 1.0 / i} for i in range(1, 251)]
    picked = curve_points(curve, most=100)
    assert len(picked) <= 101 and picked[0]["step"] == 1 and picked[-1]["step"] == 250
    assert curve_points(curve[:5]) == curve[:5]


@pytest.mark.kfp_local
def test_train_component_through_kfp_local(tiny_model_dir, tmp_path):
    from kfp import dsl, local

    from adg_kfp.components.ingest import ingest
    from adg_kfp.components.train import train as train_component

    data = write_jsonl(tmp_path / "top.jsonl", sample_records(2))
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )

    @dsl.pipeline
    def only_train(path: str) -> dsl.Model:
        pool = ingest(pool_uri=path, pool_prefix="", ledger_uri="", limit=0)
        return train_component(
            data=pool.outputs["pool"],
            base_model=str(tiny_model_dir),
            epochs=1.0,
            max_steps=2,
            batch_size=1,
            gradient_accumulation_steps=1,
            learning_rate=1e-3,
            lr_scheduler="cosine",
            warmup_ratio=0.0,
            weight_decay=0.0,
            model_max_length=96,
            seed=0,
            deepspeed="auto",
            num_gpus="1",  # a string, as every pod resource
            checkpoint_dir=str(tmp_path / "checkpoints"),
            run_id="run-1",
            selector="adg",
        ).outputs["model"]

    run = only_train(path=str(data))
    folder = Path(run.output.path)
    assert (folder / "model.safetensors").is_file() and (folder / METRICS_FILE).is_file()
    # Checkpoints went to <checkpoint_dir>/<run id>/<selector>, removed once training finished.
    assert (tmp_path / "checkpoints" / "run-1").is_dir()
    assert not (tmp_path / "checkpoints" / "run-1" / "adg").exists()


def test_each_run_and_selector_has_its_own_checkpoints():
    assert run_checkpoint_dir("/cache/ckpt", "run-1", "adg") == "/cache/ckpt/run-1/adg"
    assert run_checkpoint_dir("/cache/ckpt", "run-1", "random") != run_checkpoint_dir(
        "/cache/ckpt", "run-1", "adg"
    )
    assert run_checkpoint_dir("", "run-1", "adg") == ""  # no base: inside the model output


@pytest.mark.integration
def test_two_steps_on_the_embedded_model(tmp_path):
    from helpers import embedded_model_or_skip

    model_dir = embedded_model_or_skip()
    data = write_jsonl(tmp_path / "top.jsonl", sample_records(2))
    metrics = train(
        fast_config(data, tmp_path / "tuned", model_dir, max_steps=2, per_device_batch_size=1,
                    learning_rate=1e-5, model_max_length=256)
    )  # fmt: skip
    assert metrics["steps"] == 2
    assert all(p["loss"] > 0 for p in metrics["loss_curve"])

    from adg.io import models

    tokenizer, model = models.load(str(tmp_path / "tuned"), device="cpu")
    assert tokenizer.eos_token is not None and model.config.num_hidden_layers > 4
