"""Pooling over real tokens only: golden values by hand, padding that would win if it leaked."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorflow as tf

from bert_layer.layers.pooling import (
    POOLINGS,
    check_pooling,
    masked_sequence,
    pool,
    warn_if_untrained_pooler,
)

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


def test_every_known_pooling_gives_one_vector_per_text_or_the_sequence():
    # The list is the contract: each mode is accepted and has the shape it promises.
    assert POOLINGS == ("cls", "first", "mean", "max", None)
    for pooling in POOLINGS:
        check_pooling(pooling)
        expected = SEQUENCE.shape if pooling is None else (2, 2)
        assert _pool(pooling).shape == expected, pooling


@pytest.mark.parametrize("pooling", ["avg", "CLS", "", 0])
def test_unknown_pooling_names_the_value_and_the_choices(pooling):
    expected = (rf"Unknown pooling {pooling!r}; expected one of \['cls', 'first', 'mean', "
                r"'max', None\]")
    with pytest.raises(ValueError, match=expected):
        check_pooling(pooling)
    with pytest.raises(ValueError, match=expected):
        pool(pooling, tf.constant(POOLED), tf.constant(SEQUENCE), tf.constant(MASK))


def test_first_is_the_first_tokens_raw_state_not_the_pooler():
    np.testing.assert_array_equal(_pool("first"), [[1.0, -4.0], [-5.0, 6.0]])


@pytest.mark.parametrize("pooling, expected", [
    ("cls", [[0.5 / 0.5 ** 0.5, -0.5 / 0.5 ** 0.5], [0.25 / 0.625 ** 0.5, 0.75 / 0.625 ** 0.5]]),
    ("first", [[1 / 17 ** 0.5, -4 / 17 ** 0.5], [-5 / 61 ** 0.5, 6 / 61 ** 0.5]]),
    ("mean", [[2 / 13 ** 0.5, -3 / 13 ** 0.5], [-5 / 61 ** 0.5, 6 / 61 ** 0.5]]),
    ("max", [[3 / 13 ** 0.5, -2 / 13 ** 0.5], [-5 / 61 ** 0.5, 6 / 61 ** 0.5]]),
])
def test_normalize_scales_the_pooled_vector_to_unit_length(pooling, expected):
    normalized = pool(pooling, tf.constant(POOLED), tf.constant(SEQUENCE), tf.constant(MASK),
                      normalize=True).numpy()
    np.testing.assert_allclose(normalized, expected, rtol=1e-6)


def test_normalize_keeps_an_all_zero_vector_zero():
    zeros = tf.zeros([1, 2, 3])
    normalized = pool("mean", tf.zeros([1, 3]), zeros, tf.constant([[1, 1]]), normalize=True)
    np.testing.assert_array_equal(normalized.numpy(), np.zeros([1, 3]))


def test_normalize_without_pooling_is_refused():
    with pytest.raises(ValueError, match=r"normalize=True .* needs a pooling .*found None"):
        check_pooling(None, normalize=True)


@pytest.mark.parametrize("pooling, has_pooler, warns", [
    ("cls", False, True), ("first", False, False), ("mean", False, False),
    ("cls", True, False)])
def test_cls_without_pooler_weights_warns_and_suggests_first(pooling, has_pooler, warns):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_untrained_pooler(pooling, has_pooler, source="The module m")
    messages = [str(w.message) for w in caught]
    if not warns:
        assert messages == []
        return
    assert len(messages) == 1
    assert messages[0].startswith("The module m has no pooler weights (bert/pooler/*): its "
                                  "pooled_output is not a trained pooler")
    assert "pass pooling='first'" in messages[0]
