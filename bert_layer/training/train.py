"""Fine-tuning a BERT classifier (or regressor) with Keras `fit`: the `bert-layer train` job."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from bert_layer.choices import MULTI_LABEL_THRESHOLD
from bert_layer.data.batching import make_dataset
from bert_layer.data.examples import Examples
from bert_layer.outputs import MODEL_FILE, REPORT_FILE, atomic_output, check_output_free

# The submodule, not its names (see bert_layer.layers.layer on module_source).
from bert_layer.training import backup as backups
from bert_layer.training.class_weights import resolve_class_weights
from bert_layer.training.classifier import (
    ClassifierSpec,
    F1Score,
    PositiveWeightedBinaryCrossentropy,
    build_classifier,
    without_training_state,
)
from bert_layer.training.distribute import (
    describe,
    is_chief,
    make_strategy,
    prepare_for_distributed_fit,
    shard_by_examples,
)
from bert_layer.training.regressor import MONITOR as REGRESSION_MONITOR
from bert_layer.training.regressor import RegressionMetrics, build_regressor
from bert_layer.training.specs import (  # noqa: F401  (TrainConfig also importable from here)
    TrainConfig,
    check_windowed_training,
)

# Per task: the model builder, and the dev metric that picks the best epoch (and that early
# stopping watches).
BUILDERS = {"classify": build_classifier, "regress": build_regressor}
MONITORS = {"classify": "val_accuracy", "regress": REGRESSION_MONITOR}


@keras.saving.register_keras_serializable(package="bert_layer")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then linear decay to 0.

    Steps count optimizer updates: with gradient accumulation Keras calls the schedule with
    its batch counter, which `batches_per_update` divides (as Keras's `optimizer.iterations`
    does), so update u uses the rate of step u.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int,
                 batches_per_update: int = 1):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps
        self.batches_per_update = batches_per_update
        self._decay = keras.optimizers.schedules.PolynomialDecay(
            peak, max(total_steps - warmup_steps, 1), end_learning_rate=0.0, power=1.0)

    def __call__(self, step):
        step = tf.cast(step // self.batches_per_update, tf.float32)
        warmup = self.peak * step / max(self.warmup_steps, 1)
        return tf.where(step < self.warmup_steps, warmup, self._decay(step - self.warmup_steps))

    def get_config(self) -> dict:
        config = {"peak": self.peak, "warmup_steps": self.warmup_steps,
                  "total_steps": self.total_steps}
        if self.batches_per_update != 1:  # (Configs saved before it existed lack it.)
            config["batches_per_update"] = self.batches_per_update
        return config


class ThroughputLogger(keras.callbacks.Callback):
    """Times each epoch's training (validation excluded) and prints one line per epoch.

    Adds to the logs `epoch_seconds` (the whole epoch's training) and `examples_per_second`,
    measured from the end of the first step: that step traces and builds the graph (seconds),
    which is no training rate. Keras's own progress line is off (`fit(verbose=0)`); the line
    printed here has the loss and metrics at 4 digits.

    Args:
      examples: training examples per epoch.
      steps: training steps per epoch.
      epochs: epochs in all (for "epoch 2/3").
      out: where the lines go; None prints nothing.
      shown: which scores the line prints, by name (default: all; the logs keep every one).
    """

    def __init__(self, examples: int, steps: int, epochs: int, out=None,
                 shown: Callable[[str], bool] | None = None):
        super().__init__()
        self.examples, self.steps, self.epochs, self.out = examples, steps, epochs, out
        self.shown = shown

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._first_step_end, self._train_end = time.perf_counter(), None, None

    def on_train_batch_end(self, batch, logs=None):
        if self._first_step_end is None:
            self._first_step_end = time.perf_counter()

    def on_test_begin(self, logs=None):  # Within fit: validation starts, training is done.
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = self._train_end or time.perf_counter()
        seconds = end - self._start
        rate = self.examples / seconds
        if self.steps > 1 and self._first_step_end is not None and end > self._first_step_end:
            # Steps after the first, at the epoch's mean batch size.
            rate = self.examples * (self.steps - 1) / self.steps / (end - self._first_step_end)
        if logs is not None:
            logs["epoch_seconds"] = seconds
            logs["examples_per_second"] = rate
        if self.out is not None:
            print(epoch_line(epoch + 1, self.epochs, logs or {}, self.shown), file=self.out,
                  flush=True)


# Logged values that are no score (the schedule's rate, the timings).
_NOT_SCORES = ("learning_rate", "epoch_seconds", "examples_per_second", "epoch")


def scores(logs: dict) -> dict[str, float]:
    """The loss and metrics of an epoch's logs: training's, then validation's; the loss
    first, the metrics by name."""
    names = [k for k in logs if k not in _NOT_SCORES]
    order = lambda k: (k.startswith("val_"), k.removeprefix("val_") != "loss", k)  # noqa: E731
    return {k: float(logs[k]) for k in sorted(names, key=order)}


def epoch_line(epoch: int, epochs: int, logs: dict,
               shown: Callable[[str], bool] | None = None) -> str:
    """'epoch 1/3: loss 0.6931  accuracy 0.5000  ...  (29.9 examples/s, 12s)'; `shown` picks
    the scores by name (default: all)."""
    values = "  ".join(f"{k} {v:.4f}" for k, v in scores(logs).items()
                       if shown is None or shown(k))
    timing = ""
    if "examples_per_second" in logs:
        timing = (f"  ({logs['examples_per_second']:.1f} examples/s, "
                  f"{logs['epoch_seconds']:.0f}s)")
    return f"epoch {epoch}/{epochs}: {values}{timing}"


def _one_hot(examples: Examples) -> Examples:
    """Keras's F1 needs one-hot targets; multi-label rows (and scores) already are rows."""
    if examples.multi_label or examples.scores:
        return examples
    labels = np.eye(len(examples.classes), dtype=np.float32)[examples.labels]
    return dataclasses.replace(examples, labels=labels)


def summed_rows(gradient):
    """A sparse gradient (tf.IndexedSlices) with each row once, its repeats summed: the rows a
    dense gradient has. Other gradients unchanged."""
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    rows, position = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(rows)[0])
    return tf.IndexedSlices(values, rows, gradient.dense_shape)


@keras.saving.register_keras_serializable(package="bert_layer")
class RowSummingAdamW(keras.optimizers.AdamW):
    """Keras's AdamW, given sparse gradients with their repeated rows summed first.

    An embedding lookup's gradient is tf.IndexedSlices with a row per token occurrence (a
    token 20 times in a batch: 20 rows). Keras 3's Adam squares those rows one by one
    (`ops.square` on the slices) before they are added up, so its second moment gets
    sum(g_i^2) where Adam, and PyTorch's dense gradient, has (sum g_i)^2, and its global
    norm for clipping is taken over the unsummed rows: the embeddings of frequent tokens
    ([CLS] and [SEP] come once per text) moved up to sqrt(repeats) times too far. tf.keras 2
    summed them first (`_deduplicate_indexed_slices`); Keras 3 does not, hence this class.
    """

    def apply(self, grads, trainable_variables=None):
        # Before clipping (the global norm) and, via update_step, after any cross-replica
        # sum (which concatenates the replicas' rows).
        return super().apply([summed_rows(g) for g in grads], trainable_variables)

    def update_step(self, gradient, variable, learning_rate):
        return super().update_step(summed_rows(gradient), variable, learning_rate)


def make_optimizer(config: TrainConfig, steps: int) -> keras.optimizers.Optimizer:
    """BERT's fine-tuning optimizer: AdamW, linear warm-up then decay over `steps` optimizer
    updates (with `config.gradient_accumulation` batches each)."""
    accumulation = config.gradient_accumulation
    schedule = WarmupLinearDecay(config.learning_rate, int(config.warmup_fraction * steps),
                                 steps, batches_per_update=accumulation)
    optimizer = RowSummingAdamW(
        learning_rate=schedule, weight_decay=config.weight_decay, epsilon=1e-6,
        global_clipnorm=1.0, gradient_accumulation_steps=accumulation if accumulation > 1
        else None)
    # BERT's recipe: no weight decay on LayerNorm parameters and biases.
    optimizer.exclude_from_weight_decay(var_names=["LayerNorm", "bias"])
    return optimizer


def build_training_state(model: keras.Model, dataset) -> None:
    """Creates the loss's, metrics' and optimizer's variables before `fit`, from the
    dataset's element spec (shapes only: no batch is drawn, so shuffling is not disturbed).

    Without a distribution strategy Keras creates them inside the first traced train step,
    and a `tf.function` that creates variables is traced twice: the whole forward and
    backward graph built a second time (~40% of a small model's training time). Under a
    strategy `prepare_for_distributed_fit` has built them already. Call it after `compile`,
    in the strategy's scope. (`_symbolic_build` is the step Keras itself runs under a
    strategy; no public method builds compiled metrics.)"""
    if model.optimizer is not None and model.optimizer.built:
        return
    model._symbolic_build(data_batch=dataset.element_spec)


def compile_classifier(model: keras.Model, config: TrainConfig, n_classes: int,
                       multi_label: bool, steps: int, *, task: str = "classify",
                       positive_weights: list[float] | None = None) -> None:
    """AdamW with BERT's schedule (make_optimizer), and the task's loss and metrics.
    `positive_weights`: per-class weights of a multi-label model's positive examples."""
    optimizer = make_optimizer(config, steps)
    if task == "regress":  # Pearson, Spearman and MSE on dev: RegressionMetrics.
        model.compile(optimizer=optimizer, loss=keras.losses.MeanSquaredError())
        return
    if multi_label:
        loss = (keras.losses.BinaryCrossentropy() if positive_weights is None
                else PositiveWeightedBinaryCrossentropy(positive_weights))
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
    """Fine-tunes, keeps the best epoch (by dev accuracy, for a regressor dev Pearson;
    without dev data, the last), writes `model.keras` and `report.json` into `out_dir`;
    returns the report. `config.early_stopping_patience` needs dev data.

    Each finished epoch is backed up in `out_dir + ".backup"` (see `bert_layer.training.backup`);
    with `resume`, a run interrupted there continues after its last finished epoch.
    """
    if train.labels is None:
        raise ValueError(f"{train.source}: training needs a label column.")
    if resume and config.distribute == "multi-worker":
        raise ValueError("resume with distribute='multi-worker' is not supported: each worker "
                         "would need its own backup; rerun without resume (or with overwrite).")
    if config.early_stopping_patience is not None and dev is None:
        raise ValueError("early_stopping_patience watches the dev metric: pass dev data.")
    if config.class_weight is not None and spec.task != "classify":
        raise ValueError(f"class_weight weighs classes; a {spec.task} task has none.")
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
    if verbose is None:  # One line per epoch (ThroughputLogger), on stdout.
        verbose = 1
    keras.utils.set_random_seed(config.seed)
    distribution = describe(strategy, config.distribute, config.batch_size)
    # The strategy splits each batch of the dataset between the replicas.
    global_batch = distribution["global_batch_size"]
    with strategy.scope():
        model = BUILDERS[spec.task](spec)
    train_ds = shard_by_examples(make_dataset(
        _one_hot(train), batch_size=global_batch, shuffle=True, seed=config.seed,
        bucket=config.bucket,
        windows=None if spec.stride is None else _windows_per_text(model, train.texts)))
    dev_ds = None if dev is None else shard_by_examples(make_dataset(
        _one_hot(dev), batch_size=global_batch, shuffle=False, seed=config.seed,
        bucket=config.bucket))
    # Keras's accumulation carries a partial group of batches over into the next epoch.
    updates = config.epochs * _steps_per_epoch(train_ds) // config.gradient_accumulation
    class_weights = (None if config.class_weight is None
                     else resolve_class_weights(config.class_weight, train))
    with strategy.scope():
        compile_classifier(model, config, len(spec.class_names), spec.multi_label, max(updates, 1),
                           task=spec.task, positive_weights=None if not spec.multi_label or
                           class_weights is None else list(class_weights.values()))
        prepare_for_distributed_fit(model, train.texts[0], _one_hot(train).labels[0])
    options = {"class_weights": class_weights,
               "early_stopping_patience": config.early_stopping_patience,
               "gradient_accumulation": config.gradient_accumulation,
               "effective_batch_size": global_batch * config.gradient_accumulation,
               "optimizer_updates": updates, "best_epoch_by": MONITORS[spec.task]}
    extra_callbacks = []
    if spec.task == "regress" and dev is not None:
        # Scores on dev from a prediction in file order; fit's own validation is not needed.
        dev_texts = make_dataset(dataclasses.replace(dev, labels=None), batch_size=global_batch,
                                 shuffle=False, seed=config.seed, bucket=False)
        extra_callbacks.append(RegressionMetrics(dev, dev_texts))
        dev_ds = None
    if spec.stride is not None:
        train_ds = _label_per_window(train_ds, model)
    # One run at a time into `out_dir`: they would share its backup.
    lock = backups.run_lock(out_dir) if chief else contextlib.nullcontext()
    with lock, _worker_run_dir(out_dir, chief) as run_dir:
        return _fit_and_write(model, train_ds, dev_ds, run_dir, spec, config, train, dev,
                              distribution, overwrite=overwrite or not chief, resume=resume,
                              inputs=inputs, verbose=verbose, options=options,
                              extra_callbacks=extra_callbacks,
                              record_batches=spec.stride is not None)


def _default_options(config: TrainConfig, distribution: dict, monitor: str) -> dict:
    """The training options a report records, for jobs that set none of their own."""
    return {"class_weights": None, "early_stopping_patience": config.early_stopping_patience,
            "gradient_accumulation": config.gradient_accumulation,
            "effective_batch_size": distribution["global_batch_size"]
            * config.gradient_accumulation, "best_epoch_by": monitor}


def _windows_per_text(model: keras.Model, texts: list[str], chunk: int = 256) -> np.ndarray:
    """int32 [n]: how many windows each training text becomes (batches are sized by them)."""
    count = model.get_layer("bert").preprocessor.windows_per_text
    return np.concatenate([count(tf.constant(texts[i:i + chunk])).numpy()
                           for i in range(0, len(texts), chunk)])


def _steps_per_epoch(dataset: tf.data.Dataset) -> int:
    """The batches of one pass (every training dataset here asserts its count)."""
    steps = int(dataset.cardinality())
    if steps < 0:
        raise ValueError(f"the training dataset's length is unknown ({steps}).")
    return steps


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
                   verbose: int, monitor: str | None = None, options: dict | None = None,
                   extra_callbacks=(), shown_scores: Callable[[str], bool] | None = None,
                   record_batches: bool = False) -> dict:
    """`fit` with each finished epoch backed up, then `model.keras` and `report.json`.

    `monitor`: the dev metric that picks the best epoch (default: the task's, MONITORS);
    `options`: the training options the report records; `extra_callbacks` run first, so
    that metrics they add to the logs are printed and saved with the epoch; `shown_scores`:
    which of them the epoch lines print (ThroughputLogger); `record_batches`: a resume must
    find the same number of batches an epoch (see `_settings`)."""
    start = time.perf_counter()
    steps = _steps_per_epoch(train_ds)
    backup = backups.TrainingBackup(out_dir, _settings(
        spec, config, train, dev, batches=steps if record_batches else None))
    finished_before = backup.start(resume=resume, overwrite=overwrite)
    monitor = monitor or MONITORS[spec.task]
    options = options or _default_options(config, distribution, monitor)
    logger = ThroughputLogger(len(train), steps, config.epochs,
                              out=sys.stdout if verbose else None, shown=shown_scores)
    callbacks = [*extra_callbacks, logger,
                 *backup.callbacks(keep_best_by=None if dev is None else monitor)]
    stopping = None
    if config.early_stopping_patience is not None:
        stopping = backups.ResumableEarlyStopping(
            backup, monitor=monitor, patience=config.early_stopping_patience)
        callbacks.append(stopping)
    class_weight = None
    if options["class_weights"] is not None and not getattr(spec, "multi_label", False):
        class_weight = dict(enumerate(options["class_weights"].values()))
    build_training_state(model, train_ds)
    try:
        model.fit(train_ds, validation_data=dev_ds, epochs=config.epochs,
                  callbacks=callbacks, verbose=0, class_weight=class_weight)
    except BaseException:
        if backup.finished_epochs() == 0:  # Nothing to resume from.
            backup.remove()
        raise
    _dump_weights_for_tests(model)
    report = _report(spec, config, train, dev, backup.epochs(), time.perf_counter() - start,
                     resumed_from=finished_before + 1 if finished_before else None,
                     monitor=monitor)
    report["distribution"] = distribution
    report["training_options"] = {
        **options, "stopped_early_after_epoch": None if stopping is None or not
        stopping.stopped_epoch else stopping.stopped_epoch + 1}
    # The output folder exists only from here on: a kill during fit leaves only the backup.
    with atomic_output(out_dir, overwrite=overwrite, kind="run", inputs=inputs) as tmp:
        model_path = os.path.join(tmp, MODEL_FILE)
        if dev is None:
            without_training_state(model).save(model_path)
        else:
            shutil.copyfile(backup.best_model(report["best_epoch"]), model_path)
        with open(os.path.join(tmp, REPORT_FILE), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    backup.remove()
    return report


def _spec_key(spec) -> str:
    """The report's name for the model's spec: "classifier", "tagger", ..."""
    return "classifier" if isinstance(spec, ClassifierSpec) else type(spec).__name__.lower(
    ).removesuffix("spec")


def _settings(spec: ClassifierSpec, config: TrainConfig, train: Examples,
              dev: Examples | None, batches: int | None = None) -> dict:
    """What a resumed run must share with the interrupted one. `batches`: the batches of an
    epoch, kept where they depend on more than these settings (texts read as windows; their
    batching changed on 2026-12-05), since the learning-rate schedule counts them."""
    settings = {_spec_key(spec): dataclasses.asdict(spec),
                "train_config": dataclasses.asdict(config), "train": [train.source, len(train)],
                "dev": [dev.source, len(dev)] if dev else None}
    if batches is not None:
        settings["batches_per_epoch"] = batches
    return settings


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
    """The head has one output per class of `spec`; the labels must index the same classes
    (for a regressor: be scores of the same names)."""
    expected = list(spec.class_names)
    if spec.task == "regress":
        if not examples.scores or list(examples.classes) != expected:
            raise ValueError(f"{examples.source}: the regressor expects scores {expected}; the "
                             f"examples have {'scores' if examples.scores else 'classes'} "
                             f"{examples.classes}. Read them with read_scores.")
        return
    if list(examples.classes) != expected or examples.multi_label != spec.multi_label:
        raise ValueError(
            f"{examples.source}: the classifier expects classes {expected} with "
            f"multi_label={spec.multi_label}; the examples have classes {examples.classes} "
            f"with multi_label={examples.multi_label}. Read them with labels={expected}.")


def _report(spec: ClassifierSpec, config: TrainConfig, train: Examples, dev: Examples | None,
            history: list[dict[str, float]], wall_seconds: float,
            resumed_from: int | None, monitor: str = "val_accuracy") -> dict:
    """`history`: each epoch's logs; `resumed_from`: the first epoch this process ran, when
    it continued an interrupted run (`wall_seconds` then counts this process only)."""
    epochs = []
    for i, logs in enumerate(history):
        epoch = {k: v for k, v in logs.items() if k != "learning_rate"}
        epoch["epoch"] = i + 1
        if "examples_per_second" not in epoch:  # Backups of runs before it was logged.
            epoch["examples_per_second"] = len(train) / epoch["epoch_seconds"]
        epochs.append(epoch)
    # With dev data ModelCheckpoint keeps the first epoch of highest `monitor` (max()
    # also returns the first of equals); without, the model saved is the last epoch's.
    best = max(epochs, key=lambda e: e[monitor]) if dev is not None else epochs[-1]
    record = {k: list(v) if isinstance(v, tuple) else v
              for k, v in dataclasses.asdict(spec).items()}
    return {
        _spec_key(spec): record,
        "train_config": dataclasses.asdict(config),
        "train_source": train.source, "train_examples": len(train),
        "dev_source": dev.source if dev else None, "dev_examples": len(dev) if dev else 0,
        "epochs": epochs, "best_epoch": best["epoch"], "resumed_from_epoch": resumed_from,
        "best": {k: v for k, v in best.items() if k.startswith("val_")},
        "wall_seconds": wall_seconds,
        "machine": {"python": platform.python_version(), "tensorflow": tf.__version__,
                    "keras": keras.__version__, "cpus": os.cpu_count()},
    }
