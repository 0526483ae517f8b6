"""Fine-tuning: outputs written at once, the report, the schedule, F1, which weights move."""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import TINY_CONFIG, random_weights

from bert_layer.data.examples import Examples, read_examples
from bert_layer.inference.runtimes import KerasClassifier
from bert_layer.training.classifier import ClassifierSpec, F1Score
from bert_layer.training.train import (
    MODEL_FILE,
    REPORT_FILE,
    TrainConfig,
    WarmupLinearDecay,
    compile_classifier,
    make_optimizer,
    train_classifier,
)

# Words of TINY_VOCAB: a sentiment word decides the label, the rest is filler.
POSITIVE = ["good", "great", "fun", "love", "best"]
NEGATIVE = ["bad", "boring", "hate", "worst"]
FILLER = ["the", "movie", "film", "story", "plot", "was", "is", "very", "so", "and", "it"]
CLASSES = ["neg", "pos"]


def sentiment_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (sentence, label) rows alternating neg, pos; 2 to 9 words each."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = list(rng.choice(FILLER, size=rng.integers(1, 8)))
        words.insert(rng.integers(0, len(words) + 1), rng.choice([NEGATIVE, POSITIVE][i % 2]))
        rows.append((" ".join(words) + " .", CLASSES[i % 2]))
    return rows


def write_tsv(path, rows, header=("sentence", "label")) -> str:
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _leftovers(folder) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(".")]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Examples, Examples]:
    """40 training rows and 16 dev rows, read from TSV files like the CLI reads them."""
    folder = tmp_path_factory.mktemp("sentiment")
    train = write_tsv(folder / "train.tsv", sentiment_rows(40, seed=1))
    dev = write_tsv(folder / "dev.tsv", sentiment_rows(16, seed=2))
    read = dict(text_column="sentence", label_column="label", labels=CLASSES)
    return read_examples(train, **read), read_examples(dev, **read)


@pytest.fixture(scope="module")
def spec(tiny_module_dir) -> ClassifierSpec:
    return ClassifierSpec(module=tiny_module_dir, class_names=tuple(CLASSES),
                          fine_tune_layers=1, max_seq_length=32)


CONFIG = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3, seed=3)


@pytest.fixture(scope="module")
def trained(spec, data, tmp_path_factory) -> tuple[str, dict]:
    """A 2-epoch run with dev data: (output folder, returned report)."""
    out = str(tmp_path_factory.mktemp("run") / "classifier")
    train, dev = data
    return out, train_classifier(spec, train, dev, out, CONFIG, verbose=0)


# === Outputs and report ===

@pytest.mark.large
def test_writes_model_and_report_only(trained):
    out, report = trained
    assert sorted(os.listdir(out)) == [".bert_layer", MODEL_FILE, REPORT_FILE]
    assert _leftovers(os.path.dirname(out)) == []
    with open(os.path.join(out, REPORT_FILE), encoding="utf-8") as f:
        assert json.load(f) == report


def test_report_has_metrics_per_epoch_throughput_and_wall_time(trained, spec):
    _, report = trained
    assert report["classifier"]["class_names"] == CLASSES
    assert report["classifier"]["fine_tune_layers"] == 1
    assert report["train_config"]["batch_size"] == 8
    assert (report["train_examples"], report["dev_examples"]) == (40, 16)
    assert report["train_source"].endswith("train.tsv")
    assert [e["epoch"] for e in report["epochs"]] == [1, 2]
    for epoch in report["epochs"]:
        assert {"loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1",
                "epoch_seconds", "examples_per_second"} <= set(epoch)
        # Measured from the second step (the first builds the graph): faster than the
        # epoch's mean rate, which counts that step too.
        assert epoch["examples_per_second"] > 40 / epoch["epoch_seconds"]
        assert 0.0 <= epoch["val_f1"] <= 1.0 and np.isfinite(epoch["loss"])
    assert report["wall_seconds"] >= sum(e["epoch_seconds"] for e in report["epochs"])
    accuracies = [e["val_accuracy"] for e in report["epochs"]]
    assert report["best_epoch"] == 1 + int(np.argmax(accuracies))  # argmax: first of equals
    best = report["epochs"][report["best_epoch"] - 1]
    assert report["best"] == {k: v for k, v in best.items() if k.startswith("val_")}


def test_saved_model_scores_the_reported_best_on_dev(trained, data):
    """The saved model is the best epoch's: its dev scores, computed here with numpy, are
    those the report gives."""
    out, report = trained
    _, dev = data
    classifier = KerasClassifier(os.path.join(out, MODEL_FILE))
    assert classifier.class_names == CLASSES and classifier.multi_label is False
    probabilities = classifier(dev.texts)
    predicted = probabilities.argmax(axis=1)
    tp = np.sum((predicted == 1) & (dev.labels == 1))
    fp = np.sum((predicted == 1) & (dev.labels == 0))
    fn = np.sum((predicted == 0) & (dev.labels == 1))
    best = report["best"]
    assert best["val_accuracy"] == pytest.approx(np.mean(predicted == dev.labels), abs=1e-6)
    assert best["val_f1"] == pytest.approx(2 * tp / max(2 * tp + fp + fn, 1), abs=1e-5)
    log_p = np.log(np.clip(probabilities[np.arange(len(dev)), dev.labels], 1e-7, 1.0))
    assert best["val_loss"] == pytest.approx(-np.mean(log_p), abs=1e-4)


def _weights_file_groups(keras_file: str) -> list[str]:
    import zipfile

    import h5py

    with zipfile.ZipFile(keras_file) as archive, archive.open("model.weights.h5") as f:
        with h5py.File(f, "r") as h5:
            return sorted(h5.keys())


@pytest.mark.large
def test_saved_model_holds_no_optimizer_state_and_predicts_the_same(trained, data, tmp_path):
    """model.keras has the weights alone: the same model saved compiled, with AdamW's slots
    built, is about 3x the trainable weights' size; both load and predict the same."""
    out, _ = trained
    _, dev = data
    saved = os.path.join(out, MODEL_FILE)
    assert "optimizer" not in _weights_file_groups(saved)
    classifier = KerasClassifier(saved)
    model = classifier.model
    compile_classifier(model, CONFIG, 2, False, steps=10)
    model.optimizer.build(model.trainable_variables)
    with_optimizer = str(tmp_path / "with_optimizer.keras")
    model.save(with_optimizer)
    assert "optimizer" in _weights_file_groups(with_optimizer)
    trainable_bytes = sum(v.numpy().nbytes for v in model.trainable_variables)
    saved_bytes = os.path.getsize(saved)
    assert os.path.getsize(with_optimizer) - saved_bytes > 1.9 * trainable_bytes
    reloaded = KerasClassifier(with_optimizer)
    np.testing.assert_array_equal(reloaded(dev.texts), classifier(dev.texts))
    assert keras.models.load_model(saved).compiled is False  # Compile it to train further.


def test_only_the_last_layer_pooler_and_head_moved(trained):
    """fine_tune_layers=1 of 3: embeddings and layers 0-1 are bit-identical to the
    checkpoint; every weight of layer 2, the pooler and the head changed."""
    out, _ = trained
    model = KerasClassifier(os.path.join(out, MODEL_FILE)).model
    bert = model.get_layer("bert")
    original = random_weights(TINY_CONFIG, seed=0)  # What tiny_module_dir was exported from.
    assert len(bert.weights) == len(original)
    assert len(bert.trainable_weights) == 16 + 2  # One encoder layer, the pooler dense.
    for weight in bert.weights:
        name = bert.module_variable_names[weight.path]
        value = keras.ops.convert_to_numpy(weight)
        tuned = name.startswith(("bert/encoder/layer_2/", "bert/pooler/"))
        assert weight.trainable == tuned, name
        if tuned:
            assert not np.array_equal(value, original[name]), f"{name} did not move"
        else:
            np.testing.assert_array_equal(value, original[name], err_msg=name)


@pytest.mark.large
def test_multi_label_trains_with_sigmoids_and_keeps_the_last_epoch(tiny_module_dir, tmp_path):
    classes = ["act", "plot", "fun"]
    texts = ["the act was good .", "the plot was bad .", "fun fun fun !",
             "act and plot .", "so fun , the plot too .", "it was a film ."] * 4
    multi_hot = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [0, 0, 0]] * 4,
                         dtype=np.float32)
    train = Examples(texts=texts, labels=multi_hot, classes=classes, source="multi")
    spec = ClassifierSpec(module=tiny_module_dir, class_names=tuple(classes), multi_label=True,
                          pooling="mean", fine_tune_layers=1, max_seq_length=32)
    out = str(tmp_path / "run")
    report = train_classifier(spec, train, None, out, CONFIG, verbose=0)
    assert report["best_epoch"] == 2 and report["best"] == {}  # No dev: the last epoch.
    assert report["dev_examples"] == 0 and report["dev_source"] is None
    assert all(np.isfinite(e["loss"]) and 0 <= e["f1"] <= 1 for e in report["epochs"])
    classifier = KerasClassifier(os.path.join(out, MODEL_FILE))
    assert classifier.class_names == classes and classifier.multi_label is True
    probabilities = classifier(["fun !", "the plot", ""])
    assert probabilities.shape == (3, 3)
    assert np.all((probabilities > 0) & (probabilities < 1))
    # Independent sigmoids: rows do not sum to 1 as a softmax's would.
    assert np.abs(probabilities.sum(axis=1) - 1.0).max() > 0.05


# === Failures leave nothing behind ===

def test_existing_output_needs_overwrite(spec, data, tmp_path):
    out = tmp_path / "classifier"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="already exists.*--overwrite"):
        train_classifier(spec, *data, str(out), CONFIG, verbose=0)
    assert os.listdir(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "user data"
    assert _leftovers(tmp_path) == []


def test_failure_during_fit_leaves_no_output(spec, data, tmp_path, monkeypatch):
    def failing_fit(self, *args, callbacks=(), **kwargs):
        checkpoint = next(c for c in callbacks if isinstance(c, keras.callbacks.ModelCheckpoint))
        with open(checkpoint.filepath, "w") as f:  # A half-written model...
            f.write("partial")
        raise RuntimeError("disk full")  # ...then the job dies.

    monkeypatch.setattr(keras.Model, "fit", failing_fit)
    with pytest.raises(RuntimeError, match="disk full"):
        train_classifier(spec, *data, str(tmp_path / "classifier"), CONFIG, verbose=0)
    assert os.listdir(tmp_path) == []


def test_examples_must_match_the_classifier_classes(spec, data, tmp_path):
    train, _ = data
    renamed = Examples(texts=train.texts, labels=train.labels, classes=["bad", "good"],
                       source="renamed.tsv")
    with pytest.raises(ValueError, match=r"renamed.tsv: the classifier expects classes "
                       r"\['neg', 'pos'\] with multi_label=False; the examples have classes "
                       r"\['bad', 'good'\]"):
        train_classifier(spec, renamed, None, str(tmp_path / "out"), CONFIG, verbose=0)
    multi_spec = dataclasses.replace(spec, multi_label=True)
    with pytest.raises(ValueError, match="expects classes .* with multi_label=True"):
        train_classifier(multi_spec, train, None, str(tmp_path / "out"), CONFIG, verbose=0)
    unlabelled = Examples(texts=train.texts, labels=None, classes=CLASSES, source="x.tsv")
    with pytest.raises(ValueError, match="x.tsv: training needs a label column"):
        train_classifier(spec, unlabelled, None, str(tmp_path / "out"), CONFIG, verbose=0)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs and batch_size must be >= 1; received epochs=0"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"warmup_fraction": 1.0}, r"warmup_fraction must be in \[0, 1\); received 1.0"),
])
def test_train_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


# === Learning-rate schedule ===

@pytest.mark.parametrize("step, expected", [
    (0, 0.0), (5, 5e-4), (10, 1e-3),  # Warm-up: peak * step / 10.
    (35, 7.5e-4), (60, 5e-4), (110, 0.0),  # Decay: peak * (110 - step) / 100.
    (200, 0.0)])  # Past the end it stays at 0.
def test_warmup_linear_decay_golden_values(step, expected):
    schedule = WarmupLinearDecay(peak=1e-3, warmup_steps=10, total_steps=110)
    assert float(schedule(step)) == pytest.approx(expected, abs=1e-9)


def test_warmup_linear_decay_without_warmup_starts_at_peak():
    schedule = WarmupLinearDecay(peak=2e-5, warmup_steps=0, total_steps=4)
    assert [float(schedule(s)) for s in range(5)] == pytest.approx(
        [2e-5, 1.5e-5, 1e-5, 0.5e-5, 0.0], abs=1e-12)


def test_warmup_linear_decay_config_round_trip():
    schedule = WarmupLinearDecay(peak=3e-4, warmup_steps=7, total_steps=50)
    config = json.loads(json.dumps(schedule.get_config()))
    rebuilt = WarmupLinearDecay.from_config(config)
    assert config == {"peak": 3e-4, "warmup_steps": 7, "total_steps": 50}
    assert [float(rebuilt(s)) for s in (3, 7, 30)] == [float(schedule(s)) for s in (3, 7, 30)]


def test_compile_classifier_warms_up_over_the_config_fraction():
    """8 steps, warmup_fraction 0.25: 2 warm-up steps, then 6 of decay."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    config = TrainConfig(learning_rate=1e-3, warmup_fraction=0.25)
    compile_classifier(model, config, n_classes=2, multi_label=False, steps=8)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert (optimizer.weight_decay, optimizer.epsilon) == (0.01, 1e-6)
    assert optimizer.global_clipnorm == 1.0  # BERT clips the global norm, not each weight's.
    rates = []
    for step in (0, 1, 2, 5, 8):
        optimizer.iterations.assign(step)
        rates.append(float(optimizer.learning_rate))
    assert rates == pytest.approx([0.0, 5e-4, 1e-3, 5e-4, 0.0], abs=1e-9)



def test_weight_decay_skips_layer_norm_and_biases():
    """BERT's recipe: with zero gradients, AdamW moves only the decayed weights."""
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, name="dense")(inputs)
    normed = keras.layers.LayerNormalization(name="LayerNorm")(hidden)
    model = keras.Model(inputs, normed)
    config = TrainConfig(learning_rate=1e-2, warmup_fraction=0.0)
    compile_classifier(model, config, n_classes=2, multi_label=False, steps=10)
    for weight in model.trainable_weights:  # Non-zero everywhere, so decay would show.
        weight.assign(tf.fill(weight.shape, 0.5))
    before = {w.path: w.numpy().copy() for w in model.trainable_weights}
    model.optimizer.apply_gradients(
        [(tf.zeros_like(w), w) for w in model.trainable_weights])
    moved = sorted(w.path for w in model.trainable_weights
                   if not np.array_equal(w.numpy(), before[w.path]))
    assert moved == ["dense/kernel"]


def test_embedding_updates_equal_pytorch_adamw_when_a_token_repeats():
    """Sparse embedding gradients (a row per occurrence, as tf.gather gives them) update as
    PyTorch's AdamW updates the dense gradient, clipping included; Keras's own AdamW squares
    the repeated rows apart and moves the repeated token's row further."""
    import torch

    table = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    steps = [(np.array([1, 1, 1, 4]), np.random.default_rng(s).normal(size=(4, 3)))
             for s in range(5)]  # Token 1 three times in each batch.
    config = TrainConfig(learning_rate=1e-2, warmup_fraction=0.0, weight_decay=0.01)

    def keras_rows(optimizer):
        variable = keras.Variable(table.copy(), name="word_embeddings")
        for ids, rows in steps:
            optimizer.apply([tf.IndexedSlices(tf.constant(rows, tf.float32), tf.constant(ids),
                                              tf.constant(table.shape))], [variable])
        return variable.numpy()

    weight = torch.nn.Parameter(torch.tensor(table))
    optimizer = torch.optim.AdamW([weight], lr=1e-2, eps=1e-6, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / len(steps))
    for ids, rows in steps:
        dense = np.zeros_like(table)
        np.add.at(dense, ids, rows)
        weight.grad = torch.tensor(dense)
        torch.nn.utils.clip_grad_norm_([weight], 1.0)
        optimizer.step()
        schedule.step()
    expected = weight.detach().numpy()
    ours = keras_rows(make_optimizer(config, len(steps)))
    # 1e-4: Keras adds epsilon before Adam's bias correction, PyTorch after (~2e-5 here).
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    plain = keras.optimizers.AdamW(learning_rate=WarmupLinearDecay(1e-2, 0, len(steps)),
                                   weight_decay=0.01, epsilon=1e-6, global_clipnorm=1.0)
    assert np.abs(keras_rows(plain)[1] - expected[1]).max() > 1e-3  # Why RowSummingAdamW.


# === F1 ===

def _f1(num_classes, y_true, y_pred, threshold=None) -> float:
    metric = F1Score(num_classes, threshold=threshold)
    metric.update_state(np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32))
    return float(metric.result())


def test_f1_of_two_classes_is_the_positive_class_f1():
    """Truth 1 1 1 0 0 0 0, predicted 1 1 0 1 0 0 0. Class 1: TP 2, FP 1, FN 1, so
    F1 = 2*2 / (2*2 + 1 + 1) = 2/3. (Class 0 has F1 3/4; the macro mean would be 17/24.)"""
    truth = np.eye(2)[[1, 1, 1, 0, 0, 0, 0]]
    predicted = [[.2, .8], [.4, .6], [.7, .3], [.1, .9], [.6, .4], [.9, .1], [.8, .2]]
    assert _f1(2, truth, predicted) == pytest.approx(2 / 3, abs=1e-6)


def test_f1_of_three_classes_is_the_macro_mean():
    """Truth 0 0 1 1 2 2, predicted 0 1 1 1 2 0. Per class 2TP / (2TP + FP + FN):
    class 0: 2/4, class 1: 4/5, class 2: 2/3; the mean is 59/90."""
    truth = np.eye(3)[[0, 0, 1, 1, 2, 2]]
    predicted = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.5 + 0.1  # The argmax is the predicted class.
    assert _f1(3, truth, predicted) == pytest.approx(59 / 90, abs=1e-6)


def test_multi_label_f1_thresholds_each_class():
    """Above 0.5: predicted [1 0], [1 1], [0 1], [0 0] (0.5 is not above) against truth
    [1 0], [1 0], [1 1], [0 1]. Class 0: TP 2, FN 1, F1 4/5; class 1: TP 1, FP 1, FN 1,
    F1 1/2; the mean is 13/20."""
    truth = [[1, 0], [1, 0], [1, 1], [0, 1]]
    predicted = [[.9, .1], [.6, .7], [.4, .6], [.2, .5]]
    assert _f1(2, truth, predicted, threshold=0.5) == pytest.approx(13 / 20, abs=1e-6)


def test_f1_config_round_trip():
    metric = F1Score(3, threshold=0.4, name="val_f1")
    config = json.loads(json.dumps(metric.get_config()))
    rebuilt = F1Score.from_config(config)
    assert (rebuilt.num_classes, rebuilt.threshold, rebuilt.name) == (3, 0.4, "val_f1")
    assert rebuilt.average == "macro"
