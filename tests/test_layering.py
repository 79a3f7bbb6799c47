"""The layering rules, checked on the source (an import guard, as in kubeflow/pipelines-components).

- The library never imports the KFP side, and components/ and pipelines/ import only the standard
  library, kfp and the stdlib-only `adg.config` and `adg.errors` at top level, so compiling the
  pipeline never needs torch, transformers or vLLM.
- The library's own import graph (every `import` / `from` of an adg module, the lazy ones inside
  functions included) has no cycle, and no module imports one of a higher layer (`LAYERS`; the
  map in docs/architecture.md).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
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


# --- the library's import graph -----------------------------------------------------------------

# Each library module's layer, lowest first; a module may import its own layer or a lower one.
# A name is a module or a package (all the modules under it), relative to `adg`; the longest
# matching name decides.
LAYERS: dict[str, int] = {
    # settings and their checks, errors, messages, package files (the standard library, or nearly)
    **dict.fromkeys(["config", "errors", "progress", "package_data", "parameters"], 0),
    # formats and I/O: records, pool shapes, tables, object storage, models on disk, resumable
    # outputs
    "io": 1,
    # the method (the paper's math) and the cost plan
    "method": 2,
    "planning": 2,
    # reporting: the pages and tables the stages write (select's report, compare's table,
    # curation's history), so the stages may import it
    "reporting": 3,
    # one module per pipeline stage
    "stages": 4,
    "cli": 5,
}
LIBRARY = REPO / "src" / "adg"


def module_name(path: Path) -> str:
    """`adg.io.records` for src/adg/io/records.py, `adg.cli` for src/adg/cli/__init__.py."""
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def adg_imports(path: Path, known: set[str]) -> Iterator[tuple[int, str]]:
    """The adg modules `path` imports, anywhere in it: `from adg import x` is module `adg.x`
    when that is a module, else `adg` itself (a name from its __init__)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if within(alias.name, ("adg",)):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if not within(base, ("adg",)):
                continue
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            yield from ((node.lineno, s) for s in subs)
            if len(subs) < len(node.names):
                yield node.lineno, base


def import_graph() -> dict[str, dict[str, int]]:
    """module → {imported module: first line}, adg modules only, self-imports left out."""
    paths = sorted(LIBRARY.rglob("*.py"))
    known = {module_name(p) for p in paths}
    graph: dict[str, dict[str, int]] = {}
    for path in paths:
        name = module_name(path)
        edges = graph.setdefault(name, {})
        for line, target in adg_imports(path, known):
            if target != name and target in known:
                edges.setdefault(target, line)
    return graph


def layer_of(module: str) -> int | None:
    rel = module.removeprefix("adg").lstrip(".")
    best = None
    for name, layer in LAYERS.items():
        if (rel == name or rel.startswith(name + ".")) and (
            best is None or len(name) > len(best[0])
        ):
            best = (name, layer)
    return None if best is None else best[1]


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as one cycle
    through it, in import order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(one_cycle(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def one_cycle(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A cycle inside a strongly connected component, from its first module (by name) back to
    it: a breadth-first path to the first module found again."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w == start:
                return [*paths[v], start]
            if w in component and w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")


def upward_edges(graph: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for module, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            here, there = layer_of(module), layer_of(target)
            if here is not None and there is not None and there > here:
                out.append(f"{module} (layer {here}) line {line} imports {target} (layer {there})")
    return out


def test_every_library_module_has_a_layer():
    missing = [m for m in import_graph() if m != "adg" and layer_of(m) is None]
    assert not missing, f"modules with no layer in LAYERS: {', '.join(missing)}"


def test_the_library_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_no_module_imports_a_higher_layer():
    found = upward_edges(import_graph())
    assert not found, "upward imports:\n" + "\n".join(found)


def test_the_graph_guard_sees_a_cycle_and_an_upward_edge():
    graph = {
        "adg.io.records": {"adg.io.storage": 3},
        "adg.io.storage": {"adg.io.fingerprint": 5},
        "adg.io.fingerprint": {"adg.io.records": 9, "adg.cli": 12},
        "adg.cli": {},
    }
    cycle = ["adg.io.fingerprint", "adg.io.records", "adg.io.storage", "adg.io.fingerprint"]
    assert cycles(graph) == [cycle]
    assert upward_edges(graph) == ["adg.io.fingerprint (layer 1) line 12 imports adg.cli (layer 5)"]


def test_the_graph_reads_lazy_and_relative_imports(tmp_path, monkeypatch):
    package = tmp_path / "adg"
    (package / "io").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "io" / "__init__.py").write_text("")
    (package / "io" / "records.py").write_text("def f():\n    from adg import config\n")
    (package / "io" / "storage.py").write_text("from . import records\nfrom .records import f\n")
    (package / "config.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "LIBRARY", package)
    graph = import_graph()
    assert graph["adg.io.records"] == {"adg.config": 2}
    assert graph["adg.io.storage"] == {"adg.io.records": 1}
