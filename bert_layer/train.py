"""Fine-tuning a BERT classifier with Keras `fit`: the `bert-layer train` job."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from bert_layer.classifier import ClassifierSpec, F1Score, build_classifier
from bert_layer.batching import make_dataset
from bert_layer.distribute import (DISTRIBUTE_CHOICES, prepare_for_distributed_fit, describe,
                                   is_chief, make_strategy, shard_by_examples)
from bert_layer.examples import Examples
from bert_layer.outputs import MODEL_FILE, REPORT_FILE, atomic_output, check_output_free



@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are BERT's fine-tuning recipe."""

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    bucket: bool = True  # group similar lengths into batches (less padding)
    distribute: str = "none"  # a DISTRIBUTE_CHOICES strategy; batch_size is per replica

    def __post_init__(self) -> None:
        if self.distribute not in DISTRIBUTE_CHOICES:
            raise ValueError(f"distribute must be one of {', '.join(DISTRIBUTE_CHOICES)}; "
                             f"received {self.distribute!r}.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1; received epochs="
                             f"{self.epochs}, batch_size={self.batch_size}.")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1); received {self.warmup_fraction}.")


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
                   F1Score(n_classes, threshold=0.5)]
    else:
        loss = keras.losses.CategoricalCrossentropy()
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"), F1Score(n_classes)]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)


def train_classifier(spec: ClassifierSpec, train: Examples, dev: Examples | None,
                     out_dir: str, config: TrainConfig = TrainConfig(), *,
                     overwrite: bool = False, verbose: int | None = None) -> dict:
    """Fine-tunes, keeps the best epoch (by dev accuracy; without dev data, the last),
    writes `model.keras` and `report.json` into `out_dir`; returns the report."""
    if train.labels is None:
        raise ValueError(f"{train.source}: training needs a label column.")
    _check_matches_spec(train, spec)
    if dev is not None:
        _check_matches_spec(dev, spec)
    # Before other TensorFlow work; multi-worker waits here for every worker to start.
    strategy = make_strategy(config.distribute)
    chief = is_chief(strategy)
    if chief:
        check_output_free(out_dir, overwrite)  # Before the work; atomic_output checks again.
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
        compile_classifier(model, config, len(spec.classes), spec.multi_label, steps)
        prepare_for_distributed_fit(model, train.texts[0], _one_hot(train).labels[0])
    start = time.perf_counter()
    with _output_dir(out_dir, overwrite, chief) as tmp:
        model_path = os.path.join(tmp, MODEL_FILE)
        callbacks = [ThroughputLogger()]
        if dev_ds is not None:
            callbacks.append(keras.callbacks.ModelCheckpoint(
                model_path, monitor="val_accuracy", mode="max", save_best_only=True))
        history = model.fit(train_ds, validation_data=dev_ds, epochs=config.epochs,
                            callbacks=callbacks, verbose=verbose)
        if dev_ds is None:
            model.save(model_path)
        _dump_weights_for_tests(model)
        report = _report(spec, config, train, dev, history.history,
                         time.perf_counter() - start)
        report["distribution"] = distribution
        with open(os.path.join(tmp, REPORT_FILE), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return report


def _output_dir(out_dir: str, overwrite: bool, chief: bool):
    """Where this process writes: the chief writes `out_dir` atomically; other workers of a
    multi-worker run save too (Keras saving is per process), into a temporary folder that is
    then removed, so that only the chief's outputs remain."""
    if chief:
        return atomic_output(out_dir, overwrite=overwrite)
    return tempfile.TemporaryDirectory(prefix="bert_layer_worker_")


# Tests of multi-worker training set this to a .npz path to compare the workers' weights.
DUMP_WEIGHTS_ENV = "BERT_LAYER_DUMP_WEIGHTS"


def _dump_weights_for_tests(model: keras.Model) -> None:
    path = os.environ.get(DUMP_WEIGHTS_ENV)
    if path:
        np.savez(path, *model.get_weights())


def _check_matches_spec(examples: Examples, spec: ClassifierSpec) -> None:
    """The head has one output per class of `spec`; the labels must index the same classes."""
    if list(examples.classes) != list(spec.classes) or examples.multi_label != spec.multi_label:
        raise ValueError(
            f"{examples.source}: the classifier expects classes {list(spec.classes)} with "
            f"multi_label={spec.multi_label}; the examples have classes {examples.classes} "
            f"with multi_label={examples.multi_label}. Read them with labels="
            f"{list(spec.classes)}.")


def _report(spec: ClassifierSpec, config: TrainConfig, train: Examples, dev: Examples | None,
            history: dict, wall_seconds: float) -> dict:
    epochs = []
    for i in range(len(history["loss"])):
        epoch = {k: float(v[i]) for k, v in history.items() if k != "learning_rate"}
        epoch["epoch"] = i + 1
        epoch["examples_per_second"] = len(train) / epoch["epoch_seconds"]
        epochs.append(epoch)
    # With dev data ModelCheckpoint keeps the first epoch of highest val_accuracy (max()
    # also returns the first of equals); without, the model saved is the last epoch's.
    best = max(epochs, key=lambda e: e["val_accuracy"]) if dev is not None else epochs[-1]
    return {
        "classifier": {**dataclasses.asdict(spec), "classes": list(spec.classes)},  # As JSON.
        "train_config": dataclasses.asdict(config),
        "train_source": train.source, "train_examples": len(train),
        "dev_source": dev.source if dev else None, "dev_examples": len(dev) if dev else 0,
        "epochs": epochs, "best_epoch": best["epoch"],
        "best": {k: v for k, v in best.items() if k.startswith("val_")},
        "wall_seconds": wall_seconds,
        "machine": {"python": platform.python_version(), "tensorflow": tf.__version__,
                    "keras": keras.__version__, "cpus": os.cpu_count()},
    }
