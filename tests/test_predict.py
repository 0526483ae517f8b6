"""Prediction: length-grouped batches, results in input order, CSV and JSON-lines output."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest

from bert_layer.cli.commands.predict import prediction_format
from bert_layer.data.batching import estimate_length
from bert_layer.inference.predict import predict_probabilities, write_predictions
from bert_layer.inference.runtimes import KerasClassifier, load_classifier
from bert_layer.training.classifier import ClassifierSpec, build_classifier

TEXTS = ["good", "the movie was great and the plot was fun , funny and well acted .", "",
         "a bad film ||| the plot was fun", "unwanted running !", " ".join(["fun"] * 50),
         "it was not funny", "中 cafe"]


class TextStatistics:
    """A stand-in classifier whose row for a text depends on that text alone:
    [number of characters, number of spaces]. Records the batches it is given."""

    class_names = ["chars", "spaces"]
    multi_label = False

    def __init__(self):
        self.batches: list[list[str]] = []

    def __call__(self, texts) -> np.ndarray:
        self.batches.append(list(texts))
        return np.array([[len(t), t.count(" ")] for t in texts], np.float32).reshape(-1, 2)


@pytest.fixture(scope="module")
def keras_file(tiny_module_dir, tmp_path_factory) -> str:
    """An untrained 3-class classifier saved as .keras, with no report beside it."""
    spec = ClassifierSpec(module=tiny_module_dir, class_names=("a", "b", "c"),
                          fine_tune_layers=0, max_seq_length=32)
    model = build_classifier(spec)
    dense = model.get_layer("probabilities")
    dense.kernel.assign(np.random.default_rng(0).normal(size=dense.kernel.shape))
    path = str(tmp_path_factory.mktemp("predict") / "model.keras")
    model.save(path)
    return path


# === Order and batching ===

def test_results_come_back_in_input_order_from_length_grouped_batches():
    classifier = TextStatistics()
    probabilities = predict_probabilities(classifier, TEXTS, batch_size=3)
    expected = np.concatenate([TextStatistics()([t]) for t in TEXTS])
    np.testing.assert_array_equal(probabilities, expected)
    # Batches of 3, longest first: the 50 "fun" and the long sentence lead.
    assert [len(b) for b in classifier.batches] == [3, 3, 2]
    assert classifier.batches[0][:2] == [TEXTS[5], TEXTS[1]]
    lengths = [[estimate_length(t) for t in batch] for batch in classifier.batches]
    flat = sum(lengths, [])
    assert flat == sorted(flat, reverse=True)


def test_real_classifier_batched_equals_one_text_at_a_time(keras_file):
    """Batching pads each text to its batch's longest: the probabilities must not change."""
    classifier = KerasClassifier(keras_file)
    batched = predict_probabilities(classifier, TEXTS, batch_size=3)
    one_by_one = np.concatenate([classifier([t]) for t in TEXTS])
    assert batched.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5, rtol=0)
    assert np.ptp(one_by_one, axis=0).max() > 0.1  # Rows differ, so a mix-up would show.


def test_empty_input():
    classifier = TextStatistics()
    probabilities = predict_probabilities(classifier, [], batch_size=4)
    assert probabilities.shape == (0, 2) and probabilities.dtype == np.float32
    assert classifier.batches == []


# === Loading ===

def test_keras_classifier_takes_class_names_from_the_model(keras_file, tmp_path):
    classifier = KerasClassifier(keras_file)
    assert classifier.class_names == ["a", "b", "c"] and classifier.multi_label is False
    # The model's own names win over a report beside it (used only by models saved before
    # the head kept them; see test_model_file.py).
    shutil.copy(keras_file, tmp_path / "model.keras")
    report = {"classifier": {"class_names": ["x", "y", "z"], "multi_label": True}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    classifier = load_classifier(str(tmp_path / "model.keras"))
    assert isinstance(classifier, KerasClassifier)
    assert classifier.class_names == ["a", "b", "c"] and classifier.multi_label is False


def test_load_classifier_rejects_unknown_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown model file .*model.onnx: expected a frozen "
                       r"graph \(.pb\), a .tflite .* or a Keras model \(.keras\)"):
        load_classifier(str(tmp_path / "model.onnx"))
    with pytest.raises(FileNotFoundError, match="Model file not found: .*gone.keras"):
        load_classifier(str(tmp_path / "gone.keras"))
    with pytest.raises(FileNotFoundError, match="Frozen graph not found: .*gone.pb"):
        load_classifier(str(tmp_path / "gone.pb"))


# === Writing ===

WRITE_TEXTS = ["good", 'a, "quoted" text', "中"]
WRITE_PROBABILITIES = np.array([[0.25, 0.75], [0.9, 0.1], [0.5, 0.5]], np.float32)


def _written(fmt: str, texts=WRITE_TEXTS, probabilities=WRITE_PROBABILITIES,
             multi_label=False) -> str:
    out = io.StringIO()
    write_predictions(out, texts, probabilities, ["neg", "pos"], multi_label=multi_label,
                      fmt=fmt)
    return out.getvalue()


def test_write_csv_golden():
    # A tie goes to the first class (argmax); quotes and commas are CSV-quoted.
    assert _written("csv") == ('text,label,p_neg,p_pos\r\n'
                               'good,pos,0.250000,0.750000\r\n'
                               '"a, ""quoted"" text",neg,0.900000,0.100000\r\n'
                               '中,neg,0.500000,0.500000\r\n')


def test_write_jsonl_golden():
    assert _written("jsonl").splitlines() == [
        '{"text": "good", "label": "pos", "probabilities": {"neg": 0.25, "pos": 0.75}}',
        '{"text": "a, \\"quoted\\" text", "label": "neg", "probabilities": '
        '{"neg": 0.9, "pos": 0.1}}',
        '{"text": "中", "label": "neg", "probabilities": {"neg": 0.5, "pos": 0.5}}']


def test_write_multi_label_lists_classes_above_one_half():
    probabilities = np.array([[0.6, 0.7], [0.5, 0.2], [0.1, 0.9]], np.float32)
    written = _written("csv", texts=["x", "y", "z"], probabilities=probabilities,
                       multi_label=True)
    assert written.splitlines()[1:] == ['x,"neg,pos",0.600000,0.700000',
                                        "y,,0.500000,0.200000",  # 0.5 is not above.
                                        "z,pos,0.100000,0.900000"]


def test_write_empty_input():
    empty = np.zeros([0, 2], np.float32)
    assert _written("csv", texts=[], probabilities=empty) == "text,label,p_neg,p_pos\r\n"
    assert _written("jsonl", texts=[], probabilities=empty) == ""


def test_write_unknown_format():
    with pytest.raises(ValueError, match="Unknown output format 'xml'; expected 'csv' or "
                       "'jsonl'"):
        _written("xml")


@pytest.mark.parametrize("path, fmt, expected", [
    (None, None, "csv"), ("out.csv", None, "csv"), ("out.jsonl", None, "jsonl"),
    ("out.json", None, "jsonl"), ("OUT.JSONL", None, "jsonl"), ("out.txt", None, "csv"),
    ("out.txt", "jsonl", "jsonl"), ("out.jsonl", "jsonl", "jsonl"), (None, "jsonl", "jsonl")])
def test_output_format(path, fmt, expected):
    assert prediction_format(path, fmt) == expected


@pytest.mark.parametrize("path, fmt", [("out.csv", "jsonl"), ("out.jsonl", "csv"),
                                       ("out.json", "csv")])
def test_output_format_contradicting_the_file_name(path, fmt):
    with pytest.raises(ValueError, match=rf"--format {fmt} does not match --output {path}"):
        prediction_format(path, fmt)
