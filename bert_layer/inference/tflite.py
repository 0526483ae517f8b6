"""`bert-layer freeze --format tflite`: a classifier as a TFLite model of builtin ops only.

The file takes `input_ids`, `input_mask`, `segment_ids` (int32 [batch, length], both dynamic)
and gives the class probabilities; the tokenizer runs outside (bert_layer's in
`runtimes.TFLiteClassifier`, the Task Library's BertTokenizer in an app). It carries the
vocabulary, class names, casing and max length as TFLite metadata in the layout the TFLite
Task Library's `BertNLClassifier` reads. Read it with `bert_layer.inference.runtimes`; this
module writes only.

Precisions: "fp32", or "int8" (dynamic-range: int8 weights, activations quantized per batch at
run time, softmax, GELU and LayerNorm in float32), which the LiteRT interpreter runs with
XNNPACK.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import zipfile
from collections.abc import Iterable, Sequence

import flatbuffers
import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)

from bert_layer.choices import TFLITE_PRECISIONS
from bert_layer.contract import TOKEN_INPUTS
from bert_layer.inference.formats import (
    TFLITE_IDS,
    TFLITE_LABELS_FILE,
    TFLITE_MASK,
    TFLITE_OUTPUT,
    TFLITE_SEGMENT_IDS,
    TFLITE_SETTINGS_FILE,
    TFLITE_SUFFIX,
    TFLITE_VOCAB_FILE,
)
from bert_layer.inference.graphs import find_bert_layer, ids_model
from bert_layer.outputs import atomic_output, check_output_free

_METADATA_NAME = "TFLITE_METADATA"  # The model's metadata entry that the Task Library reads.
# Each TOKEN_INPUTS name's metadata name (BertNLClassifier finds the inputs by these).
_METADATA_NAMES = dict(zip(TOKEN_INPUTS, (TFLITE_IDS, TFLITE_MASK, TFLITE_SEGMENT_IDS)))


@dataclasses.dataclass(frozen=True)
class TFLiteReport:
    path: str
    precision: str
    ops: tuple[str, ...]  # The builtin ops the model uses.
    bytes: int


class NotConvertibleError(ValueError):
    """The model holds ops that TFLite's builtin op set lacks."""


def check_convertible(model: keras.Model) -> None:
    """Refuses a model that cannot become a .tflite, before the conversion's work."""
    bert = find_bert_layer(model)
    if bert.preprocessor is None:
        raise ValueError(f"{model.name} takes ids (do_preprocessing=False): a .tflite carries "
                         f"the vocabulary its tokenizer needs, and this model has none; build "
                         f"the model on text (BertLayer's default) to convert it.")
    from bert_layer.text.vocab import BERT_SPECIAL_TOKENS

    special = getattr(bert.preprocessor.tokenizer, "special_tokens", BERT_SPECIAL_TOKENS)
    if special != BERT_SPECIAL_TOKENS:  # MPNet: <s> a </s></s> b </s>, <pad> = 1.
        raise ValueError(f"{model.name} packs its inputs with {special.cls} and {special.sep} "
                         f"(not BERT's [CLS] and [SEP]); a .tflite's BertNLClassifier metadata "
                         f"and TFLiteClassifier tokenize as BERT does. Freeze it with `--format "
                         f"graph` or `saved_model` instead.")


def _frozen_ids_function(model: keras.Model):
    specs = [tf.TensorSpec([None, None], tf.int32, name=n) for n in TOKEN_INPUTS]
    function = tf.function(ids_model(model), autograph=False).get_concrete_function(*specs)
    return convert_variables_to_constants_v2(function)


def convert(model: keras.Model, precision: str = "fp32",
            calibration: Iterable[dict[str, np.ndarray]] | None = None) -> bytes:
    """The TFLite flatbuffer (no metadata) of `model`'s ids -> probabilities function.

    int8 is dynamic-range, or with `calibration` (features of single texts: TOKEN_INPUTS ->
    int32 [1, T]) full integer: activations' ranges fixed from those samples.

    Raises:
      NotConvertibleError: the graph holds ops outside TFLite's builtins (a model whose
        module was exported by an earlier bert_layer: its attention mask is a StridedSlice
        with new axes).
    """
    if precision not in TFLITE_PRECISIONS:
        raise ValueError(f"precision must be one of {TFLITE_PRECISIONS}; received {precision!r}.")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_frozen_ids_function(model)])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # No Flex.
    if precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # Dynamic range (no dataset).
        if calibration is not None:
            samples = list(calibration)
            converter.representative_dataset = lambda: ([s[n] for n in TOKEN_INPUTS]
                                                        for s in samples)
    try:
        return converter.convert()
    except Exception as e:  # The converter raises ConverterError, with MLIR's dump.
        if "neither a custom op nor a flex op" not in str(e):
            raise
        ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op", str(e))))
        raise NotConvertibleError(
            f"the model's graph holds ops TFLite's builtins lack ({', '.join(ops)}): in a "
            f"model whose hub module an earlier bert_layer exported (its attention mask is "
            f"such a StridedSlice), export the checkpoint again (bert-layer export) and train "
            f"on that module; in layers of your own, replace those ops.") from None


def _vector(builder: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _table(builder: flatbuffers.Builder, fields: dict[int, tuple[str, int]]) -> int:
    """A table of `fields` {slot: ("offset" | "byte", value)}, slots as in the schema."""
    builder.StartObject(max(fields, default=-1) + 1)
    for slot, (kind, value) in sorted(fields.items()):
        if kind == "offset":
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        else:
            builder.PrependUint8Slot(slot, value, 0)
    return builder.EndObject()


# The TFLite metadata schema (tflite-support's metadata_schema.fbs, file identifier "M001"):
# field slots and enum values this file uses. tflite-support's writer pins protobuf < 4, which
# TensorFlow 2.21 cannot load beside, so the few tables are built here with flatbuffers; the
# layout is checked with tflite-support itself (scripts/check_tflite_metadata.py).
_ASSOCIATED_FILE = {"name": 0, "description": 1, "type": 2}
_FILE_TYPES = {"UNKNOWN": 0, "TENSOR_AXIS_LABELS": 2, "VOCABULARY": 5}
_CONTENT = {"content_properties_type": 0, "content_properties": 1}
_FEATURE_PROPERTIES = 1  # ContentProperties union member.
_BERT_TOKENIZER_OPTIONS = 4  # ProcessUnitOptions union member.
_TENSOR = {"name": 0, "description": 1, "content": 3, "associated_files": 6}
_SUBGRAPH = {"name": 0, "input_tensor_metadata": 2, "output_tensor_metadata": 3,
             "input_process_units": 5}
_MODEL = {"name": 0, "description": 1, "version": 2, "subgraph_metadata": 3,
          "associated_files": 6, "min_parser_version": 7}
# The oldest metadata parser that reads BertTokenizerOptions (metadata_schema.fbs history).
_MIN_PARSER_VERSION = "1.1.0"


def _associated_file(builder: flatbuffers.Builder, name: str, description: str,
                     file_type: str) -> int:
    name, description = builder.CreateString(name), builder.CreateString(description)
    return _table(builder, {_ASSOCIATED_FILE["name"]: ("offset", name),
                            _ASSOCIATED_FILE["description"]: ("offset", description),
                            _ASSOCIATED_FILE["type"]: ("byte", _FILE_TYPES[file_type])})


def _tensor(builder: flatbuffers.Builder, name: str, description: str,
            files: Sequence[int] = ()) -> int:
    builder.StartObject(0)  # FeatureProperties: an empty table.
    feature = builder.EndObject()
    content = _table(builder, {_CONTENT["content_properties_type"]: ("byte",
                                                                    _FEATURE_PROPERTIES),
                               _CONTENT["content_properties"]: ("offset", feature)})
    fields = {_TENSOR["name"]: ("offset", builder.CreateString(name)),
              _TENSOR["description"]: ("offset", builder.CreateString(description)),
              _TENSOR["content"]: ("offset", content)}
    if files:
        fields[_TENSOR["associated_files"]] = ("offset", _vector(builder, files))
    return _table(builder, fields)


def metadata_flatbuffer(model_name: str, input_names: Sequence[str]) -> bytes:
    """The TFLite metadata of a BERT classifier, as BertNLClassifier reads it: inputs named
    ids/mask/segment_ids in the model's input order, a BertTokenizer input process unit with
    the vocabulary, the output `probability` with the class names as its axis labels."""
    builder = flatbuffers.Builder(1024)
    descriptions = {TFLITE_IDS: "wordpiece ids, [CLS] first: int32 [batch, length]",
                    TFLITE_MASK: "1 for real tokens, 0 for padding: int32 [batch, length]",
                    TFLITE_SEGMENT_IDS: "0 for the first text, 1 for the second of a pair: "
                                        "int32 [batch, length]"}
    inputs = [_tensor(builder, _METADATA_NAMES[n], descriptions[_METADATA_NAMES[n]])
              for n in input_names]
    labels = _associated_file(builder, TFLITE_LABELS_FILE, "class names, one a line",
                              "TENSOR_AXIS_LABELS")
    output = _tensor(builder, TFLITE_OUTPUT, "class probabilities: float32 [batch, classes]",
                     [labels])
    vocab = _associated_file(builder, TFLITE_VOCAB_FILE, "WordPiece vocabulary", "VOCABULARY")
    options = _table(builder, {0: ("offset", _vector(builder, [vocab]))})  # vocab_file
    unit = _table(builder, {0: ("byte", _BERT_TOKENIZER_OPTIONS), 1: ("offset", options)})
    subgraph = _table(builder, {
        _SUBGRAPH["name"]: ("offset", builder.CreateString(model_name)),
        _SUBGRAPH["input_tensor_metadata"]: ("offset", _vector(builder, inputs)),
        _SUBGRAPH["output_tensor_metadata"]: ("offset", _vector(builder, [output])),
        _SUBGRAPH["input_process_units"]: ("offset", _vector(builder, [unit]))})
    settings = _associated_file(builder, TFLITE_SETTINGS_FILE, "bert_layer's settings: "
                                "do_lower_case, max_seq_length, multi_label, precision",
                                "UNKNOWN")
    root = _table(builder, {
        _MODEL["name"]: ("offset", builder.CreateString(model_name)),
        _MODEL["description"]: ("offset", builder.CreateString(
            "BERT classifier written by bert-layer freeze: tokenize (BertTokenizer), then "
            "ids, mask, segment_ids -> class probabilities.")),
        _MODEL["version"]: ("offset", builder.CreateString("1")),
        _MODEL["subgraph_metadata"]: ("offset", _vector(builder, [subgraph])),
        _MODEL["associated_files"]: ("offset", _vector(builder, [settings])),
        _MODEL["min_parser_version"]: ("offset", builder.CreateString(_MIN_PARSER_VERSION))})
    builder.Finish(root, file_identifier=b"M001")
    return bytes(builder.Output())


def with_metadata(model: bytes, metadata: bytes, files: dict[str, bytes]) -> bytes:
    """`model` with `metadata` in a buffer named TFLITE_METADATA and `files` zipped after the
    flatbuffer (uncompressed), as tflite-support's MetadataPopulator lays them out."""
    from tensorflow.lite.tools import flatbuffer_utils  # The model schema's object API.

    model_t = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    buffer = flatbuffer_utils.schema_fb.BufferT()
    buffer.data = np.frombuffer(metadata, np.uint8)
    model_t.buffers.append(buffer)
    entry = flatbuffer_utils.schema_fb.MetadataT()
    entry.name, entry.buffer = _METADATA_NAME, len(model_t.buffers) - 1
    model_t.metadata = [m for m in (model_t.metadata or []) if m.name != _METADATA_NAME.encode()]
    model_t.metadata.append(entry)
    out = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model_t)))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def model_input_names(model: bytes) -> tuple[str, ...]:
    """The names of a TFLite flatbuffer's input tensors, in its input order."""
    from tensorflow.lite.tools import flatbuffer_utils

    subgraph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model)).subgraphs[0]
    return tuple(subgraph.tensors[i].name.decode() for i in subgraph.inputs)


def model_ops(model: bytes) -> tuple[str, ...]:
    """The builtin op names a TFLite flatbuffer uses, sorted."""
    from tensorflow.lite.tools import flatbuffer_utils

    model_t = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    names = {v: k for k, v in vars(flatbuffer_utils.schema_fb.BuiltinOperator).items()
             if not k.startswith("_")}
    return tuple(sorted({names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
                         for code in model_t.operatorCodes}))


def calibration_samples(model: keras.Model, texts: Sequence[str]) -> list[dict]:
    """Each text tokenized alone by the model's own tokenizer: TOKEN_INPUTS -> int32 [1, T]."""
    preprocess = find_bert_layer(model).preprocess
    return [{n: v.numpy() for n, v in preprocess(tf.constant([t])).items()
             if n in TOKEN_INPUTS} for t in texts]


def write_tflite(model: keras.Model, out_path: str | os.PathLike, *, class_names: list[str],
                 multi_label: bool = False, precision: str = "fp32", overwrite: bool = False,
                 inputs: Sequence[str] = (),
                 calibration_texts: Sequence[str] | None = None) -> TFLiteReport:
    """Writes `model` as a `.tflite` (ids -> probabilities) with its tokenizer's metadata.

    `inputs`: files the caller read (the model's), which the output must not replace.
    `calibration_texts`: with int8, full-integer quantization calibrated on them.
    """
    writing = dict(overwrite=overwrite, is_dir=False, inputs=inputs, suffixes=(TFLITE_SUFFIX,))
    check_output_free(out_path, **writing)
    check_convertible(model)
    bert = find_bert_layer(model)
    tokenizer = bert.preprocessor.tokenizer
    static = precision == "int8" and calibration_texts is not None
    flatbuffer = convert(model, precision,
                         calibration_samples(model, calibration_texts) if static else None)
    settings = {"do_lower_case": tokenizer.do_lower_case,
                "max_seq_length": int(bert.max_seq_length), "multi_label": bool(multi_label),
                "precision": precision, "class_names": list(class_names),
                "int8_activations": ("static" if static else "dynamic")
                if precision == "int8" else None}
    files = {TFLITE_VOCAB_FILE: "".join(t + "\n" for t in tokenizer.vocab).encode("utf-8"),
             TFLITE_LABELS_FILE: "".join(c + "\n" for c in class_names).encode("utf-8"),
             TFLITE_SETTINGS_FILE: json.dumps(settings, indent=1).encode("utf-8")}
    metadata = metadata_flatbuffer(model.name, model_input_names(flatbuffer))
    data = with_metadata(flatbuffer, metadata, files)
    with atomic_output(out_path, **writing) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return TFLiteReport(path=os.fspath(out_path), precision=precision,
                        ops=model_ops(flatbuffer), bytes=len(data))
