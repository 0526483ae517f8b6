"""A trained tagger as graph functions, frozen and served (the classifier's machinery in
bert_layer.inference.freeze and .serving, applied to a tagger).

  words_function  words string [B, W] ("" pads) -> probabilities [B, W, K], piece_counts
                  [B, W]: what every runtime runs (bert_layer.inference.tagging).
  entities        probabilities and word offsets -> padded entity tensors, seqeval's reading
                  of the tags (B-x starts an entity, so does an I-x after O or another type).

The serving SavedModel's `serving_default` takes raw strings: words are split in the graph
(`split_text_tf`, the rule `bert-layer predict` uses) and each text runs as one window of
max_seq_length wordpieces; words past it are not tagged there and are counted in
`untagged_words` (never silently: `bert-layer predict` tags long texts in windows).

Dimension legend: B = texts, W = words, K = tags, E = entities (most of any text).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from bert_layer.choices import OUTSIDE_TAG
from bert_layer.inference.formats import (
    FROZEN_SUFFIXES,
    MAX_SEQ_LENGTH,
    PIECE_COUNTS,
    TAG_NAMES,
    TAG_PROBABILITIES,
    TEXT_INPUT,
    WORDS_INPUT,
)
from bert_layer.inference.freeze import (
    FreezeReport,
    _add_constant,
    _add_identity,
    optimize_for_inference,
)
from bert_layer.inference.graphs import find_bert_layer
from bert_layer.outputs import atomic_output, check_output_free
from bert_layer.text import SAVABLE_TOKENIZERS
from bert_layer.text.alignment import split_text_tf
from bert_layer.text.tokenizer import make_tokenizer
from bert_layer.training.tagger import find_tagger_head

SERVING_SIGNATURE = "serving_default"
WORDS_SIGNATURE = "words"
METADATA_SIGNATURE = "metadata"
SAVED_MODEL_KIND = "saved_model"
ENTITY_OUTPUTS = ("starts", "ends", "labels", "scores", "count", "untagged_words")


def words_function(model: keras.Model, tokenizer: str | None = None):
    """words [B, W] -> {"probabilities" [B, W, K], "piece_counts" int32 [B, W]}, with the
    model's own tokenizer or one of kind `tokenizer` (all kinds give the same ids)."""
    bert = find_bert_layer(model)
    head = find_tagger_head(model)
    if head is None:
        raise ValueError(f"{model.name} is not a tagger: it has no TaggerHead.")
    own = bert.preprocessor.tokenizer
    word_tokenizer = own if tokenizer in (None, bert.tokenizer) else make_tokenizer(
        tokenizer, own.vocab_file, own.do_lower_case, getattr(own, "keep_accents", False),
        special_tokens=own.special_tokens)

    def run(words):
        aligned = bert.align(words, word_tokenizer)
        states, has_piece = bert.read_words(aligned, training=False)
        probabilities = head([states, has_piece])
        return {"probabilities": probabilities, "piece_counts": aligned["piece_counts"]}

    return run


def _tag_table(tag_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(entity type index [K] (-1 for O), is a B- tag [K], entity types)."""
    types: list[str] = []
    kind, begins = [], []
    for tag in tag_names:
        if tag == OUTSIDE_TAG:
            kind.append(-1)
            begins.append(False)
            continue
        prefix, name = tag.split("-", 1)
        if name not in types:
            types.append(name)
        kind.append(types.index(name))
        begins.append(prefix == "B")
    return np.array(kind, np.int32), np.array(begins), types


def entities(probabilities: tf.Tensor, n_words: tf.Tensor, starts: tf.Tensor, ends: tf.Tensor,
             tag_names: Sequence[str]) -> dict[str, tf.Tensor]:
    """Padded entities of tag `probabilities` [B, W, K] for texts of `n_words` [B] words whose
    character offsets are `starts`, `ends` int64 [B, W].

    Returns starts, ends int64 [B, E] (-1 pads), labels string [B, E] ("" pads), scores
    float32 [B, E] (the mean probability of the entity's words' tags, 0 pads), count int32 [B].
    """
    kind_table, begin_table, types = _tag_table(tag_names)
    tag = tf.argmax(probabilities, axis=-1, output_type=tf.int32)  # [B, W]
    chosen = tf.reduce_max(probabilities, axis=-1)
    width = tf.shape(tag)[1]
    valid = tf.range(width)[None, :] < tf.cast(n_words, tf.int32)[:, None]
    kind = tf.where(valid, tf.gather(kind_table, tag), -1)
    begins = tf.gather(begin_table, tag)
    previous = tf.pad(kind[:, :-1], [[0, 0], [1, 0]], constant_values=-1)
    inside = kind >= 0
    first = inside & (begins | tf.not_equal(previous, kind))
    per_text = tf.reduce_sum(tf.cast(first, tf.int32), axis=1)  # [B]
    offset = tf.cumsum(per_text, exclusive=True)
    entity = tf.cumsum(tf.cast(first, tf.int32), axis=1) - 1 + offset[:, None]  # [B, W]
    ids = tf.boolean_mask(entity, inside)
    total = tf.reduce_sum(per_text)
    start = tf.math.unsorted_segment_min(tf.boolean_mask(starts, inside), ids, total)
    end = tf.math.unsorted_segment_max(tf.boolean_mask(ends, inside), ids, total)
    score = tf.math.unsorted_segment_mean(tf.boolean_mask(chosen, inside), ids, total)
    label = tf.gather(tf.constant(types or [""], tf.string), tf.boolean_mask(kind, first))

    def padded(values, pad):
        return tf.RaggedTensor.from_row_lengths(values, per_text).to_tensor(default_value=pad)

    return {"starts": padded(start, tf.constant(-1, start.dtype)),
            "ends": padded(end, tf.constant(-1, end.dtype)),
            "labels": padded(label, ""), "scores": padded(score, 0.0), "count": per_text}


def text_function(model: keras.Model, tokenizer: str | None = None):
    """texts string [B] -> the padded entities of `entities`, plus untagged_words int32 [B]
    (words past the one window of max_seq_length pieces)."""
    run = words_function(model, tokenizer)
    tag_names = find_tagger_head(model).tag_names
    budget = find_bert_layer(model).max_seq_length - 2

    def call(text):
        words, starts, ends = split_text_tf(text)
        out = run(words.to_tensor(default_value=""))
        counts = out["piece_counts"]
        before = tf.cumsum(counts, axis=1, exclusive=True)
        untagged = tf.reduce_sum(tf.cast((counts > 0) & (before >= budget), tf.int32), axis=1)
        found = entities(out["probabilities"], words.row_lengths(), starts.to_tensor(-1),
                         ends.to_tensor(-1), tag_names)
        return {**found, "untagged_words": untagged}

    return call


def freeze_tagger(model: keras.Model, out_path: str | os.PathLike, *, overwrite: bool = False,
                  inputs: Sequence[str] = (), tokenizer: str | None = None) -> FreezeReport:
    """Writes the tagger as a frozen, optimized GraphDef `.pb`: `words` [B, W] in,
    `tag_probabilities` [B, W, K] and `piece_counts` [B, W] out, `tag_names` and
    `max_seq_length` constants. A numpy-tokenizer tagger is frozen with the graph tokenizer
    (same ids), unless `tokenizer` says "core"."""
    writing = dict(overwrite=overwrite, is_dir=False, inputs=inputs, suffixes=FROZEN_SUFFIXES)
    check_output_free(out_path, **writing)
    bert = find_bert_layer(model)
    tokenizer = _savable(tokenizer, bert.tokenizer)
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec([None, None], tf.string, name=WORDS_INPUT)
    function = tf.function(words_function(model, tokenizer),
                           autograph=False).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(function)
    graph_def = frozen.graph.as_graph_def()
    # The frozen function's outputs are the dict's values in tf.nest order (sorted keys).
    outputs = dict(zip(sorted(function.structured_outputs), frozen.outputs))
    for name, key in ((TAG_PROBABILITIES, "probabilities"), (PIECE_COUNTS, "piece_counts")):
        tensor = outputs[key]
        node, index = tensor.name.rsplit(":", 1)
        _add_identity(graph_def, name, node if index == "0" else tensor.name, tensor.dtype)
    _add_constant(graph_def, TAG_NAMES, np.array(find_tagger_head(model).tag_names, object))
    _add_constant(graph_def, MAX_SEQ_LENGTH, np.array(bert.max_seq_length, np.int32))
    keep = [TAG_PROBABILITIES, PIECE_COUNTS, TAG_NAMES, MAX_SEQ_LENGTH]
    optimized = optimize_for_inference(graph_def, keep)
    data = optimized.SerializeToString()
    with atomic_output(out_path, **writing) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return FreezeReport(path=os.fspath(out_path), inputs=(WORDS_INPUT,),
                        nodes_before=len(graph_def.node), nodes_after=len(optimized.node),
                        bytes_before=graph_def.ByteSize(), bytes_after=len(data))


def _savable(tokenizer: str | None, own: str) -> str:
    tokenizer = tokenizer or ("graph" if own == "numpy" else own)
    if tokenizer not in SAVABLE_TOKENIZERS:
        raise ValueError(f"A frozen graph or SavedModel holds the tokenizer 'graph' or 'core', "
                         f"not {tokenizer!r} (Python code cannot be saved).")
    return tokenizer


def write_serving_tagger(model: keras.Model, out_dir: str | os.PathLike, *,
                         tokenizer: str | None = None, overwrite: bool = False,
                         inputs: Sequence[str] = ()) -> str:
    """Writes the tagger as a serving SavedModel folder (docs/serving.md), signatures:

      serving_default  text string [B] -> starts, ends int64 [B, E], labels string [B, E],
                       scores float32 [B, E], count int32 [B], untagged_words int32 [B]
      words            words string [B, W] -> probabilities float32 [B, W, K],
                       piece_counts int32 [B, W]
      metadata         () -> tag_names string [K], max_seq_length int32 []
    """
    writing = dict(overwrite=overwrite, kind=SAVED_MODEL_KIND, inputs=inputs)
    check_output_free(out_dir, **writing)
    bert = find_bert_layer(model)
    tokenizer = _savable(tokenizer, bert.tokenizer)
    tag_names = tf.constant(find_tagger_head(model).tag_names, tf.string)
    root = tf.Module()
    root.weights = [w.value for w in model.weights]
    root.serve = tf.function(text_function(model, tokenizer),
                             input_signature=[tf.TensorSpec([None], tf.string, name=TEXT_INPUT)],
                             autograph=False)
    root.serve_words = tf.function(
        words_function(model, tokenizer),
        input_signature=[tf.TensorSpec([None, None], tf.string, name=WORDS_INPUT)], autograph=False)
    root.tagger_metadata = tf.function(  # The attribute name marks a tagger (is_tagger_file).
        lambda: {"tag_names": tf.identity(tag_names),
                 "max_seq_length": tf.constant(bert.max_seq_length, tf.int32)},
        input_signature=[], autograph=False)
    signatures = {SERVING_SIGNATURE: root.serve, WORDS_SIGNATURE: root.serve_words,
                  METADATA_SIGNATURE: root.tagger_metadata}
    with atomic_output(out_dir, **writing) as tmp:
        tf.saved_model.save(root, tmp, signatures=signatures)
    return os.fspath(out_dir)
