"""The layout's promises: one rule per folder (dependencies run one way, floor by floor),
readers never import writers, every module imports first, and no generic top-level `export`.

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
CLI_MODULES = ("bert_layer.cli",)
# The ground floor: plain names and rules that every folder may use.
GROUND = ("bert_layer.contract", "bert_layer.outputs", "bert_layer.choices")
# One rule per folder: what its modules may import of the project, floor by floor from the
# ground up (export: EXPORT_MAY_IMPORT; cli: anything).
FOLDER_MAY_IMPORT = {
    "bert_layer.text": GROUND + ("bert_layer.text",),
    "bert_layer.layers": GROUND + ("bert_layer.text", "bert_layer.layers"),
    "bert_layer.data": GROUND + ("bert_layer.text", "bert_layer.data"),
    "bert_layer.training": GROUND + ("bert_layer.text", "bert_layer.layers", "bert_layer.data",
                                     "bert_layer.training"),
    "bert_layer.inference": GROUND + ("bert_layer.text", "bert_layer.layers", "bert_layer.data",
                                      "bert_layer.training", "bert_layer.inference"),
}
# Readers of saved models never import the writers (nor, through them, Keras).
READERS = ("bert_layer.inference.formats", "bert_layer.inference.inspect",
           "bert_layer.inference.custom_ops")
# What runs saved models (Keras allowed: it loads .keras files) never imports the writers either.
LOADERS = ("bert_layer.inference.runtimes", "bert_layer.inference.predict",
           "bert_layer.inference.beam")
WRITERS = ("bert_layer.inference.freeze", "bert_layer.inference.serving",
           "bert_layer.inference.graphs", "bert_layer.export")


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


def _floor_rule(module: str) -> tuple[str, ...] | None:
    if module in GROUND:
        return GROUND
    return next((rule for folder, rule in FOLDER_MAY_IMPORT.items()
                 if _within(module, (folder,))), None)


def test_every_module_has_a_floor():
    """A new folder or root module needs its rule here before it lands."""
    homeless = sorted(m for m in MODULES if _floor_rule(m) is None and not _within(
        m, CLI_MODULES + ("bert_layer.export",)) and m != "bert_layer")
    assert not homeless, f"modules outside every folder rule: {homeless}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _floor_rule(m) is not None))
def test_each_folder_imports_only_its_floor_and_below(module):
    allowed = _floor_rule(module)
    wrong = sorted(n for n in _imports(MODULES[module])
                   if n != "bert_layer" and not _within(n, allowed))
    assert not wrong, f"{module} may import only {allowed}; it imports {wrong}"


def _closure(module: str) -> set[str]:
    """`module` and every project module it imports, directly or not."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or name not in MODULES:
            continue
        seen.add(name)
        todo.extend(_imports(MODULES[name]))
    return seen


@pytest.mark.parametrize("reader", READERS)
def test_readers_never_import_writers_or_keras(reader):
    closure = _closure(reader)
    writers = sorted(m for m in closure if _within(m, WRITERS))
    assert not writers, f"{reader} imports the writers {writers}"
    keras_users = sorted(m for m in closure if "keras" in _external_imports(MODULES[m]))
    assert not keras_users, f"{reader} loads Keras through {keras_users}"


@pytest.mark.parametrize("loader", LOADERS)
def test_loaders_never_import_writers(loader):
    writers = sorted(m for m in _closure(loader) if _within(m, WRITERS))
    assert not writers, f"{loader} imports the writers {writers}"


def _external_imports(path: str) -> set[str]:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_import_circle():
    graph = {m: {n for n in _imports(path) if n in MODULES and n != m}
             for m, path in MODULES.items()}
    done, stack = set(), []

    def visit(module: str) -> None:
        if module in stack:
            circle = stack[stack.index(module):] + [module]
            raise AssertionError("import circle: " + " -> ".join(circle))
        if module in done:
            return
        stack.append(module)
        for name in sorted(graph[module]):
            if name.rsplit(".", 1)[0] != module:  # A package importing its own submodule.
                visit(name)
        stack.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def _tf_function_calls_without_autograph_off(path: str) -> list[int]:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "tf.function"
            and not any(k.arg == "autograph" and isinstance(k.value, ast.Constant)
                        and k.value.value is False for k in node.keywords)]


def test_every_tf_function_turns_autograph_off():
    """Our graph code has no Python control flow on tensors, so AutoGraph only costs: it
    rewrote the whole text pipeline's source at each trace (two thirds of a freeze's time)."""
    found = {m: lines for m, path in MODULES.items()
             if (lines := _tf_function_calls_without_autograph_off(path))}
    assert not found, f"tf.function without autograph=False: {found}"


def _registers_keras_classes(path: str) -> bool:
    return "register_keras_serializable" in open(path, encoding="utf-8").read()


def test_the_registration_chain_names_every_registering_module_in_import_order():
    """`import bert_layer` registers our Keras classes through a chain of import hooks
    (bert_layer/__init__.py); a module missing from it fails to import first (a circle
    through the hooks), and one listed before a module it imports does too."""
    import bert_layer
    chain = bert_layer._SERIALIZABLE_MODULES
    registering = {m for m, path in MODULES.items()
                   if m != "bert_layer" and _registers_keras_classes(path)}
    assert registering == set(chain), (
        f"missing from the chain: {sorted(registering - set(chain))}; "
        f"listed but registering nothing: {sorted(set(chain) - registering)}")
    for position, module in enumerate(chain):
        later = sorted(set(chain[position + 1:]) & _imports(MODULES[module]))
        assert not later, f"{module} imports {later}, listed after it in the chain"


FIRST_IMPORT_SCRIPT = """
import importlib, os, sys
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp

def first(name):
    import subprocess
    r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True)
    return name, r.returncode, (r.stderr.strip().splitlines() or [""])[-1]

if __name__ == "__main__":
    with ProcessPoolExecutor(2) as pool:
        for name, code, last in pool.map(first, sys.argv[1:]):
            if code:
                print(f"{name}: {last}")
"""


def _may_be_reentered_by_the_registration_hooks() -> list[str]:
    """The modules whose first import can fail: the chain's modules and all they import.

    With no circle among project imports (test_no_import_circle), the only circle left runs
    through the registration hooks (importing keras imports the chain's modules, see
    bert_layer/__init__.py): module X half-initialised -> keras -> a chain module -> ... ->
    X again. So X must be imported by a chain module, directly or not; every other module
    can import first. Trying only these keeps ~60 TensorFlow start-ups out of the suite."""
    import bert_layer
    return sorted(set().union(*(_closure(m) for m in bert_layer._SERIALIZABLE_MODULES)))


@pytest.mark.large
def test_every_module_imports_first_in_a_fresh_process():
    """Each module that a registration hook can re-enter, alone, first, in a new interpreter
    (keras registration hooks included)."""
    names = _may_be_reentered_by_the_registration_hooks()
    assert "bert_layer.layers.window_pooling" in names  # Once failed this way.
    result = subprocess.run([sys.executable, "-c", FIRST_IMPORT_SCRIPT, *names],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "", f"modules that fail to import first:\n{result.stdout}"


def test_no_top_level_export_package_even_from_the_repository_root():
    result = subprocess.run([sys.executable, "-c", "import export"], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "bert_layer.export" in result.stderr
