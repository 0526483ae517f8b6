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
import re
import zipfile

from bert_layer.contract import SAVED_MODEL_FILE
from bert_layer.outputs import output_format

KERAS_SUFFIX = ".keras"
FROZEN_SUFFIX = ".pb"
FROZEN_SUFFIXES = (FROZEN_SUFFIX,)
# The frozen graph's node names (its contract, as bert_layer.contract is the module's).
TEXT_INPUT = "text"
OUTPUT = "probabilities"
SCORE_OUTPUT = "score"  # A regressor's output [B, scores], in place of OUTPUT.
CLASS_NAMES = "class_names"
MULTI_LABEL = "multi_label"
# The serving SavedModel's signatures (bert_layer.inference.serving writes them).
SERVING_SIGNATURE = "serving_default"
IDS_SIGNATURE = "ids"
METADATA_SIGNATURE = "metadata"
SERVING_OUTPUTS = ("probabilities", "label", "label_index")
# A frozen tagger's names: words string [B, W] in; tag probabilities [B, W, K] and the
# wordpieces of each word [B, W] out; its tags [K] as a constant.
WORDS_INPUT, TAG_PROBABILITIES, PIECE_COUNTS, TAG_NAMES = (
    "words", "tag_probabilities", "piece_counts", "tag_names")
# Graphs of models that read long texts as windows hold their stride (predict then feeds texts,
# never ids: the rows of ids are windows).
WINDOW_STRIDE = "window_stride"
# Graphs frozen with the numpy tokenizer take ids; these constants rebuild the tokenizer.
VOCAB, DO_LOWER_CASE, MAX_SEQ_LENGTH = "vocab", "do_lower_case", "max_seq_length"
# With them, a family's special tokens other than BERT's: [cls, sep, pad or "", separators].
SPECIAL_TOKENS = "special_tokens"

# `bert-layer embed`'s outputs by file extension: a float32 [n, H] array, or one JSON object
# per line.
EMBEDDING_FORMATS = {".npy": "npy", ".jsonl": "jsonl"}
EMBEDDING_SUFFIXES = tuple(EMBEDDING_FORMATS)  # What `--overwrite` may replace.

SAVED_MODEL = "saved_model"  # Not a suffix: a folder holding saved_model.pb.
HUB_MODULE_FILE = "tfhub_module.pb"  # Marks a TF1 Hub module (bert-layer export), no model.
# A .keras model bert-layer trained holds a BertLayer (or a subclass, e.g. a tagger's).
_BERT_LAYER = re.compile(r"^bert_layer>\w*BertLayer$")
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
        if os.path.isfile(os.path.join(path, HUB_MODULE_FILE)):
            raise ValueError(f"{path} is a hub module (written by `bert-layer export`), not a "
                             f"trained model; {command} expects {expected}. Train one with "
                             f"`bert-layer train --module {path} ...` and give its model.keras.")
        if SAVED_MODEL in suffixes and os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
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
    if suffix == KERAS_SUFFIX:
        check_bert_layer_model(path)
    if suffix == TFLITE_SUFFIX:
        read_tflite(path)  # Its one-line errors, before any interpreter parses the file.
    return suffix


def check_bert_layer_model(path: str) -> None:
    """Raises ValueError unless the .keras archive at `path` holds a BertLayer (a model
    bert-layer trained; its head, or the report beside older ones, names the classes), naming
    the layers it found. Reads only the archive's config.json."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable .keras model (no readable config.json: "
                         f"{e}); expected {_WHAT[KERAS_SUFFIX]}.") from None
    names = _layer_names(config)
    if any(_BERT_LAYER.match(n) for n in names):
        return
    layers = sorted({n.split(">")[-1] for n in names}) or ["none"]
    raise ValueError(f"{path} is not a model written by `bert-layer train`: it has no "
                     f"BertLayer (its layers: {', '.join(layers[:12])}); expected "
                     f"{_WHAT[KERAS_SUFFIX]}.")


def _layer_names(config) -> set[str]:
    """The names of every layer in a Keras model config, nested models included
    (`registered_name`, e.g. "bert_layer>BertLayer", else `class_name`, e.g. "Dense")."""
    found, stack = set(), [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for layer in item.get("layers", []) if isinstance(item.get("layers"), list) else []:
                if isinstance(layer, dict) and "class_name" in layer:
                    found.add(layer.get("registered_name") or layer["class_name"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def embedding_format(path: str) -> str:
    """"npy" or "jsonl", from an embeddings output file's extension."""
    return output_format(path, EMBEDDING_FORMATS)


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
