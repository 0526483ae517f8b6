"""Pooling a sequence output over real tokens only, so padding never leaks."""

from __future__ import annotations

import tensorflow as tf

from bert_layer.specs import POOLINGS


def check_pooling(pooling: str | None) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; expected one of {list(POOLINGS)}.")


def masked_sequence(sequence_output: tf.Tensor, input_mask: tf.Tensor) -> tf.Tensor:
    """The sequence output [B, T, H] with padding positions set to zero."""
    return sequence_output * tf.cast(input_mask, sequence_output.dtype)[:, :, tf.newaxis]


def pool(pooling: str | None, pooled_output: tf.Tensor, sequence_output: tf.Tensor,
         input_mask: tf.Tensor) -> tf.Tensor:
    """`cls`: the module's pooled output [B, H]; `mean`/`max`: over real tokens [B, H];
    None: the masked sequence output [B, T, H]."""
    check_pooling(pooling)
    if pooling == "cls":
        return pooled_output
    mask = tf.cast(input_mask, sequence_output.dtype)[:, :, tf.newaxis]  # [B, T, 1]
    if pooling == "mean":
        total = tf.reduce_sum(sequence_output * mask, axis=1)
        return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    if pooling == "max":
        lowest = tf.fill(tf.shape(sequence_output), sequence_output.dtype.min)
        return tf.reduce_max(tf.where(mask > 0, sequence_output, lowest), axis=1)
    return sequence_output * mask
