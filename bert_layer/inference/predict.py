"""Batch inference with a frozen graph or a saved Keras model, fast and in input order.

Texts are grouped by length into batches (padding is per batch, so similar lengths
mean little padding) and the results are put back in input order.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable

import numpy as np

from bert_layer.choices import MULTI_LABEL_THRESHOLD
from bert_layer.data.batching import estimate_lengths, length_grouped_batches, restore_order
from bert_layer.inference.runtimes import Classifier, TokenizingClassifier

# Texts tokenized (then grouped by length) at a time: bounds the memory the ids take.
TOKENIZE_WINDOW = 4096


def predict_probabilities(classifier: Classifier, texts: list[str], batch_size: int = 32,
                          on_batch: Callable[[int], object] | None = None) -> np.ndarray:
    """Probabilities [n, classes] in input order, computed on length-grouped batches.

    A classifier that `tokenizes_apart` is grouped by its real token counts, window by
    window; others by `estimate_lengths`. `on_batch(k)` is called after each batch of k
    texts (for a progress bar).
    """
    if not texts:
        return np.zeros([0, len(classifier.class_names)], np.float32)
    if getattr(classifier, "tokenizes_apart", False):
        return np.concatenate([
            _predict_tokenized(classifier, texts[start:start + TOKENIZE_WINDOW], batch_size,
                               on_batch)
            for start in range(0, len(texts), TOKENIZE_WINDOW)])
    batches = length_grouped_batches(estimate_lengths(texts), batch_size)
    results = []
    for batch in batches:
        results.append(classifier([texts[i] for i in batch]))
        if on_batch is not None:
            on_batch(len(batch))
    return restore_order(results, batches)


def _predict_tokenized(classifier: TokenizingClassifier, texts: list[str], batch_size: int,
                       on_batch: Callable[[int], object] | None) -> np.ndarray:
    """Tokenizes `texts` once, then runs batches of similar token counts, each cut to its
    own longest row."""
    features = classifier.tokenize(texts)  # [n, T] each
    lengths = features["input_mask"].sum(axis=1)  # [n]
    batches = length_grouped_batches(lengths, batch_size)
    results = []
    for batch in batches:
        results.append(classifier.run_ids({name: value[batch, :lengths[batch].max()]
                                           for name, value in features.items()}))
        if on_batch is not None:
            on_batch(len(batch))
    return restore_order(results, batches)


def labels_of(probabilities: np.ndarray, class_names: list[str],
              multi_label: bool) -> list[str]:
    if multi_label:  # As the F1 metric that chose the best epoch counts it.
        return [",".join(c for c, p in zip(class_names, row) if p > MULTI_LABEL_THRESHOLD)
                for row in probabilities]
    return [class_names[i] for i in probabilities.argmax(axis=1)]


def write_predictions(out, texts: list[str], probabilities: np.ndarray, class_names: list[str],
                      multi_label: bool, fmt: str, task: str = "classify") -> None:
    """Writes one row per text: the text, the label and each class's probability (for a
    regressor: the text and its `score`, or with several outputs `score_<name>` each)."""
    if task == "regress":
        _write_scores(out, texts, probabilities, class_names, fmt)
        return
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


def score_columns(score_names: list[str]) -> list[str]:
    """The output columns of a regressor: `score`, or `score_<name>` per output."""
    return ["score"] if len(score_names) == 1 else [f"score_{name}" for name in score_names]


def _write_scores(out, texts: list[str], scores: np.ndarray, score_names: list[str],
                  fmt: str) -> None:
    columns = score_columns(score_names)
    if fmt == "jsonl":
        for text, row in zip(texts, scores):
            record = {"text": text, **{c: round(float(v), 6) for c, v in zip(columns, row)}}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    if fmt != "csv":
        raise ValueError(f"Unknown output format {fmt!r}; expected 'csv' or 'jsonl'.")
    writer = csv.writer(out)
    writer.writerow(["text"] + columns)
    for text, row in zip(texts, scores):
        writer.writerow([text] + [f"{v:.6f}" for v in row])
