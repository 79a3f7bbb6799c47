"""One source per default: every setting in `adg.config` has the same default in the CLI's flags,
in the library's functions and in the compiled pipeline's parameters."""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from helpers import yaml_documents

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
    spec = next(yaml_documents(COMMITTED.read_text()))
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


# --- A setting lives in one place ------------------------------------------------------------
#
# The pipeline's and the components' signatures stay written out by hand: they are what a user
# reads in the Kubeflow UI and in the compiled YAML, and kfp needs literal signatures. So instead
# of deriving them, `missing_places` goes through every field of every stage dataclass and names
# each place a pipeline setting has not reached (docs/architecture.md, "Where a new setting goes").

# Fields that are deliberately no pipeline setting of their own (`param=""` in adg.config), why.
NOT_PIPELINE_SETTINGS = {
    # The pipeline's checkpoint_uri is a prefix with a default of its own (the run's pipeline
    # root on S3), not the CLI's one object: a parameter written by hand.
    ("CheckpointConfig", "checkpoint_uri"),
    # Given by the run: the select task's top subset, train's Model artifact, the run's `model`.
    ("TrainConfig", "data"),
    ("TrainConfig", "output_dir"),
    ("TrainConfig", "model"),
    # Decided by where the train pod runs (None: on a GPU).
    ("TrainConfig", "bf16"),
    ("TrainConfig", "gradient_checkpointing"),
    # Not (yet) pipeline parameters: the pipeline trains and analyses with their defaults.
    ("TrainConfig", "logging_steps"),
    ("TrainConfig", "save_steps"),
    ("AnalyseConfig", "timeout"),
    ("AnalyseConfig", "retries"),
    ("AnalyseConfig", "classifier"),
    # The pipeline keeps no checkpoints (they live on the model-cache PVC) and writes them there:
    # train_checkpoint_dir, a parameter written by hand with the PVC's path as its default.
    ("TrainConfig", "keep_checkpoints"),
    ("TrainConfig", "checkpoint_dir"),
    # curation_route hands train the pool's resolved format: what generation and scoring saw.
    ("TrainConfig", "prompt_format"),
}
# Stages whose settings `adg run` leaves out: it has no train_enabled (the train task keeps its
# checkpoints on the cluster's model-cache PVC path), so they would do nothing there.
RUN_SKIPPED = {"train", "evaluate"}
# Settings `adg run` leaves out of the stages it runs: a local run has no object-store
# checkpoints (checkpoint_uri is empty and its pipeline root a local folder), so this would do
# nothing there.
RUN_SKIPPED_FIELDS = {("CheckpointConfig", "checkpoint_every")}
# Ranged settings the in-cluster preflight task is not given (`adg submit` and `adg schedule`
# check them with the same adg.parameters.check): giving it would change the compiled YAML, left
# for the next change of the pipeline.
PREFLIGHT_SKIPPED = {("IngestConfig", "format")}
# The pipeline's tasks that take each dataclass's settings ("" = CheckpointConfig's).
COMPONENTS = {
    "ingest": ["ingest"],
    "generate": ["generate"],
    "": ["generate", "score"],
    "cluster": ["cluster"],
    "score": ["score"],
    "select": ["select"],
    "train": ["train"],
    "evaluate": ["evaluate"],
    "analyse": ["analyse"],
}
# A component argument named otherwise than its field.
COMPONENT_ARGS = {
    ("IngestConfig", "format"): "pool_format",
    ("TrainConfig", "per_device_batch_size"): "batch_size",
}


def _subcommand(parser, name):
    return parser._subparsers._group_actions[0].choices[name]


def _changed(f):
    """A value of the field `f` other than its default, as a flag's text and as the value."""
    if f.type is bool:
        return None, True
    if f.metadata.get("choices"):
        value = next(c for c in f.metadata["choices"] if c != f.default)
        return value, value
    value = f.default + 1 if f.type in (int, float) else "changed"
    return str(value), value


def _run_reaches(parser, param, f) -> bool:
    """Whether an `adg run` flag sets the full pipeline's argument `param` to a changed value."""
    from adg.cli.kfp import run_options
    from adg_kfp.pipelines.local import LocalRunOptions, pipeline_arguments

    run = _subcommand(parser, "run")
    for action in run._actions:
        if action.dest not in (param, f.name):
            continue
        text, value = _changed(f)
        argv = ["run", action.option_strings[0]] + ([] if text is None else [text])
        opts = run_options(parser.parse_args(argv), LocalRunOptions)
        sampling = opts.sampling
        got = pipeline_arguments(opts, "p", "m", "", sampling, opts.cluster_count, opts.budget)
        if str(got.get(param)) == str(value):
            return True
    return False


def missing_places(cls, prefix, f, parser, spec) -> list[str]:
    """Each place the stage setting `f` of `cls` has not reached, as one line naming it."""
    from adg import parameters

    name = f.metadata.get("param", f"{prefix}_{f.name}")
    where = f"{cls.__name__}.{f.name}"
    problems = []
    # (a) the stage's own command: a flag whose value lands on the field.
    for command in STAGES.get(cls, (prefix, []))[1]:
        stage_command = command.split()[0]
        if stage_command == "run":
            continue
        dests = {a.dest for a in _subcommand(parser, stage_command)._actions}
        dests |= {f"{d.removesuffix('_mode')}" for d in dests}  # bf16 / gradient checkpointing
        if f.name not in dests:
            problems.append(f"{where}: no flag of `adg {stage_command}` (adg.cli: add_flags)")
    if (cls.__name__, f.name) in NOT_PIPELINE_SETTINGS:
        return problems
    # (b) `adg run`: a flag that sets the full pipeline's parameter.
    skipped = prefix in RUN_SKIPPED or (cls.__name__, f.name) in RUN_SKIPPED_FIELDS
    if not skipped and not _run_reaches(parser, name, f):
        problems.append(f"{where}: `adg run` does not set pipeline parameter {name} (adg.cli.kfp)")
    # (c) the full pipeline's parameter, with its description from the pipeline's docstring.
    params = spec["root"]["inputDefinitions"]["parameters"]
    if name not in params:
        problems.append(f"{where}: no parameter {name} of the full pipeline (adg_pipeline.py)")
    elif not params[name].get("description"):
        problems.append(f"{where}: parameter {name} has no description in adg_pipeline's Args")
    # (d) the argument of each component that takes it.
    arg = COMPONENT_ARGS.get((cls.__name__, f.name), f.name)
    for component in COMPONENTS[prefix]:
        inputs = spec["components"][f"comp-{component}"]["inputDefinitions"]["parameters"]
        if arg not in inputs:
            problems.append(f"{where}: no argument {arg} of component {component}")
    # (e) the parameter check (preflight, submit, schedule) refuses a value out of its range,
    # and the preflight task is given the parameter.
    ranged = "at_least" in f.metadata or f.metadata.get("choices")
    preflight = spec["root"]["dag"]["tasks"]["preflight"]["inputs"]["parameters"]
    given = set(preflight) | set(preflight["parameters"]["runtimeValue"]["constant"])
    if ranged and name not in given and (cls.__name__, f.name) not in PREFLIGHT_SKIPPED:
        problems.append(f"{where}: the preflight task is not given {name} (adg_pipeline.py)")
    if "at_least" in f.metadata:
        low = f.metadata["at_least"]
        if not any(p.startswith(f"{name}=") for p in parameters.check({name: low - 1})):
            problems.append(f"{where}: the parameter check lets {name}={low - 1} through")
    choices = f.metadata.get("choices")
    if choices and not any(p.startswith(f"{name}=") for p in parameters.check({name: "no-such"})):
        problems.append(f"{where}: the parameter check lets {name}='no-such' through")
    return problems


def _full_spec() -> dict:
    from google.protobuf import json_format

    from adg_kfp.pipelines.adg_pipeline import adg_pipeline

    return json_format.MessageToDict(adg_pipeline.pipeline_spec)


def test_every_setting_reaches_every_place():
    """A setting lives in one place: each field of a stage dataclass in adg.config (its default
    and help) reaches (a) its stage command's flag, (b) an `adg run` flag, (c) the full
    pipeline's parameter `<stage>_<field>` with its description, (d) the argument of each
    component that takes it and (e) the parameter check, where the field has a range
    (`at_least`, `choices`). The signatures stay written by hand (the Kubeflow UI and the
    compiled YAML show them; kfp needs literal ones), so this test names every place a field has
    not reached. `NOT_PIPELINE_SETTINGS`, `RUN_SKIPPED`, `RUN_SKIPPED_FIELDS` and
    `PREFLIGHT_SKIPPED` are the deliberate exceptions."""
    parser, spec = build_parser(), _full_spec()
    problems = [
        problem
        for cls, (prefix, _commands) in STAGES.items()
        for f in settings(cls) + [f for f in fields(cls) if f.default is MISSING]
        for problem in missing_places(cls, prefix, f, parser, spec)
    ]
    assert not problems, "\n".join(problems)


def test_the_exceptions_are_the_fields_without_a_parameter():
    """Each field marked `param=""` is listed, with its reason, in NOT_PIPELINE_SETTINGS, and
    `adg run` skips exactly the RUN_SKIPPED stages."""
    from adg.cli.kfp import RUN_SKIPPED_STAGES

    marked = {
        (cls.__name__, f.name)
        for cls in STAGES
        for f in fields(cls)
        if f.metadata.get("param") == ""
    }
    assert marked == NOT_PIPELINE_SETTINGS
    assert set(RUN_SKIPPED_STAGES) == RUN_SKIPPED


def test_a_throwaway_field_is_named_in_every_place_it_misses(monkeypatch):
    """A field added to ClusterConfig alone: `adg run` gets its flag (generated from the field),
    and the test names every other place, which are written by hand."""
    from dataclasses import make_dataclass

    throwaway = make_dataclass(
        "ClusterConfig",
        [("throwaway", int, config.setting(3, "a throwaway setting", at_least=1))],
        bases=(config.ClusterConfig,),
    )
    monkeypatch.setitem(config.STAGE_CONFIGS, "cluster", throwaway)
    monkeypatch.setitem(STAGES, throwaway, STAGES[config.ClusterConfig])
    f = fields(throwaway)[-1]
    problems = missing_places(throwaway, "cluster", f, build_parser(), _full_spec())
    assert problems == [
        "ClusterConfig.throwaway: no flag of `adg cluster` (adg.cli: add_flags)",
        "ClusterConfig.throwaway: no parameter cluster_throwaway of the full pipeline "
        "(adg_pipeline.py)",
        "ClusterConfig.throwaway: no argument throwaway of component cluster",
        "ClusterConfig.throwaway: the preflight task is not given cluster_throwaway "
        "(adg_pipeline.py)",
        "ClusterConfig.throwaway: the parameter check lets cluster_throwaway=0 through",
    ]
    # The generated `adg run` flag reaches the pipeline's arguments with no other edit.
    assert "--cluster-throwaway" in _subcommand(build_parser(), "run")._option_string_actions
