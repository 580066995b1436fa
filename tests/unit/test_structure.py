"""The package's shape: subpackages by stage of the data's path, each with a face, imports running only
down the stages, small modules and classes, thin Lightning hooks, and no import cycle.

Read from the source (no import), so the rules hold for lazy imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "anomalib_folder_ext"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 350
MAX_CLASS_LINES = 200
MAX_HOOK_LINES = 25  # a Lightning hook of the writer: glue that calls collaborators

# The stages, lowest first: a module imports only from its own stage or lower ones. The top-level
# modules that are not faces form the base every stage may use.
STAGES = ["base", "distributed", "images", "models", "decision", "outputs", "data", "callbacks", "run", "tools", "api", "cli"]
BASE = {"errors", "console", "options", "lazy"}
FACES = {"__init__", "__main__", "exportedmodel"}  # the package's face, python -m, a config's class path
SUBPACKAGES = sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))
# The one import up the stages, and why: plain `anomalib predict` builds our datamodule and writer from a
# config and has no edge of ours; when they see it did, they hand it the one we give it.
EDGE_FOR_ANOMALIB_PREDICT = ("console", "cli.edge")


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def _stage(name: str) -> str:
    head = name.split(".")[0]
    return "base" if head in BASE else head


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


MODULE_NAMES = {_name(path) for path in MODULES}


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports (dotted below the package), at the top or inside a function."""
    found = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("anomalib_folder_ext"):
            base = node.module.removeprefix("anomalib_folder_ext").lstrip(".")
            for alias in node.names:
                dotted = f"{base}.{alias.name}" if base else alias.name
                found.add(dotted if dotted in MODULE_NAMES else base or "__init__")
        elif isinstance(node, ast.Import):
            found.update(alias.name.removeprefix("anomalib_folder_ext.") for alias in node.names
                         if alias.name.startswith("anomalib_folder_ext."))
    return found & MODULE_NAMES


GRAPH = {_name(path): _imports(path) - {_name(path)} for path in MODULES}


def test_the_package_is_subpackages_by_stage():
    assert len(SUBPACKAGES) >= 6, SUBPACKAGES
    assert set(SUBPACKAGES) <= set(STAGES), f"a subpackage outside the stages: {set(SUBPACKAGES) - set(STAGES)}"
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top <= BASE | FACES | {"api"}, f"top-level modules outside the base: {top - BASE - FACES - {'api'}}"


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_each_subpackage_has_a_face(subpackage):
    tree = _tree(PACKAGE / subpackage / "__init__.py")
    assert ast.get_docstring(tree), f"{subpackage}/__init__.py: say what the stage is for"
    assert any(isinstance(node, (ast.Assign, ast.AnnAssign)) and "__all__" in ast.unparse(node) for node in tree.body), \
        f"{subpackage}/__init__.py has no __all__"


def test_imports_run_only_down_the_stages():
    assert GRAPH["cli.command"] and GRAPH["run.batches"]  # the parse does find imports
    upward = [f"{module} -> {imported}" for module, imports in GRAPH.items() if module.split(".")[0] not in FACES
              for imported in imports if imported.split(".")[0] not in FACES
              and STAGES.index(_stage(imported)) > STAGES.index(_stage(module))
              and (module, imported) != EDGE_FOR_ANOMALIB_PREDICT]
    assert not upward, "imports running back up the stages:\n" + "\n".join(sorted(upward))


@pytest.mark.parametrize("module", MODULES, ids=lambda path: _name(path))
def test_module_size(module):
    lines = len(module.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(module)}: {lines} lines"


@pytest.mark.parametrize("module", MODULES, ids=lambda path: _name(path))
def test_class_size(module):
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.ClassDef):
            lines = node.end_lineno - node.lineno + 1
            assert lines <= MAX_CLASS_LINES, f"{_name(module)}: class {node.name} has {lines} lines"


def test_no_import_cycle():
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = path[path.index(name):] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in sorted(GRAPH[name]):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])


def test_the_writers_hooks_are_glue():
    tree = _tree(PACKAGE / "callbacks" / "writer.py")
    writer = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "AnomalyMapWriter")
    hooks = [node for node in writer.body if isinstance(node, ast.FunctionDef)
             and (node.name.startswith("on_") or node.name in {"setup", "teardown"})]
    assert {"setup", "on_predict_batch_end", "teardown"} <= {hook.name for hook in hooks}
    for hook in hooks:
        body = hook.body[1:] if ast.get_docstring(hook) else hook.body
        lines = body[-1].end_lineno - body[0].lineno + 1
        assert lines <= MAX_HOOK_LINES, f"AnomalyMapWriter.{hook.name}: {lines} lines"


def test_the_unit_tests_mirror_the_subpackages():
    unit = REPO / "tests" / "unit"
    folders = {path.name for path in unit.iterdir() if path.is_dir() and not path.name.startswith(("_", "."))}
    assert folders == set(SUBPACKAGES), f"tests/unit/ has {sorted(folders)}, the package {SUBPACKAGES}"
    assert all(list((unit / folder).glob("test_*.py")) for folder in folders)
