"""`bert-layer evaluate`: the numbers equal scikit-learn's on the same labels and predictions,
for every model kind predict reads; bad input is one line and touches nothing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from harness import assert_one_line_error, run_cli, tree_hashes
from real_data import DATA_DIR
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    multilabel_confusion_matrix,
)
from test_train import sentiment_rows, write_tsv

from bert_layer.inference.runtimes import load_classifier
from bert_layer.text.pairs import PAIR_SEPARATOR

MRPC = os.path.join(DATA_DIR, "mrpc")
PAIR_COLUMNS = ["--text-column", "#1 String", "--pair-column", "#2 String",
                "--label-column", "Quality"]


@pytest.fixture(scope="module")
def mrpc_models(tiny_module_dir, tmp_path_factory) -> dict[str, str]:
    """A tiny classifier trained one epoch on 64 MRPC training pairs: .keras and frozen .pb."""
    if not os.path.isfile(os.path.join(MRPC, "train.tsv")):
        pytest.skip("MRPC not found in ../shared/data")
    out = str(tmp_path_factory.mktemp("mrpc") / "run")
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train",
                            os.path.join(MRPC, "train.tsv"), *PAIR_COLUMNS, "--out", out,
                            "--max-train-rows", "64", "--epochs", "1", "--batch-size", "16",
                            "--learning-rate", "1e-3", "--max-seq-length", "32", "--quiet"])
    assert code == 0, err
    models = {"keras": os.path.join(out, "model.keras"), "graph": os.path.join(out, "f.pb")}
    code, _, err = run_cli(["freeze", "--model", models["keras"], "--out", models["graph"],
                            "--quiet"])
    assert code == 0, err
    return models


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["keras", "graph"])
def test_evaluate_on_mrpc_dev_equals_scikit_learn(mrpc_models, mrpc_dev, kind, tmp_path):
    out = str(tmp_path / "eval.json")
    code, stdout, err = run_cli(["evaluate", "--model", mrpc_models[kind], "--input",
                                 os.path.join(MRPC, "dev.tsv"), *PAIR_COLUMNS, "--output", out,
                                 "--quiet"])
    assert code == 0, err
    with open(out, encoding="utf-8") as f:
        result = json.load(f)
    # The same labels (read here with csv) and predictions (the .keras model, run here).
    texts = [f"{a} {PAIR_SEPARATOR} {b}" for a, b, _ in mrpc_dev]
    y_true = np.array([label for _, _, label in mrpc_dev])
    y_pred = load_classifier(mrpc_models["keras"])(texts).argmax(axis=1)
    report = classification_report(y_true, y_pred, labels=[0, 1], target_names=["0", "1"],
                                   output_dict=True, zero_division=0)
    assert result["task"] == "classify" and result["examples"] == 408
    assert result["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    for name in ("0", "1"):
        assert result["per_class"][name] == pytest.approx(report[name], abs=1e-12)
    assert result["macro_avg"] == pytest.approx(report["macro avg"], abs=1e-12)
    assert result["weighted_avg"] == pytest.approx(report["weighted avg"], abs=1e-12)
    assert result["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert f"accuracy {result['accuracy']:.4f} (408 examples)" in stdout
    assert "confusion matrix" in stdout and "weighted avg" in stdout


@pytest.mark.large
def test_evaluate_multi_label_equals_scikit_learn(tiny_module_dir, tmp_path):
    classes = ["act", "plot", "fun"]
    rows = [("the act was good .", "act"), ("the plot was bad .", "plot"),
            ("fun fun fun !", "fun"), ("act and plot .", "act,plot"),
            ("so fun , the plot too .", "plot,fun"), ("it was a film .", "")] * 3
    data = write_tsv(tmp_path / "multi.tsv", rows)
    out = str(tmp_path / "run")
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", data, "--out", out,
                            "--multi-label", "--labels", ",".join(classes), "--epochs", "2",
                            "--batch-size", "6", "--learning-rate", "1e-2",
                            "--max-seq-length", "32", "--quiet"])
    assert code == 0, err
    result_file = str(tmp_path / "eval.json")
    code, _, err = run_cli(["evaluate", "--model", os.path.join(out, "model.keras"),
                            "--input", data, "--output", result_file, "--quiet"])
    assert code == 0, err
    with open(result_file, encoding="utf-8") as f:
        result = json.load(f)
    y_true = np.array([[c in label.split(",") for c in classes] for _, label in rows], int)
    probabilities = load_classifier(os.path.join(out, "model.keras"))([t for t, _ in rows])
    y_pred = (probabilities > 0.5).astype(int)
    report = classification_report(y_true, y_pred, target_names=classes, output_dict=True,
                                   zero_division=0)
    assert result["task"] == "multi_label"
    assert result["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    for c in classes:
        assert result["per_class"][c] == pytest.approx(report[c], abs=1e-12)
    assert result["micro_avg"] == pytest.approx(report["micro avg"], abs=1e-12)
    matrices = multilabel_confusion_matrix(y_true, y_pred)
    assert result["confusion_matrices"] == {c: m.tolist() for c, m in zip(classes, matrices)}


@pytest.fixture(scope="module")
def sentiment_model(trained_run) -> tuple[str, str]:
    """conftest's trained neg/pos classifier and its training file."""
    return trained_run["keras"], trained_run["train"]


@pytest.mark.large
def test_a_label_the_model_does_not_know_is_one_line(sentiment_model, tmp_path):
    model, _ = sentiment_model
    rows = sentiment_rows(4, seed=3)
    rows[2] = (rows[2][0], "meh")
    data = write_tsv(tmp_path / "test.tsv", rows)
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["evaluate", "--model", model, "--input", data,
                            "--output", str(tmp_path / "eval.json")])
    assert code == 2
    assert_one_line_error(err, "evaluate", "test.tsv: line 4", "'meh'", "['neg', 'pos']")
    assert tree_hashes(tmp_path) == before


@pytest.mark.parametrize("output, fragment", [("eval.csv", "expected a .json"),
                                              ("existing.json", "--overwrite")])
def test_the_output_is_checked_before_any_work(sentiment_model, tmp_path, output, fragment):
    model, data = sentiment_model
    (tmp_path / "existing.json").write_text("{}", encoding="utf-8")
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["evaluate", "--model", model, "--input", data,
                            "--output", str(tmp_path / output)])
    assert code == 2
    assert_one_line_error(err, "evaluate", fragment)
    assert tree_hashes(tmp_path) == before
