"""The layout's promises: dependencies run one way, and no generic top-level `export` package.

Walks every module's imports (its source, not a running interpreter), so a lazy import inside a
function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

PROJECT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# Folder on disk -> the package it installs as (setup.py's package_dir).
PACKAGES = {"bert_layer": "bert_layer", "export": "bert_layer.export"}
# What the exporter may use of bert_layer: the shared text pipeline, the module's names and the
# atomic outputs. Nothing of the Keras side.
EXPORT_MAY_IMPORT = ("bert_layer.text", "bert_layer.contract", "bert_layer.outputs",
                     "bert_layer.choices",
                     "bert_layer.export")
# Only the command line stands above both sides.
CLI_MODULES = ("bert_layer.cli.main", "bert_layer.cli.commands", "bert_layer.cli.preflight")


def _modules() -> dict[str, str]:
    """Installed module name -> source file, for every module of the project."""
    found = {}
    for folder, package in PACKAGES.items():
        root = os.path.join(PROJECT_DIR, folder)
        for directory, _, files in os.walk(root):
            for name in files:
                if not name.endswith(".py"):
                    continue
                relative = os.path.relpath(os.path.join(directory, name), root)[:-3]
                parts = [p for p in relative.split(os.sep) if p != "__init__"]
                found[".".join([package, *parts])] = os.path.join(directory, name)
    return found


def _imports(path: str) -> set[str]:
    """Every project module `path` imports, top level or inside functions."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module != "bert_layer":  # `from bert_layer import contract` is a submodule.
                names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in ("bert_layer", "export")}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


MODULES = _modules()


def test_the_walk_finds_both_sides():
    assert "bert_layer.layers.layer" in MODULES and "bert_layer.export.writer" in MODULES
    assert "bert_layer.text.tokenizer" in MODULES and "bert_layer.cli.commands" in MODULES


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _within(m, CLI_MODULES)))
def test_dependencies_run_one_way(module):
    imported = _imports(MODULES[module])
    assert not any(name == "export" or name.startswith("export.") for name in imported), (
        f"{module} imports the top-level name `export`; use bert_layer.export")
    if _within(module, ("bert_layer.export",)):
        wrong = sorted(n for n in imported if not _within(n, EXPORT_MAY_IMPORT))
        assert not wrong, f"the exporter {module} imports the Keras side: {wrong}"
    else:
        wrong = sorted(n for n in imported if _within(n, ("bert_layer.export",)))
        assert not wrong, f"{module} (not the command line) imports the exporter: {wrong}"
    if _within(module, ("bert_layer.text",)):
        wrong = sorted(n for n in imported if not _within(n, ("bert_layer.text",)))
        assert not wrong, f"the text pipeline {module} imports {wrong}"


def test_no_top_level_export_package_even_from_the_repository_root():
    result = subprocess.run([sys.executable, "-c", "import export"], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "bert_layer.export" in result.stderr
