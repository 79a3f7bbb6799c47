"""train: supervised fine-tuning on the selected subset (DeepSpeed ZeRO-3 across the pod's GPUs)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("train"), install_kfp_package=False)
def train(
    data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    base_model: str,
    epochs: float,
    max_steps: int,
    batch_size: int,
    gradient_accumulation_steps: int,
    learning_rate: float,
    lr_scheduler: str,
    warmup_ratio: float,
    weight_decay: float,
    model_max_length: int,
    seed: int,
    deepspeed: str,
    num_gpus: str,
    checkpoint_dir: str,
    run_id: str,
    selector: str,
    prompt_format: str = "auto",
):
    """Write a HF model folder (tokenizer included); log the loss curve as Metrics. `num_gpus`
    is also the pod's GPU count, a string as every pod resource."""
    import os

    from adg.io.models import require_gpu
    from adg.parameters import asks_gpus, parse_quantity
    from adg.stages.train import TrainConfig, curve_points, launch, run_checkpoint_dir

    # A task pod of a cluster run (the KFP backend sets KFP_POD_NAME, kfp.local does not) was
    # placed with a GPU: without usable CUDA, fail now rather than crawl on the CPU. A GPU count
    # of "0" placed it on CPU on purpose: no check.
    require_gpu("train", "KFP_POD_NAME" in os.environ and asks_gpus(num_gpus))

    cfg = TrainConfig(
        data=data.path,
        output_dir=model.path,
        model=base_model,
        epochs=epochs,
        max_steps=max_steps,
        per_device_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        learning_rate=learning_rate,
        lr_scheduler=lr_scheduler,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        model_max_length=model_max_length,
        seed=seed,
        deepspeed=deepspeed,
        checkpoint_dir=run_checkpoint_dir(checkpoint_dir, run_id, selector),
        prompt_format=prompt_format,
    )
    result = launch(cfg, num_gpus=int(parse_quantity(num_gpus)))
    for key in ("train_loss", "first_loss", "final_loss", "steps", "examples", "skipped"):
        metrics.log_metric(key, result[key])
    for point in curve_points(result["loss_curve"]):
        metrics.log_metric(f"loss/step_{point['step']:06d}", point["loss"])
    model.metadata.update(framework="transformers", base_model=base_model or "embedded")
