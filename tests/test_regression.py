"""`train --task regress`: float labels, the regression head, scipy's metrics picking the best
epoch, and the same scores from the .keras, the frozen graph, the serving SavedModel,
`predict` and `evaluate`."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from harness import assert_one_line_error, run_cli, tree_hashes
from scipy.stats import pearsonr, spearmanr

from bert_layer.data.examples import read_scores
from bert_layer.inference.runtimes import load_classifier

POSITIVE = ["good", "great", "fun", "love", "best"]
NEGATIVE = ["bad", "boring", "hate", "worst"]
FILLER = ["the", "movie", "film", "story", "plot", "was", "is", "very", "so", "and", "it"]


def scored_rows(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(sentence, score, length) rows: score = positive words - negative words (+ noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        words = list(rng.choice(FILLER, size=rng.integers(1, 6)))
        good, bad = rng.integers(0, 3), rng.integers(0, 3)
        words += list(rng.choice(POSITIVE, size=good)) + list(rng.choice(NEGATIVE, size=bad))
        rng.shuffle(words)
        score = good - bad + rng.normal(0, 0.1)
        rows.append((" ".join(words) + " .", f"{score:.4f}", str(len(words))))
    return rows


def write_rows(path, rows, header=("sentence", "score", "length")) -> str:
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("scores")
    return (write_rows(folder / "train.tsv", scored_rows(48, seed=1)),
            write_rows(folder / "dev.tsv", scored_rows(16, seed=2)))


def read_predicted_scores(path: str) -> tuple[list[str], list[str], list[float]]:
    """`predict`'s CSV of a one-score regressor: (header, texts, scores)."""
    with open(path, encoding="utf-8", newline="") as f:
        header, *rows = csv.reader(f)
    return header, [r[0] for r in rows], [float(r[1]) for r in rows]


def _train_argv(module: str, files, out: str, *extra: str) -> list[str]:
    return ["train", "--task", "regress", "--module", module, "--train", files[0],
            "--dev", files[1], "--label-column", "score", "--out", out, "--epochs", "3",
            "--batch-size", "8", "--learning-rate", "1e-3", "--max-seq-length", "32",
            "--fine-tune-layers", "1", "--quiet", *extra]


@pytest.fixture(scope="module")
def trained(tiny_module_dir, files, tmp_path_factory) -> tuple[str, dict]:
    """A 3-epoch regressor trained through the CLI: (output folder, report)."""
    out = str(tmp_path_factory.mktemp("regress") / "run")
    code, stdout, err = run_cli(_train_argv(tiny_module_dir, files, out))
    assert code == 0, err
    assert "val_pearson " in stdout
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        return out, json.load(f)


@pytest.fixture(scope="module")
def frozen(trained) -> dict[str, str]:
    """The trained regressor as a frozen graph and a serving SavedModel."""
    out, _ = trained
    model = os.path.join(out, "model.keras")
    paths = {"keras": model, "graph": os.path.join(out, "frozen.pb"),
             "saved_model": os.path.join(out, "serving")}
    for fmt in ("graph", "saved_model"):
        code, _, err = run_cli(["freeze", "--model", model, "--out", paths[fmt], "--format", fmt,
                                "--quiet"])
        assert code == 0, err
    return paths


def test_read_scores_parses_floats_per_column(tmp_path):
    path = write_rows(tmp_path / "s.tsv", [("a", "1.5", "3"), ("b", "-2", "1e1")])
    examples = read_scores(path, text_column="sentence", score_columns=["score", "length"])
    assert examples.scores and not examples.multi_label
    assert examples.classes == ["score", "length"]
    np.testing.assert_array_equal(examples.labels, np.array([[1.5, 3], [-2, 10]], np.float32))


@pytest.mark.parametrize("value", ["high", "nan", "inf", ""])
def test_a_score_that_is_not_a_finite_number_names_file_and_line(tmp_path, value):
    path = write_rows(tmp_path / "s.tsv", [("a", "1", "1"), ("b", value, "2")])
    with pytest.raises(ValueError, match=rf"s\.tsv: line 3: column 'score' holds "
                                         rf"'{value}'; expected a finite number"):
        read_scores(path, text_column="sentence", score_columns=["score"])


@pytest.mark.large
def test_the_report_has_scipy_metrics_and_the_best_epoch_by_pearson(trained, files):
    out, report = trained
    assert report["classifier"]["task"] == "regress"
    assert report["classifier"]["class_names"] == ["score"]
    pearsons = [e["val_pearson"] for e in report["epochs"]]
    assert len(pearsons) == 3
    assert all({"loss", "val_pearson", "val_spearman", "val_mse"} <= set(e)
               for e in report["epochs"])
    assert report["best_epoch"] == 1 + int(np.argmax(pearsons))
    assert report["training_options"]["best_epoch_by"] == "val_pearson"
    # The saved model is the best epoch's: its dev scores, by scipy here, are the report's.
    dev = read_scores(files[1], text_column="sentence", score_columns=["score"])
    predicted = load_classifier(os.path.join(out, "model.keras"))(dev.texts)[:, 0]
    truth = dev.labels[:, 0]
    best = report["best"]
    assert best["val_pearson"] == pytest.approx(pearsonr(truth, predicted)[0], abs=1e-5)
    assert best["val_spearman"] == pytest.approx(spearmanr(truth, predicted)[0], abs=1e-5)
    assert best["val_mse"] == pytest.approx(np.mean((truth - predicted) ** 2), rel=1e-4)


@pytest.mark.large
def test_keras_frozen_and_serving_give_the_same_scores(frozen, files):
    dev = read_scores(files[1], text_column="sentence", score_columns=["score"])
    results = {}
    for kind, path in frozen.items():
        model = load_classifier(path)
        assert (model.task, model.class_names, model.multi_label) == ("regress", ["score"],
                                                                       False)
        results[kind] = model(dev.texts)
        assert results[kind].shape == (len(dev), 1)
    np.testing.assert_allclose(results["graph"], results["keras"], atol=1e-5)
    np.testing.assert_allclose(results["saved_model"], results["keras"], atol=1e-5)


@pytest.mark.large
def test_the_serving_signature_outputs_score(frozen):
    import tensorflow as tf
    loaded = tf.saved_model.load(frozen["saved_model"])
    outputs = loaded.signatures["serving_default"](text=tf.constant(["good fun ."]))
    assert sorted(outputs) == ["score"] and outputs["score"].shape == (1, 1)
    assert loaded.signatures["metadata"]()["task"].numpy() == b"regress"


def test_predict_writes_a_score_column(frozen, files, tmp_path):
    out = str(tmp_path / "scores.csv")
    code, _, err = run_cli(["predict", "--model", frozen["graph"], "--input", files[1],
                            "--output", out, "--quiet"])
    assert code == 0, err
    header, texts, scores = read_predicted_scores(out)
    assert header == ["text", "score"]
    dev = read_scores(files[1], text_column="sentence", score_columns=["score"])
    expected = load_classifier(frozen["keras"])(dev.texts)[:, 0]
    assert texts == dev.texts
    np.testing.assert_allclose(scores, expected, atol=1e-5)


@pytest.mark.large
def test_evaluate_gives_scipys_numbers(frozen, files, tmp_path):
    out = str(tmp_path / "eval.json")
    code, stdout, err = run_cli(["evaluate", "--model", frozen["saved_model"], "--input",
                                 files[1], "--output", out, "--quiet"])
    assert code == 0, err
    with open(out, encoding="utf-8") as f:
        result = json.load(f)
    dev = read_scores(files[1], text_column="sentence", score_columns=["score"])
    predicted = load_classifier(frozen["keras"])(dev.texts)[:, 0]
    truth = dev.labels[:, 0]
    assert result["task"] == "regress" and result["examples"] == 16
    assert result["pearson"] == pytest.approx(pearsonr(truth, predicted)[0], abs=1e-5)
    assert result["spearman"] == pytest.approx(spearmanr(truth, predicted)[0], abs=1e-5)
    from sklearn.metrics import mean_squared_error
    assert result["mse"] == pytest.approx(mean_squared_error(truth, predicted), rel=1e-4)
    assert "pearson" in stdout and f"{result['pearson']:.4f}" in stdout


@pytest.mark.large
def test_several_label_columns_train_one_output_each(tiny_module_dir, files, tmp_path):
    out = str(tmp_path / "two")
    argv = _train_argv(tiny_module_dir, files, out, "--label-column", "length")
    argv[argv.index("--epochs") + 1] = "1"
    code, _, err = run_cli(argv)
    assert code == 0, err
    model = load_classifier(os.path.join(out, "model.keras"))
    assert model.class_names == ["score", "length"]
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        best = json.load(f)["best"]
    assert {"val_pearson_score", "val_pearson_length", "val_mse_length"} <= set(best)
    assert best["val_pearson"] == pytest.approx(
        (best["val_pearson_score"] + best["val_pearson_length"]) / 2)
    predictions = str(tmp_path / "p.jsonl")
    code, _, err = run_cli(["predict", "--model", os.path.join(out, "model.keras"),
                            "--input", files[1], "--output", predictions, "--quiet"])
    assert code == 0, err
    with open(predictions, encoding="utf-8") as f:
        first = json.loads(f.readline())
    assert sorted(first) == ["score_length", "score_score", "text"]


def test_a_non_numeric_score_is_one_line_and_nothing_written(tiny_module_dir, files, tmp_path):
    rows = scored_rows(6, seed=3)
    rows[4] = (rows[4][0], "very good", rows[4][2])
    bad = write_rows(tmp_path / "bad.tsv", rows)
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["train", "--task", "regress", "--module", tiny_module_dir,
                            "--train", bad, "--label-column", "score",
                            "--out", str(tmp_path / "run")])
    assert code == 2
    assert_one_line_error(err, "train", "bad.tsv: line 6", "'very good'", "finite number")
    assert tree_hashes(tmp_path) == before


@pytest.mark.large
def test_predict_on_beam_writes_the_same_scores(frozen, files, tmp_path):
    local, beam = str(tmp_path / "local.csv"), str(tmp_path / "beam.csv")
    for out, runner in ((local, "local"), (beam, "beam")):
        code, _, err = run_cli(["predict", "--model", frozen["graph"], "--input", files[1],
                                "--output", out, "--runner", runner, "--quiet"])
        assert code == 0, err
    # Beam batches rows differently from the local runner, so the last printed digit may differ
    # (seen: -0.081523 vs -0.081524); texts, order and columns must match exactly.
    local_header, local_texts, local_scores = read_predicted_scores(local)
    beam_header, beam_texts, beam_scores = read_predicted_scores(beam)
    assert local_header == beam_header == ["text", "score"]
    assert beam_texts == local_texts and len(local_texts) > 1
    np.testing.assert_allclose(beam_scores, local_scores, atol=2e-6, rtol=0)
