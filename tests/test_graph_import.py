"""Running a module's `tokens` graph over our variables, on Google's kind of module too:
TF 1.x reference variables (`VariableV2` + `<name>/read`), as in tfhub.dev/google/bert_*/1.

Parity is with the same weights exported by `bert-layer export` (resource variables) and with
the numpy reference BERT; training is shown through the weights `fit` moves.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from google_hub_module import INFERENCE_ONLY
from reference_bert import bert_forward
from reference_packing import full_tokenizer, reference_features
from tensorflow.core.protobuf import saved_model_pb2
from test_layer import (
    ALL_WEIGHTS,
    EMBEDDINGS,
    POOLER,
    TRAIN_LABELS,
    TRAIN_TEXTS,
    keras_names,
    last_layers,
)
from tiny import TINY_CONFIG

from bert_layer.contract import (
    INFERENCE_TAGS,
    SAVED_MODEL_FILE,
    TOKEN_INPUTS,
    TOKENS_SIGNATURE,
    TRAIN_TAGS,
)
from bert_layer.export.checkpoint import load_checkpoint
from bert_layer.layers.graph_import import import_signature
from bert_layer.layers.hub_module import HubModule
from bert_layer.layers.layer import BertLayer

MAX_LEN = 24
TEXTS = ["the movie was great .", "a bad film ||| the plot was fun", "unwanted running !"]
SPECS = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in TOKEN_INPUTS}


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint_dir):
    return load_checkpoint(tiny_checkpoint_dir)




@pytest.fixture(scope="module")
def features(checkpoint):
    return reference_features(full_tokenizer(checkpoint.vocab_file, True), TEXTS, MAX_LEN)


def _variables(checkpoint) -> dict[str, tf.Variable]:
    return {name: tf.Variable(value) for name, value in checkpoint.weights.items()}


def _run(module_dir: str, tags, variables, features) -> dict[str, np.ndarray]:
    call = import_signature(HubModule(module_dir), tags, TOKENS_SIGNATURE, SPECS, variables)
    outputs = call(*[tf.constant(features[n], tf.int32) for n in TOKEN_INPUTS])
    return {k: v.numpy() for k, v in outputs.items()}


def test_ref_variable_module_equals_the_exported_module_and_the_reference(
        google_module_dir, tiny_module_dir, checkpoint, features):
    variables = _variables(checkpoint)
    ours = _run(google_module_dir, INFERENCE_TAGS, variables, features)
    exported = _run(tiny_module_dir, INFERENCE_TAGS, variables, features)
    sequence, pooled = bert_forward(checkpoint.weights, TINY_CONFIG, **features)
    for name, reference in (("sequence_output", sequence), ("pooled_output", pooled)):
        np.testing.assert_allclose(ours[name], exported[name], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(ours[name], reference, atol=1e-4, err_msg=name)


def test_ref_variable_module_reads_the_variables_current_values(google_module_dir, checkpoint,
                                                                 features):
    variables = _variables(checkpoint)
    call = import_signature(HubModule(google_module_dir), INFERENCE_TAGS, TOKENS_SIGNATURE,
                            SPECS, variables)
    args = [tf.constant(features[n], tf.int32) for n in TOKEN_INPUTS]
    before = call(*args)["pooled_output"].numpy()
    variables["bert/pooler/dense/bias"].assign_add(tf.fill([TINY_CONFIG.hidden_size], 0.5))
    after = call(*args)["pooled_output"].numpy()
    assert np.abs(after - before).min() > 1e-3


def _gradients(module_dir: str, checkpoint, features) -> dict[str, np.ndarray]:
    variables = _variables(checkpoint)
    call = import_signature(HubModule(module_dir), INFERENCE_TAGS, TOKENS_SIGNATURE, SPECS,
                            variables)
    rng = np.random.default_rng(1)
    with tf.GradientTape() as tape:
        outputs = call(*[tf.constant(features[n], tf.int32) for n in TOKEN_INPUTS])
        loss = sum(tf.reduce_sum(t * rng.normal(size=t.shape).astype(np.float32))
                   for _, t in sorted(outputs.items()))
    gradients = tape.gradient(loss, variables)
    return {name: None if g is None else tf.convert_to_tensor(g).numpy()
            for name, g in gradients.items()}


def test_gradients_reach_every_variable_as_through_the_exported_module(
        google_module_dir, tiny_module_dir, checkpoint, features):
    ours = _gradients(google_module_dir, checkpoint, features)
    exported = _gradients(tiny_module_dir, checkpoint, features)
    assert [name for name, g in ours.items() if g is None] == []
    for name, gradient in ours.items():
        assert np.abs(gradient).max() > 0, name
        np.testing.assert_allclose(gradient, exported[name], rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_train_graph_applies_dropout(google_module_dir, checkpoint, features):
    variables = _variables(checkpoint)
    first, second = (_run(google_module_dir, TRAIN_TAGS, variables, features)
                     for _ in range(2))
    inference = _run(google_module_dir, INFERENCE_TAGS, variables, features)
    for name in ("pooled_output", "sequence_output"):
        assert not np.allclose(first[name], second[name], atol=1e-3), name
        assert not np.allclose(first[name], inference[name], atol=1e-3), name


def test_an_input_the_graph_never_reads_is_accepted(make_google_module, checkpoint, features):
    module_dir = make_google_module(ignored_input="segment_ids")
    variables = _variables(checkpoint)
    ones = dict(features, segment_ids=np.ones_like(features["segment_ids"]))
    with_ones = _run(module_dir, INFERENCE_TAGS, variables, ones)
    zeros = dict(features, segment_ids=np.zeros_like(features["segment_ids"]))
    sequence, _ = bert_forward(checkpoint.weights, TINY_CONFIG, **zeros)
    np.testing.assert_allclose(with_ones["sequence_output"], sequence, atol=1e-4)


def test_a_node_reading_a_ref_variable_directly_is_named(google_module_dir, tmp_path,
                                                         checkpoint, features):
    # Rewire one consumer of `kernel/read` to the VariableV2 itself: a reference we cannot feed.
    saved_model = saved_model_pb2.SavedModel()
    with open(f"{google_module_dir}/{SAVED_MODEL_FILE}", "rb") as f:
        saved_model.ParseFromString(f.read())
    kernel = "bert/pooler/dense/kernel"
    for meta_graph in saved_model.meta_graphs:
        for node in meta_graph.graph_def.node:
            node.input[:] = [kernel if i == f"{kernel}/read" else i for i in node.input]
    (tmp_path / SAVED_MODEL_FILE).write_bytes(saved_model.SerializeToString())
    for name in ("variables", "assets"):
        (tmp_path / name).symlink_to(f"{google_module_dir}/{name}")
    with pytest.raises(ValueError, match=rf"node '.*' \(MatMul\) uses the variable '{kernel}' "
                                         r"itself; expected every read to go through"):
        _run(str(tmp_path), INFERENCE_TAGS, _variables(checkpoint), features)


# === BertLayer on a Google module ===


@pytest.mark.large
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_bert_layer_equals_the_layer_on_the_exported_module(google_module_dir, tiny_module_dir,
                                                            pooling):
    outputs = [BertLayer(path, max_seq_length=MAX_LEN, pooling=pooling, as_dict=True)(
        tf.constant(TEXTS), training=False) for path in (google_module_dir, tiny_module_dir)]
    for name in ("pooled_output", "sequence_output", "input_mask"):
        np.testing.assert_allclose(outputs[0][name], outputs[1][name], atol=1e-6, err_msg=name)


def _fit_changes(module_dir: str, **kwargs) -> tuple[set[str], str]:
    """The weight paths one epoch of `fit` changes, and the BertLayer's name."""
    text = keras.Input(shape=(), dtype="string")
    bert = BertLayer(module_dir, max_seq_length=MAX_LEN, **kwargs)
    head = keras.layers.Dense(2, name="logits",
                              kernel_initializer=keras.initializers.GlorotUniform(0))
    model = keras.Model(text, head(bert(text)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {w.path: w.numpy().copy() for w in model.weights}
    model.fit(tf.constant(TRAIN_TEXTS), TRAIN_LABELS, batch_size=2, epochs=1, shuffle=False,
              verbose=0)
    changed = {w.path for w in model.weights if not np.array_equal(before[w.path], w.numpy())}
    return changed, bert.name


@pytest.mark.large
@pytest.mark.parametrize("kwargs, expected", [
    ({"n_fine_tune_layers": 1}, last_layers(1) | POOLER),
    ({"n_fine_tune_layers": 0, "tune_embeddings": True}, EMBEDDINGS),
    ({"n_fine_tune_layers": -1}, ALL_WEIGHTS),
], ids=["last1", "embeddings_only", "all"])
def test_fit_moves_exactly_the_selected_weights(google_module_dir, kwargs, expected):
    changed, name = _fit_changes(google_module_dir, **kwargs)
    assert changed == {f"{name}/{n}" for n in keras_names(expected)} | {
        "logits/kernel", "logits/bias"}


@pytest.mark.large
def test_module_with_only_the_inference_graph_trains_without_dropout(make_google_module):
    module_dir = make_google_module(tag_sets=INFERENCE_ONLY)
    layer = BertLayer(module_dir, max_seq_length=MAX_LEN, pooling="mean")
    np.testing.assert_array_equal(layer(tf.constant(TEXTS), training=True),
                                  layer(tf.constant(TEXTS), training=False))
    changed, name = _fit_changes(module_dir, n_fine_tune_layers=2)
    assert changed == {f"{name}/{n}" for n in keras_names(last_layers(2) | POOLER)} | {
        "logits/kernel", "logits/bias"}


@pytest.mark.large
def test_a_classifier_on_a_google_module_freezes_to_the_same_probabilities(google_module_dir,
                                                                          tmp_path):
    from bert_layer.inference.freeze import freeze_model
    from bert_layer.inference.runtimes import FrozenClassifier
    from bert_layer.training.classifier import ClassifierSpec, build_classifier

    spec = ClassifierSpec(module=google_module_dir, class_names=("neg", "pos"),
                          fine_tune_layers=1, max_seq_length=MAX_LEN)
    model = build_classifier(spec)
    dense = model.get_layer("probabilities")  # Spread the head, so texts differ clearly.
    dense.kernel.assign(np.random.default_rng(0).normal(size=dense.kernel.shape))
    expected = model(tf.constant(TEXTS), training=False).numpy()
    path = str(tmp_path / "classifier.pb")
    freeze_model(model, path, class_names=list(spec.class_names))
    np.testing.assert_allclose(FrozenClassifier(path)(TEXTS), expected, atol=1e-5)
    assert np.abs(expected[:, 0] - expected[0, 0]).max() > 1e-2
