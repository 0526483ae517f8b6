"""The `bert-layer` command in-process: help, train -> freeze -> predict, and bad input."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import sys

import numpy as np
import pytest

from bert_layer.cli.main import main
from bert_layer.inference.runtimes import FrozenClassifier

COMMANDS = ["convert", "export", "train", "freeze", "predict", "embed", "demo", "inspect"]
POSITIVE = ["the movie was good .", "great fun", "i love this film", "the best story"]
NEGATIVE = ["the movie was bad .", "so boring", "i hate this film", "the worst plot"]


def pair_rows(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(first, second, label): "same" when both sentences have the same sentiment."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        first_positive, same = rng.integers(0, 2), i % 2 == 0
        second_positive = first_positive if same else 1 - first_positive
        first = rng.choice([NEGATIVE, POSITIVE][first_positive])
        second = rng.choice([NEGATIVE, POSITIVE][second_positive])
        rows.append((first, second, "same" if same else "different"))
    return rows


def write_tsv(path, header, rows) -> str:
    path.write_text("".join("\t".join(row) + "\n" for row in [header, *rows]),
                    encoding="utf-8")
    return str(path)


def run_quietly(argv: list[str]) -> tuple[int, str, str]:
    """main(argv) with stdout and stderr captured (for module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def job(tiny_module_dir, tmp_path_factory):
    """`bert-layer train` on a pair task (32 rows, 1 epoch), then `bert-layer freeze`."""
    folder = tmp_path_factory.mktemp("cli")
    header = ["first", "second", "label"]
    train = write_tsv(folder / "train_pairs.tsv", header, pair_rows(32, seed=1))
    dev = write_tsv(folder / "dev_pairs.tsv", header, pair_rows(8, seed=2))
    run_dir, frozen = str(folder / "run"), str(folder / "frozen.pb")
    trained = run_quietly([
        "train", "--module", tiny_module_dir, "--train", train, "--dev", dev, "--out", run_dir,
        "--text-column", "first", "--pair-column", "second", "--labels", "different,same",
        "--epochs", "1", "--batch-size", "8", "--fine-tune-layers", "1",
        "--max-seq-length", "32", "--learning-rate", "1e-3"])
    froze = run_quietly(["freeze", "--model", os.path.join(run_dir, "model.keras"),
                         "--out", frozen])
    return dict(folder=str(folder), train=train, dev=dev, run_dir=run_dir, frozen=frozen,
                trained=trained, froze=froze)


def _dev_texts(job) -> list[str]:
    with open(job["dev"], encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    return [f"{first} ||| {second}" for first, second, _ in rows]


def _no_leftovers(folder) -> None:
    hidden = [name for name in os.listdir(folder) if name.startswith(".")]
    assert hidden == [], f"temporary files left behind: {hidden}"


# === Help ===

@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: bert-layer {command}")
    assert "--help" in out


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS)


def test_missing_required_argument(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["freeze", "--model", "model.keras"])
    assert exit_info.value.code == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


# === train -> freeze -> predict ===

@pytest.mark.large
def test_train_writes_model_and_report_and_prints_a_summary(job):
    code, out, err = job["trained"]
    assert code == 0, err
    assert sorted(os.listdir(job["run_dir"])) == [".bert_layer", "model.keras", "report.json"]
    with open(os.path.join(job["run_dir"], "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["classifier"]["class_names"] == ["different", "same"]  # As declared.
    assert report["classifier"]["max_seq_length"] == 32
    assert report["train_source"] == job["train"] and report["train_examples"] == 32
    assert report["dev_examples"] == 8 and report["best_epoch"] == 1
    # One line per epoch (Keras's own progress line is off), then a summary: no dicts, no
    # 16-digit floats.
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    epoch = report["epochs"][0]
    assert epoch_lines == [
        f"epoch 1/1: loss {epoch['loss']:.4f}  accuracy {epoch['accuracy']:.4f}  "
        f"f1 {epoch['f1']:.4f}  val_loss {epoch['val_loss']:.4f}  "
        f"val_accuracy {epoch['val_accuracy']:.4f}  val_f1 {epoch['val_f1']:.4f}  "
        f"({epoch['examples_per_second']:.1f} examples/s, {epoch['epoch_seconds']:.0f}s)"]
    best = report["best"]
    assert (f"Kept epoch 1 of 1 (best val_accuracy): val_loss {best['val_loss']:.4f}  "
            f"val_accuracy {best['val_accuracy']:.4f}  val_f1 {best['val_f1']:.4f}.") in out
    assert "{" not in out and "epoch_seconds" not in out
    _no_leftovers(job["folder"])


def test_freeze_prints_inputs_and_sizes(job):
    code, out, err = job["froze"]
    assert code == 0, err
    assert f"-> {job['frozen']} (inputs: text)" in out
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["nodes", "before", "after"]


def test_predict_file_to_csv_file_in_input_order(job, tmp_path, capsys):
    output = tmp_path / "predictions.csv"
    code, out, err = run(["predict", "--model", job["frozen"], "--input", job["dev"],
                          "--text-column", "first", "--pair-column", "second",
                          "--output", str(output), "--batch-size", "3"], capsys)
    assert code == 0, err
    assert out == "" and "Predicted 8 texts" in err
    assert os.listdir(tmp_path) == ["predictions.csv"]
    with open(output, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["text", "label", "p_different", "p_same"]
    texts = _dev_texts(job)
    assert [row[0] for row in rows[1:]] == texts
    expected = FrozenClassifier(job["frozen"])(texts)
    written = np.array([[float(p) for p in row[2:]] for row in rows[1:]])
    np.testing.assert_allclose(written, expected, atol=1e-6, rtol=0)
    assert [row[1] for row in rows[1:]] == [["different", "same"][i]
                                            for i in expected.argmax(axis=1)]


def _predicted_dev_rows(job, model: str, capsys) -> list[dict]:
    """`bert-layer predict --format jsonl` of the job's dev pairs with `model`, parsed."""
    code, out, err = run(["predict", "--model", model, "--input", job["dev"],
                          "--text-column", "first", "--pair-column", "second",
                          "--format", "jsonl"], capsys)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_predict_with_the_keras_model_agrees_with_the_frozen_graph(job, capsys):
    keras_rows, frozen_rows = (_predicted_dev_rows(job, model, capsys) for model in
                               (os.path.join(job["run_dir"], "model.keras"), job["frozen"]))
    assert [r["text"] for r in keras_rows] == [r["text"] for r in frozen_rows] == _dev_texts(job)
    for keras_row, frozen_row in zip(keras_rows, frozen_rows):
        assert keras_row["probabilities"] == pytest.approx(frozen_row["probabilities"],
                                                           abs=2e-5)


@pytest.mark.large
def test_predict_with_a_core_saved_model_agrees_with_the_frozen_graph(job, capsys):
    saved_model = os.path.join(job["folder"], "serving")
    code, out, err = run(["freeze", "--model", os.path.join(job["run_dir"], "model.keras"),
                          "--out", saved_model, "--format", "saved_model",
                          "--tokenizer", "core"], capsys)
    assert code == 0, err
    assert f"-> {saved_model} (SavedModel" in out
    served_rows, frozen_rows = (_predicted_dev_rows(job, model, capsys)
                                for model in (saved_model, job["frozen"]))
    assert [r["text"] for r in served_rows] == _dev_texts(job)
    assert [r["label"] for r in served_rows] == [r["label"] for r in frozen_rows]
    for served_row, frozen_row in zip(served_rows, frozen_rows):
        assert served_row["probabilities"] == pytest.approx(frozen_row["probabilities"],
                                                            abs=2e-5)


def test_predict_from_stdin_keeps_empty_lines(job, capsys, monkeypatch):
    lines = "the movie was good .\nso boring ||| great fun\n\nthe worst plot\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code, out, err = run(["predict", "--model", job["frozen"], "--format", "jsonl"], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == ["the movie was good .", "so boring ||| great fun",
                                            "", "the worst plot"]
    expected = FrozenClassifier(job["frozen"])([r["text"] for r in records])
    for record, row in zip(records, expected):
        assert list(record["probabilities"]) == ["different", "same"]
        assert list(record["probabilities"].values()) == pytest.approx(row, abs=1e-6)
        assert record["label"] == ["different", "same"][row.argmax()]


def test_predict_refuses_an_existing_output_unless_overwrite(job, tmp_path, capsys,
                                                             monkeypatch):
    output = tmp_path / "predictions.csv"
    output.write_text("user data")
    monkeypatch.setattr(sys, "stdin", io.StringIO("great fun\n"))
    argv = ["predict", "--model", job["frozen"], "--output", str(output)]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "bert-layer predict: error: Output path already exists" in err
    assert output.read_text() == "user data"
    code, _, err = run(argv + ["--overwrite"], capsys)
    assert code == 0, err
    assert output.read_text(encoding="utf-8").splitlines()[1].startswith("great fun,")
    assert os.listdir(tmp_path) == ["predictions.csv"]


# === Bad input: exit code 2, a message, no output ===

GOOD_HEADER, GOOD_ROW = "sentence\tlabel\n", "great fun\tpos\n"
BAD_TRAIN_FILES = {
    "missing_column": ("text\tlabel\n" + GOOD_ROW, [],
                       r"train.tsv: --text-column 'sentence' is not a column name nor a 0-based "
                       r"index below 2. Columns found: 0: 'text', 1: 'label'"),
    "undeclared_label": (GOOD_HEADER + GOOD_ROW + "so boring\tmeh\n", ["--labels", "neg,pos"],
                         r"train.tsv: line 3 has label 'meh', expected one of "
                         r"\['neg', 'pos'\]"),
    "empty_file": ("", [], "train.tsv: the file is empty"),
    "wrong_field_count": (GOOD_HEADER + GOOD_ROW + "so\tboring\tneg\n", [],
                          r"train.tsv: line 3 has 3 fields, expected 2"),
    "no_rows": (GOOD_HEADER, [], "expected rows after the header"),
    "zero_rows_asked": (GOOD_HEADER + GOOD_ROW + "so boring\tneg\n",
                        ["--max-train-rows", "0"], "--max-train-rows must be >= 1; received 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN_FILES))
def test_train_rejects_bad_input_and_writes_nothing(case, tiny_module_dir, tmp_path, capsys):
    content, extra, message = BAD_TRAIN_FILES[case]
    train = tmp_path / "train.tsv"
    train.write_text(content, encoding="utf-8")
    code, out, err = run(["train", "--module", tiny_module_dir, "--train", str(train),
                          "--out", str(tmp_path / "run"), *extra], capsys)
    assert code == 2
    assert err.startswith("bert-layer train: error: ")
    assert err.count("\n") == 1, err  # One line, no traceback.
    assert re.search(message, err), err
    assert os.listdir(tmp_path) == ["train.tsv"]


def test_train_dev_label_outside_the_training_classes(tiny_module_dir, tmp_path, capsys):
    train = write_tsv(tmp_path / "train.tsv", ["sentence", "label"],
                      [("great fun", "pos"), ("so boring", "neg")])
    dev = write_tsv(tmp_path / "dev.tsv", ["sentence", "label"], [("it was ok", "meh")])
    code, _, err = run(["train", "--module", tiny_module_dir, "--train", train, "--dev", dev,
                        "--out", str(tmp_path / "run")], capsys)
    assert code == 2
    assert "dev.tsv: line 2 has label 'meh', expected one of ['neg', 'pos']" in err
    assert sorted(os.listdir(tmp_path)) == ["dev.tsv", "train.tsv"]


def test_predict_with_a_file_that_is_not_a_graph(tmp_path, capsys, monkeypatch):
    model = tmp_path / "model.pb"
    model.write_text("not a graph")
    output = tmp_path / "predictions.csv"
    monkeypatch.setattr(sys, "stdin", io.StringIO("great fun\n"))
    code, out, err = run(["predict", "--model", str(model), "--output", str(output)], capsys)
    assert code == 2
    assert f"bert-layer predict: error: {model} is not a frozen graph" in err
    assert out == "" and os.listdir(tmp_path) == ["model.pb"]


def test_predict_input_missing_the_text_column(job, tmp_path, capsys):
    output = tmp_path / "predictions.csv"
    code, _, err = run(["predict", "--model", job["frozen"], "--input", job["dev"],
                        "--output", str(output)], capsys)
    assert code == 2
    assert ("--text-column 'sentence' is not a column name nor a 0-based index below 3. "
            "Columns found: 0: 'first', 1: 'second', 2: 'label'") in err
    assert os.listdir(tmp_path) == []


def test_predict_missing_model_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("great fun\n"))
    code, _, err = run(["predict", "--model", str(tmp_path / "gone.pb")], capsys)
    assert code == 2 and f"Model file not found: {tmp_path / 'gone.pb'}" in err


def test_freeze_refuses_an_existing_output(job, tmp_path, capsys):
    output = tmp_path / "frozen.pb"
    output.write_text("user data")
    code, _, err = run(["freeze", "--model", os.path.join(job["run_dir"], "model.keras"),
                        "--out", str(output)], capsys)
    assert code == 2 and "Output path already exists" in err
    assert output.read_text() == "user data" and os.listdir(tmp_path) == ["frozen.pb"]
