"""The model file: weights from the module however the layer is built, a `.keras` that
carries its module and class names, models saved before that, dropout when nothing trains.

References: the numpy BERT (reference_bert) on FullTokenizer ids (reference_packing), with
the weights of the Google checkpoint the tiny module was exported from.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from reference_bert import bert_forward, mean_pool
from reference_packing import full_tokenizer, reference_features

from bert_layer.export.checkpoint import load_checkpoint
from bert_layer.inference.runtimes import KerasClassifier
from bert_layer.layers.layer import BertLayer
from bert_layer.training.classifier import ClassifierHead, ClassifierSpec, build_classifier

MAX_LEN = 24
TEXTS = ["the movie was great .", "a bad film ||| the plot was fun", "unwanted running !"]
CLASSES = ("neg", "pos", "meh")


@pytest.fixture(scope="module")
def expected_mean(tiny_checkpoint_dir) -> np.ndarray:
    """The numpy BERT's mean-pooled vectors of TEXTS [3, 32]."""
    checkpoint = load_checkpoint(tiny_checkpoint_dir)
    features = reference_features(full_tokenizer(checkpoint.vocab_file, True), TEXTS, MAX_LEN)
    sequence, _ = bert_forward(checkpoint.weights, checkpoint.config, **features)
    return mean_pool(sequence, features["input_mask"])


def _layer(module: str, **kwargs) -> BertLayer:
    return BertLayer(module, max_seq_length=MAX_LEN, pooling="mean", **kwargs)


# === Weights come from the module in every build path ===


class Subclassed(keras.Model):
    """The first seed's pattern: a BertLayer body inside a subclassed model."""

    def __init__(self, module: str):
        super().__init__()
        self.bert = _layer(module)

    def call(self, texts, training=None):
        return self.bert(texts, training=training)


def _functional(module):
    text = keras.Input(shape=(), dtype="string")
    return keras.Model(text, _layer(module)(text))


def _sequential(module):
    return keras.Sequential([keras.Input(shape=(), dtype="string"), _layer(module)])


BUILD_PATHS = {
    "functional": lambda m, t: _functional(m)(t),
    "sequential": lambda m, t: _sequential(m)(t),
    "subclassed_call": lambda m, t: Subclassed(m)(t),
    "subclassed_predict": lambda m, t: Subclassed(m).predict(t, verbose=0),
    "subclassed_tf_function": lambda m, t: tf.function(Subclassed(m))(t),
    "first_call_eager": lambda m, t: _layer(m)(t),
    "first_call_tf_function": lambda m, t: tf.function(_layer(m))(t),
    "first_call_in_dataset_map": lambda m, t: np.concatenate(list(
        tf.data.Dataset.from_tensor_slices(t).batch(3).map(_layer(m)).as_numpy_iterator())),
}


@pytest.mark.large
@pytest.mark.parametrize("build", sorted(BUILD_PATHS))
def test_weights_come_from_the_module_however_the_layer_is_built(
        tiny_module_dir, expected_mean, build):
    outputs = np.asarray(BUILD_PATHS[build](tiny_module_dir, tf.constant(TEXTS)))
    np.testing.assert_allclose(outputs, expected_mean, atol=1e-4)


@pytest.mark.large
def test_subclassed_model_trains_from_the_module_weights(tiny_module_dir, tiny_checkpoint_dir):
    model = Subclassed(tiny_module_dir)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    model.fit(tf.constant(TEXTS), np.zeros([3, 32], np.float32), verbose=0)
    weights = load_checkpoint(tiny_checkpoint_dir).weights
    for weight in model.bert.weights:  # learning rate 0: still exactly the module's
        name = model.bert.module_variable_names[weight.path]
        np.testing.assert_array_equal(weight.numpy(), weights[name], err_msg=name)


# === Dropout when nothing trains (review D10) ===


@pytest.mark.large
@pytest.mark.parametrize("kwargs, dropout", [
    ({}, True),
    ({"trainable": False}, False),
    ({"n_fine_tune_layers": 0}, False),  # mean pooling: no pooler, no embeddings trained
    ({"n_fine_tune_layers": 0, "tune_embeddings": True}, True),
], ids=["fine_tuned", "trainable_false", "nothing_selected", "embeddings_only"])
def test_training_runs_dropout_only_when_weights_train(tiny_module_dir, expected_mean,
                                                       kwargs, dropout):
    layer = _layer(tiny_module_dir, **kwargs)
    texts = tf.constant(TEXTS)
    train_a, train_b = layer(texts, training=True).numpy(), layer(texts, training=True).numpy()
    assert (np.abs(train_a - train_b).max() > 1e-2) == dropout
    if not dropout:
        np.testing.assert_allclose(train_a, expected_mean, atol=1e-4)


def test_freezing_a_layer_after_building_stops_its_dropout(tiny_module_dir, expected_mean):
    layer = _layer(tiny_module_dir)
    texts = tf.constant(TEXTS)
    layer(texts, training=True)
    layer.trainable = False
    np.testing.assert_allclose(layer(texts, training=True).numpy(), expected_mean, atol=1e-4)


# === A self-contained .keras ===


def _moved_weights(model: keras.Model, seed: int = 5) -> None:
    """Every weight changed, so that a model built from the module would differ."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(weight.numpy() + rng.normal(size=weight.shape).astype("float32") * 0.05)


@pytest.fixture
def saved(tiny_module_dir, tmp_path):
    """A classifier on a copy of the tiny module, weights moved, saved as
    `work/run/model.keras`: (module copy, model path, predictions)."""
    module = str(tmp_path / "work" / "module")
    shutil.copytree(tiny_module_dir, module)
    spec = ClassifierSpec(module=module, class_names=CLASSES, pooling="mean",
                          max_seq_length=MAX_LEN)
    model = build_classifier(spec)
    _moved_weights(model)
    path = str(tmp_path / "work" / "run" / "model.keras")
    os.makedirs(os.path.dirname(path))
    model.save(path)
    return module, path, model(tf.constant(TEXTS), training=False).numpy()


def test_keras_file_carries_the_module_graph_and_vocabulary(saved):
    module, path, _ = saved
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assets = sorted(n for n in names if n.startswith("assets/"))
    assert any(n.endswith("/saved_model.pb") for n in assets), assets
    assert any(n.endswith("/assets/vocab.txt") for n in assets), assets
    assert not any("variables/" in n for n in assets)  # The weights are Keras's already.
    vocab = next(n for n in assets if n.endswith("vocab.txt"))
    with zipfile.ZipFile(path) as archive, open(
            os.path.join(module, "assets", "vocab.txt"), "rb") as f:
        assert archive.read(vocab) == f.read()


@pytest.mark.large
def test_model_alone_predicts_elsewhere_with_its_class_names(saved, tmp_path, monkeypatch):
    module, path, predictions = saved
    os.rename(module, module + ".gone")  # The module folder is no longer there...
    elsewhere = tmp_path / "another" / "machine"
    elsewhere.mkdir(parents=True)
    shutil.copy(path, elsewhere / "model.keras")  # ...and the model travels alone.
    monkeypatch.chdir(elsewhere)
    assert os.listdir(".") == ["model.keras"]
    classifier = KerasClassifier("model.keras")
    assert classifier.class_names == list(CLASSES) and classifier.multi_label is False
    np.testing.assert_allclose(classifier(TEXTS), predictions, atol=1e-6)
    restored = keras.models.load_model("model.keras")  # Plain Keras too.
    np.testing.assert_allclose(restored(tf.constant(TEXTS), training=False).numpy(),
                               predictions, atol=1e-6)
    # Loaded models save again, still self-contained.
    restored.save("again.keras")
    again = keras.models.load_model("again.keras")
    np.testing.assert_allclose(again(tf.constant(TEXTS), training=False).numpy(),
                               predictions, atol=1e-6)


def test_the_saved_module_wins_over_a_different_folder_at_the_stored_path(
        saved, tiny_module_dir):
    # The stored path now holds a module whose vocabulary swaps two words: the model keeps
    # the vocabulary it was trained with.
    module, path, predictions = saved
    vocab_file = os.path.join(module, "assets", "vocab.txt")
    with open(vocab_file, encoding="utf-8") as f:
        tokens = f.read().split("\n")
    tokens[19], tokens[20] = tokens[20], tokens[19]  # movie <-> film
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens))
    np.testing.assert_allclose(KerasClassifier(path)(TEXTS), predictions, atol=1e-6)


def test_head_config_keeps_class_names_and_multi_label():
    head = ClassifierHead(["a", "b", "c"], multi_label=True, name="probabilities")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(head)))
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is ClassifierHead
    assert (restored.class_names, restored.multi_label, restored.units) == (["a", "b", "c"],
                                                                            True, 3)
    assert restored.activation is keras.activations.sigmoid


# === Models saved before the module travelled in the file ===


def _as_saved_before(new_path: str, old_path: str, stored_module: str) -> None:
    """Writes the model at `new_path` as the previous version did: a plain Dense head
    without class names, the module only as a path (`bert_path`), no assets."""
    model = keras.models.load_model(new_path)
    head = model.get_layer("probabilities")
    dense = keras.layers.Dense(head.units, activation="softmax", name="probabilities")
    text = keras.Input(shape=(), dtype="string", name="text")
    old = keras.Model(text, dense(model.get_layer("bert")(text)))  # Dropout: identity here.
    dense.set_weights(head.get_weights())
    old.save(old_path)
    with zipfile.ZipFile(old_path) as archive:
        files = {n: archive.read(n) for n in archive.namelist() if not n.startswith("assets/")}
    config = json.loads(files["config.json"])
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "BertLayer":
            layer["config"].pop("module")
            layer["config"]["bert_path"] = stored_module
            layer["build_config"] = {"input_shape": layer["build_config"]["input_shape"]}
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(old_path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


@pytest.mark.large
def test_old_model_finds_its_module_from_the_model_folder(saved, tmp_path, monkeypatch):
    # Trained from work/ as `--module module --out run`; loaded from work/run/.
    _, path, predictions = saved
    old = os.path.join(os.path.dirname(path), "old.keras")
    _as_saved_before(path, old, stored_module="module")
    with open(os.path.join(os.path.dirname(path), "report.json"), "w") as f:
        json.dump({"classifier": {"classes": list(CLASSES), "multi_label": False}}, f)
    monkeypatch.chdir(os.path.dirname(path))
    classifier = KerasClassifier("old.keras")
    assert classifier.class_names == list(CLASSES)
    np.testing.assert_allclose(classifier(TEXTS), predictions, atol=1e-6)
    bert = classifier.model.get_layer("bert")
    assert bert.module == "module"
    monkeypatch.chdir(tmp_path / "work")  # From the folder it was trained in: plain Keras.
    restored = keras.models.load_model(os.path.join("run", "old.keras"))
    np.testing.assert_allclose(restored(tf.constant(TEXTS), training=False).numpy(),
                               predictions, atol=1e-6)


def test_old_model_without_its_module_names_the_path_and_the_folders_tried(
        saved, tmp_path, monkeypatch):
    module, path, _ = saved
    old = os.path.join(os.path.dirname(path), "old.keras")
    _as_saved_before(path, old, stored_module="module")
    os.rename(module, module + ".gone")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"old.keras: Hub module folder not found: "
                                                r"module \(also looked relative to \[.*run'"):
        KerasClassifier(old)


def test_rebuilt_from_config_without_weights_refuses_to_run(saved, monkeypatch):
    # A config alone (no weights loaded) must not run with the placeholder zeros.
    module, path, _ = saved
    model = keras.models.load_model(path)
    rebuilt = keras.models.model_from_json(model.to_json())
    with pytest.raises(ValueError, match="weights were never loaded"):
        rebuilt(tf.constant(TEXTS))


@pytest.mark.integration
def test_default_model_classifier_travels_alone(default_module_dir, sst2_dev, tmp_path,
                                                monkeypatch):
    module = str(tmp_path / "module")
    shutil.copytree(default_module_dir, module)
    spec = ClassifierSpec(module=module, class_names=("negative", "positive"), pooling="mean")
    model = build_classifier(spec)
    _moved_weights(model)
    texts = sst2_dev[:16]
    expected = model(tf.constant(texts), training=False).numpy()
    path = str(tmp_path / "model.keras")
    model.save(path)
    shutil.rmtree(module)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(path, elsewhere / "model.keras")
    monkeypatch.chdir(elsewhere)
    classifier = KerasClassifier("model.keras")
    assert classifier.class_names == ["negative", "positive"]
    np.testing.assert_allclose(classifier(texts), expected, atol=1e-5)
    with zipfile.ZipFile("model.keras") as archive:
        sizes = {i.filename: i.file_size for i in archive.infolist()}
    assets = sum(size for name, size in sizes.items() if name.startswith("assets/"))
    assert assets < 0.2 * sizes["model.weights.h5"]  # The graph is small beside the weights.
