"""The layering rules of DESIGN.md, checked on the source (an import guard, as in
kubeflow/pipelines-components): the library never imports the KFP side, and components/ and
pipelines/ import only the standard library, kfp and the stdlib-only `adg.config` and `adg.errors`
at top level, so compiling the pipeline never needs torch, transformers or vLLM."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KFP_SIDE = ("kfp", "kfp_kubernetes", "components", "pipelines", "adg_kfp")
# What a component or pipeline module may import at top level besides the standard library.
WIRING_ALLOWED = ("kfp", "adg_kfp", "adg.config", "adg.errors")
STDLIB_ONLY = ("config.py", "errors.py")


def imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def top_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Imports that run when the module is imported: the module body and the blocks in it
    (if / try / with), not function or class bodies."""
    found = []
    stack = list(tree.body)
    while stack:
        node = stack.pop(0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            found += imports(node)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            stack += [
                n for f in ("body", "orelse", "handlers", "finalbody") for n in getattr(node, f, [])
            ]
        elif isinstance(node, ast.ExceptHandler):
            stack += node.body
    return found


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", sources("src/adg"), ids=lambda p: p.name)
def test_the_library_never_imports_the_kfp_side(path):
    for line, name in imports(ast.parse(path.read_text(encoding="utf-8"))):
        assert not within(name, KFP_SIDE), f"{path.relative_to(REPO)}:{line}: imports {name}"


@pytest.mark.parametrize("path", sources("components") + sources("pipelines"), ids=lambda p: p.name)
def test_components_and_pipelines_import_only_stdlib_and_kfp_at_top_level(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for line, name in top_level_imports(tree):
        top = name.split(".")[0]
        ok = top in sys.stdlib_module_names or top == "__future__"
        assert ok or within(name, WIRING_ALLOWED), f"{path.relative_to(REPO)}:{line}: {name}"


@pytest.mark.parametrize("name", STDLIB_ONLY)
def test_the_library_modules_the_wiring_may_import_use_only_the_stdlib(name):
    tree = ast.parse((REPO / "src" / "adg" / name).read_text(encoding="utf-8"))
    for line, imported in imports(tree):
        top = imported.split(".")[0]
        assert top in sys.stdlib_module_names or top == "__future__", f"{name}:{line}: {imported}"


def test_the_guard_sees_an_offending_import():
    bad = ast.parse("import torch\nfrom kfp import dsl\n\ndef f():\n    import numpy\n")
    assert [n for _l, n in top_level_imports(bad)] == ["torch", "kfp"]
    assert [n for _l, n in imports(bad)] == ["torch", "kfp", "numpy"]
