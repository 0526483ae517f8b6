"""The end-to-end benchmark of issue 4: inference and training throughput, ours against PyTorch.

Everything runs in one process, so that ratios compare passes taken under the same load of a
shared machine. Every configuration is first warmed up on a few batches (so no timed pass
traces a function); then the timed passes are interleaved over `--repeats` rounds, rotating
the order each round, and the best pass of each configuration is reported.

1. Inference: sentences per second over SST-2 dev, tokenization included, of a classifier
   (BertLayer pooling="cls", then the Dense softmax head of `build_classifier`, untrained) run as
     keras-predict  `model.predict(texts, batch_size=B)` on the texts laid out in batch order,
                    so Keras cuts exactly the same batches (its predict function is traced once);
     frozen         the graph written by `freeze_model`, run batch by batch by
                    `FrozenClassifier`;
     pytorch        (if torch and transformers import) transformers' BertForSequenceClassification
                    on the same all-MiniLM-L6-v2 weights with our head copied in, its fast
                    tokenizer (padding="longest"), fp32, `torch.inference_mode()`;
   with batches grouped by length (`length_grouped_batches`, longest first) or in file order,
   and with dynamic padding (each batch padded to its own longest row, what BertLayer does) or
   fixed padding to 128 (a BertLayer whose `call` pads the `preprocess` output to 128, then
   runs `encode`; the same weights). All engines must agree on a batch before anything is timed.
2. Training: examples per second of Keras `fit` (all layers trainable, AdamW from
   `compile_classifier`) on the first `--train-steps` batches of `make_dataset`, bucketed
   (`bucket=True`) or in (shuffled) file order, and the same batches through the same recipe
   in transformers (AdamW 5e-5, gradients clipped to norm 1), for each `--train-tasks` task:
     sst2  the first 8000 rows of SST-2 train (single sentences);
     mrpc  MRPC train (sentence pairs, "first ||| second"; transformers gets the two lists).
   The first step of each timed `fit` is excluded (it waits for the input pipeline).

Usage:
  python scripts/bench.py                  # the full benchmark: about 12 minutes on 2 cores
  python scripts/bench.py --quick          # 128 sentences, 1 repeat, 5 training steps
  python scripts/bench.py --module DIR --no-torch --repeats 5 --json out.json --plot out.png
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow reads it once, when loaded.
# PyTorch's OpenMP threads spin while they wait; on a shared, busy machine that halved its
# throughput here. Passive waiting keeps the baseline strong (TensorFlow does not use OpenMP).
# Read once, when torch loads; set OMP_WAIT_POLICY=ACTIVE to measure OpenMP's default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bert_layer.classifier import ClassifierSpec, build_classifier  # noqa: E402
from bert_layer.batching import estimate_lengths, length_grouped_batches, make_dataset  # noqa: E402
from bert_layer.examples import Examples, read_examples  # noqa: E402
from bert_layer.text.pairs import PAIR_SEPARATOR  # noqa: E402
from bert_layer.outputs import atomic_output  # noqa: E402
from bert_layer.classifiers import FrozenClassifier  # noqa: E402
from bert_layer.freeze import find_bert_layer, freeze_model  # noqa: E402
from bert_layer.layer import BertLayer  # noqa: E402
from bert_layer.train import TrainConfig, compile_classifier  # noqa: E402
from bench_common import module_folder  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = PROJECT_ROOT / "checkpoints" / "all-minilm-l6-v2"
DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
DEFAULT_DEV = DATA_DIR / "sst2" / "glue_dev.tsv"
TEXT_COLUMN = "sentence"
CLASSES = ("0", "1")  # SST-2: negative, positive; MRPC: not a paraphrase, paraphrase.
MAX_SEQ_LENGTH = 128  # Truncation for every engine; also the fixed padding width.
QUICK = {"sentences": 128, "repeats": 1, "train_steps": 5}
SEED = 0
WARM_UP_STEPS = 2  # Training steps run before timing (tracing happens in the first).

ORDERS = ("grouped", "file")
DYNAMIC, FIXED = "dynamic", f"fixed-{MAX_SEQ_LENGTH}"
PADDINGS = (DYNAMIC, FIXED)
TRAIN_ORDERS = ("bucketed", "file")
# All engines run the same weights: their probabilities on one batch must agree this closely.
# The untrained head has small weights (stddev 0.02), so probabilities move ~50x less than the
# pooled output: float32 noise gives ~1e-7, a wrong weight or unmasked padding far above 1e-4.
OUTPUT_ATOL = 1e-4


@dataclasses.dataclass(frozen=True)
class TrainTask:
    """Labelled training rows: the first `rows` of `path` (all when None)."""

    name: str
    path: Path
    text_column: str
    label_column: str
    pair_column: str | None = None
    rows: int | None = None

    def describe(self) -> str:
        first = f"the first {self.rows} rows" if self.rows else "all rows"
        kind = "sentence pairs" if self.pair_column else "single sentences"
        return f"{self.name}: {first} of {self.path} ({kind})"


TRAIN_TASKS = {
    "sst2": TrainTask("sst2", DATA_DIR / "sst2" / "train.tsv", text_column="sentence",
                      label_column="label", rows=8000),
    "mrpc": TrainTask("mrpc", DATA_DIR / "mrpc" / "train.tsv", text_column="#1 String",
                      pair_column="#2 String", label_column="Quality"),
}

# Issue 4 sets the bucketing target on the SST-2 subset, whose sentence lengths vary widely;
# MRPC's pairs vary less, so bucketing gains less there (its rows are reported all the same).
BUCKETING_TASK = "sst2"


@dataclasses.dataclass(frozen=True)
class Target:
    """Passes when items/s of `faster` >= `ratio` x items/s of `slower`."""

    name: str
    faster: str  # A configuration label.
    slower: str
    ratio: float


@dataclasses.dataclass(frozen=True)
class Pass:
    """One timed pass: `items` sentences (or training examples) in `seconds`."""

    seconds: float
    items: int
    batch_seconds: tuple[float, ...] = ()  # Per batch, in batch order, when timed per batch.


@dataclasses.dataclass
class Series:
    """The timed passes of one configuration."""

    label: str
    passes: list[Pass] = dataclasses.field(default_factory=list)

    def best(self) -> Pass:
        return min(self.passes, key=lambda p: p.seconds / p.items)

    def items_per_s(self) -> float:
        best = self.best()
        return best.items / best.seconds

    def median_s(self) -> float:
        return statistics.median(p.seconds for p in self.passes)

    def best_batch_seconds(self) -> np.ndarray:
        """float [batches]: each batch's fastest time over the passes."""
        return np.min([p.batch_seconds for p in self.passes], axis=0)


Runner = Callable[[], Pass]


@dataclasses.dataclass(frozen=True)
class Job:
    """One configuration: `run` is a timed pass; `warm_up` runs the same code on a few batches,
    so that tracing (and first-call set-up) happens before any timed pass."""

    warm_up: Callable[[], object]
    run: Runner


Predict = Callable[[list[str]], np.ndarray]  # A batch of texts -> probabilities [b, classes].


def inference_label(engine: str, order: str, padding: str) -> str:
    return f"{engine}/{order}/{padding}"


def train_label(task: str, engine: str, order: str) -> str:
    return f"train-{task}/{engine}/{order}"


# === Inputs ===


def load_texts(path: Path, limit: int | None) -> list[str]:
    texts = read_examples(os.fspath(path), text_column=TEXT_COLUMN).texts
    return texts if limit is None else texts[:limit]


def load_training_examples(task: TrainTask) -> Examples:
    """The task's labelled rows, labels one-hot as `compile_classifier`'s loss wants."""
    examples = read_examples(os.fspath(task.path), text_column=task.text_column,
                             pair_column=task.pair_column, label_column=task.label_column,
                             labels=list(CLASSES))
    if task.rows is not None:
        examples = examples.take(range(min(task.rows, len(examples))))
    one_hot = np.eye(len(CLASSES), dtype=np.float32)[examples.labels]  # [n, C]
    return dataclasses.replace(examples, labels=one_hot)


def batch_indices(texts: Sequence[str], order: str, batch_size: int) -> list[np.ndarray]:
    """Index batches: grouped by estimated length (longest first), or in file order."""
    if order == "grouped":
        return length_grouped_batches(estimate_lengths(texts), batch_size)
    if order == "file":
        indices = np.arange(len(texts))
        return [indices[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    raise ValueError(f"Unknown order {order!r}; expected one of {list(ORDERS)}.")


# === Our models ===


class FixedLengthBertLayer(BertLayer):
    """A BertLayer that pads every batch to `max_seq_length` instead of its longest row."""

    def call(self, inputs, training=None):
        features = self.preprocess(inputs)
        width = tf.shape(features["input_ids"])[1]  # <= max_seq_length: preprocess truncates.
        features = {name: tf.pad(t, [[0, 0], [0, self.max_seq_length - width]])
                    for name, t in features.items()}  # [B, max_seq_length]
        return self.encode(features, training=training)


def build_inference_models(module: str) -> dict[str, keras.Model]:
    """padding -> classifier; the fixed-length one is a clone with the same weights."""
    spec = ClassifierSpec(module=module, class_names=CLASSES, pooling="cls",
                          fine_tune_layers=0, max_seq_length=MAX_SEQ_LENGTH)
    keras.utils.set_random_seed(SEED)
    dynamic = build_classifier(spec)

    def fixed_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, BertLayer):
            return FixedLengthBertLayer.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    fixed = keras.models.clone_model(dynamic, clone_function=fixed_layer)
    fixed.set_weights(dynamic.get_weights())
    return {DYNAMIC: dynamic, FIXED: fixed}


def freeze_all(models: dict[str, keras.Model], folder: str) -> dict[str, FrozenClassifier]:
    frozen = {}
    for padding, model in models.items():
        start = time.perf_counter()
        report = freeze_model(model, os.path.join(folder, f"{padding}.pb"),
                              class_names=list(CLASSES))
        print(f"Froze the {padding} classifier in {time.perf_counter() - start:.0f}s "
              f"({report.nodes_before} -> {report.nodes_after} nodes)", flush=True)
        frozen[padding] = FrozenClassifier(report.path)
    return frozen


def token_counter(model: keras.Model) -> Callable[[Sequence[str]], np.ndarray]:
    """texts -> int [n]: packed lengths ([CLS] and [SEP] included), from the model's own
    tokenizer, truncated at MAX_SEQ_LENGTH."""
    bert = find_bert_layer(model)
    count = tf.function(lambda t: tf.reduce_sum(bert.preprocess(t)["input_mask"], axis=1),
                        input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    return lambda texts: count(tf.constant(list(texts), tf.string)).numpy()


# === PyTorch ===


def torch_importable() -> bool:
    """True if torch and transformers import (imported here, after TensorFlow is set up)."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"PyTorch comparison skipped: {e}", flush=True)
        return False
    return True


@dataclasses.dataclass
class TorchModels:
    tokenizer: object
    inference: object  # BertForSequenceClassification, eval mode, our head copied in.
    torch: object  # The torch module, imported lazily.

    def tokenize(self, texts: Sequence[str], pairs: bool = False):
        """Pairs, written "first ||| second" for BertLayer, go in as transformers' two lists
        (truncated longest first, as Google's `_truncate_seq_pair`)."""
        if not pairs:
            return self.tokenizer(list(texts), padding="longest", truncation=True,
                                  max_length=MAX_SEQ_LENGTH, return_tensors="pt")
        halves = [text.split(PAIR_SEPARATOR) for text in texts]
        return self.tokenizer([h[0].strip() for h in halves], [h[1].strip() for h in halves],
                              padding="longest", truncation="longest_first",
                              max_length=MAX_SEQ_LENGTH, return_tensors="pt")


def load_torch_models(hf_dir: str, threads: int, head: keras.layers.Dense) -> TorchModels:
    """The Hugging Face model and fast tokenizer, with `head`'s kernel and bias copied in."""
    import torch
    import transformers
    from transformers import AutoTokenizer, BertForSequenceClassification

    transformers.logging.set_verbosity_error()  # "Some weights were newly initialized ..."
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    if not tokenizer.is_fast:
        raise ValueError(f"{hf_dir}: expected a fast (Rust) tokenizer, found "
                         f"{type(tokenizer).__name__}.")
    model = BertForSequenceClassification.from_pretrained(
        hf_dir, num_labels=len(CLASSES), dtype=torch.float32).eval()
    kernel, bias = (np.asarray(w) for w in head.get_weights())  # [H, C], [C]
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(kernel.T.copy()))  # [C, H]
        model.classifier.bias.copy_(torch.from_numpy(bias))
    return TorchModels(tokenizer=tokenizer, inference=model, torch=torch)


def torch_predict(models: TorchModels) -> Predict:
    torch = models.torch

    def predict(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            logits = models.inference(**models.tokenize(texts)).logits
            return torch.softmax(logits, dim=-1).numpy()

    return predict


# === Inference jobs ===


def keras_predict(model: keras.Model) -> Predict:
    return lambda texts: model.predict(np.array(texts, dtype=object), verbose=0)


def timed_batches(predict: Predict, batches: Sequence[list[str]]) -> Pass:
    """Runs `predict` on every batch, timing each (results fetched as numpy)."""
    seconds = []
    for batch in batches:
        start = time.perf_counter()
        predict(batch)
        seconds.append(time.perf_counter() - start)
    return Pass(sum(seconds), sum(len(b) for b in batches), tuple(seconds))


def batches_job(predict: Predict, batches: Sequence[list[str]]) -> Job:
    """Timed batch by batch; warmed up on the first and the last batch (both batch sizes)."""
    return Job(warm_up=lambda: [predict(b) for b in (batches[0], batches[-1])],
               run=lambda: timed_batches(predict, batches))


def keras_predict_job(model: keras.Model, batches: Sequence[list[str]],
                      batch_size: int) -> Job:
    """One `model.predict` over the texts in batch order: Keras cuts the same batches."""
    sizes = [len(b) for b in batches]
    if any(size != batch_size for size in sizes[:-1]):
        raise ValueError(f"keras-predict cuts batches of {batch_size}; only the last batch "
                         f"may be smaller, found sizes {sizes}.")
    texts = np.array([t for batch in batches for t in batch], dtype=object)

    def run() -> Pass:
        start = time.perf_counter()
        model.predict(texts, batch_size=batch_size, verbose=0)
        return Pass(time.perf_counter() - start, len(texts))

    # A full batch and a one-row batch: predict's function is traced for any batch size.
    return Job(warm_up=lambda: model.predict(texts[:batch_size + 1], batch_size=batch_size,
                                             verbose=0), run=run)


def inference_jobs(models: dict[str, keras.Model], frozen: dict[str, FrozenClassifier],
                   torch_models: TorchModels | None, batches: dict[str, list[list[str]]],
                   batch_size: int) -> dict[str, Job]:
    jobs = {}
    for order in ORDERS:
        for padding in PADDINGS:
            jobs[inference_label("keras-predict", order, padding)] = keras_predict_job(
                models[padding], batches[order], batch_size)
            jobs[inference_label("frozen", order, padding)] = batches_job(
                frozen[padding], batches[order])
        if torch_models is not None:
            jobs[inference_label("pytorch", order, DYNAMIC)] = batches_job(
                torch_predict(torch_models), batches[order])
    return jobs


def check_outputs_agree(predicts: dict[str, Predict], batch: list[str]) -> float:
    """Raises ValueError unless every engine gives the first one's probabilities on `batch`;
    returns the largest difference."""
    (reference_name, reference), *others = predicts.items()
    expected = np.asarray(reference(batch))
    worst = 0.0
    for name, predict in others:
        diff = float(np.max(np.abs(np.asarray(predict(batch)) - expected)))
        if diff > OUTPUT_ATOL:
            raise ValueError(f"{name} differs from {reference_name} by up to {diff:.2g} on a "
                             f"batch of {len(batch)} sentences; expected at most {OUTPUT_ATOL}: "
                             f"the engines must run the same model (for pytorch: the module "
                             f"must be the default all-MiniLM-L6-v2).")
        worst = max(worst, diff)
    return worst


# === Training jobs ===


class StepClock(keras.callbacks.Callback):
    """Records the time at which each training step ends."""

    def __init__(self):
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def steady_pass(ends: Sequence[float], batch_sizes: Sequence[int]) -> Pass:
    """The steps after the first: the first waits for the input pipeline (and, in Keras,
    for `fit`'s own set-up)."""
    if len(ends) < 2:
        raise ValueError(f"Timing training needs at least 2 steps; found {len(ends)}.")
    steps = np.diff(ends)
    return Pass(float(ends[-1] - ends[0]), int(sum(batch_sizes[1:])), tuple(steps))


def training_batches(examples: Examples, batch_size: int, steps: int,
                     bucket: bool) -> tf.data.Dataset:
    """The first `steps` batches of `make_dataset`, cached: every pass sees the same ones."""
    ds = make_dataset(examples, batch_size=batch_size, shuffle=True, seed=SEED, bucket=bucket)
    return ds.take(steps).cache()


def materialize(ds: tf.data.Dataset) -> list[tuple[list[str], np.ndarray]]:
    """(texts, one-hot labels) of each batch, for PyTorch; checks the batches repeat."""
    first, second = (list(ds.as_numpy_iterator()) for _ in range(2))
    if any(not np.array_equal(a[0], b[0]) for a, b in zip(first, second)):
        raise ValueError("The cached training batches changed between passes; expected the "
                         "same batches in every pass.")
    return [([t.decode() for t in texts], labels) for texts, labels in first]


def build_training_model(module: str, batch_size: int, total_steps: int) -> keras.Model:
    spec = ClassifierSpec(module=module, class_names=CLASSES, pooling="cls",
                          fine_tune_layers=-1, max_seq_length=MAX_SEQ_LENGTH)
    keras.utils.set_random_seed(SEED)
    model = build_classifier(spec)
    compile_classifier(model, TrainConfig(batch_size=batch_size), len(CLASSES),
                       multi_label=False, steps=total_steps)
    return model


def keras_fit_job(model: keras.Model, ds: tf.data.Dataset, batch_sizes: Sequence[int]) -> Job:
    def run() -> Pass:
        clock = StepClock()
        model.fit(ds, epochs=1, callbacks=[clock], verbose=0, shuffle=False)
        return steady_pass(clock.ends, batch_sizes)

    return Job(warm_up=lambda: model.fit(ds.take(WARM_UP_STEPS), epochs=1, verbose=0,
                                         shuffle=False), run=run)


TorchSteps = Callable[[Sequence[tuple[list[str], np.ndarray]]], list[float]]


def torch_trainer(hf_dir: str, torch_models: TorchModels, pairs: bool) -> TorchSteps:
    """Training steps of a fresh BertForSequenceClassification on given batches, as
    `compile_classifier` trains ours: AdamW (lr 5e-5, weight decay 0.01, epsilon 1e-6),
    gradient norm clipped to 1; returns the time each step ended."""
    torch = torch_models.torch
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(
        hf_dir, num_labels=len(CLASSES), dtype=torch.float32).train()
    config = TrainConfig()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay, eps=1e-6)

    def steps(batches: Sequence[tuple[list[str], np.ndarray]]) -> list[float]:
        ends = []
        for texts, labels in batches:
            inputs = torch_models.tokenize(texts, pairs=pairs)
            loss = model(**inputs, labels=torch.from_numpy(labels.argmax(axis=1))).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            ends.append(time.perf_counter())
        return ends

    return steps


def torch_training_job(steps: TorchSteps, batches: list[tuple[list[str], np.ndarray]]) -> Job:
    sizes = [len(texts) for texts, _ in batches]
    return Job(warm_up=lambda: steps(batches[:WARM_UP_STEPS]),
               run=lambda: steady_pass(steps(batches), sizes))


# === Measuring ===


def measure_interleaved(jobs: dict[str, Job], repeats: int, what: str) -> list[Series]:
    """Warms up every job, then runs `repeats` interleaved rounds of timed passes."""
    start = time.perf_counter()
    for job in jobs.values():
        job.warm_up()
    print(f"Warmed up {len(jobs)} {what} configurations in "
          f"{time.perf_counter() - start:.0f}s", flush=True)
    series = [Series(label) for label in jobs]
    for round_index in range(repeats):
        # Rotate the order each round, so slow drifts of the machine's load spread evenly.
        shift = round_index * len(series) // repeats
        for s in series[shift:] + series[:shift]:
            s.passes.append(jobs[s.label].run())
            p = s.passes[-1]
            print(f"  round {round_index + 1}/{repeats}  {s.label:<34} {p.seconds:7.2f}s "
                  f"{p.items / p.seconds:8.1f}/s", flush=True)
    return series


def mean_widths(counts: np.ndarray, batches: Sequence[np.ndarray], padding: str) -> float:
    """The mean padded width of `batches` (the longest row, or MAX_SEQ_LENGTH if fixed)."""
    if padding != DYNAMIC:
        return float(MAX_SEQ_LENGTH)
    return float(np.mean([counts[b].max() for b in batches]))


def targets(series: dict[str, Series]) -> list[Target]:
    """The targets of issue 4 that the measured configurations allow."""
    found = [Target(f"frozen >= 1.3x keras-predict ({order}, {padding})",
                    inference_label("frozen", order, padding),
                    inference_label("keras-predict", order, padding), 1.3)
             for order in ORDERS for padding in PADDINGS]
    found.append(Target("frozen grouped >= pytorch grouped",
                        inference_label("frozen", "grouped", DYNAMIC),
                        inference_label("pytorch", "grouped", DYNAMIC), 1.0))
    found.append(Target(f"training {BUCKETING_TASK}: bucketed >= 1.5x file order",
                        train_label(BUCKETING_TASK, "ours", "bucketed"),
                        train_label(BUCKETING_TASK, "ours", "file"), 1.5))
    for task in TRAIN_TASKS:
        found += [Target(f"training {task}: ours >= pytorch ({order})",
                         train_label(task, "ours", order), train_label(task, "pytorch", order),
                         1.0) for order in TRAIN_ORDERS]
    return [t for t in found if t.faster in series and t.slower in series]


def predict_path_speedup(series: dict[str, Series]) -> float | None:
    """What `bert-layer predict` gains over calling `model.predict` on texts in input order:
    the frozen graph on length-grouped batches / keras-predict in file order (not a
    like-for-like engine comparison: the batches differ)."""
    ours = inference_label("frozen", "grouped", DYNAMIC)
    keras_in_order = inference_label("keras-predict", "file", DYNAMIC)
    if ours not in series or keras_in_order not in series:
        return None
    return series[ours].items_per_s() / series[keras_in_order].items_per_s()


def ratios_to_pytorch(series: dict[str, Series]) -> dict[str, float]:
    """Each of our inference configurations / pytorch on the same batches."""
    ratios = {}
    for label, s in series.items():
        engine, order, padding = label.split("/")
        baseline = inference_label("pytorch", order, DYNAMIC)
        if engine != "pytorch" and baseline in series:
            ratios[label] = s.items_per_s() / series[baseline].items_per_s()
    return ratios


# === Report ===


def machine_info(threads: int, load_at_start: float) -> dict[str, object]:
    versions = {}
    for package in ("tensorflow", "keras", "torch", "transformers"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average_1m_at_start": round(load_at_start, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "versions": versions,
        "threads": threads,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def format_header(info: dict[str, object]) -> str:
    v = info["versions"]
    return (f"Machine: {info['cpu_count']} CPUs ({info['usable_cpus']} usable; load average "
            f"{info['load_average_1m_at_start']} at start, {info['load_average_1m_at_end']} at "
            f"end), {info['processor']}, Python {info['python']}; TensorFlow "
            f"{v['tensorflow']}, Keras {v['keras']}, PyTorch {v['torch']}, transformers "
            f"{v['transformers']}; {info['threads']} threads (TF intra-op "
            f"{info['tf_intra_op_threads']}, inter-op {info['tf_inter_op_threads']} = TF "
            f"default; torch intra-op {info['threads']}, OMP_WAIT_POLICY "
            f"{info['omp_wait_policy']})")


def format_inference(series: Sequence[Series], widths: dict[str, float],
                     to_pytorch: dict[str, float]) -> list[str]:
    lines = [f"{'engine':<14}{'order':<9}{'padding':<11}{'width':>6}{'passes':>7}"
             f"{'best s':>8}{'median s':>9}{'sent/s':>8}{'vs pytorch':>11}"]
    for s in series:
        engine, order, padding = s.label.split("/")
        ratio = f"{to_pytorch[s.label]:.2f}x" if s.label in to_pytorch else ""
        lines.append(f"{engine:<14}{order:<9}{padding:<11}{widths[s.label]:>6.1f}"
                     f"{len(s.passes):>7}{s.best().seconds:>8.2f}{s.median_s():>9.2f}"
                     f"{s.items_per_s():>8.1f}{ratio:>11}")
    return lines


def format_training(series: Sequence[Series], widths: dict[str, float]) -> list[str]:
    lines = [f"{'task':<7}{'engine':<14}{'batches':<10}{'width':>6}{'passes':>7}{'best s':>8}"
             f"{'median s':>9}{'ex/s':>8}"]
    for s in series:
        task, engine, order = s.label.split("/")
        lines.append(f"{task.removeprefix('train-'):<7}{engine:<14}{order:<10}"
                     f"{widths[s.label]:>6.1f}{len(s.passes):>7}"
                     f"{s.best().seconds:>8.2f}{s.median_s():>9.2f}{s.items_per_s():>8.1f}")
    return lines


def evaluate(found: Sequence[Target], series: dict[str, Series]) -> list[dict[str, object]]:
    results = []
    for t in found:
        ratio = series[t.faster].items_per_s() / series[t.slower].items_per_s()
        results.append({"target": t.name, "faster": t.faster, "slower": t.slower,
                        "required": t.ratio, "ratio": ratio, "passed": ratio >= t.ratio})
    return results


def format_targets(results: Sequence[dict[str, object]]) -> list[str]:
    return [f"{r['target']:<50} {r['ratio']:6.3f}x  {'PASS' if r['passed'] else 'FAIL'}"
            for r in results]


def throughput_by_length(series: Series, counts: np.ndarray,
                         batches: Sequence[np.ndarray]) -> dict[str, list[float]]:
    """Per batch: mean packed length and sentences/s (the batch's fastest pass)."""
    seconds = series.best_batch_seconds()
    return {"mean_length": [float(counts[b].mean()) for b in batches],
            "sentences_per_s": [len(b) / s for b, s in zip(batches, seconds)]}


def write_plot(path: Path, curves: dict[str, dict[str, list[float]]], title: str) -> bool:
    """Sentences/s against batch mean length, one line per engine; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot written.", flush=True)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        axes.plot(curve["mean_length"], curve["sentences_per_s"], marker="o", markersize=3,
                  label=name)
    axes.set_xlabel("batch mean sequence length (word pieces, [CLS] and [SEP] included)")
    axes.set_ylabel("sentences / second")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(os.fspath(path), overwrite=True, is_dir=False,
                       suffixes=(".png",)) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return True


def write_json(path: Path, report: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(os.fspath(path), overwrite=True, is_dir=False) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def series_json(series: Series, width: float) -> dict[str, object]:
    return {"label": series.label, "mean_padded_width": width,
            "seconds": [p.seconds for p in series.passes], "items": series.best().items,
            "best_s": series.best().seconds, "median_s": series.median_s(),
            "items_per_s": series.items_per_s()}


# === The benchmark ===


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to run, from the command line."""

    module: Path | None
    checkpoint: Path
    dev: Path
    train_tasks: tuple[str, ...]
    sentences: int | None
    batch_size: int
    repeats: int
    train_steps: int
    threads: int
    torch: bool
    json: Path
    plot: Path

    def __post_init__(self) -> None:
        for name in ("batch_size", "repeats", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1. Received: "
                                 f"{getattr(self, name)}")
        if self.train_steps < 2:
            raise ValueError(f"--train-steps must be at least 2 (the first step is not timed). "
                             f"Received: {self.train_steps}")


def set_threads(threads: int) -> None:
    """TensorFlow's intra-op pool; must run before TensorFlow executes anything."""
    tf.config.threading.set_intra_op_parallelism_threads(threads)


@dataclasses.dataclass
class InferenceResults:
    """Inference series by label, and what the report and the training part need."""

    series: dict[str, Series]
    widths: dict[str, float]  # label -> mean padded width
    curves: dict[str, dict[str, list[float]]]  # engine -> `throughput_by_length`
    count_tokens: Callable[[Sequence[str]], np.ndarray]
    torch_models: TorchModels | None


def engine_predicts(models: dict[str, keras.Model], frozen: dict[str, FrozenClassifier],
                    torch_models: TorchModels | None) -> dict[str, Predict]:
    """engine/padding -> predict, the dynamic keras-predict first (the reference)."""
    predicts: dict[str, Predict] = {}
    for padding in PADDINGS:
        predicts[f"keras-predict/{padding}"] = keras_predict(models[padding])
        predicts[f"frozen/{padding}"] = frozen[padding]
    if torch_models is not None:
        predicts[f"pytorch/{DYNAMIC}"] = torch_predict(torch_models)
    return predicts


def run_inference(module: str, texts: list[str], settings: Settings,
                  folder: str) -> InferenceResults:
    """Builds, freezes and checks every engine, then measures every configuration."""
    models = build_inference_models(module)
    frozen = freeze_all(models, folder)
    indices = {order: batch_indices(texts, order, settings.batch_size) for order in ORDERS}
    batches = {order: [[texts[i] for i in b] for b in indices[order]] for order in ORDERS}
    count_tokens = token_counter(models[DYNAMIC])
    counts = count_tokens(texts)
    torch_models = None
    if settings.torch and torch_importable():
        from bert_layer.export.convert import default_model_dir
        torch_models = load_torch_models(default_model_dir(), settings.threads,
                                         models[DYNAMIC].get_layer("probabilities"))
    predicts = engine_predicts(models, frozen, torch_models)
    worst = check_outputs_agree(predicts, batches["grouped"][0])
    print(f"All {len(predicts)} engines agree on the longest batch (max difference "
          f"{worst:.1e})", flush=True)

    jobs = inference_jobs(models, frozen, torch_models, batches, settings.batch_size)
    series = {s.label: s for s in measure_interleaved(jobs, settings.repeats, "inference")}
    widths = {label: mean_widths(counts, indices[label.split("/")[1]], label.split("/")[2])
              for label in series}
    curves = {engine: throughput_by_length(series[inference_label(engine, "grouped", DYNAMIC)],
                                           counts, indices["grouped"])
              for engine in ("frozen", "pytorch")
              if inference_label(engine, "grouped", DYNAMIC) in series}
    return InferenceResults(series, widths, curves, count_tokens, torch_models)


@dataclasses.dataclass
class TrainingResults:
    series: dict[str, Series]
    widths: dict[str, float]  # label -> mean padded width of the timed steps


TrainingBatches = dict[str, list[tuple[list[str], np.ndarray]]]  # order -> batches


def task_training_jobs(task: TrainTask, module: str, settings: Settings,
                       torch_models: TorchModels | None) -> tuple[dict[str, Job], TrainingBatches]:
    """label -> job for each engine and batch order on `task`, and the batches they train on."""
    examples = load_training_examples(task)
    datasets = {order: training_batches(examples, settings.batch_size, settings.train_steps,
                                        bucket=order == "bucketed") for order in TRAIN_ORDERS}
    batches = {order: materialize(ds) for order, ds in datasets.items()}
    # Every step (warm-ups included) advances the schedule: size it for all of them.
    total_steps = len(TRAIN_ORDERS) * (WARM_UP_STEPS + settings.repeats * settings.train_steps)
    model = build_training_model(module, settings.batch_size, total_steps)
    jobs = {}
    for order in TRAIN_ORDERS:
        sizes = [len(texts) for texts, _ in batches[order]]
        jobs[train_label(task.name, "ours", order)] = keras_fit_job(model, datasets[order], sizes)
    if torch_models is not None:
        from bert_layer.export.convert import default_model_dir
        steps = torch_trainer(default_model_dir(), torch_models,
                              pairs=task.pair_column is not None)
        for order in TRAIN_ORDERS:
            jobs[train_label(task.name, "pytorch", order)] = torch_training_job(
                steps, batches[order])
    return jobs, batches


def run_training(module: str, settings: Settings, torch_models: TorchModels | None,
                 count_tokens: Callable[[Sequence[str]], np.ndarray]) -> TrainingResults:
    """Measures Keras `fit` (and PyTorch) on bucketed and file-order batches, task by task."""
    results = TrainingResults(series={}, widths={})
    for name in settings.train_tasks:
        jobs, batches = task_training_jobs(TRAIN_TASKS[name], module, settings, torch_models)
        # The timed steps: all but the first.
        widths = {order: float(np.mean([count_tokens(texts).max()
                                        for texts, _ in batches[order][1:]]))
                  for order in TRAIN_ORDERS}
        for series in measure_interleaved(jobs, settings.repeats, f"{name} training"):
            results.series[series.label] = series
            results.widths[series.label] = widths[series.label.split("/")[2]]
    return results


@dataclasses.dataclass
class Report:
    """Everything measured, for the table, the JSON and the plot."""

    settings: Settings
    machine: dict[str, object]
    sentences: int
    inference: InferenceResults
    training: TrainingResults
    targets: list[dict[str, object]]
    inference_vs_pytorch: dict[str, float]
    wall_s: float


def format_report(report: Report) -> str:
    settings = report.settings
    return "\n".join([
        format_header(report.machine),
        f"Inference: {report.sentences} sentences of {settings.dev}, batch "
        f"{settings.batch_size}, tokenization included; best of {settings.repeats} passes; "
        f"width = mean padded length; keras-predict = model.predict",
        *format_inference(list(report.inference.series.values()), report.inference.widths,
                          report.inference_vs_pytorch), "",
        f"Training: {settings.train_steps} steps of batch {settings.batch_size}, all layers "
        f"trainable, AdamW; steps 2..{settings.train_steps} timed; from",
        *(f"  {TRAIN_TASKS[name].describe()}" for name in settings.train_tasks),
        *format_training(list(report.training.series.values()), report.training.widths), "",
        "Targets:", *format_targets(report.targets), *format_predict_path(report), "",
        f"Wall time: {report.wall_s:.0f}s"])


def format_predict_path(report: Report) -> list[str]:
    speedup = predict_path_speedup(report.inference.series)
    if speedup is None:
        return []
    return ["", f"For reference, `bert-layer predict` (frozen, length-grouped, results in input "
                f"order) over model.predict on the texts in input order: {speedup:.2f}x"]


def report_json(report: Report) -> dict[str, object]:
    settings = {k: os.fspath(v) if isinstance(v, Path) else v
                for k, v in dataclasses.asdict(report.settings).items()}
    return {"machine": report.machine, "settings": settings, "sentences": report.sentences,
            "inference": [series_json(s, report.inference.widths[s.label])
                          for s in report.inference.series.values()],
            "inference_vs_pytorch": report.inference_vs_pytorch,
            "training": [series_json(s, report.training.widths[s.label])
                         for s in report.training.series.values()],
            "targets": report.targets,
            "predict_path_speedup": predict_path_speedup(report.inference.series),
            "throughput_by_length": report.inference.curves,
            "wall_time_s": report.wall_s}


def run_benchmark(settings: Settings) -> None:
    """Measures inference and training, prints the table, writes the JSON and the plot."""
    set_threads(settings.threads)
    tf.get_logger().setLevel("ERROR")  # The exporter's TF1 deprecation warnings.
    wall_start, load_at_start = time.perf_counter(), os.getloadavg()[0]
    texts = load_texts(settings.dev, settings.sentences)
    with module_folder(settings.module, settings.checkpoint, MAX_SEQ_LENGTH) as module, \
            tempfile.TemporaryDirectory(prefix="bench_frozen_") as folder:
        inference = run_inference(module, texts, settings, folder)
        training = run_training(module, settings, inference.torch_models,
                                inference.count_tokens)
    series = {**inference.series, **training.series}
    report = Report(settings=settings, machine=machine_info(settings.threads, load_at_start),
                    sentences=len(texts), inference=inference, training=training,
                    targets=evaluate(targets(series), series),
                    inference_vs_pytorch=ratios_to_pytorch(inference.series),
                    wall_s=time.perf_counter() - wall_start)
    print("\n" + format_report(report))
    write_json(settings.json, report_json(report))
    print(f"Wrote {settings.json}")
    title = (f"Length-grouped batches of {settings.batch_size}, dynamic padding, "
             f"{settings.threads} threads: {' vs '.join(inference.curves)}")
    if inference.curves and write_plot(settings.plot, inference.curves, title):
        print(f"Wrote {settings.plot}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", type=Path,
                        help="hub module folder (default: export --checkpoint to a temp folder)")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="Google-format checkpoint (default: %(default)s)")
    parser.add_argument("--dev", type=Path, default=DEFAULT_DEV,
                        help="inference sentences (default: %(default)s)")
    parser.add_argument("--train-tasks", nargs="*", choices=sorted(TRAIN_TASKS),
                        default=list(TRAIN_TASKS),
                        help="training throughput on these (default: %(default)s; none "
                        "skips training)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--repeats", type=int, help="timed passes per configuration "
                        f"(default 3; {QUICK['repeats']} with --quick)")
    parser.add_argument("--train-steps", type=int, help="training steps per pass "
                        f"(default 30; {QUICK['train_steps']} with --quick)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="TensorFlow intra-op and torch threads (default: usable CPUs, "
                        "%(default)s)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--quick", action="store_true", help=f"first {QUICK['sentences']} "
                        f"sentences, {QUICK['repeats']} repeat, {QUICK['train_steps']} steps")
    parser.add_argument("--json", type=Path, default=Path("runs", "bench", "bench.json"),
                        help="default: %(default)s")
    parser.add_argument("--plot", type=Path, default=Path("runs", "bench", "throughput.png"),
                        help="PNG of sentences/s against batch length (default: %(default)s)")
    args = parser.parse_args(argv)
    quick = QUICK if args.quick else {"sentences": None, "repeats": 3, "train_steps": 30}
    run_benchmark(Settings(
        module=args.module, checkpoint=args.checkpoint, dev=args.dev,
        train_tasks=tuple(args.train_tasks),
        sentences=quick["sentences"], batch_size=args.batch_size,
        repeats=args.repeats if args.repeats is not None else quick["repeats"],
        train_steps=args.train_steps if args.train_steps is not None else quick["train_steps"],
        threads=args.threads, torch=not args.no_torch, json=args.json, plot=args.plot))


if __name__ == "__main__":
    main()
