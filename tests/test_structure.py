"""The package's shape: small modules and classes, thin Lightning hooks, and no import cycle.

Read from the source (no import), so the rules hold for lazy imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "anomalib_folder_ext"
MODULES = sorted(PACKAGE.glob("*.py"))
MAX_MODULE_LINES = 350
MAX_CLASS_LINES = 200
MAX_HOOK_LINES = 25  # a Lightning hook of the writer: glue that calls collaborators


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "anomalib_folder_ext":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("anomalib_folder_ext."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("anomalib_folder_ext."))
    return found & {module.stem for module in MODULES}


def test_the_package_has_modules():
    assert len(MODULES) > 20


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_module_size(module):
    lines = len(module.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module.name}: {lines} lines"


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_class_size(module):
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.ClassDef):
            lines = node.end_lineno - node.lineno + 1
            assert lines <= MAX_CLASS_LINES, f"{module.name}: class {node.name} has {lines} lines"


def test_no_import_cycle():
    graph = {module.stem: _imports(module) - {module.stem} for module in MODULES}
    assert graph["cli"] and graph["batches"]  # the parse does find imports
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = path[path.index(name):] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_writers_hooks_are_glue():
    tree = _tree(PACKAGE / "callbacks.py")
    writer = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "AnomalyMapWriter")
    hooks = [node for node in writer.body if isinstance(node, ast.FunctionDef)
             and (node.name.startswith("on_") or node.name in {"setup", "teardown"})]
    assert {"setup", "on_predict_batch_end", "teardown"} <= {hook.name for hook in hooks}
    for hook in hooks:
        body = hook.body[1:] if ast.get_docstring(hook) else hook.body
        lines = body[-1].end_lineno - body[0].lineno + 1
        assert lines <= MAX_HOOK_LINES, f"AnomalyMapWriter.{hook.name}: {lines} lines"
