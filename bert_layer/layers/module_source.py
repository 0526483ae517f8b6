"""What a BertLayer takes from its hub module: where it is, its weights, a copy of its graph.

A `.keras` model carries the module's graph and vocabulary (see `BertLayer.save_assets`).
Models saved before that store only the path as typed at training time; `resolve_module`
looks for it relative to the working folder, then relative to the folders a loader names
(`module_search_dirs`, e.g. the model file's folder and its parents).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
from collections.abc import Iterable, Iterator

import keras
import numpy as np
import tensorflow as tf

from bert_layer.contract import INFERENCE_TAGS, SAVED_MODEL_FILE, TOKENS_SIGNATURE
from bert_layer.layers.hub_module import HubModule

ASSETS_DIR = "assets"
_SEARCH_DIRS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "bert_layer_module_search_dirs", default=())


@contextlib.contextmanager
def module_search_dirs(dirs: Iterable[str | os.PathLike]) -> Iterator[None]:
    """Within the block, a relative module path not found from the working folder is
    looked up relative to each of `dirs`, in order."""
    token = _SEARCH_DIRS.set(tuple(os.fspath(d) for d in dirs))
    try:
        yield
    finally:
        _SEARCH_DIRS.reset(token)


def folder_and_parents(path: str | os.PathLike) -> list[str]:
    """`path` (absolute) and each folder above it, nearest first."""
    path = os.path.abspath(os.fspath(path))
    folders = [path]
    while os.path.dirname(folders[-1]) != folders[-1]:
        folders.append(os.path.dirname(folders[-1]))
    return folders


def resolve_module(path: str | os.PathLike) -> str:
    """The module folder `path` names: as given, else relative to the search folders.

    Raises FileNotFoundError naming the path and every folder tried.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return path
    tried = []
    if not os.path.isabs(path):
        for folder in _SEARCH_DIRS.get():
            candidate = os.path.join(folder, path)
            if os.path.isdir(candidate):
                return candidate
            tried.append(folder)
    where = f" (also looked relative to {tried})" if tried else ""
    raise FileNotFoundError(f"Hub module folder not found: {path}{where}")


def copy_module_graph(source: str, target: str) -> None:
    """Copies what a module needs besides its variables: the graphs and the assets."""
    os.makedirs(target, exist_ok=True)
    shutil.copy2(os.path.join(source, SAVED_MODEL_FILE), os.path.join(target, SAVED_MODEL_FILE))
    assets = os.path.join(source, ASSETS_DIR)
    if os.path.isdir(assets):
        shutil.copytree(assets, os.path.join(target, ASSETS_DIR), dirs_exist_ok=True)


def has_module_graph(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, SAVED_MODEL_FILE))


class ModuleValue(keras.initializers.Initializer):
    """Initializes a weight to one of the module's arrays.

    An initializer, not a later `assign`: Keras defers initializers when a layer is built
    inside a stateless scope (a subclassed model's first call, a symbolic build) and drops
    assignments made there. `keras.initializers.Constant` takes only scalars, hence this.
    """

    def __init__(self, value: np.ndarray):
        self.value = value

    def __call__(self, shape, dtype=None):
        if tuple(shape) != self.value.shape:
            raise ValueError(f"The module's value has shape {self.value.shape}; the weight "
                             f"expects {tuple(shape)}.")
        return tf.constant(self.value, dtype=dtype)


def module_argument(module: str | None, bert_path: str | None) -> str:
    """`module`, or `bert_path`: its name in configs saved before the rename."""
    if module is not None and bert_path is not None and module != bert_path:
        raise ValueError(f"Pass the module folder once: module={module!r} and "
                         f"bert_path={bert_path!r} (its former name) differ.")
    if module is None and bert_path is None:
        raise TypeError("BertLayer needs `module`: the hub module folder.")
    return module if module is not None else bert_path


def module_variable_shapes(module: HubModule) -> dict[str, tuple[int, ...]]:
    """The variables the `tokens` graph reads: their shapes, by module name."""
    graph_nodes = {n.name for n in module.signature_graph(
        INFERENCE_TAGS, TOKENS_SIGNATURE)[0].node}
    variables = module.variable_nodes(INFERENCE_TAGS)
    shapes = module.variable_shapes()
    return {name: shapes[name] for name in sorted(variables)
            if name in graph_nodes and name in shapes}
