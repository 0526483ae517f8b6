"""`--class-weight`, `--early-stopping-patience`, `--gradient-accumulation`: each one's effect,
measured (the loss by hand, the epoch it stops at and the weights it keeps, the first update),
and its bad values refused through the CLI."""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
from harness import assert_one_line_error, run_cli, tree_hashes
from test_regression import scored_rows, write_rows
from test_train import sentiment_rows, write_tsv
from tiny import TINY_CONFIG, TINY_VOCAB, random_weights

from bert_layer.data.examples import Examples, read_examples, read_scores
from bert_layer.inference.runtimes import KerasClassifier
from bert_layer.training import regressor, train
from bert_layer.training.class_weights import resolve_class_weights
from bert_layer.training.classifier import (
    ClassifierSpec,
    PositiveWeightedBinaryCrossentropy,
    build_classifier,
)
from bert_layer.training.train import (
    DUMP_WEIGHTS_ENV,
    MODEL_FILE,
    ThroughputLogger,
    TrainConfig,
    WarmupLinearDecay,
    train_classifier,
)

CLASSES = ["neg", "pos"]


@pytest.fixture(scope="module")
def still_module_dir(tmp_path_factory) -> str:
    """The tiny checkpoint with dropout off, as a module: training=True computes what
    inference does, so a loss or an update can be computed apart."""
    from bert_layer.export.checkpoint import write_checkpoint_folder
    from bert_layer.export.writer import export_module
    config = dataclasses.replace(TINY_CONFIG, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0)
    folder = tmp_path_factory.mktemp("still")
    write_checkpoint_folder(str(folder / "checkpoint"), config, TINY_VOCAB,
                            random_weights(config, 0))
    return export_module(str(folder / "checkpoint"), str(folder / "module"), max_seq_length=32)


def _examples(n: int, positives: int) -> Examples:
    rows = sentiment_rows(2 * n, seed=5)
    chosen = [r for r in rows if r[1] == "pos"][:positives] + \
        [r for r in rows if r[1] == "neg"][:n - positives]
    return Examples(texts=[t for t, _ in chosen],
                    labels=np.array([CLASSES.index(c) for _, c in chosen], np.int32),
                    classes=list(CLASSES), source="imbalanced")


def _still_spec(module: str) -> ClassifierSpec:
    return ClassifierSpec(module=module, class_names=tuple(CLASSES), fine_tune_layers=1,
                          max_seq_length=32, head_dropout=0.0)


# === Class weights ===


def test_balanced_weights_are_scikit_learns_formula():
    examples = _examples(8, positives=2)
    assert resolve_class_weights("balanced", examples) == pytest.approx(
        {"neg": 8 / (2 * 6), "pos": 8 / (2 * 2)})
    assert resolve_class_weights("pos=3", examples) == {"neg": 1.0, "pos": 3.0}


def test_balanced_multi_label_weights_are_negatives_over_positives_and_never_zero():
    labels = np.array([[1, 0, 1], [1, 1, 0], [1, 0, 0], [1, 0, 1]], np.float32)
    examples = Examples(texts=["a", "b", "c", "d"], labels=labels,
                        classes=["all", "one", "two"], source="multi.tsv")
    with pytest.raises(ValueError, match="class 'all' is positive in every example of "
                                         "multi.tsv.*would be 0"):
        resolve_class_weights("balanced", examples)
    examples.labels[3, 0] = 0
    assert resolve_class_weights("balanced", examples) == pytest.approx(
        {"all": 1 / 3, "one": 3 / 1, "two": 2 / 2})


@pytest.mark.large
def test_balanced_weights_scale_the_loss_as_computed_by_hand(still_module_dir, tmp_path):
    """One batch of 8 (6 neg, 2 pos): the epoch's loss is that batch's loss before the
    update, mean_i(w[y_i] * -log p_i[y_i]), with p from the initial model."""
    examples = _examples(8, positives=2)
    spec = _still_spec(still_module_dir)
    config = TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, seed=4)
    keras.utils.set_random_seed(config.seed)  # As train_classifier starts.
    initial = build_classifier(spec)
    p = np.asarray(initial(np.array(examples.texts), training=False))
    cross_entropy = -np.log(np.clip(p[np.arange(8), examples.labels], 1e-7, 1.0))  # [8]
    weights = np.array([8 / 12, 8 / 4])[examples.labels]
    losses = {}
    for setting in (None, "balanced"):
        out = str(tmp_path / f"run-{setting}")
        report = train_classifier(spec, examples, None, out,
                                  dataclasses.replace(config, class_weight=setting), verbose=0)
        losses[setting] = report["epochs"][0]["loss"]
    assert report["training_options"]["class_weights"] == pytest.approx(
        {"neg": 8 / 12, "pos": 2.0})
    assert losses[None] == pytest.approx(np.mean(cross_entropy), rel=1e-5)
    assert losses["balanced"] == pytest.approx(np.mean(weights * cross_entropy), rel=1e-5)
    assert abs(losses["balanced"] - losses[None]) > 1e-3


def test_positive_weights_scale_only_the_positive_terms():
    y = np.array([[1, 0, 1], [0, 1, 0]], np.float32)
    p = np.array([[0.9, 0.2, 0.4], [0.3, 0.6, 0.1]], np.float32)
    w = np.array([1.0, 3.0, 0.5])
    expected = -np.mean(w * y * np.log(p) + (1 - y) * np.log(1 - p), axis=-1).mean()
    loss = PositiveWeightedBinaryCrossentropy(list(w))
    assert float(loss(y, p)) == pytest.approx(expected, rel=1e-6)
    ones = PositiveWeightedBinaryCrossentropy([1.0, 1.0, 1.0])
    assert float(ones(y, p)) == pytest.approx(float(keras.losses.BinaryCrossentropy()(y, p)),
                                              rel=1e-6)


# === Early stopping ===

# The dev Pearson each epoch reports (scripted): best at epoch 2, then 2 epochs without gain.
SCRIPT = [0.1, 0.5, 0.3, 0.4, 0.2, 0.9]


@pytest.fixture
def scripted_pearson(monkeypatch) -> dict[int, np.ndarray]:
    """RegressionMetrics logs SCRIPT[epoch]; returns the head kernel after each epoch."""
    kernels = {}

    def on_epoch_end(self, epoch, logs=None):
        logs.update(val_pearson=SCRIPT[epoch], val_spearman=SCRIPT[epoch], val_mse=1.0)
        kernels[epoch + 1] = np.array(self.model.get_layer("score").kernel)

    monkeypatch.setattr(regressor.RegressionMetrics, "on_epoch_end", on_epoch_end)
    return kernels


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> tuple[Examples, Examples]:
    folder = tmp_path_factory.mktemp("scored")
    read = dict(text_column="sentence", score_columns=["score"])
    return (read_scores(write_rows(folder / "train.tsv", scored_rows(16, 1)), **read),
            read_scores(write_rows(folder / "dev.tsv", scored_rows(8, 2)), **read))


def _regressor(module: str) -> ClassifierSpec:
    return ClassifierSpec(module=module, class_names=("score",), task="regress",
                          fine_tune_layers=1, max_seq_length=32)


PATIENT = TrainConfig(epochs=6, batch_size=8, learning_rate=1e-2, seed=1,
                      early_stopping_patience=2)


def _saved_kernel(out: str) -> np.ndarray:
    return np.array(KerasClassifier(os.path.join(out, MODEL_FILE)).model.get_layer(
        "score").kernel)


@pytest.mark.large
def test_patience_stops_at_the_right_epoch_and_keeps_the_best(tiny_module_dir, scores,
                                                               scripted_pearson, tmp_path):
    out = str(tmp_path / "run")
    report = train_classifier(_regressor(tiny_module_dir), *scores, out, PATIENT, verbose=0)
    # Best 0.5 at epoch 2; epochs 3 and 4 do not beat it: patience 2 is spent after epoch 4.
    assert [e["epoch"] for e in report["epochs"]] == [1, 2, 3, 4]
    assert report["training_options"]["stopped_early_after_epoch"] == 4
    assert report["best_epoch"] == 2
    kernels = scripted_pearson
    assert not np.array_equal(kernels[2], kernels[4])  # The weights did move after epoch 2.
    np.testing.assert_array_equal(_saved_kernel(out), kernels[2])


@pytest.mark.large
def test_patience_counts_the_epochs_before_a_resume(tiny_module_dir, scores, scripted_pearson,
                                                    tmp_path, monkeypatch):
    """Interrupted as epoch 4 begins (epoch 3 was one without gain), the resumed run stops
    after epoch 4 as the uninterrupted one does, and keeps epoch 2's weights."""
    out = str(tmp_path / "run")
    original = ThroughputLogger.on_epoch_begin

    def interrupt(self, index, logs=None):
        if index == 3:
            raise KeyboardInterrupt
        original(self, index, logs)

    with monkeypatch.context() as patch:
        patch.setattr(ThroughputLogger, "on_epoch_begin", interrupt)
        with pytest.raises(KeyboardInterrupt):
            train_classifier(_regressor(tiny_module_dir), *scores, out, PATIENT, verbose=0)
    epoch_2 = scripted_pearson[2].copy()
    report = train_classifier(_regressor(tiny_module_dir), *scores, out, PATIENT, resume=True,
                              verbose=0)
    assert report["resumed_from_epoch"] == 4
    assert [e["epoch"] for e in report["epochs"]] == [1, 2, 3, 4]
    assert report["training_options"]["stopped_early_after_epoch"] == 4
    assert report["best_epoch"] == 2
    np.testing.assert_array_equal(_saved_kernel(out), epoch_2)


# === Gradient accumulation ===


def _first_update(module: str, tmp_path, monkeypatch, batch_size: int,
                  accumulation: int) -> tuple[list[np.ndarray], dict]:
    """The weights after one epoch of 32 examples, and the report."""
    examples = _examples(32, positives=16)
    dump = str(tmp_path / f"weights-{batch_size}-{accumulation}.npz")
    monkeypatch.setenv(DUMP_WEIGHTS_ENV, dump)
    config = TrainConfig(epochs=1, batch_size=batch_size, learning_rate=1e-3,
                         warmup_fraction=0.0, seed=2, gradient_accumulation=accumulation)
    report = train_classifier(_still_spec(module), examples, None,
                              str(tmp_path / f"run-{batch_size}-{accumulation}"), config,
                              verbose=0)
    with np.load(dump) as weights:
        return [weights[k] for k in sorted(weights.files, key=lambda k: int(k.split("_")[1]))], \
            report


@pytest.mark.large
def test_accumulating_4_batches_of_8_makes_the_update_of_one_batch_of_32(
        still_module_dir, tmp_path, monkeypatch):
    keras.utils.set_random_seed(2)
    initial = build_classifier(_still_spec(still_module_dir)).get_weights()
    big, _ = _first_update(still_module_dir, tmp_path, monkeypatch, 32, 1)
    accumulated, report = _first_update(still_module_dir, tmp_path, monkeypatch, 8, 4)
    small, _ = _first_update(still_module_dir, tmp_path, monkeypatch, 8, 1)
    options = report["training_options"]
    assert (options["effective_batch_size"], options["optimizer_updates"]) == (32, 1)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(big, initial))
    assert moved > 1e-4  # One update of lr 1e-3 moved the weights...
    # ...and accumulation made the same update, to float32 summation order: AdamW's first step
    # is lr * g / (|g| + 1e-6), which amplifies rounding where |g| ~ 1e-6 (measured: one
    # element of 1024 differs by 1.04e-6, the rest by < 1e-6; a missing or doubled batch
    # moves weights by ~1e-3).
    for a, b in zip(accumulated, big):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=0)
    # while 4 updates of batch 8 land elsewhere.
    assert max(float(np.abs(a - b).max()) for a, b in zip(small, big)) > 1e-4


def test_the_schedule_counts_updates_not_batches():
    per_batch = WarmupLinearDecay(peak=1e-3, warmup_steps=2, total_steps=8)
    per_update = WarmupLinearDecay(peak=1e-3, warmup_steps=2, total_steps=8,
                                   batches_per_update=4)
    for batch in range(40):
        assert float(per_update(batch)) == float(per_batch(batch // 4))
    assert WarmupLinearDecay.from_config(per_update.get_config()).batches_per_update == 4


def test_compile_sets_keras_gradient_accumulation():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    train.compile_classifier(model, TrainConfig(gradient_accumulation=4), n_classes=2,
                             multi_label=False, steps=5)
    assert model.optimizer.gradient_accumulation_steps == 4
    assert model.optimizer.learning_rate is not None


# === Bad values through the CLI: one line, exit 2, nothing touched ===


@pytest.fixture(scope="module")
def sentiment_files(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("cli_options")
    return (write_tsv(folder / "train.tsv", sentiment_rows(12, seed=1)),
            write_tsv(folder / "dev.tsv", sentiment_rows(6, seed=2)))


@pytest.mark.parametrize("extra, fragments", [
    (["--class-weight", "neg=1,happy=3"], ["'happy'", "not a class", "['neg', 'pos']"]),
    (["--class-weight", "pos=lots"], ["--class-weight", "'pos=lots'", "name=weight"]),
    (["--class-weight", "pos=-1"], ["--class-weight", "weights > 0"]),
    (["--early-stopping-patience", "-1"], ["--early-stopping-patience must be >= 0", "-1"]),
    (["--gradient-accumulation", "0"], ["--gradient-accumulation must be >= 1", "0"]),
    (["--task", "regress", "--class-weight", "balanced"], ["--class-weight", "regress"]),
])
def test_bad_training_options_are_one_line_and_touch_nothing(
        tiny_module_dir, sentiment_files, tmp_path, extra, fragments):
    before = {"data": tree_hashes(os.path.dirname(sentiment_files[0])),
              "here": tree_hashes(tmp_path)}
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", sentiment_files[0],
                            "--dev", sentiment_files[1], "--out", str(tmp_path / "run"),
                            *extra])
    assert code == 2
    assert_one_line_error(err, "train", *fragments)
    assert {"data": tree_hashes(os.path.dirname(sentiment_files[0])),
            "here": tree_hashes(tmp_path)} == before


def test_patience_without_dev_is_refused(tiny_module_dir, sentiment_files, tmp_path):
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", sentiment_files[0],
                            "--out", str(tmp_path / "run"), "--early-stopping-patience", "2"])
    assert code == 2
    assert_one_line_error(err, "train", "--early-stopping-patience", "--dev")
    assert os.listdir(tmp_path) == []


@pytest.mark.large
def test_the_report_and_summary_state_the_options(tiny_module_dir, sentiment_files, tmp_path):
    out = str(tmp_path / "run")
    code, stdout, err = run_cli(["train", "--module", tiny_module_dir, "--train",
                                 sentiment_files[0], "--dev", sentiment_files[1], "--out", out,
                                 "--epochs", "1", "--batch-size", "4", "--max-seq-length", "32",
                                 "--class-weight", "neg=1,pos=3", "--gradient-accumulation",
                                 "2", "--early-stopping-patience", "1", "--quiet"])
    assert code == 0, err
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        options = json.load(f)["training_options"]
    assert options["class_weights"] == {"neg": 1.0, "pos": 3.0}
    assert (options["early_stopping_patience"], options["gradient_accumulation"],
            options["effective_batch_size"]) == (1, 2, 8)
    assert "class weights: {'neg': 1.0, 'pos': 3.0}" in stdout
    assert "8 examples an optimizer update" in stdout


def test_read_examples_unchanged_for_classes(sentiment_files):
    examples = read_examples(sentiment_files[0], text_column="sentence", label_column="label")
    assert not examples.scores and examples.labels.dtype == np.int32


def test_positive_weighted_loss_from_the_heads_logits_equals_pytorch_even_when_saturated():
    """From a sigmoid head's output (which keeps its logits), the loss and its gradient equal
    torch's BCEWithLogitsLoss(pos_weight) averaged over classes, also at logits of +-30 where
    the clipped probabilities Keras would use give no gradient."""
    import tensorflow as tf
    import torch

    y = np.array([[1, 0, 1], [0, 1, 0]], np.float32)
    logits = np.array([[2.0, -1.0, -30.0], [30.0, 0.5, -2.0]], np.float32)
    w = np.array([1.0, 3.0, 0.5], np.float32)
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = PositiveWeightedBinaryCrossentropy(list(w))(y, keras.activations.sigmoid(z))
    t = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w))(t, torch.tensor(y))
    expected.backward()
    assert float(value) == pytest.approx(expected.item(), rel=1e-6)
    gradient = tape.gradient(value, z).numpy()
    np.testing.assert_allclose(gradient, t.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert abs(gradient[0, 2]) > 0.01 and abs(gradient[1, 0]) > 0.1  # the saturated ones
