"""One source per default: every setting in `adg.config` has the same default in the CLI's flags,
in the library's functions and in the compiled pipeline's parameters."""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import yaml

from adg import config
from adg.cli import build_parser

COMMITTED = Path(__file__).resolve().parents[1] / "pipelines" / "adg_pipeline.yaml"

# config dataclass -> (pipeline parameter prefix, CLI commands that take its flags)
STAGES = {
    config.IngestConfig: ("ingest", ["ingest i --output o", "run"]),
    config.GenerateConfig: ("generate", ["generate --input i --output o", "run"]),
    config.CheckpointConfig: ("", ["generate --input i --output o", "score --input i --output o"]),
    config.ClusterConfig: ("cluster", ["cluster --embeddings e --output o"]),
    config.ScoreConfig: ("score", ["score --input i --output o", "run"]),
    config.SelectConfig: ("select", ["select --input i --clusters c --budget 1 --output-dir d"]),
    config.TrainConfig: ("train", ["train --data d --output-dir o"]),
    config.EvaluateConfig: ("evaluate", ["evaluate --output o"]),
    config.AnalyseConfig: ("analyse", ["analyse --input i --output o"]),
}


def settings(cls):
    return [f for f in fields(cls) if f.default is not MISSING and "help" in f.metadata]


def pipeline_defaults() -> dict:
    spec = next(yaml.safe_load_all(COMMITTED.read_text()))
    params = spec["root"]["inputDefinitions"]["parameters"]
    return {name: p.get("defaultValue") for name, p in params.items()}


@pytest.mark.parametrize("cls", list(STAGES), ids=lambda c: c.__name__)
def test_cli_flags_default_to_the_dataclass(cls):
    _prefix, commands = STAGES[cls]
    for command in commands:
        args = build_parser().parse_args(command.split())
        for f in settings(cls):
            if f.type not in (int, float, str, bool):
                continue  # bf16 / gradient_checkpointing: auto|on|off flags mapping to None
            if command == "run" and not hasattr(args, f.name):
                continue
            assert getattr(args, f.name) == f.default, f"adg {command}: --{f.name}"


def test_compiled_pipeline_defaults_are_the_dataclass_defaults():
    defaults = pipeline_defaults()
    gpu_counts = set(config.GPU_COUNT_PARAMS.values())
    checked = 0
    for cls, (prefix, _commands) in STAGES.items():
        for f in settings(cls):
            name = f.metadata.get("param", f"{prefix}_{f.name}")
            if not name or name not in defaults:
                continue
            # A GPU count is a string in the pipeline: the driver reads a pod's resources so.
            want = str(f.default) if name in gpu_counts else f.default
            assert defaults[name] == want, f"pipeline parameter {name}"
            checked += 1
    # Every sampling, cluster, score, select, train, evaluate and analyse knob of the pipeline.
    assert checked >= 35


def test_gpu_pods_default_to_the_config():
    """Each GPU stage's GPU count, CPU and memory: string parameters with adg.config's defaults."""
    defaults = pipeline_defaults()
    for stage, pod in config.GPU_PODS.items():
        assert defaults[config.GPU_COUNT_PARAMS[stage]] == pod.gpus, stage
        assert defaults[f"{stage}_cpu"] == pod.cpu, stage
        assert defaults[f"{stage}_memory"] == pod.memory, stage
    assert config.GPU_PODS["generate"].gpus == str(config.GenerateConfig.tensor_parallel_size)
    assert config.GPU_PODS["train"].gpus == str(config.TrainConfig.num_gpus)


def test_every_stage_parameter_of_the_pipeline_has_a_dataclass_field():
    """A new `<stage>_<knob>` parameter gets its default from adg.config, not a literal."""
    known = {
        f.metadata.get("param", f"{prefix}_{f.name}")
        for cls, (prefix, _c) in STAGES.items()
        for f in settings(cls)
    }
    # Placement, storage and per-run inputs: pipeline-only settings with no library counterpart.
    pipeline_only = {"gpu_count", "input", "pool_prefix", "ledger_uri", "limit", "budget"}
    pipeline_only |= {"checkpoint_dir", "include_path", "baseline", "enabled"}
    pipeline_only |= {"cpu", "memory"}  # the GPU pods' resources: adg.config.GPU_PODS
    for name in pipeline_defaults():
        prefix, _, rest = name.partition("_")
        if prefix in {p for p, _c in STAGES.values()} and name not in known:
            assert rest in pipeline_only, f"{name}: add it to adg.config"


def test_library_functions_default_to_the_dataclass():
    from adg.method.divergence import ScoreWeights
    from adg.stages.analyse import analyse_file
    from adg.stages.cluster import cluster_file
    from adg.stages.evaluate import EvalConfig
    from adg.stages.generate import generate_file

    def default(fn, name):
        return inspect.signature(fn).parameters[name].default

    assert default(cluster_file, "count") == config.ClusterConfig.count == 1000
    assert default(generate_file, "backend") == config.GenerateConfig.backend
    assert default(generate_file, "checkpoint_every") == config.CheckpointConfig.checkpoint_every
    assert default(analyse_file, "batch_size") == config.AnalyseConfig.batch_size
    assert ScoreWeights() == ScoreWeights(0.6, 0.4)
    assert EvalConfig().batch_size == config.EvaluateConfig.batch_size == "auto"
    assert config.TrainConfig("d", "o").deepspeed == "auto"


def test_the_config_module_imports_only_the_standard_library():
    """The pipeline imports adg.config at compile time, where torch need not be installed."""
    import ast
    import sys

    tree = ast.parse(Path(config.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                assert name.split(".")[0] in sys.stdlib_module_names, name
