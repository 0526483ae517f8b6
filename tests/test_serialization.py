"""A shared serialization and precision battery for every Keras class bert_layer registers
(in the spirit of keras-hub's `run_layer_test`/`run_serialization_test`/`run_precision_test`).

Every class registered under the `bert_layer>` prefix must have a case below: a new
registered class fails `test_every_registered_class_has_a_case` until it gets one. Each case
builds an instance and an input; the battery checks the config round trip, serialization
through `keras.saving`, equal outputs after the round trip, registered-name loading of
configs written by earlier versions (other module paths), and, for layers, the dtype policy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

import bert_layer  # noqa: F401  (registers the classes when keras loads)
from bert_layer.layers.layer import BertLayer
from bert_layer.layers.window_pooling import WindowPooling
from bert_layer.layers.word_layer import WordBertLayer
from bert_layer.training.classifier import (
    ClassifierHead,
    F1Score,
    PositiveWeightedBinaryCrossentropy,
)
from bert_layer.training.regressor import RegressionHead
from bert_layer.training.tagger import TagCrossentropy, TaggerHead
from bert_layer.training.train import RowSummingAdamW, WarmupLinearDecay


@dataclasses.dataclass
class Case:
    build: Callable[[str], Any]  # tiny module folder -> instance
    sample: Callable[[], Any] | None = None  # the input a call takes (None: not callable)
    # Where earlier versions defined the class (their .keras files record this module).
    old_module: str | None = None


def _texts():
    return tf.constant(["hello world", "the quick brown fox jumps"])


def _features():
    return np.random.default_rng(0).normal(size=(3, 8)).astype("float32")


def _words():
    return tf.constant([["hello", "world", ""], ["the", "quick", "fox"]])


def _windows():
    """Outputs of 4 windows [4, 3] of 2 documents (windows 0-2 of the first, 3 of the second)."""
    values = np.random.default_rng(0).uniform(size=(4, 3)).astype("float32")
    return values, np.array([0, 0, 0, 1], dtype="int32")


def _word_states():
    states = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    return states, np.array([[True, True, False], [True, False, True]])


CASES: dict[str, Case] = {
    "bert_layer>BertLayer": Case(
        lambda module: BertLayer(module, max_seq_length=16, pooling="mean"), _texts,
        old_module="bert_layer.layer"),
    "bert_layer>ClassifierHead": Case(
        lambda module: ClassifierHead(["neg", "pos", "mixed"], activation="softmax"), _features,
        old_module="bert_layer.classifier"),
    "bert_layer>F1Score": Case(lambda module: F1Score(3, threshold=0.5),
                               old_module="bert_layer.classifier"),
    "bert_layer>WindowPooling": Case(lambda module: WindowPooling("max"), _windows),
    "bert_layer>RegressionHead": Case(lambda module: RegressionHead(["valence", "arousal"]),
                                      _features),
    "bert_layer>PositiveWeightedBinaryCrossentropy": Case(
        lambda module: PositiveWeightedBinaryCrossentropy([1.0, 3.0])),
    "bert_layer>WordBertLayer": Case(
        lambda module: WordBertLayer(module, max_seq_length=16), _words),
    "bert_layer>TaggerHead": Case(lambda module: TaggerHead(["O", "B-x", "I-x"]), _word_states),
    "bert_layer>TagCrossentropy": Case(lambda module: TagCrossentropy()),
    "bert_layer>WarmupLinearDecay": Case(lambda module: WarmupLinearDecay(1e-3, 10, 100),
                                         lambda: tf.constant(5), old_module="bert_layer.train"),
    "bert_layer>RowSummingAdamW": Case(
        lambda module: RowSummingAdamW(learning_rate=WarmupLinearDecay(1e-3, 10, 100),
                                       weight_decay=0.01, global_clipnorm=1.0)),
}


def _registered_names() -> list[str]:
    return sorted(n for n in keras.saving.get_custom_objects() if n.startswith("bert_layer>"))


def test_every_registered_class_has_a_case():
    names = _registered_names()
    assert "bert_layer>BertLayer" in names
    missing = sorted(set(names) - set(CASES))
    assert not missing, f"registered classes without a battery case: {missing}"


def _call(instance, sample):
    output = instance(sample())
    if isinstance(output, (tuple, list)):  # (states, mask) and the like: the first output
        output = output[0]
    return keras.ops.convert_to_numpy(output)


@pytest.fixture(params=sorted(CASES), ids=lambda n: n.split(">")[1])
def case(request, tiny_module_dir):
    spec = CASES[request.param]
    return request.param, spec, spec.build(tiny_module_dir)


def test_config_round_trip(case):
    name, spec, instance = case
    clone = type(instance).from_config(instance.get_config())
    assert clone.get_config() == instance.get_config()
    if spec.sample is not None:
        if isinstance(instance, keras.layers.Layer):
            before = _call(instance, spec.sample)
            _ = _call(clone, spec.sample)  # builds the clone's weights
            clone.set_weights(instance.get_weights())
            np.testing.assert_allclose(_call(clone, spec.sample), before, atol=1e-6)
        else:
            np.testing.assert_allclose(_call(clone, spec.sample), _call(instance, spec.sample))


def test_serialization_by_registered_name(case):
    name, spec, instance = case
    serialized = keras.saving.serialize_keras_object(instance)
    assert serialized["registered_name"] == name
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(instance)
    assert restored.get_config() == instance.get_config()


def test_configs_written_by_earlier_versions_still_load(case):
    """Earlier versions defined these classes in flat modules (bert_layer.layer, ...); their
    .keras files record that module path. Loading goes by the registered name."""
    name, spec, instance = case
    if spec.old_module is None:
        pytest.skip("a class no earlier version had")
    serialized = keras.saving.serialize_keras_object(instance)
    serialized["module"] = spec.old_module
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(instance)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_layers_follow_the_dtype_policy(case, policy):
    name, spec, instance = case
    if not isinstance(instance, keras.layers.Layer) or spec.sample is None:
        pytest.skip("not a layer")
    config = instance.get_config()
    config["dtype"] = policy
    layer = type(instance).from_config(config)
    output = layer(spec.sample())
    if isinstance(output, (tuple, list)):
        output = output[0]
    assert layer.compute_dtype == keras.mixed_precision.Policy(policy).compute_dtype
    assert all(w.dtype == "float32" for w in layer.weights)  # weights stay float32
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(output, "float32"))))


def test_a_saved_model_file_with_every_layer_loads_and_predicts_alike(tiny_module_dir, tmp_path):
    """The whole .keras path: BertLayer and ClassifierHead inside one model."""
    inputs = keras.Input(shape=(), dtype="string")
    bert = BertLayer(tiny_module_dir, max_seq_length=16, pooling="cls")
    outputs = ClassifierHead(["a", "b"], activation="softmax")(bert(inputs))
    model = keras.Model(inputs, outputs)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored(_texts()), model(_texts()), atol=1e-6)
