"""`VLLMSampler` against the vLLM that the generate image locks, read from that version's wheel.

vLLM cannot run here (it needs CUDA) nor on a lent GPU (its wheels cannot travel there), so the
cluster's generate path is checked the way it can be: the locked version
(images/generate/requirements.txt) is fetched as a wheel with `pip download --no-deps` into a
cache folder (`ADG_WHEEL_CACHE`, default ~/.cache/adg-wheels: about 340 MB, ~20 s to download,
once per locked version), and the few source files of the API the sampler uses are parsed from the
zip, never imported. What the sampler calls is read from src/adg/stages/generate.py's syntax tree,
so renaming a keyword or a field on either side fails here:

- `from vllm import LLM, SamplingParams`: names the package exports;
- `LLM(...)`: every keyword (those put into its `**kwargs` too) is a named parameter of
  `LLM.__init__`, not something its own `**kwargs` would swallow and fail on later;
- `llm.get_tokenizer()` and `llm.generate(prompts, params, use_tqdm=...)`: the methods, their
  positional parameters in that order and the keywords;
- `SamplingParams(...)`: every keyword is a field, the per-request `seed` an integer field;
- the prompts: dicts with exactly `TokensPrompt`'s keys (its required ones present), and
  `TokensPrompt` one of the prompt types `generate` takes;
- the outputs: the attributes read from what `generate` returns (`RequestOutput.outputs`) and from
  each of those (`CompletionOutput.text`, `.token_ids`), followed through the annotations.

The check against the wheel is marked `subprocess` (pip runs in one): `make test`, hence CI, runs
it on every run, so both a new lock and a change of the sampler are checked; `make test-fast`
leaves it out (it keeps the check that the sampler's calls are found at all). Without network and
without the cached wheel it is skipped, except in CI, where that fails.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "images" / "generate" / "requirements.txt"
SAMPLER_SOURCE = REPO / "src" / "adg" / "stages" / "generate.py"
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (36, 35, 34, 31, 28, 27, 24, 17)] + [
    "manylinux2014_x86_64"
]


def locked_version() -> str:
    found = re.search(r"^vllm==(\S+)$", LOCK.read_text(), re.MULTILINE)
    assert found, f"{LOCK}: no vllm pin"
    return found.group(1)


def wheel_cache() -> Path:
    return Path(os.environ.get("ADG_WHEEL_CACHE") or Path.home() / ".cache" / "adg-wheels")


def fetch_wheel(version: str) -> Path:
    """The cached wheel of that version, downloaded first when missing."""
    cache = wheel_cache()
    found = sorted(cache.glob(f"vllm-{version}-*.whl"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
    cmd += ["--python-version", "3.11", "--implementation", "cp", "-d", str(cache)]
    cmd += [arg for p in PLATFORMS for arg in ("--platform", p)]
    result = subprocess.run([*cmd, f"vllm=={version}"], capture_output=True, text=True)
    found = sorted(cache.glob(f"vllm-{version}-*.whl"))
    if result.returncode or not found:
        message = f"cannot download vllm=={version}: {result.stderr.strip()[-500:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found[0]


# ----------------------------------------------------------------------------- vLLM's side


class Package:
    """The modules of a wheel, parsed on demand; classes found through re-exports."""

    def __init__(self, wheel: Path):
        self.zip = zipfile.ZipFile(wheel)
        self.names = set(self.zip.namelist())
        self.trees: dict[str, ast.Module] = {}

    def module(self, dotted: str) -> ast.Module:
        if dotted not in self.trees:
            base = dotted.replace(".", "/")
            path = next((p for p in (f"{base}.py", f"{base}/__init__.py") if p in self.names), None)
            assert path, f"the wheel has no module {dotted}"
            self.trees[dotted] = ast.parse(self.zip.read(path), filename=path)
        return self.trees[dotted]

    def is_package(self, dotted: str) -> bool:
        return f"{dotted.replace('.', '/')}/__init__.py" in self.names

    def resolve(self, module: str, name: str, depth: int = 0) -> tuple[str, ast.AST]:
        """(module, definition) of `name` as seen from `module`: its own class, function or
        assignment, or followed through `from x import name` and vllm's lazy MODULE_ATTRS."""
        assert depth < 10, f"{module}.{name}: import cycle"
        tree = self.module(module)
        for node in tree.body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
                return module, node
            if isinstance(node, ast.AnnAssign | ast.Assign):
                targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    return module, node
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and any(
                (a.asname or a.name) == name for a in node.names
            ):
                source = next(a.name for a in node.names if (a.asname or a.name) == name)
                return self.resolve(self.absolute(module, node), source, depth + 1)
        lazy = self.lazy_attrs(tree)
        if name in lazy:
            target, _, attr = lazy[name].partition(":")
            return self.resolve(self.absolute_name(module, target), attr, depth + 1)
        raise AssertionError(f"{name} is not defined or imported in {module}")

    def absolute(self, module: str, node: ast.ImportFrom) -> str:
        return self.absolute_name(module, "." * node.level + (node.module or ""))

    def absolute_name(self, module: str, target: str) -> str:
        if not target.startswith("."):
            return target
        level = len(target) - len(target.lstrip("."))
        parts = module.split(".")
        base = parts if self.is_package(module) else parts[:-1]
        base = base[: len(base) - (level - 1)] if level > 1 else base
        rest = target.lstrip(".")
        return ".".join([*base, rest] if rest else base)

    @staticmethod
    def lazy_attrs(tree: ast.Module) -> dict[str, str]:
        """vllm/__init__.py's MODULE_ATTRS = {"LLM": ".entrypoints.llm:LLM", ...}."""
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "MODULE_ATTRS" for t in node.targets)
                and isinstance(node.value, ast.Dict)
            ):
                return {
                    k.value: v.value
                    for k, v in zip(node.value.keys, node.value.values, strict=True)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
                }
        return {}

    def exports(self, name: str) -> bool:
        tree = self.module("vllm")
        if name in self.lazy_attrs(tree):
            return True
        try:
            self.resolve("vllm", name)
        except AssertionError:
            return False
        return True

    def cls(self, module: str, name: str) -> tuple[str, ast.ClassDef]:
        where, node = self.resolve(module, name)
        assert isinstance(node, ast.ClassDef), f"{name} in {where} is not a class"
        return where, node


def method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    found = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name]
    assert found, f"{cls.name} has no method {name}"
    return found[-1]  # after @overload stubs, the implementation


def parameters(fn: ast.FunctionDef) -> tuple[list[str], set[str], list[str]]:
    """(positional parameters without self, keyword-usable parameters, required ones)."""
    args = fn.args
    positional = [a.arg for a in [*args.posonlyargs, *args.args]][1:]
    keywords = {a.arg for a in [*args.args, *args.kwonlyargs]} - {"self"}
    defaults = len(args.defaults)
    required = positional[: len(positional) - defaults] if defaults else list(positional)
    required += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    return positional, keywords, required


def class_fields(pkg: Package, module: str, cls: ast.ClassDef) -> dict[str, ast.expr | None]:
    """Annotated class-level fields (msgspec Struct, dataclass, TypedDict), bases included, and
    attributes assigned to `self` in __init__; {name: annotation}."""
    fields: dict[str, ast.expr | None] = {}
    for base in cls.bases:
        if isinstance(base, ast.Name):
            try:
                where, node = pkg.resolve(module, base.id)
            except AssertionError:
                continue  # a base from outside vllm (msgspec.Struct, TypedDict, ...)
            if isinstance(node, ast.ClassDef):
                fields.update(class_fields(pkg, where, node))
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            fields[node.target.id] = node.annotation
    init = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    if init:
        annotations = {a.arg: a.annotation for a in [*init[0].args.args, *init[0].args.kwonlyargs]}
        for node in ast.walk(init[0]):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for t in targets:
                own = isinstance(t, ast.Attribute) and getattr(t.value, "id", None) == "self"
                if own and t.attr not in fields:
                    value = node.value  # `self.x = x`: the parameter's annotation
                    source = value.id if isinstance(value, ast.Name) else None
                    fields[t.attr] = annotations.get(source) if source else None
    return fields


def required_keys(cls: ast.ClassDef) -> set[str]:
    """A TypedDict's keys not wrapped in NotRequired[...]."""
    return {
        n.target.id
        for n in cls.body
        if isinstance(n, ast.AnnAssign)
        and isinstance(n.target, ast.Name)
        and "NotRequired" not in ast.unparse(n.annotation)
    }


def item_type(annotation: ast.expr | None) -> str:
    """X of list[X], Sequence[X], "list[X]" or X | None: the name a loop over it yields."""
    assert annotation is not None, "no annotation to follow"
    text = ast.unparse(annotation).strip("'\"")
    found = re.search(r"(?:list|Sequence|GenericSequence)\[\s*['\"]?([A-Za-z_][\w.]*)", text)
    assert found, f"not a list annotation: {text}"
    return found.group(1).rsplit(".", 1)[-1]


def alias_members(pkg: Package, module: str, name: str, depth: int = 0) -> set[str]:
    """The names a type alias (X: TypeAlias = A | B | C) expands to, aliases followed."""
    try:
        where, node = pkg.resolve(module, name)
    except AssertionError:
        return {name}  # a type from outside vllm (Sequence, str, ...)
    if isinstance(node, ast.ClassDef) or depth > 5:
        return {name}
    value = node.value if isinstance(node, ast.AnnAssign | ast.Assign) else None
    members: set[str] = set()
    for sub in ast.walk(value) if value is not None else []:
        if isinstance(sub, ast.Name) and sub.id[0].isupper() and sub.id != name:
            members |= {sub.id} | alias_members(pkg, where, sub.id, depth + 1)
    return members


# ----------------------------------------------------------------------------- the sampler's side


def sampler_calls() -> dict:
    """What VLLMSampler does with vLLM, from stages/generate.py's syntax tree."""
    tree = ast.parse(SAMPLER_SOURCE.read_text(), filename=str(SAMPLER_SOURCE))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "VLLMSampler")
    calls: dict = {"imports": set(), "llm_methods": {}, "ctor": set(), "params": set()}
    for node in ast.walk(cls):
        if isinstance(node, ast.ImportFrom) and node.module == "vllm":
            calls["imports"] |= {a.name for a in node.names}
    kwargs_keys = {
        t.slice.value
        for n in ast.walk(cls)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Subscript)
        and isinstance(t.value, ast.Name)
        and t.value.id == "kwargs"
        and isinstance(t.slice, ast.Constant)
    }
    sample = method(cls, "sample")
    assigned = {
        t.id: n.value
        for n in ast.walk(sample)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    for node in ast.walk(cls):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        keywords = {k.arg for k in node.keywords if k.arg}
        if isinstance(func, ast.Name) and func.id == "LLM":
            splat = any(k.arg is None for k in node.keywords)
            calls["ctor"] |= keywords | (kwargs_keys if splat else set())
        elif isinstance(func, ast.Name) and func.id == "SamplingParams":
            calls["params"] |= keywords
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "llm"
        ):
            calls["llm_methods"][func.attr] = (len(node.args), keywords, node)
    # The prompts: the dict literals of the list passed first to generate.
    _, _, gen_call = calls["llm_methods"]["generate"]
    prompts = gen_call.args[0]
    prompts = assigned.get(prompts.id, prompts) if isinstance(prompts, ast.Name) else prompts
    calls["prompt_keys"] = {
        k.value
        for d in ast.walk(prompts)
        if isinstance(d, ast.Dict)
        for k in d.keys
        if isinstance(k, ast.Constant)
    }
    # The outputs: loop variables over generate's result and over their `.outputs`.
    result = next(name for name, value in assigned.items() if value is gen_call)
    request_vars, completion_vars = set(), set()
    for comp in ast.walk(sample):
        for gen in getattr(comp, "generators", []):
            if isinstance(gen.iter, ast.Name) and gen.iter.id == result:
                request_vars.add(gen.target.id)
    for comp in ast.walk(sample):
        for gen in getattr(comp, "generators", []):
            it = gen.iter
            if isinstance(it, ast.Attribute) and getattr(it.value, "id", None) in request_vars:
                completion_vars.add((it.attr, gen.target.id))
    calls["request_attrs"] = {
        n.attr
        for n in ast.walk(sample)
        if isinstance(n, ast.Attribute) and getattr(n.value, "id", None) in request_vars
    }
    names = {var for _, var in completion_vars}
    calls["completion_via"] = {attr for attr, _ in completion_vars}
    calls["completion_attrs"] = {
        n.attr
        for n in ast.walk(sample)
        if isinstance(n, ast.Attribute) and getattr(n.value, "id", None) in names
    }
    return calls


# ----------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def vllm() -> Package:
    return Package(fetch_wheel(locked_version()))


def test_the_sampler_reads_what_it_calls():
    """The extraction finds the calls the sampler makes (so the checks below are not vacuous)."""
    calls = sampler_calls()
    assert calls["imports"] == {"LLM", "SamplingParams"}
    assert {"model", "seed", "tensor_parallel_size", "tokenizer"} <= calls["ctor"]
    assert {"n", "temperature", "top_p", "max_tokens", "seed"} <= calls["params"]
    assert set(calls["llm_methods"]) == {"get_tokenizer", "generate"}
    assert calls["prompt_keys"] == {"prompt_token_ids"}
    assert calls["request_attrs"] == {"outputs"} == calls["completion_via"]
    assert {"text", "token_ids"} <= calls["completion_attrs"]


@pytest.mark.subprocess
def test_vllm_sampler_matches_the_locked_vllm(vllm):
    calls = sampler_calls()
    problems = []
    for name in sorted(calls["imports"]):
        if not vllm.exports(name):
            problems.append(f"vllm exports no {name}")

    # LLM(...): explicit parameters of LLM.__init__.
    llm_module, llm = vllm.cls("vllm", "LLM")
    _, init_keywords, init_required = parameters(method(llm, "__init__"))
    problems += [f"LLM(): no parameter {k}" for k in sorted(calls["ctor"] - init_keywords)]
    problems += [f"LLM(): required {k} not passed" for k in init_required if k not in calls["ctor"]]

    # llm.<method>(...): positional count and order, keywords.
    for name, (n_args, keywords, _node) in sorted(calls["llm_methods"].items()):
        try:
            fn = method(llm, name)
        except AssertionError as err:
            problems.append(str(err))
            continue
        positional, accepted, required = parameters(fn)
        if n_args > len(positional):
            problems.append(f"LLM.{name}: {n_args} positional arguments, takes {positional}")
        problems += [f"LLM.{name}(): no parameter {k}" for k in sorted(keywords - accepted)]
        missing = [r for r in required[n_args:] if r not in keywords]
        problems += [f"LLM.{name}(): required {r} not passed" for r in missing]
    generate = method(llm, "generate")
    positional, _, _ = parameters(generate)
    if positional[:2] != ["prompts", "sampling_params"]:
        problems.append(
            f"LLM.generate takes {positional[:2]} first, not (prompts, sampling_params)"
        )

    # SamplingParams(...): fields, and the per-request seed an int.
    sp_module, sp = vllm.cls("vllm", "SamplingParams")
    sp_fields = class_fields(vllm, sp_module, sp)
    problems += [f"SamplingParams: no field {k}" for k in sorted(calls["params"] - set(sp_fields))]
    seed = sp_fields.get("seed")
    if seed is None or "int" not in ast.unparse(seed):
        problems.append("SamplingParams.seed: not an int field (per-request seed)")

    # The prompts: TokensPrompt's keys, and TokensPrompt among the prompt types generate takes.
    tp_module, tp = vllm.cls("vllm", "TokensPrompt")
    tp_keys = set(class_fields(vllm, tp_module, tp))
    problems += [f"TokensPrompt: no key {k}" for k in sorted(calls["prompt_keys"] - tp_keys)]
    needed = required_keys(tp) - calls["prompt_keys"]
    problems += [f"TokensPrompt: required key {k} not passed" for k in sorted(needed)]
    prompt_type = generate.args.args[1].annotation
    names = {n.id for n in ast.walk(prompt_type) if isinstance(n, ast.Name)}
    accepted = set().union(*(alias_members(vllm, llm_module, n) for n in names if n[0].isupper()))
    if "TokensPrompt" not in accepted:
        problems.append(f"LLM.generate's prompts ({ast.unparse(prompt_type)}) exclude TokensPrompt")

    # The outputs: generate -> list[RequestOutput]; RequestOutput.outputs -> list[CompletionOutput].
    request_name = item_type(generate.returns)
    ro_module, ro = vllm.cls(llm_module, request_name)
    ro_fields = class_fields(vllm, ro_module, ro)
    missing = sorted(calls["request_attrs"] - set(ro_fields))
    problems += [f"{request_name}: no attribute {a}" for a in missing]
    for via in sorted(calls["completion_via"] & set(ro_fields)):
        completion_name = item_type(ro_fields[via])
        co_module, co = vllm.cls(ro_module, completion_name)
        co_fields = set(class_fields(vllm, co_module, co))
        missing = sorted(calls["completion_attrs"] - co_fields)
        problems += [f"{completion_name}: no attribute {a}" for a in missing]

    assert not problems, f"VLLMSampler against vllm=={locked_version()}:\n" + "\n".join(problems)
