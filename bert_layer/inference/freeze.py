"""Freezing a trained Keras model into a lean inference graph (run by `runtimes.py`).

A frozen graph is one GraphDef: variables turned into constants, training-only
nodes gone, Grappler's inference rewrites applied. With the graph tokenizer it
takes raw strings (`text`); with the numpy tokenizer, whose Python code cannot
live in a GraphDef, it takes `input_ids`, `input_mask`, `segment_ids` and the
tokenizer runs outside (see `bert_layer.inference.runtimes.FrozenClassifier`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)
from tensorflow.python.grappler import tf_optimizer

from bert_layer.contract import TOKEN_INPUTS
from bert_layer.inference.formats import (
    CLASS_NAMES,
    DO_LOWER_CASE,
    FROZEN_SUFFIXES,
    MAX_SEQ_LENGTH,
    MULTI_LABEL,
    OUTPUT,
    SCORE_OUTPUT,
    SPECIAL_TOKENS,
    TEXT_INPUT,
    VOCAB,
    WINDOW_STRIDE,
)
from bert_layer.inference.graphs import find_bert_layer, ids_model, text_model
from bert_layer.outputs import atomic_output, check_output_free
from bert_layer.text.vocab import BERT_SPECIAL_TOKENS

# No "debug_stripper": it removes Assert ops, and the text signature's pair check
# (bert_layer.text.packing.split_pairs) must stay in the frozen graph. No "remap": its
# fusions are build-specific ops (oneDNN's _MklLayerNorm, ...) that other TensorFlow builds
# lack; the runtime that loads the graph applies the ones it has.
GRAPPLER_PASSES = ("pruning", "constfold", "arithmetic", "dependency",
                   "common_subgraph_elimination")


@dataclasses.dataclass(frozen=True)
class FreezeReport:
    path: str
    inputs: tuple[str, ...]
    nodes_before: int  # the frozen graph before Grappler
    nodes_after: int
    bytes_before: int
    bytes_after: int

    def table(self) -> str:
        return (f"{'':14}{'nodes':>8}{'bytes':>14}\n"
                f"{'before':14}{self.nodes_before:>8}{self.bytes_before:>14,}\n"
                f"{'after':14}{self.nodes_after:>8}{self.bytes_after:>14,}")


def _text_function(model: keras.Model, tokenizer: str | None):
    spec = tf.TensorSpec([None], tf.string, name=TEXT_INPUT)
    return tf.function(text_model(model, tokenizer), autograph=False).get_concrete_function(spec)


def _ids_function(model: keras.Model):
    specs = [tf.TensorSpec([None, None], tf.int32, name=n) for n in TOKEN_INPUTS]
    return tf.function(ids_model(model), autograph=False).get_concrete_function(*specs)


def _add_constant(graph_def: graph_pb2.GraphDef, name: str, value) -> None:
    node = graph_def.node.add(name=name, op="Const")
    tensor = tf.make_tensor_proto(value)
    node.attr["dtype"].type = tensor.dtype
    node.attr["value"].tensor.CopyFrom(tensor)


def _add_identity(graph_def: graph_pb2.GraphDef, name: str, source: str, dtype) -> None:
    node = graph_def.node.add(name=name, op="Identity", input=[source])
    node.attr["T"].type = dtype.as_datatype_enum


def optimize_for_inference(graph_def: graph_pb2.GraphDef,
                           outputs: list[str]) -> graph_pb2.GraphDef:
    """Runs Grappler's inference passes, keeping the `outputs` nodes."""
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
    fetches = meta_graph_pb2.CollectionDef()
    fetches.node_list.value.extend(outputs)
    meta_graph.collection_def["train_op"].CopyFrom(fetches)  # Grappler keeps these.
    config = config_pb2.ConfigProto()
    rewrites = config.graph_options.rewrite_options
    rewrites.optimizers.extend(GRAPPLER_PASSES)
    rewrites.min_graph_nodes = -1
    return tf_optimizer.OptimizeGraph(config, meta_graph)


def freeze_model(model: keras.Model, out_path: str | os.PathLike, *, class_names: list[str],
                 multi_label: bool = False, overwrite: bool = False,
                 inputs: Sequence[str] = (), tokenizer: str | None = None,
                 task: str = "classify") -> FreezeReport:
    """Writes `model` (strings -> probabilities) as a frozen, optimized GraphDef `.pb`.

    For a regressor (`task="regress"`) the output node is `score` [B, scores] and
    `class_names` holds the score names.

    `inputs`: files the caller read (the model's), which the output must not replace.
    `tokenizer` ("graph" or "core"; None: the model's own) is the one the graph holds; with
    "numpy" the graph takes ids.
    """
    writing = dict(overwrite=overwrite, is_dir=False, inputs=inputs, suffixes=FROZEN_SUFFIXES,
                   named=FROZEN_SUFFIXES)  # predict reads a frozen graph by its .pb name.
    check_output_free(out_path, **writing)  # Before the work; atomic_output checks again.
    bert = find_bert_layer(model)
    tokenizer = tokenizer or bert.tokenizer
    if tokenizer == "numpy" and bert.stride is not None:
        raise ValueError("A model that reads long texts as windows (stride) freezes with the "
                         "tokenizer inside: pass tokenizer='graph' or 'core' (same ids as "
                         "numpy).")
    function = (_ids_function(model) if tokenizer == "numpy"
                else _text_function(model, tokenizer))
    frozen = convert_variables_to_constants_v2(function)
    graph_def = frozen.graph.as_graph_def()
    (output,) = frozen.outputs
    output_name = SCORE_OUTPUT if task == "regress" else OUTPUT
    _add_identity(graph_def, output_name, output.name.split(":")[0], output.dtype)
    _add_constant(graph_def, CLASS_NAMES, np.array(class_names, dtype=object))
    _add_constant(graph_def, MULTI_LABEL, np.array(multi_label))
    keep = [output_name, CLASS_NAMES, MULTI_LABEL]
    if bert.stride is not None:
        _add_constant(graph_def, WINDOW_STRIDE, np.array(bert.stride, np.int32))
        keep.append(WINDOW_STRIDE)
    if tokenizer == "numpy":  # What predict needs to tokenize outside the graph.
        vocab = bert.preprocessor.tokenizer
        _add_constant(graph_def, VOCAB, np.array(vocab.vocab, dtype=object))
        _add_constant(graph_def, DO_LOWER_CASE, np.array(vocab.do_lower_case))
        _add_constant(graph_def, MAX_SEQ_LENGTH, np.array(bert.max_seq_length, np.int32))
        keep += [VOCAB, DO_LOWER_CASE, MAX_SEQ_LENGTH]
        special = vocab.special_tokens
        if special != BERT_SPECIAL_TOKENS:  # Graphs of BERT models stay as they were.
            _add_constant(graph_def, SPECIAL_TOKENS, np.array(
                [special.cls, special.sep, special.pad or "", str(special.pair_separators)],
                dtype=object))
            keep.append(SPECIAL_TOKENS)
    elif bert.stride is None:  # The tokenizer's outputs, fed directly by run_ids.
        keep += list(TOKEN_INPUTS)
    optimized = optimize_for_inference(graph_def, keep)
    data = optimized.SerializeToString()
    with atomic_output(out_path, **writing) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    inputs = tuple(t.name.split(":")[0] for t in frozen.inputs)
    return FreezeReport(path=os.fspath(out_path), inputs=inputs,
                        nodes_before=len(graph_def.node), nodes_after=len(optimized.node),
                        bytes_before=graph_def.ByteSize(), bytes_after=len(data))
