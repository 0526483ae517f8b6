"""The inference formats' names, and what a `--model` path must be, checked without
TensorFlow (so errors answer at once). Readers of frozen graphs import this, never the writer.

`bert-layer train` writes a `.keras` file (a zip archive); `bert-layer freeze` a `.pb`, or
with `--format saved_model` a SavedModel folder.
"""

from __future__ import annotations

import os
import zipfile

KERAS_SUFFIX = ".keras"
FROZEN_SUFFIX = ".pb"
FROZEN_SUFFIXES = (FROZEN_SUFFIX,)
# The frozen graph's node names (its contract, as bert_layer.contract is the module's).
TEXT_INPUT = "text"
OUTPUT = "probabilities"
CLASS_NAMES = "class_names"
MULTI_LABEL = "multi_label"
# Graphs frozen with the numpy tokenizer take ids; these constants rebuild the tokenizer.
VOCAB, DO_LOWER_CASE, MAX_SEQ_LENGTH = "vocab", "do_lower_case", "max_seq_length"
# With them, a family's special tokens other than BERT's: [cls, sep, pad or "", separators].
SPECIAL_TOKENS = "special_tokens"

SAVED_MODEL = "saved_model"  # Not a suffix: a folder holding saved_model.pb.
_WHAT = {KERAS_SUFFIX: "a Keras model (.keras) written by `bert-layer train`",
         FROZEN_SUFFIX: "a frozen graph (.pb) written by `bert-layer freeze`",
         SAVED_MODEL: "a SavedModel folder written by `bert-layer freeze --format saved_model`"}


def check_model_file(path: str, suffixes: tuple[str, ...] = (KERAS_SUFFIX, FROZEN_SUFFIX),
                     command: str = "this command") -> str:
    """Returns the suffix of `path` after checking it is a model file of an accepted kind.

    Raises:
      FileNotFoundError: nothing at `path`.
      ValueError: a folder, another kind of file, or a `.keras` that is not a zip archive.
    """
    expected = " or ".join(_WHAT[s] for s in suffixes)
    if os.path.isdir(path):
        if SAVED_MODEL in suffixes and os.path.isfile(os.path.join(path, "saved_model.pb")):
            return SAVED_MODEL
        raise ValueError(f"{path} is a folder; {command} expects {expected}.")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in suffixes:
        hint = ""
        if suffix == FROZEN_SUFFIX:
            hint = " (a .pb is frozen already: freeze takes the model.keras from bert-layer train)"
        raise ValueError(f"{path} is not a model file {command} reads{hint}; expected "
                         f"{expected}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model file not found: {path} (expected {expected}).")
    if suffix == KERAS_SUFFIX and not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a readable .keras file: it is not a zip archive "
                         f"(truncated or corrupt?); expected {_WHAT[KERAS_SUFFIX]}.")
    return suffix


def read_graph_def(path: str):
    """The GraphDef in a frozen `.pb`; one-line errors for a missing or foreign file."""
    from google.protobuf.message import DecodeError  # Lazy: tensorflow is heavy.
    from tensorflow.core.framework import graph_pb2

    graph_def = graph_pb2.GraphDef()
    try:
        with open(path, "rb") as f:
            graph_def.ParseFromString(f.read())
    except FileNotFoundError:
        raise FileNotFoundError(f"Frozen graph not found: {path}") from None
    except DecodeError:
        raise ValueError(f"{path} is not a frozen graph (a serialized GraphDef).") from None
    if not graph_def.node:
        raise ValueError(f"{path} is not a frozen graph: it holds no nodes.")
    return graph_def
