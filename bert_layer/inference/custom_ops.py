"""Op types that core TensorFlow does not register, and the packages that provide them.

A graph holding such an op (e.g. tensorflow-text's `FastWordpieceTokenizeWithOffsets`) loads
only where its package was imported first: "Op type not registered". Two questions here:
  which ops of a graph are not core (`audit_ops`), asked of a fresh Python that imports
    TensorFlow alone, since this process may have imported tensorflow_text already;
  what this process must import to run a graph (`register_ops_for`).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable

from tensorflow.core.framework import graph_pb2

from bert_layer.contract import read_saved_model

# Importable modules that register custom ops, with the pip name that installs each.
CUSTOM_OP_PACKAGES = (("tensorflow_text", "tensorflow-text"),)

# Run by a fresh Python: ops (JSON on stdin) -> {op: package or None} for those core TF lacks.
_AUDIT_SCRIPT = """
import importlib, json, sys
from tensorflow.python.framework import op_def_registry
ops, packages = json.load(sys.stdin)
missing = {op: None for op in ops if op_def_registry.get(op) is None}
for module, package in packages:
    if not any(p is None for p in missing.values()):
        break
    try:
        importlib.import_module(module)
    except ImportError:
        continue
    for op in missing:
        if missing[op] is None and op_def_registry.get(op) is not None:
            missing[op] = package
print(json.dumps(missing))
"""


def graph_op_types(graph_def: graph_pb2.GraphDef) -> set[str]:
    """Op types of the nodes and library functions of `graph_def` (calls to its functions out)."""
    functions = {f.signature.name for f in graph_def.library.function}
    ops = {node.op for node in graph_def.node}
    ops.update(node.op for f in graph_def.library.function for node in f.node_def)
    return ops - functions


def saved_model_op_types(folder: str) -> set[str]:
    """Op types of every meta graph of the SavedModel (or hub module) in `folder`."""
    saved_model = read_saved_model(folder)
    return {op for meta_graph in saved_model.meta_graphs
            for op in graph_op_types(meta_graph.graph_def)}


# Each op type's answer, once asked: the fresh Python runs this same installation, so the
# answer holds for the life of this process (and a second inspect needs no TensorFlow start).
_CORE = "core"
_AUDITED: dict[str, str | None] = {}


def audit_ops(op_types: Iterable[str]) -> dict[str, str | None]:
    """The op types that core TensorFlow does not register -> the pip package providing each
    (None: unknown), asked of a fresh Python that never imports tensorflow_text first."""
    op_types = set(op_types)
    unasked = sorted(op_types - _AUDITED.keys())
    if unasked:
        request = json.dumps([unasked, CUSTOM_OP_PACKAGES])
        result = subprocess.run([sys.executable, "-c", _AUDIT_SCRIPT], input=request,
                                capture_output=True, text=True, timeout=300,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if result.returncode != 0:
            raise RuntimeError(f"The op audit failed in a fresh Python: {result.stderr[-2000:]}")
        missing = json.loads(result.stdout.strip().splitlines()[-1])
        _AUDITED.update({op: missing.get(op, _CORE) for op in unasked})
    return {op: _AUDITED[op] for op in sorted(op_types) if _AUDITED[op] != _CORE}


def register_ops_for(op_types: Iterable[str], source: str) -> None:
    """Imports the packages whose ops `source` uses and this TensorFlow lacks; ValueError if
    none provides some of them."""
    from tensorflow.python.framework import op_def_registry

    missing = sorted(op for op in set(op_types) if op_def_registry.get(op) is None)
    for module, package in CUSTOM_OP_PACKAGES:
        if not missing:
            return
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        missing = [op for op in missing if op_def_registry.get(op) is None]
    if missing:
        packages = ", ".join(p for _, p in CUSTOM_OP_PACKAGES)
        raise ValueError(f"{source} uses ops that this TensorFlow does not register: {missing}. "
                         f"Install the package that provides them (e.g. {packages}), or "
                         f"export with --tokenizer core, which needs TensorFlow alone.")
