"""A serving SavedModel: what TF Serving (or any TensorFlow) runs, raw strings in.

`write_serving_model` saves a trained classifier as a TF2 SavedModel (tag "serve") with three
signatures:

  serving_default  text string [B] ("a", or a pair "a ||| b")
                   -> probabilities float32 [B, K], label string [B], label_index int64 [B]
  ids              input_ids, input_mask, segment_ids int32 [B, T] -> the same outputs
                   (a model reading long texts as windows: the rows are windows, and
                   window_document int32 [W] names each one's text; outputs per text)
  metadata         () -> class_names string [K], multi_label bool [], task string []

A regressor's (task "regress") serving_default and ids give `score` float32 [B, K] instead,
and its class_names are the score names.

`label` is what `bert-layer predict` writes: the most probable class, or for a multi-label
model the classes above 0.5 joined by ","; `label_index` is the most probable class in both.
With the core tokenizer the SavedModel holds only core TensorFlow ops (see docs/serving.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import tensorflow as tf

from bert_layer.choices import MULTI_LABEL_THRESHOLD
from bert_layer.contract import TOKEN_INPUTS
from bert_layer.inference.formats import (
    IDS_SIGNATURE,
    METADATA_SIGNATURE,
    SERVING_SIGNATURE,
    TEXT_INPUT,
)
from bert_layer.inference.graphs import find_bert_layer, ids_model, is_windowed, text_model
from bert_layer.outputs import atomic_output, check_output_free
from bert_layer.text import SAVABLE_TOKENIZERS
from bert_layer.text.windows import WINDOW_DOCUMENT

SAVED_MODEL_KIND = "saved_model"  # The output kind `--overwrite` checks (bert_layer.outputs).


def _labelled(probabilities: tf.Tensor, class_names: tf.Tensor,
              multi_label: bool) -> dict[str, tf.Tensor]:
    """The outputs of SERVING_OUTPUTS for probabilities [B, K] and class_names string [K]."""
    index = tf.argmax(probabilities, axis=1)  # int64 [B]
    if multi_label:
        names = tf.broadcast_to(class_names, tf.shape(probabilities))
        chosen = tf.ragged.boolean_mask(names, probabilities > MULTI_LABEL_THRESHOLD)
        label = tf.strings.reduce_join(chosen, axis=1, separator=",")
    else:
        label = tf.gather(class_names, index)
    return {"probabilities": probabilities, "label": label, "label_index": index}


def write_serving_model(model: keras.Model, out_dir: str | os.PathLike, *,
                        class_names: list[str], multi_label: bool = False,
                        tokenizer: str | None = None, overwrite: bool = False,
                        inputs: Sequence[str] = (), task: str = "classify") -> str:
    """Writes `model` (strings -> probabilities) as a serving SavedModel folder `out_dir`.

    Args:
      model: a classifier with one BertLayer (as `bert-layer train` writes).
      class_names: one name per output column.
      multi_label: sigmoid outputs, several labels per text.
      tokenizer: the tokenizer the SavedModel holds: "graph" (needs tensorflow_text where it
        runs) or "core" (core TensorFlow only). None: the model's own, or "graph" for a
        model trained with the numpy tokenizer, whose Python code cannot be saved.
      overwrite: replace an existing SavedModel folder (only one bert-layer wrote).
      inputs: files the caller read (the model's), which the output must not replace.
      task: "classify", or "regress" (outputs `score`).
    """
    writing = dict(overwrite=overwrite, kind=SAVED_MODEL_KIND, inputs=inputs)
    check_output_free(out_dir, **writing)  # Before the work; atomic_output checks again.
    bert = find_bert_layer(model)
    if len(class_names) != model.output_shape[-1]:
        raise ValueError(f"{len(class_names)} class names for {model.output_shape[-1]} "
                         f"outputs of {model.name}: {class_names}.")
    if tokenizer is None:
        tokenizer = "graph" if bert.tokenizer == "numpy" else bert.tokenizer
    if tokenizer not in SAVABLE_TOKENIZERS:
        raise ValueError(f"A SavedModel holds the tokenizer 'graph' or 'core', not "
                         f"{tokenizer!r} (Python code cannot be saved).")
    names = tf.constant(class_names, tf.string)
    from_text, from_ids = text_model(model, tokenizer), ids_model(model)

    # By hand rather than keras.export.ExportArchive: the archive saves every weight twice
    # (Keras's variables and the tf.Variables its functions read: 2x the folder's size).
    root = tf.Module()
    root.weights = [w.value for w in model.weights]  # What the functions below read.
    text_spec = tf.TensorSpec([None], tf.string, name=TEXT_INPUT)
    ids_specs = [tf.TensorSpec([None, None], tf.int32, name=n) for n in TOKEN_INPUTS]
    if task == "regress":
        outputs = lambda values: {"score": values}  # noqa: E731
    else:
        outputs = lambda values: _labelled(values, names, multi_label)  # noqa: E731
    root.serve = tf.function(lambda text: outputs(from_text(text)), input_signature=[text_spec],
                             autograph=False)
    if is_windowed(model):
        ids_specs.append(tf.TensorSpec([None], tf.int32, name=WINDOW_DOCUMENT))
        root.serve_ids = tf.function(
            lambda input_ids, input_mask, segment_ids, window_document: outputs(
                from_ids(input_ids, input_mask, segment_ids, window_document)),
            input_signature=ids_specs, autograph=False)
    else:
        root.serve_ids = tf.function(
            lambda input_ids, input_mask, segment_ids: outputs(
                from_ids(input_ids, input_mask, segment_ids)),
            input_signature=ids_specs, autograph=False)
    root.metadata = tf.function(
        lambda: {"class_names": tf.identity(names), "multi_label": tf.constant(multi_label),
                 "task": tf.constant(task)},
        input_signature=[], autograph=False)
    signatures = {SERVING_SIGNATURE: root.serve, IDS_SIGNATURE: root.serve_ids,
                  METADATA_SIGNATURE: root.metadata}
    with atomic_output(out_dir, **writing) as tmp:
        tf.saved_model.save(root, tmp, signatures=signatures)
    return os.fspath(out_dir)
