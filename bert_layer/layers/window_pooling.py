"""A document's output from its windows' outputs (texts read as windows: bert_layer.text.windows).

`pool_windows` combines rows [W, ...] into one row per document [B, ...] by the windows'
document index (sorted, every document present: each has at least one window), with
`tf.math.segment_mean` / `segment_max` (core ops: they live in frozen graphs). `WindowPooling`
is the classifier's last layer: the mean (or max) of the windows' probabilities; in training
it passes the windows through, so that each window is an example carrying its document's label.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from bert_layer.choices import WINDOW_POOLINGS


def check_window_pooling(mode: str) -> None:
    if mode not in WINDOW_POOLINGS:
        raise ValueError(f"window_pooling must be one of {list(WINDOW_POOLINGS)}. "
                         f"Received: {mode!r}")


def pool_windows(values: tf.Tensor, document: tf.Tensor, mode: str,
                 normalize: bool = False) -> tf.Tensor:
    """Rows [W, ...] -> [B, ...]: the mean or max of each document's windows.

    `document` int [W], sorted, holds every document 0..B-1. `normalize` scales the result
    to unit L2 norm (embeddings whose windows were normalized stay unit vectors).
    """
    check_window_pooling(mode)
    segment = tf.math.segment_mean if mode == "mean" else tf.math.segment_max
    pooled = segment(values, tf.cast(document, tf.int32))
    return tf.math.l2_normalize(pooled, axis=-1, epsilon=1e-24) if normalize else pooled


@keras.saving.register_keras_serializable(package="bert_layer")
class WindowPooling(keras.layers.Layer):
    """`[window outputs [W, K], window_document int [W]]` -> document outputs [B, K].

    Args:
      mode: "mean" (of the windows' probabilities, the default) or "max".

    Call arguments:
      training: True passes the windows' outputs through ([W, K]): the training data repeat
        each document's label once per window (`WindowPreprocessor.windows_per_text`).
    """

    def __init__(self, mode: str = WINDOW_POOLINGS[0], **kwargs):
        super().__init__(**kwargs)
        check_window_pooling(mode)
        self.mode = mode

    def call(self, inputs, training=None):
        values, document = inputs
        if training:
            return values
        return pool_windows(values, document, self.mode)

    def compute_output_spec(self, inputs, training=None):
        values, _ = inputs
        return keras.KerasTensor((None, *values.shape[1:]), dtype=values.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}
