"""`train --resume`: an interrupted or killed run continues from its last finished epoch."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from harness import assert_one_line_error, kill_after_first_epoch, run_cli, tree_hashes
from test_train import CLASSES, sentiment_rows, write_tsv

from bert_layer.data.examples import read_examples
from bert_layer.inference.runtimes import KerasClassifier
from bert_layer.training.classifier import ClassifierSpec
from bert_layer.training.train import (
    MODEL_FILE,
    REPORT_FILE,
    ThroughputLogger,
    TrainConfig,
    train_classifier,
)

CONFIG = TrainConfig(epochs=3, batch_size=8, learning_rate=1e-3, seed=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("resume_data")
    return (write_tsv(folder / "train.tsv", sentiment_rows(48, seed=1)),
            write_tsv(folder / "dev.tsv", sentiment_rows(16, seed=2)))


@pytest.fixture(scope="module")
def spec(tiny_module_dir) -> ClassifierSpec:
    return ClassifierSpec(module=tiny_module_dir, class_names=tuple(CLASSES),
                          fine_tune_layers=1, max_seq_length=32)


def _read(files):
    read = dict(text_column="sentence", label_column="label", labels=CLASSES)
    return [read_examples(path, **read) for path in files]


def _hidden(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def _stop_in_epoch(monkeypatch, epoch: int) -> None:
    """Raises KeyboardInterrupt (Ctrl-C) as 0-based `epoch` begins."""
    original = ThroughputLogger.on_epoch_begin

    def interrupt(self, index, logs=None):
        if index == epoch:
            raise KeyboardInterrupt
        original(self, index, logs)

    monkeypatch.setattr(ThroughputLogger, "on_epoch_begin", interrupt)


def _dev_accuracy(out: str, dev) -> float:
    probabilities = KerasClassifier(os.path.join(out, MODEL_FILE))(dev.texts)
    return float(np.mean(probabilities.argmax(axis=1) == dev.labels))


# === In-process: interrupted by Ctrl-C ===


def _interrupt_in_epoch(monkeypatch, epoch: int, spec, train, dev, out: str) -> None:
    """Runs train_classifier until Ctrl-C arrives as 0-based `epoch` begins."""
    with monkeypatch.context() as patch:
        _stop_in_epoch(patch, epoch)
        with pytest.raises(KeyboardInterrupt):
            train_classifier(spec, train, dev, out, CONFIG, verbose=0)


@pytest.mark.large
def test_interrupted_run_resumes_after_its_last_finished_epoch(spec, files, tmp_path,
                                                               monkeypatch):
    train, dev = _read(files)
    out = str(tmp_path / "run")
    _interrupt_in_epoch(monkeypatch, 2, spec, train, dev, out)
    assert sorted(os.listdir(tmp_path)) == ["run.backup"]  # No output, no temporary folder.
    with pytest.raises(FileExistsError, match=r"run.backup holds an interrupted run of this "
                       r"output \(2 of 3 epochs finished\). Pass --resume"):
        train_classifier(spec, train, dev, out, CONFIG, verbose=0)
    report = train_classifier(spec, train, dev, out, CONFIG, resume=True, verbose=0)
    assert report["resumed_from_epoch"] == 3
    assert [e["epoch"] for e in report["epochs"]] == [1, 2, 3]
    assert sorted(os.listdir(tmp_path)) == ["run"]  # The backup is gone once written.
    with open(os.path.join(out, REPORT_FILE), encoding="utf-8") as f:
        assert json.load(f) == report
    # The model written is the reported best epoch's, wherever that epoch ran.
    assert _dev_accuracy(out, dev) == pytest.approx(report["best"]["val_accuracy"], abs=1e-6)


@pytest.mark.large
def test_resume_needs_the_same_settings(spec, files, tmp_path, monkeypatch):
    train, dev = _read(files)
    out = str(tmp_path / "run")
    _interrupt_in_epoch(monkeypatch, 1, spec, train, None, out)
    other = TrainConfig(**{**CONFIG.__dict__, "learning_rate": 2e-3})
    with pytest.raises(ValueError, match=r"Cannot resume .*run.backup: it was started with "
                       r"other settings \(train_config.learning_rate: 0.001 then, 0.002 now\)"):
        train_classifier(spec, train, None, out, other, resume=True, verbose=0)
    report = train_classifier(spec, train, None, out, other, overwrite=True, verbose=0)
    assert report["resumed_from_epoch"] is None  # --overwrite started again.
    assert [e["epoch"] for e in report["epochs"]] == [1, 2, 3]
    assert sorted(os.listdir(tmp_path)) == ["run"]


@pytest.mark.large
def test_a_windowed_backup_resumes_only_with_the_same_batches_per_epoch(spec, files, tmp_path,
                                                                        monkeypatch):
    """Texts read as windows: the batches of an epoch depend on the windows (and on the
    version: a batch holds at most batch_size windows since 2026-12-05), and the schedule
    counts them, so a backup that counted otherwise is refused, naming the count."""
    import dataclasses

    from bert_layer.training.backup import backup_dir

    windowed = dataclasses.replace(spec, max_seq_length=8, stride=2)
    train, _ = _read(files)
    out = str(tmp_path / "run")
    _interrupt_in_epoch(monkeypatch, 1, windowed, train, None, out)
    run_file = os.path.join(backup_dir(out), "run.json")
    with open(run_file, encoding="utf-8") as f:
        saved = json.load(f)
    batches = saved.pop("batches_per_epoch")
    assert batches > len(train) // CONFIG.batch_size  # Windows, not texts, fill the batches.
    with open(run_file, "w", encoding="utf-8") as f:
        json.dump(saved, f)  # As a backup of the earlier version has it.
    with pytest.raises(ValueError, match=rf"other settings \(batches_per_epoch: None then, "
                       rf"{batches} now\)"):
        train_classifier(windowed, train, None, out, CONFIG, resume=True, verbose=0)
    with open(run_file, "w", encoding="utf-8") as f:
        json.dump({**saved, "batches_per_epoch": batches}, f)
    report = train_classifier(windowed, train, None, out, CONFIG, resume=True, verbose=0)
    assert report["resumed_from_epoch"] == 2
    assert report["training_options"]["optimizer_updates"] == CONFIG.epochs * batches


def test_an_interruption_before_any_epoch_finished_keeps_nothing(spec, files, tmp_path,
                                                                 monkeypatch):
    train, _ = _read(files)
    _stop_in_epoch(monkeypatch, 0)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(spec, train, None, str(tmp_path / "run"), CONFIG, verbose=0)
    assert os.listdir(tmp_path) == []


def test_a_folder_that_is_not_a_backup_is_left_alone(spec, files, tmp_path):
    train, _ = _read(files)
    (tmp_path / "run.backup").mkdir()
    (tmp_path / "run.backup" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="run.backup exists but is not a training backup"):
        train_classifier(spec, train, None, str(tmp_path / "run"), CONFIG, overwrite=True,
                         verbose=0)
    assert (tmp_path / "run.backup" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("flags", [["--resume"], []], ids=["resume", "no_flag"])
def test_a_backup_whose_epoch_record_was_cut_is_refused_not_restarted(tiny_module_dir, files,
                                                                        tmp_path, flags):
    """Keras writes its record of finished epochs in place: a run killed in that moment leaves
    it cut. What the run finished is then unknown, so neither --resume nor a plain rerun may
    start again over it (they once did, silently); --overwrite still does."""
    out = str(tmp_path / "run")
    state = tmp_path / "run.backup" / "state"
    state.mkdir(parents=True)
    (tmp_path / "run.backup" / "run.json").write_text("{}")
    (state / "training_metadata.json").write_text('{"epoch": ')
    (state / "latest.weights.h5").write_bytes(b"weights of epoch 2")
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(_train_argv(tiny_module_dir, files, out) + flags)
    assert code == 2
    assert_one_line_error(err, "train", "run.backup", "state/training_metadata.json",
                          "is incomplete", "--overwrite")
    assert tree_hashes(tmp_path) == before


def test_overwrite_starts_again_over_a_cut_epoch_record(tmp_path):
    from bert_layer.training.backup import TrainingBackup

    state = tmp_path / "run.backup" / "state"
    state.mkdir(parents=True)
    (tmp_path / "run.backup" / "run.json").write_text("{}")
    (state / "training_metadata.json").write_text('{"epoch": ')
    settings = {"train_config": {"epochs": 3}}
    backup = TrainingBackup(tmp_path / "run", settings)
    with pytest.raises(FileExistsError, match="is incomplete"):
        backup.start(resume=True, overwrite=False)
    assert backup.start(resume=False, overwrite=True) == 0
    assert sorted(os.listdir(tmp_path / "run.backup")) == ["run.json"]  # The cut state is gone.
    assert json.loads((tmp_path / "run.backup" / "run.json").read_text()) == settings


# === The CLI, killed mid-epoch ===


def _train_argv(module: str, files, out: str) -> list[str]:
    train, dev = files
    return ["train", "--module", module, "--train", train, "--dev", dev, "--out", out,
            "--labels", ",".join(CLASSES), "--epochs", "3", "--batch-size", "4",
            "--fine-tune-layers", "1", "--max-seq-length", "32", "--learning-rate", "1e-3"]


@pytest.mark.large
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_train_resumes_from_its_last_finished_epoch(tiny_module_dir, files, tmp_path,
                                                           sig, capsys):
    from bert_layer.cli.main import main

    out = str(tmp_path / "run")
    argv = _train_argv(tiny_module_dir, files, out)
    finished = kill_after_first_epoch(argv, out, sig)
    assert 1 <= finished < 3
    assert not os.path.exists(out)
    assert main(argv + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"resumed at epoch {finished + 1}" in printed
    assert _hidden(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["run"]
    with open(os.path.join(out, REPORT_FILE), encoding="utf-8") as f:
        report = json.load(f)
    assert report["resumed_from_epoch"] == finished + 1
    assert [e["epoch"] for e in report["epochs"]] == [1, 2, 3]
    assert all(np.isfinite(e["val_loss"]) for e in report["epochs"])
    _, dev = _read(files)
    assert _dev_accuracy(out, dev) == pytest.approx(report["best"]["val_accuracy"], abs=1e-6)
