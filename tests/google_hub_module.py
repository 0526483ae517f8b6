"""A TF1 Hub BERT module written as Google's were: TF 1.x reference variables.

Google's published modules (tfhub.dev/google/bert_*/1) were written by TF 1.x, whose variables
were `VariableV2` ops read through a `<name>/read` Identity, with the signatures `tokens`
(`input_ids`, `input_mask`, `segment_ids` -> `pooled_output`, `sequence_output`) and
`tokenization_info` (`vocab_file`, `do_lower_case`), and the tag sets {"train"} (dropout) and
{}. `write_google_module` writes such a module with `tf.compat.v1` and a `SavedModelBuilder`,
nothing of `bert_layer.export.writer`: only the BERT graph itself comes from `module_fn`.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import tensorflow as tf

from bert_layer.export.config import BertConfig
from bert_layer.export.module_fn import BERT, Architecture, bert_model

tf1 = tf.compat.v1

BOTH_TAG_SETS = ((frozenset({"train"}), True), (frozenset(), False))
INFERENCE_ONLY = ((frozenset(), False),)


def _tokens_signature(config: BertConfig, is_training: bool, pooler: bool,
                      ignored_input: str | None, architecture: Architecture = BERT):
    inputs = {name: tf1.placeholder(tf.int32, [None, None], name=name)
              for name in ("input_ids", "input_mask", "segment_ids")}
    used = {name: (tf.zeros_like(t) if name == ignored_input else t)
            for name, t in inputs.items()}
    # TF 1.x's default: reference variables (VariableV2 + `<name>/read`).
    with tf1.variable_scope(tf1.get_variable_scope(), use_resource=False):
        outputs = bert_model(config, **used, is_training=is_training, has_pooler=pooler,
                             architecture=architecture)
    if not pooler:  # As a checkpoint without pooler weights: the first token's state.
        outputs = {"sequence_output": outputs["sequence_output"],
                   "pooled_output": tf.identity(outputs["sequence_output"][:, 0])}
    return inputs, outputs


def _signature_def(inputs: dict, outputs: dict):
    build = tf1.saved_model.utils.build_tensor_info
    return tf1.saved_model.signature_def_utils.build_signature_def(
        inputs={k: build(t) for k, t in inputs.items()},
        outputs={k: build(t) for k, t in outputs.items()},
        method_name=tf1.saved_model.signature_constants.PREDICT_METHOD_NAME)


def _variables_for_pooler(pooler: bool) -> list:
    variables = tf1.global_variables()
    if pooler:
        return variables
    return [v for v in variables if "/pooler/" not in v.op.name]


def write_google_module(directory: str, config: BertConfig, weights: dict[str, np.ndarray],
                        vocab_file: str, *, do_lower_case: bool = True,
                        tag_sets=BOTH_TAG_SETS, pooler: bool = True,
                        ignored_input: str | None = None, architecture: Architecture = BERT,
                        vocab_output: str = "vocab_file") -> str:
    """Writes a ref-variable TF1 Hub BERT module with `weights` (Google names) to `directory`.

    Args:
      tag_sets: (tags, is_training) per meta graph; the first one saves the variables.
      pooler: False leaves out `bert/pooler/*`; `pooled_output` is then the first token's
        sequence output, as in a module made from a checkpoint without a pooler.
      ignored_input: a `tokens` input the graph takes but never reads (fed zeros instead).
      architecture: the family's variable scopes (ELECTRA's `electra/`, ALBERT's shared
        layer; see bert_layer.export.families).
      vocab_output: tokenization_info's name for the vocabulary: "vocab_file", or
        "sp_model_file" as Google's ALBERT modules give their SentencePiece model.
    """
    builder = tf1.saved_model.Builder(directory)
    for index, (tags, is_training) in enumerate(tag_sets):
        with tf.Graph().as_default():
            tokens = _tokens_signature(config, is_training, pooler, ignored_input,
                                       architecture)
            vocab = tf.constant(vocab_file, name=vocab_output)
            tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, vocab)
            lower = tf.constant(do_lower_case, name="do_lower_case")
            signatures = {"tokens": _signature_def(*tokens), "tokenization_info": _signature_def(
                {}, {vocab_output: vocab, "do_lower_case": lower})}
            assets = tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS)
            variables = _variables_for_pooler(pooler)
            assert all(v.op.type == "VariableV2" for v in variables), "expected ref variables"
            if index > 0:
                builder.add_meta_graph(sorted(tags), signature_def_map=signatures,
                                       assets_collection=assets,
                                       saver=tf1.train.Saver(variables))
                continue
            with tf1.Session() as session:
                session.run([v.initializer for v in variables],
                            feed_dict={v.initializer.inputs[1]: weights[v.op.name]
                                       for v in variables})
                builder.add_meta_graph_and_variables(
                    session, sorted(tags), signature_def_map=signatures,
                    assets_collection=assets, saver=tf1.train.Saver(variables))
    builder.save()
    return directory


def copy_vocab(vocab_file: str, directory: str) -> str:
    """A copy of `vocab_file` outside the module, as the exporting machine had it."""
    os.makedirs(directory, exist_ok=True)
    return shutil.copy(vocab_file, os.path.join(directory, "vocab.txt"))
