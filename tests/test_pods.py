"""adg.planning.pods: Kubernetes quantities as the API server reads them, GKE's node reservations as
published, and which GPU pods a typical node of a GPU type takes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from helpers import sample_records, write_jsonl

from adg.cli import main
from adg.config import GPU_PODS
from adg.errors import InputError
from adg.planning.pods import GIB, gpu_pods, misfits, node_for, parse_quantity, pod_parameters


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", Decimal(4)),
        ("500m", Decimal("0.5")),
        ("0.5", Decimal("0.5")),
        ("24Gi", Decimal(24 * 2**30)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1.5G", Decimal("1.5e9")),
        ("1e3", Decimal(1000)),
        ("2k", Decimal(2000)),
        ("Gi", Decimal(0)),  # apimachinery reads a missing number as 0 (quantity.go 210-213)
    ],
)
def test_quantities(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1.5.0", "24 Gi", "24gi", " 4"])
def test_not_quantities(text):
    with pytest.raises(InputError, match="not a Kubernetes quantity"):
        parse_quantity(text)


def test_allocatable_follows_gkes_reservations():
    node = node_for("l4", 1)
    assert (node.name, node.gpus, node.cpu, node.memory_gib) == ("g2-standard-8", 1, 8, 32)
    # Memory: 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8, 6% of the next 112,
    # 2% above 128, plus the 100 MiB eviction threshold. CPU: 6%, 1%, 0.5% x 2, 0.25% above 4.
    memory = 32 - (0.25 * 4 + 0.20 * 4 + 0.10 * 8 + 0.06 * 16) - 100 / 1024
    assert node.allocatable_gib == pytest.approx(memory)
    assert node.allocatable_cpu == pytest.approx(8 - (0.06 + 0.01 + 0.005 * 2 + 0.0025 * 4))
    big = node_for("h100", 8)
    reserved = 0.25 * 4 + 0.2 * 4 + 0.1 * 8 + 0.06 * 112 + 0.02 * (1872 - 128) + 100 / 1024
    assert big.allocatable_gib == pytest.approx(1872 - reserved)


def test_default_pods_fit_every_gpu_type_but_train_on_l4():
    for gpu in ("l4", "a100", "h100"):
        for pod in gpu_pods():
            reasons = misfits(pod, node_for(gpu, pod.gpus))
            assert bool(reasons) == (gpu == "l4" and pod.stage == "train"), (gpu, pod, reasons)
    (train,) = (p for p in gpu_pods() if p.stage == "train")
    assert train.memory == parse_quantity(GPU_PODS["train"].memory)
    assert any("memory 64.0 GiB" in r for r in misfits(train, node_for("l4", 1)))


def test_the_runs_values_choose_the_node():
    pods = {p.stage: p for p in gpu_pods({"score_gpu_count": "2", "embed_gpu_count": "16"})}
    assert pods["score"].gpus == 2 and node_for("l4", 2).name == "g2-standard-24"
    assert misfits(pods["score"], node_for("l4", 2)) == []
    assert node_for("l4", 16) is None
    assert misfits(pods["embed"], None) == ["16 GPUs: no single node of this type has that many"]
    # The 32 GB L4 node takes generate only with less than its ~28 GiB allocatable.
    (generate,) = (p for p in gpu_pods({"generate_memory": "30Gi"}) if p.stage == "generate")
    assert float(generate.memory) / GIB == 30 and misfits(generate, node_for("l4", 1))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train_mem": "1Gi"}, "not a GPU pod parameter"),
        ({"score_memory": "lots"}, "not a Kubernetes quantity"),
        ({"score_gpu_count": "1.5"}, "a whole number of GPUs"),
        ({"score_gpu_count": "-1"}, "a whole number of GPUs"),
    ],
)
def test_bad_pod_parameters(overrides, message):
    with pytest.raises(InputError, match=message):
        gpu_pods(overrides)


def test_pod_parameters_are_the_pipelines():
    assert set(pod_parameters()) >= {"generate_tensor_parallel_size", "train_num_gpus"}
    assert all(isinstance(v, str) for v in pod_parameters().values())


def test_plan_prints_the_pods_against_the_nodes(tmp_path, tiny_model_dir, capsys):
    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(5))
    args = ["plan", "--input", str(pool), "--model", str(tiny_model_dir), "--gpu", "l4"]
    assert main([*args, "--param", "train_memory=24Gi", "--param", "train_cpu=6"]) == 0
    out = capsys.readouterr().out
    assert "| train | train_num_gpus=1, train_cpu=6, train_memory=24Gi | 1 | 6 | 24.0 GiB" in out
    assert "| g2-standard-8 | 7.91 CPU, 28.3 GiB | yes |" in out
    assert main(args) == 0
    assert "| train |" in (out := capsys.readouterr().out) and "no: CPU 8 > 7.91" in out
    assert main([*args, "--param", "train_memory=lots"]) == 2
    assert "not a Kubernetes quantity" in capsys.readouterr().err
    assert main([*args[:-1], "cpu"]) == 0
    assert "GPU pods" not in capsys.readouterr().out
