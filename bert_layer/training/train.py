"""Fine-tuning a BERT classifier with Keras `fit`: the `bert-layer train` job."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf

from bert_layer.choices import MULTI_LABEL_THRESHOLD
from bert_layer.data.batching import make_dataset
from bert_layer.data.examples import Examples
from bert_layer.outputs import MODEL_FILE, REPORT_FILE, atomic_output, check_output_free

# The submodule, not its names (see bert_layer.layers.layer on module_source).
from bert_layer.training import backup as backups
from bert_layer.training.classifier import ClassifierSpec, F1Score, build_classifier
from bert_layer.training.distribute import (
    describe,
    is_chief,
    make_strategy,
    prepare_for_distributed_fit,
    shard_by_examples,
)
from bert_layer.training.specs import (  # noqa: F401  (TrainConfig also importable from here)
    TrainConfig,
    check_windowed_training,
)


@keras.saving.register_keras_serializable(package="bert_layer")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then linear decay to 0."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps
        self._decay = keras.optimizers.schedules.PolynomialDecay(
            peak, max(total_steps - warmup_steps, 1), end_learning_rate=0.0, power=1.0)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = self.peak * step / max(self.warmup_steps, 1)
        return tf.where(step < self.warmup_steps, warmup, self._decay(step - self.warmup_steps))

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


class ThroughputLogger(keras.callbacks.Callback):
    """Adds the epoch's training time (validation excluded) to the logs as `epoch_seconds`."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._train_end = time.perf_counter(), None

    def on_test_begin(self, logs=None):  # Within fit: validation starts, training is done.
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = self._train_end or time.perf_counter()
        if logs is not None:
            logs["epoch_seconds"] = end - self._start


def _one_hot(examples: Examples) -> Examples:
    """Keras's F1 needs one-hot targets; multi-label rows already are."""
    if examples.multi_label:
        return examples
    labels = np.eye(len(examples.classes), dtype=np.float32)[examples.labels]
    return dataclasses.replace(examples, labels=labels)


def compile_classifier(model: keras.Model, config: TrainConfig, n_classes: int,
                       multi_label: bool, steps: int) -> None:
    schedule = WarmupLinearDecay(config.learning_rate,
                                 int(config.warmup_fraction * steps), steps)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay,
                                       epsilon=1e-6, global_clipnorm=1.0)
    # BERT's recipe: no weight decay on LayerNorm parameters and biases.
    optimizer.exclude_from_weight_decay(var_names=["LayerNorm", "bias"])
    if multi_label:
        loss = keras.losses.BinaryCrossentropy()
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"),
                   F1Score(n_classes, threshold=MULTI_LABEL_THRESHOLD)]
    else:
        loss = keras.losses.CategoricalCrossentropy()
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"), F1Score(n_classes)]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)


def train_classifier(spec: ClassifierSpec, train: Examples, dev: Examples | None,
                     out_dir: str, config: TrainConfig = TrainConfig(), *,
                     overwrite: bool = False, resume: bool = False,
                     verbose: int | None = None) -> dict:
    """Fine-tunes, keeps the best epoch (by dev accuracy; without dev data, the last),
    writes `model.keras` and `report.json` into `out_dir`; returns the report.

    Each finished epoch is backed up in `out_dir + ".backup"` (see `bert_layer.training.backup`);
    with `resume`, a run interrupted there continues after its last finished epoch.
    """
    if train.labels is None:
        raise ValueError(f"{train.source}: training needs a label column.")
    if resume and config.distribute == "multi-worker":
        raise ValueError("resume with distribute='multi-worker' is not supported: each worker "
                         "would need its own backup; rerun without resume (or with overwrite).")
    check_windowed_training(spec.stride, config.distribute)
    inputs = [spec.module, train.source] + ([dev.source] if dev is not None else [])
    _check_matches_spec(train, spec)
    if dev is not None:
        _check_matches_spec(dev, spec)
    # Before other TensorFlow work; multi-worker waits here for every worker to start.
    strategy = make_strategy(config.distribute)
    chief = is_chief(strategy)
    if chief:  # Before the work; atomic_output checks again.
        check_output_free(out_dir, overwrite, kind="run", inputs=inputs)
    if verbose is None:  # A progress bar on a terminal, one line per epoch in a log.
        verbose = 1 if sys.stdout.isatty() else 2
    keras.utils.set_random_seed(config.seed)
    distribution = describe(strategy, config.distribute, config.batch_size)
    # The strategy splits each batch of the dataset between the replicas.
    global_batch = distribution["global_batch_size"]
    train_ds = shard_by_examples(make_dataset(
        _one_hot(train), batch_size=global_batch, shuffle=True, seed=config.seed,
        bucket=config.bucket))
    dev_ds = None if dev is None else shard_by_examples(make_dataset(
        _one_hot(dev), batch_size=global_batch, shuffle=False, seed=config.seed,
        bucket=config.bucket))
    steps = config.epochs * math.ceil(len(train) / global_batch)
    with strategy.scope():
        model = build_classifier(spec)
        compile_classifier(model, config, len(spec.class_names), spec.multi_label, steps)
        prepare_for_distributed_fit(model, train.texts[0], _one_hot(train).labels[0])
    if spec.stride is not None:
        train_ds = _label_per_window(train_ds, model)
    with _worker_run_dir(out_dir, chief) as run_dir:
        return _fit_and_write(model, train_ds, dev_ds, run_dir, spec, config, train, dev,
                              distribution, overwrite=overwrite or not chief, resume=resume,
                              inputs=inputs, verbose=verbose)


def _label_per_window(dataset: tf.data.Dataset, model: keras.Model) -> tf.data.Dataset:
    """(texts [b], labels [b, C]) -> (texts, labels [windows, C]): each window of a long text
    is a training example carrying the text's label (the model's WindowPooling passes the
    windows' probabilities through in training). Dev data stay one label per text: validation
    scores the documents, as predict does."""
    windows_per_text = model.get_layer("bert").preprocessor.windows_per_text
    return dataset.map(lambda texts, labels: (
        texts, tf.repeat(labels, windows_per_text(texts), axis=0)))


def _fit_and_write(model: keras.Model, train_ds, dev_ds, out_dir: str, spec: ClassifierSpec,
                   config: TrainConfig, train: Examples, dev: Examples | None,
                   distribution: dict, *, overwrite: bool, resume: bool, inputs: list[str],
                   verbose: int) -> dict:
    """`fit` with each finished epoch backed up, then `model.keras` and `report.json`."""
    start = time.perf_counter()
    backup = backups.TrainingBackup(out_dir, _settings(spec, config, train, dev))
    finished_before = backup.start(resume=resume, overwrite=overwrite)
    callbacks = [ThroughputLogger(), *backup.callbacks(
        keep_best_by=None if dev_ds is None else "val_accuracy")]
    try:
        model.fit(train_ds, validation_data=dev_ds, epochs=config.epochs,
                  callbacks=callbacks, verbose=verbose)
    except BaseException:
        if backup.finished_epochs() == 0:  # Nothing to resume from.
            backup.remove()
        raise
    _dump_weights_for_tests(model)
    report = _report(spec, config, train, dev, backup.epochs(), time.perf_counter() - start,
                     resumed_from=finished_before + 1 if finished_before else None)
    report["distribution"] = distribution
    # The output folder exists only from here on: a kill during fit leaves only the backup.
    with atomic_output(out_dir, overwrite=overwrite, kind="run", inputs=inputs) as tmp:
        model_path = os.path.join(tmp, MODEL_FILE)
        if dev_ds is None:
            model.save(model_path)
        else:
            shutil.copyfile(backup.best_model(report["best_epoch"]), model_path)
        with open(os.path.join(tmp, REPORT_FILE), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    backup.remove()
    return report


def _settings(spec: ClassifierSpec, config: TrainConfig, train: Examples,
              dev: Examples | None) -> dict:
    """What a resumed run must share with the interrupted one."""
    return {"classifier": dataclasses.asdict(spec), "train_config": dataclasses.asdict(config),
            "train": [train.source, len(train)], "dev": [dev.source, len(dev)] if dev else None}


@contextlib.contextmanager
def _worker_run_dir(out_dir: str, chief: bool) -> Iterator[str]:
    """Where this process writes its run: the chief `out_dir`; every other worker of a
    multi-worker run (Keras saves per process) a temporary folder removed afterwards, so that
    only the chief's outputs remain."""
    if chief:
        yield out_dir
        return
    with tempfile.TemporaryDirectory(prefix="bert_layer_worker_") as folder:
        yield os.path.join(folder, os.path.basename(os.path.abspath(out_dir)))


# Tests of multi-worker training set this to a .npz path to compare the workers' weights.
DUMP_WEIGHTS_ENV = "BERT_LAYER_DUMP_WEIGHTS"


def _dump_weights_for_tests(model: keras.Model) -> None:
    path = os.environ.get(DUMP_WEIGHTS_ENV)
    if path:
        np.savez(path, *model.get_weights())


def _check_matches_spec(examples: Examples, spec: ClassifierSpec) -> None:
    """The head has one output per class of `spec`; the labels must index the same classes."""
    expected = list(spec.class_names)
    if list(examples.classes) != expected or examples.multi_label != spec.multi_label:
        raise ValueError(
            f"{examples.source}: the classifier expects classes {expected} with "
            f"multi_label={spec.multi_label}; the examples have classes {examples.classes} "
            f"with multi_label={examples.multi_label}. Read them with labels={expected}.")


def _report(spec: ClassifierSpec, config: TrainConfig, train: Examples, dev: Examples | None,
            history: list[dict[str, float]], wall_seconds: float,
            resumed_from: int | None) -> dict:
    """`history`: each epoch's logs; `resumed_from`: the first epoch this process ran, when
    it continued an interrupted run (`wall_seconds` then counts this process only)."""
    epochs = []
    for i, logs in enumerate(history):
        epoch = {k: v for k, v in logs.items() if k != "learning_rate"}
        epoch["epoch"] = i + 1
        epoch["examples_per_second"] = len(train) / epoch["epoch_seconds"]
        epochs.append(epoch)
    # With dev data ModelCheckpoint keeps the first epoch of highest val_accuracy (max()
    # also returns the first of equals); without, the model saved is the last epoch's.
    best = max(epochs, key=lambda e: e["val_accuracy"]) if dev is not None else epochs[-1]
    return {
        "classifier": {**dataclasses.asdict(spec), "class_names": list(spec.class_names)},
        "train_config": dataclasses.asdict(config),
        "train_source": train.source, "train_examples": len(train),
        "dev_source": dev.source if dev else None, "dev_examples": len(dev) if dev else 0,
        "epochs": epochs, "best_epoch": best["epoch"], "resumed_from_epoch": resumed_from,
        "best": {k: v for k, v in best.items() if k.startswith("val_")},
        "wall_seconds": wall_seconds,
        "machine": {"python": platform.python_version(), "tensorflow": tf.__version__,
                    "keras": keras.__version__, "cpus": os.cpu_count()},
    }
