"""Sentence embeddings from a hub module: one vector per text, in input order.

Texts are grouped by length into batches (each padded to its own longest text), pooled as
asked (see `bert_layer.layers.pooling`), optionally L2-normalised, and put back in input order.
Dimension legend: n = texts, H = hidden size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TextIO

import numpy as np
import tensorflow as tf

from bert_layer.choices import DEFAULT_MAX_SEQ_LENGTH, WINDOW_POOLINGS
from bert_layer.data.batching import estimate_lengths, length_grouped_batches, restore_order
from bert_layer.inference.formats import EMBEDDING_SUFFIXES, embedding_format
from bert_layer.layers.layer import BertLayer
from bert_layer.outputs import atomic_output


def make_embedder(module_dir: str, *, pooling: str, normalize: bool = False,
                  max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH, stride: int | None = None,
                  window_pooling: str = WINDOW_POOLINGS[0]) -> BertLayer:
    """A frozen BertLayer that maps strings [b] to embeddings [b, H]. With `stride`, a long
    text is read as windows and its vector is the `window_pooling` of theirs."""
    if pooling is None:
        raise ValueError("Embeddings need a pooling; found None.")
    return BertLayer(module_dir, pooling=pooling, normalize=normalize,
                     max_seq_length=max_seq_length, n_fine_tune_layers=0, trainable=False,
                     stride=stride, window_pooling=window_pooling)


def embed_texts(layer: BertLayer, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Embeddings float32 [n, H] in input order, computed on length-grouped batches."""
    batches = length_grouped_batches(estimate_lengths(texts), batch_size)
    if not texts:
        return np.zeros([0, layer.hidden_size], np.float32)
    if not layer.built:
        # Eagerly: a build traced inside the tf.function below left the weights at zero.
        layer.build(None)
    # One trace for every batch shape: strings [b] in, [b, H] out, inference graph.
    run = tf.function(lambda t: layer(t, training=False),
                      input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    results = [run(tf.constant([texts[i] for i in batch])).numpy() for batch in batches]
    return restore_order(results, batches).astype(np.float32)


def _write_jsonl(out: TextIO, texts: list[str], embeddings: np.ndarray) -> None:
    for text, vector in zip(texts, embeddings):
        # float32 values as the shortest decimal that reads back as the same double.
        record = {"text": text, "embedding": vector.tolist()}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_embeddings(path: str, texts: list[str], embeddings: np.ndarray, *,
                     overwrite: bool = False, inputs: Sequence[str] = ()) -> None:
    """Writes `embeddings` [n, H] to `path` (.npy or .jsonl), all at once or not at all.

    `overwrite` replaces only an embeddings file (EMBEDDING_SUFFIXES), never an input."""
    fmt = embedding_format(path)
    with atomic_output(path, overwrite=overwrite, is_dir=False, inputs=inputs,
                       suffixes=EMBEDDING_SUFFIXES) as tmp:
        if fmt == "npy":
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(embeddings, np.float32))
        else:
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                _write_jsonl(f, texts, embeddings)
