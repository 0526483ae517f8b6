"""Batch inference with a frozen graph or a saved Keras model, fast and in input order.

Texts are grouped by length into batches (padding is per batch, so similar lengths
mean little padding) and the results are put back in input order.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable

import numpy as np

from bert_layer.data import estimate_lengths, length_grouped_batches, restore_order

REPORT_FILE = "report.json"


class KerasClassifier:
    """A saved `.keras` classifier (strings -> probabilities) behind one traced function."""

    def __init__(self, path: str | os.PathLike):
        import keras
        import tensorflow as tf

        import bert_layer.layer  # noqa: F401  (registers BertLayer for deserialization)
        import bert_layer.train  # noqa: F401  (registers the schedule and metrics)

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"Saved model not found: {self.path}")
        self.model = keras.models.load_model(self.path, compile=False)
        self.class_names, self.multi_label = _classes_beside(self.path, self.model)
        spec = tf.TensorSpec([None], tf.string)
        self._run = tf.function(lambda texts: self.model(texts, training=False),
                                input_signature=[spec])

    def __call__(self, texts) -> np.ndarray:
        import tensorflow as tf
        return self._run(tf.constant(texts, dtype=tf.string)).numpy()


def _classes_beside(model_path: str, model) -> tuple[list[str], bool]:
    """Class names from the training report next to the model, else "0", "1", ..."""
    report = os.path.join(os.path.dirname(model_path), REPORT_FILE)
    if os.path.isfile(report):
        with open(report, encoding="utf-8") as f:
            classifier = json.load(f)["classifier"]
        return list(classifier["classes"]), bool(classifier["multi_label"])
    return [str(i) for i in range(model.output_shape[-1])], False


def load_classifier(path: str | os.PathLike) -> Callable:
    """A frozen graph (`.pb`) or a saved Keras model (`.keras`), as texts -> probabilities."""
    path = os.fspath(path)
    if path.endswith(".pb"):
        from bert_layer.freeze import FrozenClassifier
        return FrozenClassifier(path)
    if path.endswith(".keras"):
        return KerasClassifier(path)
    raise ValueError(f"Unknown model file {path}: expected a frozen graph (.pb) from "
                     f"`bert-layer freeze` or a Keras model (.keras) from `bert-layer train`.")


def predict_probabilities(classifier: Callable, texts: list[str],
                          batch_size: int = 32) -> np.ndarray:
    """Probabilities [n, classes] in input order, computed on length-grouped batches."""
    if not texts:
        return np.zeros([0, len(classifier.class_names)], np.float32)
    batches = length_grouped_batches(estimate_lengths(texts), batch_size)
    results = [classifier([texts[i] for i in batch]) for batch in batches]
    return restore_order(results, batches)


def labels_of(probabilities: np.ndarray, class_names: list[str],
              multi_label: bool) -> list[str]:
    if multi_label:  # Above 0.5, as the F1 metric that chose the best epoch counts it.
        return [",".join(c for c, p in zip(class_names, row) if p > 0.5)
                for row in probabilities]
    return [class_names[i] for i in probabilities.argmax(axis=1)]


def write_predictions(out, texts: list[str], probabilities: np.ndarray, class_names: list[str],
                      multi_label: bool, fmt: str) -> None:
    """Writes one row per text: the text, the label and each class's probability."""
    labels = labels_of(probabilities, class_names, multi_label)
    if fmt == "jsonl":
        for text, label, row in zip(texts, labels, probabilities):
            record = {"text": text, "label": label,
                      "probabilities": {c: round(float(p), 6) for c, p in zip(class_names, row)}}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    if fmt != "csv":
        raise ValueError(f"Unknown output format {fmt!r}; expected 'csv' or 'jsonl'.")
    writer = csv.writer(out)
    writer.writerow(["text", "label"] + [f"p_{c}" for c in class_names])
    for text, label, row in zip(texts, labels, probabilities):
        writer.writerow([text, label] + [f"{p:.6f}" for p in row])


def output_format(path: str | None, fmt: str | None) -> str:
    """The format asked for, else from the output file's extension, else CSV."""
    if fmt:
        return fmt
    if path and path.endswith((".jsonl", ".json")):
        return "jsonl"
    return "csv"

