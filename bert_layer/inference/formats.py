"""The inference formats' names, and what a `--model` path must be, checked without
TensorFlow (so errors answer at once). Readers of frozen graphs import this, never the writer.

`bert-layer train` writes a `.keras` file (a zip archive); `bert-layer freeze` a `.pb`, with
`--format saved_model` a SavedModel folder, or with `--format tflite` a `.tflite` file.
"""

from __future__ import annotations

import dataclasses
import io
import json
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

SAVED_MODEL = "saved_model"  # Not a suffix: a folder holding saved_model.pb.
TFLITE_SUFFIX = ".tflite"
_WHAT = {KERAS_SUFFIX: "a Keras model (.keras) written by `bert-layer train`",
         FROZEN_SUFFIX: "a frozen graph (.pb) written by `bert-layer freeze`",
         SAVED_MODEL: "a SavedModel folder written by `bert-layer freeze --format saved_model`",
         TFLITE_SUFFIX: "a TFLite model (.tflite) written by `bert-layer freeze --format "
                        "tflite`"}

# === The .tflite file (bert_layer.inference.tflite writes it) ===
# Its tensors' names in the TFLite metadata, as the Task Library's BertNLClassifier looks
# them up; the model's own input tensors are named as contract.TOKEN_INPUTS.
TFLITE_IDS, TFLITE_MASK, TFLITE_SEGMENT_IDS = "ids", "mask", "segment_ids"
TFLITE_OUTPUT = "probability"
# Associated files, zipped after the flatbuffer as the TFLite metadata format has them.
TFLITE_VOCAB_FILE = "vocab.txt"  # The BertTokenizer process unit's VOCABULARY.
TFLITE_LABELS_FILE = "labels.txt"  # The output's TENSOR_AXIS_LABELS: one class a line.
# What the metadata schema has no field for (casing, max length, multi-label, precision),
# for bert_layer's reader and any app; a model-level associated file.
TFLITE_SETTINGS_FILE = "bert_layer.json"
_TFLITE_IDENTIFIER = b"TFL3"  # Bytes 4-8 of every TFLite flatbuffer.


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
    if suffix == TFLITE_SUFFIX:
        read_tflite(path)  # Its one-line errors, before any interpreter parses the file.
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


@dataclasses.dataclass(frozen=True)
class TFLiteFile:
    """A `.tflite` written by `bert-layer freeze --format tflite`: the flatbuffer and what its
    metadata's associated files say."""

    path: str
    model: bytes  # The whole file (the interpreter ignores the zip after the flatbuffer).
    vocab: list[str]
    do_lower_case: bool
    max_seq_length: int
    class_names: list[str]
    multi_label: bool
    precision: str  # "fp32" or "int8"


def read_tflite(path: str) -> TFLiteFile:
    """The model and settings of a `.tflite` from `bert-layer freeze --format tflite`;
    one-line errors for a missing, truncated or foreign file (checked before any
    interpreter parses it)."""
    expected = _WHAT[TFLITE_SUFFIX]
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"TFLite model not found: {path}") from None
    if data[4:8] != _TFLITE_IDENTIFIER:
        raise ValueError(f"{path} is not a TFLite model (no TFL3 identifier); expected "
                         f"{expected}.")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError):
        files = None
    needed = (TFLITE_VOCAB_FILE, TFLITE_LABELS_FILE, TFLITE_SETTINGS_FILE)
    if files is None or any(name not in files for name in needed):
        raise ValueError(f"{path} is truncated, or a TFLite model without bert_layer's "
                         f"metadata ({', '.join(needed)}); expected {expected}.")
    settings = json.loads(files[TFLITE_SETTINGS_FILE].decode("utf-8"))
    return TFLiteFile(
        path=path, model=data, vocab=files[TFLITE_VOCAB_FILE].decode("utf-8").splitlines(),
        do_lower_case=bool(settings["do_lower_case"]),
        max_seq_length=int(settings["max_seq_length"]),
        class_names=files[TFLITE_LABELS_FILE].decode("utf-8").splitlines(),
        multi_label=bool(settings["multi_label"]), precision=settings["precision"])
