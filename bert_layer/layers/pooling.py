"""Pooling a sequence output into one vector per text; masked, so padding never leaks.

The pooling modes, in one place (POOLINGS):
  "cls"   the module's `pooled_output`: BERT's pooler, tanh(dense(first token)), trained for
          next-sentence prediction. Not sentence-transformers' "cls" (see "first").
  "first" the raw sequence output of the first token ([CLS]): what embedding models with CLS
          pooling use (bge; sentence-transformers' `pooling_mode_cls_token`).
  "mean"  the average over real tokens (sentence-transformers' "mean", e.g. all-MiniLM-L6-v2).
  "max"   the maximum over real tokens.
  None    no pooling: the sequence output [B, T, H] with padding positions zeroed.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from bert_layer.choices import POOLINGS, VECTOR_POOLINGS  # noqa: F401  (defined there, TF-free)

if TYPE_CHECKING:
    import tensorflow as tf


def check_pooling(pooling: str | None, normalize: bool = False) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; expected one of {list(POOLINGS)}.")
    if normalize and pooling is None:
        raise ValueError("normalize=True scales one pooled vector per text to unit length; "
                         f"it needs a pooling (one of {list(VECTOR_POOLINGS)}), found None.")


def warn_if_untrained_pooler(pooling: str | None, has_pooler: bool, source: str) -> None:
    """`pooling="cls"` on a module without pooler weights returns no trained pooler."""
    if pooling == "cls" and not has_pooler:
        warnings.warn(
            f"{source} has no pooler weights (bert/pooler/*): its pooled_output is not a "
            f"trained pooler, so pooling='cls' does not give BERT's pooled vector. For the "
            f"first token's state ([CLS]), as embedding models use, pass pooling='first'.",
            UserWarning, stacklevel=3)


def masked_sequence(sequence_output: tf.Tensor, input_mask: tf.Tensor) -> tf.Tensor:
    """The sequence output [B, T, H] with padding positions set to zero."""
    return sequence_output * _mask_column(input_mask, sequence_output.dtype)


def _mask_column(input_mask: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """input_mask [B, T] -> [B, T, 1] of `dtype`. `expand_dims`, not `[:, :, tf.newaxis]`:
    that is a StridedSlice with a new axis, which TFLite's builtin ops lack (freeze --format
    tflite converts the pooled graph)."""
    import tensorflow as tf  # Deferred (here and below): the CLI reads POOLINGS without TF.

    return tf.expand_dims(tf.cast(input_mask, dtype), axis=-1)


def pool(pooling: str | None, pooled_output: tf.Tensor, sequence_output: tf.Tensor,
         input_mask: tf.Tensor, normalize: bool = False) -> tf.Tensor:
    """`cls`: the module's pooled output [B, H]; `first`: the first token's state [B, H];
    `mean`/`max`: over real tokens [B, H]; None: the masked sequence output [B, T, H].
    `normalize` scales each pooled vector to unit L2 norm."""
    import tensorflow as tf

    check_pooling(pooling, normalize)
    pooled = _pool(pooling, pooled_output, sequence_output, input_mask)
    # Epsilon as in sentence-transformers' Normalize (torch's F.normalize): an all-zero
    # vector stays zero instead of becoming NaN.
    return tf.math.l2_normalize(pooled, axis=-1, epsilon=1e-24) if normalize else pooled


def _pool(pooling: str | None, pooled_output: tf.Tensor, sequence_output: tf.Tensor,
          input_mask: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    if pooling == "cls":
        return pooled_output
    if pooling == "first":
        return sequence_output[:, 0]
    mask = _mask_column(input_mask, sequence_output.dtype)
    if pooling == "mean":
        total = tf.reduce_sum(sequence_output * mask, axis=1)
        return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    if pooling == "max":
        lowest = tf.fill(tf.shape(sequence_output), sequence_output.dtype.min)
        return tf.reduce_max(tf.where(mask > 0, sequence_output, lowest), axis=1)
    return sequence_output * mask
