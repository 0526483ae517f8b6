"""Pooling over real tokens only: golden values by hand, padding that would win if it leaked."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bert_layer.pooling import POOLINGS, check_pooling, masked_sequence, pool

# B=2, T=3, H=2. Row 0 has two real tokens, row 1 one; the padding holds values (100, -100)
# that would show in every pooling if the mask were ignored.
SEQUENCE = np.array([[[1.0, -4.0], [3.0, -2.0], [100.0, -100.0]],
                     [[-5.0, 6.0], [100.0, -100.0], [100.0, -100.0]]], np.float32)
MASK = np.array([[1, 1, 0], [1, 0, 0]], np.int32)
POOLED = np.array([[0.5, -0.5], [0.25, 0.75]], np.float32)  # Stands for the module's pooler.


def _pool(pooling):
    return pool(pooling, tf.constant(POOLED), tf.constant(SEQUENCE), tf.constant(MASK)).numpy()


def test_cls_is_the_modules_pooled_output():
    np.testing.assert_array_equal(_pool("cls"), POOLED)


def test_mean_averages_real_tokens_only():
    np.testing.assert_array_equal(_pool("mean"), [[2.0, -3.0], [-5.0, 6.0]])


def test_max_ignores_padding_even_when_real_tokens_are_all_negative():
    # Column 1 of row 0 is all negative: a zeroed (not excluded) padding would give 0.
    np.testing.assert_array_equal(_pool("max"), [[3.0, -2.0], [-5.0, 6.0]])


def test_none_is_the_sequence_with_padding_zeroed():
    expected = [[[1.0, -4.0], [3.0, -2.0], [0.0, 0.0]],
                [[-5.0, 6.0], [0.0, 0.0], [0.0, 0.0]]]
    np.testing.assert_array_equal(_pool(None), expected)
    masked = masked_sequence(tf.constant(SEQUENCE), tf.constant(MASK)).numpy()
    np.testing.assert_array_equal(masked, expected)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_pooling_runs_in_tf_function_with_dynamic_shapes(pooling):
    spec = [tf.TensorSpec([None, None, None], tf.float32), tf.TensorSpec([None, None], tf.int32)]
    run = tf.function(lambda sequence, mask: pool(pooling, tf.zeros([2, 2]), sequence, mask),
                      input_signature=spec)
    np.testing.assert_array_equal(run(SEQUENCE, MASK).numpy(), _pool(pooling))


def test_mean_gradient_reaches_real_tokens_only():
    sequence = tf.Variable(SEQUENCE)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(pool("mean", tf.constant(POOLED), sequence, tf.constant(MASK)))
    gradient = tape.gradient(total, sequence).numpy()
    np.testing.assert_array_equal(gradient[0, :, 0], [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(gradient[1, :, 0], [1.0, 0.0, 0.0])


def test_known_poolings_pass_the_check():
    for pooling in POOLINGS:
        check_pooling(pooling)


@pytest.mark.parametrize("pooling", ["avg", "CLS", "", 0])
def test_unknown_pooling_names_the_value_and_the_choices(pooling):
    expected = rf"Unknown pooling {pooling!r}; expected one of \['cls', 'mean', 'max', None\]"
    with pytest.raises(ValueError, match=expected):
        check_pooling(pooling)
    with pytest.raises(ValueError, match=expected):
        pool(pooling, tf.constant(POOLED), tf.constant(SEQUENCE), tf.constant(MASK))
