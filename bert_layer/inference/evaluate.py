"""Scoring a trained model on a labelled file (`bert-layer evaluate`): the model predicts, and
scikit-learn and scipy compute the numbers.

One evaluator per kind of task, in `EVALUATORS` (task -> function(examples, outputs, names) ->
dict); a new task (token tags with seqeval, say) plugs in with an entry there and a reader in
`read_for`. Dimension legend: n = examples, C = classes (or scores).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bert_layer.choices import MULTI_LABEL_THRESHOLD
from bert_layer.data.examples import Examples
from bert_layer.inference.predict import predict_probabilities
from bert_layer.inference.runtimes import Classifier


def evaluate_classes(examples: Examples, probabilities: np.ndarray,
                     class_names: list[str]) -> dict:
    """Single-label: accuracy, per-class precision/recall/F1/support, macro and weighted
    averages (scikit-learn's `classification_report`) and the confusion matrix (rows: true
    class, columns: predicted), for probabilities [n, C] and class indices [n]."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    y_true, y_pred = examples.labels, probabilities.argmax(axis=1)
    indices = list(range(len(class_names)))
    report = classification_report(y_true, y_pred, labels=indices, target_names=class_names,
                                   output_dict=True, zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "per_class": {name: report[name] for name in class_names},
            "macro_avg": report["macro avg"], "weighted_avg": report["weighted avg"],
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=indices).tolist()}


def evaluate_multi_label(examples: Examples, probabilities: np.ndarray,
                         class_names: list[str]) -> dict:
    """Multi-label (a class is predicted above MULTI_LABEL_THRESHOLD, as `predict` writes):
    subset accuracy, per-class precision/recall/F1, micro/macro/weighted averages and one
    2x2 confusion matrix [[tn, fp], [fn, tp]] per class."""
    from sklearn.metrics import accuracy_score, classification_report, multilabel_confusion_matrix

    y_true = examples.labels.astype(np.int64)  # [n, C]
    y_pred = (probabilities > MULTI_LABEL_THRESHOLD).astype(np.int64)  # [n, C]
    report = classification_report(y_true, y_pred, target_names=class_names, output_dict=True,
                                   zero_division=0)
    matrices = multilabel_confusion_matrix(y_true, y_pred)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "per_class": {name: report[name] for name in class_names},
            "micro_avg": report["micro avg"], "macro_avg": report["macro avg"],
            "weighted_avg": report["weighted avg"],
            "confusion_matrices": {name: m.tolist() for name, m in zip(class_names, matrices)}}


def evaluate_scores(examples: Examples, scores: np.ndarray, score_names: list[str]) -> dict:
    """Regression: Pearson and Spearman (scipy) and MSE (scikit-learn), per score and their
    mean over scores (see `bert_layer.training.regressor.regression_metrics`)."""
    from bert_layer.training.regressor import regression_metrics

    per_score = {name: regression_metrics(examples.labels[:, [j]], scores[:, [j]], [name])
                 for j, name in enumerate(score_names)}
    mean = regression_metrics(examples.labels, scores, score_names)
    return {**{k: mean[k] for k in ("pearson", "spearman", "mse")}, "per_score": per_score}


# The kind of task -> its evaluator.
EVALUATORS: dict[str, Callable[[Examples, np.ndarray, list[str]], dict]] = {
    "classify": evaluate_classes,
    "multi_label": evaluate_multi_label,
    "regress": evaluate_scores,
}


def task_of(model: Classifier) -> str:
    """The EVALUATORS key for `model`."""
    task = getattr(model, "task", "classify")
    return "multi_label" if task == "classify" and model.multi_label else task


def read_for(model: Classifier, path: str, *, text_column: str | int,
             pair_column: str | int | None, label_columns: list[str] | None) -> Examples:
    """The labelled examples of `path` as `model` needs them: class names its classes (an
    unknown one is an error naming the line), or numbers for a regressor (by default in the
    columns named as its scores)."""
    from bert_layer.data.examples import read_examples, read_scores

    if task_of(model) == "regress":
        return read_scores(path, text_column=text_column, pair_column=pair_column,
                           score_columns=label_columns or list(model.class_names))
    columns = label_columns or ["label"]
    if len(columns) != 1:
        raise ValueError(f"label_column is given {len(columns)} times ({columns}); a "
                         f"classifier's labels are in one column.")
    return read_examples(path, text_column=text_column, pair_column=pair_column,
                         label_column=columns[0], labels=list(model.class_names),
                         multi_label=model.multi_label)


def evaluate(model: Classifier, examples: Examples, batch_size: int = 32,
             on_batch: Callable[[int], object] | None = None) -> dict:
    """Predicts `examples` with `model` and scores the predictions against their labels."""
    task = task_of(model)
    outputs = predict_probabilities(model, examples.texts, batch_size=batch_size,
                                    on_batch=on_batch)
    names = list(model.class_names)
    return {"task": task, "input": examples.source, "examples": len(examples),
            "names": names, **EVALUATORS[task](examples, outputs, names)}


def format_table(result: dict) -> str:
    """The evaluation as a readable table."""
    if result["task"] == "regress":
        lines = [f"{'score':<20}{'pearson':>10}{'spearman':>10}{'mse':>12}"]
        rows = dict(result["per_score"])
        if len(rows) > 1:
            rows["mean"] = result
        for name, m in rows.items():
            lines.append(f"{name:<20}{m['pearson']:>10.4f}{m['spearman']:>10.4f}"
                         f"{m['mse']:>12.4f}")
        return "\n".join(lines + [f"{result['examples']} examples"])
    width = max(14, *(len(n) + 2 for n in result["names"]))
    lines = [f"accuracy {result['accuracy']:.4f} ({result['examples']} examples"
             f"{', all labels of a text right' if result['task'] == 'multi_label' else ''})",
             f"{'':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    rows = {**result["per_class"],
            **{k.replace("_", " "): result[k] for k in ("micro_avg", "macro_avg",
                                                         "weighted_avg") if k in result}}
    for name, m in rows.items():
        lines.append(f"{name:<{width}}{m['precision']:>10.4f}{m['recall']:>10.4f}"
                     f"{m['f1-score']:>10.4f}{int(m['support']):>10}")
    if "confusion_matrix" in result:
        names = result["names"]
        cell = max(8, *(len(n) + 2 for n in names))
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        lines.append(f"{'':<{width}}" + "".join(f"{n:>{cell}}" for n in names))
        for name, row in zip(names, result["confusion_matrix"]):
            lines.append(f"{name:<{width}}" + "".join(f"{v:>{cell}}" for v in row))
    else:
        lines.append("confusion per class [[tn, fp], [fn, tp]]: " + "; ".join(
            f"{n} {m}" for n, m in result["confusion_matrices"].items()))
    return "\n".join(lines)
