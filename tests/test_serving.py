"""Serving with TensorFlow alone: core-tokenizer modules, frozen graphs and SavedModels.

A classifier on the graph-tokenizer module is frozen and saved with the core tokenizer; all
three artifacts run in a Python that cannot import tensorflow_text (no_tensorflow_text.py) and
give what this process gives (where tensorflow_text is loaded).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text  # noqa: F401  (this process is the one WITH tensorflow_text)
from reference_packing import full_tokenizer, reference_features

from bert_layer.cli.main import main
from bert_layer.inference.custom_ops import graph_op_types, saved_model_op_types
from bert_layer.inference.formats import read_graph_def
from bert_layer.inference.freeze import freeze_model
from bert_layer.inference.predict import labels_of
from bert_layer.inference.runtimes import FrozenClassifier, SavedModelClassifier, load_classifier
from bert_layer.inference.serving import _labelled, write_serving_model
from bert_layer.training.classifier import ClassifierSpec, build_classifier

TEXTS = ["the movie was great .", "a bad film ||| the plot was fun", "",
         " ".join(["good"] * 50), "unwanted running !", "THE MOVIE WAS GREAT .", "\u4e2d cafe",
         "it was not funny ||| "]
CLASSES = ("neg", "pos", "meh")
TF_TEXT_OP = "FastWordpieceTokenizeWithOffsets"
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def core_module_dir(tiny_checkpoint_dir, tmp_path_factory) -> str:
    """The tiny checkpoint exported by the CLI with the core tokenizer (max_seq_length=32)."""
    out = str(tmp_path_factory.mktemp("core_module") / "module")
    assert main(["export", "--checkpoint", tiny_checkpoint_dir, "--out", out,
                 "--max-seq-length", "32", "--tokenizer", "core"]) == 0
    return out


@pytest.fixture(scope="module")
def served(tiny_module_dir, tmp_path_factory):
    """A classifier trained-as-if on the graph-tokenizer module, written with the core tokenizer
    as a frozen graph and a SavedModel; `expected` is the Keras model's own output."""
    folder = tmp_path_factory.mktemp("served")
    spec = ClassifierSpec(module=tiny_module_dir, class_names=CLASSES, fine_tune_layers=1,
                          max_seq_length=32)
    model = build_classifier(spec)
    dense = model.get_layer("probabilities")  # Larger weights: texts' probabilities differ.
    dense.kernel.assign(np.random.default_rng(0).normal(size=dense.kernel.shape)
                        .astype(np.float32))
    expected = model(tf.constant(TEXTS), training=False).numpy()
    frozen, saved_model = str(folder / "classifier.pb"), str(folder / "serving")
    freeze_model(model, frozen, class_names=list(CLASSES), tokenizer="core")
    write_serving_model(model, saved_model, class_names=list(CLASSES), tokenizer="core")
    return collections.namedtuple("Served", "frozen saved_model expected")(
        frozen, saved_model, expected)


@pytest.fixture(scope="module")
def token_ids(tiny_checkpoint_dir) -> dict[str, np.ndarray]:
    """FullTokenizer's packed ids of TEXTS (the independent reference)."""
    tokenizer = full_tokenizer(os.path.join(tiny_checkpoint_dir, "vocab.txt"), True)
    return reference_features(tokenizer, TEXTS, max_seq_length=32)


# === The SavedModel in this process ===


@pytest.mark.large
def test_saved_model_gives_the_keras_probabilities_and_labels(served):
    classifier = load_classifier(served.saved_model)
    assert isinstance(classifier, SavedModelClassifier)
    assert classifier.class_names == list(CLASSES) and classifier.multi_label is False
    np.testing.assert_allclose(classifier(TEXTS), served.expected, atol=1e-5, rtol=0)
    assert np.ptp(served.expected, axis=0).max() > 0.1  # Rows differ: a mix-up would show.
    outputs = tf.saved_model.load(served.saved_model).signatures["serving_default"](
        text=tf.constant(TEXTS))
    assert [s.decode() for s in outputs["label"].numpy()] == labels_of(
        served.expected, list(CLASSES), False)
    assert outputs["label_index"].numpy().tolist() == served.expected.argmax(1).tolist()


@pytest.mark.large
def test_ids_signature_on_full_tokenizer_ids_equals_the_text_signature(served, token_ids):
    signatures = tf.saved_model.load(served.saved_model).signatures
    by_ids = signatures["ids"](**{k: tf.constant(v) for k, v in token_ids.items()})
    by_text = signatures["serving_default"](text=tf.constant(TEXTS))
    np.testing.assert_allclose(by_ids["probabilities"], by_text["probabilities"], atol=1e-6,
                               rtol=0)


def test_multi_label_labels_join_the_classes_above_one_half():
    probabilities = np.array([[0.9, 0.2, 0.7], [0.1, 0.4, 0.3], [0.6, 0.51, 0.5]], np.float32)
    names = ["act", "plot", "music"]
    outputs = _labelled(tf.constant(probabilities), tf.constant(names), multi_label=True)
    assert [s.decode() for s in outputs["label"].numpy()] == ["act,music", "", "act,plot"]
    assert [s.decode() for s in outputs["label"].numpy()] == labels_of(probabilities, names,
                                                                        True)
    assert outputs["label_index"].numpy().tolist() == [0, 1, 0]


def test_serving_model_refuses_the_numpy_tokenizer_and_wrong_class_counts(served, tmp_path,
                                                                          tiny_module_dir):
    spec = ClassifierSpec(module=tiny_module_dir, class_names=CLASSES, max_seq_length=32)
    model = build_classifier(spec)
    with pytest.raises(ValueError, match="'graph' or 'core', not 'numpy'"):
        write_serving_model(model, tmp_path / "a", class_names=list(CLASSES), tokenizer="numpy")
    with pytest.raises(ValueError, match=r"2 class names for 3 outputs"):
        write_serving_model(model, tmp_path / "b", class_names=["x", "y"])
    assert os.listdir(tmp_path) == []


# === No custom ops, checked by the files and by a Python without tensorflow_text ===


@pytest.mark.large
def test_core_artifacts_hold_no_tensorflow_text_op(served, core_module_dir, tiny_module_dir):
    assert TF_TEXT_OP in saved_model_op_types(tiny_module_dir)  # The default module has it.
    assert TF_TEXT_OP not in saved_model_op_types(core_module_dir)
    assert TF_TEXT_OP not in saved_model_op_types(served.saved_model)
    assert TF_TEXT_OP not in graph_op_types(read_graph_def(served.frozen))


def _in_process(module_dir: str, served, token_ids) -> dict[str, np.ndarray]:
    """What this process (tensorflow_text loaded, graph-tokenizer module) gives."""
    module = hub.load(module_dir, tags=set())
    text = module.signatures["text"](text=tf.constant(TEXTS))
    tokens = module.signatures["tokens"](**{k: tf.constant(v) for k, v in token_ids.items()})
    loaded = tf.saved_model.load(served.saved_model)
    serving = loaded.signatures["serving_default"](text=tf.constant(TEXTS))
    by_ids = loaded.signatures["ids"](**{k: tf.constant(v) for k, v in token_ids.items()})
    frozen = FrozenClassifier(served.frozen)(TEXTS)
    return {**{f"text/{k}": v.numpy() for k, v in text.items()},
            **{f"tokens/{k}": v.numpy() for k, v in tokens.items()},
            **{f"{loader}/{k}": v.numpy() for k, v in serving.items() for loader in ("tf2", "tf1")},
            **{f"tf2_ids/{k}": v.numpy() for k, v in by_ids.items()},
            "frozen/probabilities": frozen, "classifier_frozen": frozen,
            "classifier_saved_model": serving["probabilities"].numpy()}


@pytest.mark.large
def test_everything_runs_with_tensorflow_alone(served, core_module_dir, tiny_module_dir,
                                               token_ids, tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({
        "module": core_module_dir, "frozen": served.frozen, "saved_model": served.saved_model,
        "texts": TEXTS, "ids": {k: v.tolist() for k, v in token_ids.items()}}))
    out = tmp_path / "out.npz"
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "no_tensorflow_text.py"), str(request), str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    alone = dict(np.load(out, allow_pickle=True))  # Labels are object arrays; our own file.
    assert not alone.pop("tensorflow_text_loaded")
    expected = _in_process(tiny_module_dir, served, token_ids)
    assert sorted(alone) == sorted(expected)
    for key, value in expected.items():
        if value.dtype.kind == "f":
            assert np.abs(alone[key] - value).max() <= 1e-6, key
        else:  # ids, labels
            np.testing.assert_array_equal(alone[key], value, err_msg=key)
    # The core-tokenizer module packed FullTokenizer's ids (ids, mask, segments).
    for name, ids in token_ids.items():
        np.testing.assert_array_equal(alone[f"text/{name}"], ids)


# === bert-layer inspect ===


@pytest.mark.large
def test_inspect_names_the_tensorflow_text_op_of_a_default_module(tiny_module_dir, capsys):
    assert main(["inspect", tiny_module_dir]) == 0
    out = capsys.readouterr().out
    assert f"ops not in core TensorFlow: {TF_TEXT_OP} (tensorflow-text)" in out
    assert "TF1 Hub module" in out and "tag set {}:" in out and "tag set {train}:" in out
    assert "in  input_ids        int32    [?, ?]" in out
    assert "out pooled_output    float32  [?, 32]" in out
    stored = tf.train.list_variables(os.path.join(tiny_module_dir, "variables", "variables"))
    n_values = sum(int(np.prod(shape)) for _, shape in stored)
    assert n_values > 20000  # TINY_CONFIG's weights, read from the files.
    assert f"variables: {len(stored)} tensors, {n_values:,} values" in out


@pytest.mark.large
def test_inspect_finds_no_custom_op_in_core_artifacts(core_module_dir, served, capsys):
    for path in (core_module_dir, served.saved_model, served.frozen):
        assert main(["inspect", path]) == 0
        out = capsys.readouterr().out
        assert out.rstrip().endswith("ops not in core TensorFlow: none"), out
    assert main(["inspect", "--json", served.saved_model]) == 0
    inspection = json.loads(capsys.readouterr().out)
    assert inspection["kind"] == "SavedModel" and inspection["non_core_ops"] == {}
    serving = {s["name"]: s for s in inspection["signatures"]["{serve}"]}
    assert sorted(serving) == ["ids", "metadata", "serving_default"]
    assert [(t["key"], t["dtype"], t["shape"]) for t in serving["serving_default"]["inputs"]] \
        == [("text", "string", "[?]")]
    assert [(t["key"], t["dtype"]) for t in serving["serving_default"]["outputs"]] == [
        ("label", "string"), ("label_index", "int64"), ("probabilities", "float32")]


def test_inspect_a_missing_path(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nowhere")]) == 2
    assert "Nothing to inspect at" in capsys.readouterr().err
