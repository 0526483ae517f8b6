"""The end-to-end benchmark: inference and training throughput, ours against PyTorch and ONNX
Runtime, fp32 and bf16, each engine in its own process.

Every engine runs the same model (all-MiniLM-L6-v2 with one fixed, seeded classifier head),
on the same sentences, cut into the same batches (32, grouped by real token count, longest
first), with the same number of threads. Each engine is a process of its own with its
default threading; the harness (`benchlib`) alternates them round by round and stops
(SIGSTOP) every process but the one being timed. Rates are the median over rounds of each
round's median pass.

Inference engines (sentences per second, tokenization included):
  ours-frozen     the graph of `bert-layer freeze [--precision bf16]`, raw strings in, run by
                  `bert_layer.inference.predict.predict_probabilities` (tokenize, group, run,
                  reorder);
  ours-module     the hub module's `tokens` / `tokens_bf16` signature in a BertLayer
                  (tokenize and encode per batch, the head after it);
  ours-tflite     the .tflite of `bert-layer freeze --format tflite [--precision int8]` on
                  LiteRT (XNNPACK), run by `predict_probabilities` as ours-frozen (FullTokenizer
                  in Python, then ids in); int8 is dynamic-range (int8 weights and matmuls);
  pytorch         transformers' BertForSequenceClassification, fast tokenizer, fp32, or
                  bf16 under `torch.autocast`;
  onnxruntime     the same PyTorch model exported to ONNX, fp32; int8: that ONNX file
                  through `onnxruntime.quantization.quantize_dynamic` (QInt8 weights,
                  activations quantized per batch), as ONNX Runtime's BERT guide does.
A matmul engine measures the GEMM rate (fp32 and bf16) on the encoder's own matrix shapes;
the ceiling of each precision is that rate over the model's matmul FLOPs per sentence
(without padding), and each engine is reported as a fraction of it. Every peer computes the
whole encoder; ours run the last layer for the [CLS] row alone (all a classifier reads), so
they can pass 100%.

Training (examples per second): all layers trainable on the same MRPC pair batches, ours
(`compile_classifier`: AdamW, clipped to norm 1) in fp32 and bf16 against PyTorch fp32 and
bf16 autocast (AdamW, the same clipping); the first step of each pass is not timed.

Usage (durations measured on a quiet 2-core machine):
  python scripts/bench.py              # full: about 8 minutes on 2 cores (3 rounds)
  python scripts/bench.py --quick      # 128 sentences, fewer rounds: about 3 minutes
  python scripts/bench.py --module DIR --json out.json --plot out.png
  python scripts/bench.py --rounds 5   # any setting of the full run (or of --quick) changed
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow reads it once, when loaded.

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import benchlib  # noqa: E402
import numpy as np  # noqa: E402
from benchlib import EngineProcess, Label, Pass, Series  # noqa: E402

CLASSES = ("0", "1")
MAX_SEQ_LENGTH = 128
SEED = 0
DEFAULT_DEV = benchlib.DATA_DIR / "sst2" / "glue_dev.tsv"
DEFAULT_TRAIN = benchlib.DATA_DIR / "mrpc" / "train.tsv"
RESULTS = Path(__file__).resolve().parent / "results"  # Committed: the README's figures.
FULL = {"sentences": None, "rounds": 3, "passes": 3, "train_steps": 20, "train_rounds": 3}
QUICK = {"sentences": 128, "rounds": 2, "passes": 1, "train_steps": 4, "train_rounds": 1}
WARM_UP_STEPS = 2
# Probabilities of the first batch must agree with ours-module fp32 this closely. The head is
# untrained (stddev 0.02), so probabilities move ~50x less than the pooled output: float32
# noise is ~1e-7 and bf16's rounding ~1e-3, while a wrong weight or unmasked padding moves
# them by more than 1e-2.
ATOL = {"fp32": 1e-4, "bf16": 5e-3, "int8": 2e-2}

INFERENCE = [Label("inference", e, p) for e, p in (
    ("ours-frozen", "fp32"), ("ours-frozen", "bf16"), ("ours-module", "fp32"),
    ("ours-module", "bf16"), ("ours-tflite", "fp32"), ("ours-tflite", "int8"),
    ("pytorch", "fp32"), ("pytorch", "bf16"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"))]
GEMM = [Label("gemm", "matmul", p) for p in ("fp32", "bf16")]
TRAINING = [Label("train", e, p) for e in ("ours", "pytorch") for p in ("fp32", "bf16")]
OURS = ("ours-frozen", "ours-module", "ours-tflite")
REFERENCE = Label("inference", "ours-module", "fp32")  # Every engine's output is checked on it.


# === Workers: one engine each, in their own process ===


@dataclasses.dataclass(frozen=True)
class Spec:
    """What every worker reads: the files, the sentences and the batches."""

    module: str
    frozen: dict[str, str]  # precision -> .pb
    tflite: dict[str, str]  # precision -> .tflite
    head: str  # .npz with the head's kernel [H, C] and bias [C]
    hf_dir: str
    workdir: str
    threads: int
    texts: list[str]
    batches: list[list[int]]  # indices into texts
    train_batches: list[tuple[list[str], list[int]]]  # (texts "a ||| b", labels)
    gemm_tokens: int  # rows of the GEMM engine's matrices

    def batch_texts(self) -> list[list[str]]:
        return [[self.texts[i] for i in batch] for batch in self.batches]


Loaded = tuple[Callable[[], Pass], dict]  # (one timed pass, the ready answer)


def _set_tf_threads(threads: int) -> None:
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.get_logger().setLevel("ERROR")


def _head(spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    weights = np.load(spec.head)
    return weights["kernel"], weights["bias"]


def load_ours_frozen(spec: Spec, precision: str) -> Loaded:
    _set_tf_threads(spec.threads)
    from bert_layer.inference.predict import predict_probabilities
    from bert_layer.inference.runtimes import FrozenClassifier

    classifier = FrozenClassifier(spec.frozen[precision], precision=precision)
    predict_probabilities(classifier, spec.texts[:64])  # Warm-up.

    def run() -> Pass:
        start = time.perf_counter()
        predict_probabilities(classifier, spec.texts, batch_size=len(spec.batches[0]))
        return Pass(time.perf_counter() - start, len(spec.texts))

    check = classifier(spec.batch_texts()[0])
    return run, {"check": check.tolist()}


def load_ours_tflite(spec: Spec, precision: str) -> Loaded:
    from bert_layer.inference.predict import predict_probabilities
    from bert_layer.inference.runtimes import TFLiteClassifier

    classifier = TFLiteClassifier(spec.tflite[precision], precision=precision,
                                  threads=spec.threads)
    predict_probabilities(classifier, spec.texts[:64])  # Warm-up.

    def run() -> Pass:
        start = time.perf_counter()
        predict_probabilities(classifier, spec.texts, batch_size=len(spec.batches[0]))
        return Pass(time.perf_counter() - start, len(spec.texts))

    return run, {"check": classifier(spec.batch_texts()[0]).tolist()}


def _keras_classifier(spec: Spec, precision: str, fine_tune_layers: int):
    import keras

    from bert_layer.training.classifier import ClassifierSpec, build_classifier

    keras.utils.set_random_seed(SEED)
    model = build_classifier(ClassifierSpec(
        module=spec.module, class_names=CLASSES, fine_tune_layers=fine_tune_layers,
        max_seq_length=MAX_SEQ_LENGTH, precision=precision))
    model.get_layer("probabilities").set_weights(list(_head(spec)))
    return model


def load_ours_module(spec: Spec, precision: str) -> Loaded:
    _set_tf_threads(spec.threads)
    import tensorflow as tf

    model = _keras_classifier(spec, precision, fine_tune_layers=0)
    forward = tf.function(lambda t: model(t, training=False),
                          input_signature=[tf.TensorSpec([None], tf.string)])
    batches = [tf.constant(b) for b in spec.batch_texts()]
    for b in (batches[0], batches[-1]):
        forward(b).numpy()
    run = lambda: benchlib.time_batches(lambda b: forward(b).numpy(), batches)  # noqa: E731
    return run, {"check": forward(batches[0]).numpy().tolist()}


def _torch_model(spec: Spec, train: bool):
    import torch
    import transformers
    from transformers import AutoTokenizer, BertForSequenceClassification

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(spec.threads)
    tokenizer = AutoTokenizer.from_pretrained(spec.hf_dir)
    model = BertForSequenceClassification.from_pretrained(
        spec.hf_dir, num_labels=len(CLASSES), dtype=torch.float32)
    kernel, bias = _head(spec)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(kernel.T.copy()))  # [C, H]
        model.classifier.bias.copy_(torch.from_numpy(bias))
    return tokenizer, model.train(train)


def _tokenize_hf(tokenizer, texts: Sequence[str], tensors: str = "pt"):
    """Pairs, written "first ||| second" for BertLayer, go in as transformers' two lists."""
    from bert_layer.text.pairs import PAIR_SEPARATOR

    kwargs = dict(padding="longest", truncation=True, max_length=MAX_SEQ_LENGTH,
                  return_tensors=tensors)
    if not any(PAIR_SEPARATOR in t for t in texts):
        return tokenizer(list(texts), **kwargs)
    halves = [t.split(PAIR_SEPARATOR) for t in texts]
    return tokenizer([h[0].strip() for h in halves], [h[1].strip() for h in halves],
                     **{**kwargs, "truncation": "longest_first"})


def _autocast(precision: str):
    import contextlib

    import torch
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_pytorch(spec: Spec, precision: str) -> Loaded:
    import torch

    tokenizer, model = _torch_model(spec, train=False)

    def predict(texts: list[str]) -> np.ndarray:
        with torch.inference_mode(), _autocast(precision):
            logits = model(**_tokenize_hf(tokenizer, texts)).logits
        return torch.softmax(logits.float(), dim=-1).numpy()

    batches = spec.batch_texts()
    for b in (batches[0], batches[-1]):
        predict(b)
    run = lambda: benchlib.time_batches(predict, batches)  # noqa: E731
    return run, {"check": predict(batches[0]).tolist()}


def load_onnxruntime(spec: Spec, precision: str) -> Loaded:
    import onnxruntime
    import torch

    tokenizer, model = _torch_model(spec, train=False)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = _tokenize_hf(tokenizer, spec.batch_texts()[0])
    # A file per worker: the fp32 and int8 workers start together, and one reading the
    # other's half-written export fails ("Protobuf parsing failed").
    path = os.path.join(spec.workdir, f"model-for-{precision}.onnx")
    # The TorchScript exporter: dynamic batch and length, no extra dependency (onnxscript).
    torch.onnx.export(model, tuple(example[n] for n in names), path, input_names=names,
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names},
                                    "logits": {0: "batch"}})
    del model
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = os.path.join(spec.workdir, "model.int8.onnx")
        if not os.path.isfile(quantized):
            quantize_dynamic(path, quantized, weight_type=QuantType.QInt8)
        path = quantized
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = spec.threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def predict(texts: list[str]) -> np.ndarray:
        inputs = _tokenize_hf(tokenizer, texts, tensors="np")
        logits = session.run(None, {n: inputs[n].astype(np.int64) for n in names})[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    batches = spec.batch_texts()
    for b in (batches[0], batches[-1]):
        predict(b)
    run = lambda: benchlib.time_batches(predict, batches)  # noqa: E731
    return run, {"check": predict(batches[0]).tolist()}


def encoder_matmul_shapes(tokens: int, config: dict) -> list[tuple[int, int, int]]:
    """(M, K, N) of one encoder layer's dense matmuls on `tokens` rows."""
    h, i = config["hidden_size"], config["intermediate_size"]
    return [(tokens, h, h)] * 4 + [(tokens, h, i), (tokens, i, h)]


def load_gemm(spec: Spec, precision: str) -> Loaded:
    _set_tf_threads(spec.threads)
    import tensorflow as tf

    config = _bert_config(spec.module)
    dtype = tf.bfloat16 if precision == "bf16" else tf.float32
    pairs = [(tf.cast(tf.random.normal([m, k]), dtype), tf.cast(tf.random.normal([k, n]), dtype))
             for m, k, n in encoder_matmul_shapes(spec.gemm_tokens, config)]
    flops = sum(2 * m * k * n for m, k, n in encoder_matmul_shapes(spec.gemm_tokens, config))
    repeats = 20
    layer = tf.function(lambda: tf.add_n([tf.reduce_sum(tf.matmul(a, b)[:1, :1])
                                          for a, b in pairs]))
    layer().numpy()

    def run() -> Pass:
        start = time.perf_counter()
        for _ in range(repeats):
            layer().numpy()
        return Pass(time.perf_counter() - start, flops * repeats)

    return run, {}


def load_ours_training(spec: Spec, precision: str) -> Loaded:
    _set_tf_threads(spec.threads)
    import keras
    import tensorflow as tf

    from bert_layer.training.train import TrainConfig, compile_classifier

    model = _keras_classifier(spec, precision, fine_tune_layers=-1)
    texts = np.array([t for b, _ in spec.train_batches for t in b], dtype=object)
    labels = np.eye(len(CLASSES), dtype=np.float32)[[y for _, b in spec.train_batches
                                                     for y in b]]
    size = len(spec.train_batches[0][0])
    ds = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(size).cache()
    steps = len(spec.train_batches)
    compile_classifier(model, TrainConfig(batch_size=size), len(CLASSES), multi_label=False,
                       steps=1000)

    class StepClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    clock = StepClock()
    model.fit(ds.take(WARM_UP_STEPS), epochs=1, verbose=0)

    def run() -> Pass:
        model.fit(ds, epochs=1, verbose=0, callbacks=[clock])
        return _steady_pass(clock.ends, size, steps)

    return run, {}


def load_pytorch_training(spec: Spec, precision: str) -> Loaded:
    import torch

    tokenizer, model = _torch_model(spec, train=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, eps=1e-6)

    def steps(batches) -> list[float]:
        ends = []
        for texts, labels in batches:
            with _autocast(precision):
                loss = model(**_tokenize_hf(tokenizer, texts),
                             labels=torch.tensor(labels)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            ends.append(time.perf_counter())
        return ends

    steps(spec.train_batches[:WARM_UP_STEPS])
    size = len(spec.train_batches[0][0])
    return (lambda: _steady_pass(steps(spec.train_batches), size,
                                 len(spec.train_batches))), {}


def _steady_pass(ends: Sequence[float], batch_size: int, steps: int) -> Pass:
    """Steps 2..n (the first waits for the input pipeline and fit's own set-up)."""
    if len(ends) != steps or steps < 2:
        raise ValueError(f"Expected {steps} >= 2 timed steps; found {len(ends)}.")
    return Pass(ends[-1] - ends[0], batch_size * (steps - 1), tuple(np.diff(ends)))


LOADERS = {("inference", "ours-frozen"): load_ours_frozen,
           ("inference", "ours-module"): load_ours_module,
           ("inference", "pytorch"): load_pytorch,
           ("inference", "onnxruntime"): load_onnxruntime,
           ("inference", "ours-tflite"): load_ours_tflite,
           ("gemm", "matmul"): load_gemm,
           ("train", "ours"): load_ours_training,
           ("train", "pytorch"): load_pytorch_training}


def worker_main(task: str, engine: str, precision: str, spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as f:
        spec = Spec(**json.load(f))
    benchlib.serve(lambda: LOADERS[task, engine](spec, precision))


def start_worker(label: Label, spec_path: str) -> EngineProcess:
    log = os.path.join(os.path.dirname(spec_path), f"{label.task}-{label.engine}-"
                       f"{label.precision}.log")
    return EngineProcess(label, [sys.executable, os.path.abspath(__file__), "--worker",
                                 label.task, label.engine, label.precision, spec_path], log)


# === The parent: preparation, measuring, report ===


def _bert_config(module: str) -> dict:
    with open(os.path.join(module, "assets", "bert_config.json"), encoding="utf-8") as f:
        return json.load(f)


def matmul_flops(counts: np.ndarray, config: dict) -> float:
    """The encoder's and pooler's matmul FLOPs for sentences of `counts` tokens, unpadded."""
    h, i, layers = config["hidden_size"], config["intermediate_size"], \
        config["num_hidden_layers"]
    counts = counts.astype(np.float64)
    per_layer = 2 * counts * (4 * h * h + 2 * h * i) + 4 * counts ** 2 * h  # dense + attention
    return float(np.sum(layers * per_layer + 2 * h * h))


def prepare(module: str, workdir: str, settings: argparse.Namespace,
            quick: dict) -> tuple[Spec, np.ndarray]:
    """Freezes the classifier in both precisions, writes its head, cuts the batches; returns
    the spec and the token count of each sentence."""
    import keras
    import tensorflow as tf

    from bert_layer.data.batching import length_grouped_batches
    from bert_layer.data.examples import read_examples
    from bert_layer.export.convert import default_model_dir
    from bert_layer.inference.freeze import freeze_model
    from bert_layer.inference.runtimes import FrozenClassifier
    from bert_layer.inference.tflite import write_tflite
    from bert_layer.layers.precision import with_precision
    from bert_layer.training.classifier import ClassifierSpec, build_classifier

    tf.get_logger().setLevel("ERROR")
    texts = read_examples(os.fspath(settings.dev), text_column="sentence").texts
    texts = texts[:quick["sentences"]] if quick["sentences"] else texts
    keras.utils.set_random_seed(SEED)
    model = build_classifier(ClassifierSpec(module=module, class_names=CLASSES,
                                            fine_tune_layers=0, max_seq_length=MAX_SEQ_LENGTH))
    kernel, bias = model.get_layer("probabilities").get_weights()
    head = os.path.join(workdir, "head.npz")
    np.savez(head, kernel=kernel, bias=bias)
    frozen = {}
    for precision in ("fp32", "bf16"):
        start = time.perf_counter()
        frozen[precision] = os.path.join(workdir, f"{precision}.pb")
        freeze_model(with_precision(model, precision), frozen[precision],
                     class_names=list(CLASSES))
        print(f"Froze the {precision} classifier in {time.perf_counter() - start:.0f}s",
              flush=True)
    tflite = {}
    for precision in ("fp32", "int8"):
        start = time.perf_counter()
        tflite[precision] = os.path.join(workdir, f"{precision}.tflite")
        write_tflite(model, tflite[precision], class_names=list(CLASSES), precision=precision)
        print(f"Converted the classifier to TFLite {precision} in "
              f"{time.perf_counter() - start:.0f}s ({os.path.getsize(tflite[precision]):,} "
              f"bytes)", flush=True)
    tokenizer = FrozenClassifier(frozen["fp32"])
    counts = tokenizer.tokenize(texts)["input_mask"].sum(axis=1)
    batches = length_grouped_batches(counts, settings.batch_size)
    train = read_examples(os.fspath(settings.train), text_column="#1 String",
                          pair_column="#2 String", label_column="Quality", labels=["0", "1"])
    order = np.random.default_rng(SEED).permutation(len(train))
    chosen = order[:quick["train_steps"] * settings.batch_size]
    train_counts = tokenizer.tokenize([train.texts[i] for i in chosen])["input_mask"].sum(axis=1)
    train_batches = [([train.texts[chosen[j]] for j in b],
                      [int(train.labels[chosen[j]]) for j in b])
                     for b in length_grouped_batches(train_counts, settings.batch_size)]
    return Spec(module=module, frozen=frozen, tflite=tflite, head=head, hf_dir=default_model_dir(),
                workdir=workdir, threads=settings.threads, texts=texts,
                batches=[b.tolist() for b in batches], train_batches=train_batches,
                gemm_tokens=int(np.mean([counts[b].max() for b in batches]))
                * settings.batch_size), counts


def check_agreement(workers: Sequence[EngineProcess]) -> dict[str, float]:
    """Max |probability difference| of each engine to ours-module fp32 on the first batch;
    raises ValueError beyond ATOL."""
    reference = next(np.array(w.ready["check"]) for w in workers
                     if w.label == REFERENCE)
    worst = {}
    for w in workers:
        if "check" not in w.ready:
            continue
        diff = float(np.abs(np.array(w.ready["check"]) - reference).max())
        worst[str(w.label)] = diff
        if diff > ATOL[w.label.precision]:
            raise ValueError(f"{w.label} differs from ours-module fp32 by {diff:.2g} on the "
                             f"first batch; expected at most {ATOL[w.label.precision]}: every "
                             f"engine must run the same model.")
    return worst


def measure(labels: Sequence[Label], spec_path: str, rounds: int, passes: int,
            what: str) -> tuple[dict[Label, Series], dict[str, float]]:
    workers = [start_worker(label, spec_path) for label in labels]
    with benchlib.started(workers):
        agreement = check_agreement(workers) if what == "inference" else {}
        if agreement:
            print("Engines agree with ours-module fp32 on the first batch: " + ", ".join(
                f"{k} {v:.1e}" for k, v in agreement.items()), flush=True)
        series = benchlib.measure_in_processes(workers, rounds, passes, what,
                                               units={"gemm": (1e9, "GFLOP/s")})
    return {s.label: s for s in series}, agreement


def summarize(series: dict[Label, Series], flops_per_sentence: float) -> dict[str, object]:
    """Rates, ours over each peer, and each engine's fraction of its precision's ceiling."""
    rate = {label: s.rate() for label, s in series.items()}
    ceilings = {label.precision: r / flops_per_sentence for label, r in rate.items()
                if label.task == "gemm"}
    inference = [l for l in rate if l.task == "inference"]
    training = [l for l in rate if l.task == "train"]
    peers = [l for l in inference if l.engine not in OURS]
    return {
        "rates": {str(l): rate[l] for l in inference},
        "gemm_gflops": {l.precision: rate[l] / 1e9 for l in rate if l.task == "gemm"},
        "ceilings": ceilings,
        "fraction_of_ceiling": {str(l): rate[l] / ceilings[l.precision] for l in inference
                                if l.precision in ceilings},
        "ratios": {str(o): {str(p): rate[o] / rate[p] for p in peers}
                   for o in inference if o.engine in OURS},
        "frozen_over_module": {p: rate[Label("inference", "ours-frozen", p)]
                               / rate[Label("inference", "ours-module", p)]
                               for p in ("fp32", "bf16")
                               if Label("inference", "ours-module", p) in rate
                               and Label("inference", "ours-frozen", p) in rate},
        "training_rates": {str(l): rate[l] for l in training},
        "training_ratios": {str(o): {str(p): rate[o] / rate[p] for p in training
                                     if p.engine != "ours"}
                            for o in training if o.engine == "ours"},
    }


def format_table(summary: dict[str, object], header: str) -> str:
    peers = list(next(iter(summary["ratios"].values()), {}))
    lines = [header, "", f"{'inference':<24}{'sent/s':>9}{'ceiling':>9}  "
             + "".join(f"{'/' + p:>19}" for p in peers)]
    for label, rate in summary["rates"].items():
        ratios = summary["ratios"].get(label, {})
        fraction = summary["fraction_of_ceiling"].get(label)  # None: no int8 ceiling.
        lines.append(f"{label:<24}{rate:>9.1f}"
                     f"{'-' if fraction is None else format(fraction, '.0%'):>9}"
                     "  " + "".join(f"{ratios[p]:>18.2f}x" if p in ratios else f"{'':>19}"
                                    for p in peers))
    lines.append("ceiling = the rate a GEMM at the measured matmul rate ("
                 + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in summary["gemm_gflops"].items())
                 + ") would reach on the unpadded matmul FLOPs of the whole encoder (ours"
                 " run the last layer for [CLS] alone, ~14% fewer FLOPs, so can pass 100%)")
    lines.append("frozen / module: " + ", ".join(
        f"{p} {r:.3f}" for p, r in summary["frozen_over_module"].items()))
    if summary["training_rates"]:
        peers = list(next(iter(summary["training_ratios"].values())))
        lines += ["", f"{'training':<24}{'ex/s':>9}  "
                  + "".join(f"{'/' + p:>19}" for p in peers)]
        for label, rate in summary["training_rates"].items():
            ratios = summary["training_ratios"].get(label, {})
            lines.append(f"{label:<24}{rate:>9.1f}  " + "".join(
                f"{ratios[p]:>18.2f}x" for p in peers if p in ratios))
    return "\n".join(line.rstrip() for line in lines)


def write_plot(path: Path, summary: dict[str, object], title: str) -> bool:
    """Bars of sentences/s per engine, with each precision's ceiling; False without
    matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot written.", flush=True)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, rates = list(summary["rates"]), list(summary["rates"].values())
    colors = ["tab:blue" if label.startswith("ours") else "tab:gray" for label in labels]
    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    axes.barh(labels, rates, color=colors)
    for precision, style in (("fp32", "--"), ("bf16", ":")):
        if precision in summary["ceilings"]:
            axes.axvline(summary["ceilings"][precision], color="black", linestyle=style,
                         label=f"{precision} ceiling (measured GEMM rate)")
    axes.set_xlabel("sentences / second (tokenization included)")
    axes.set_title(title, fontsize=9)
    axes.invert_yaxis()
    axes.legend(fontsize=8)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    from bert_layer.outputs import atomic_output
    with atomic_output(os.fspath(path), overwrite=True, is_dir=False,
                       suffixes=(".png",)) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return True


def run_benchmark(args: argparse.Namespace) -> None:
    quick = {name: value if getattr(args, name) is None else getattr(args, name)
             for name, value in (QUICK if args.quick else FULL).items()}
    wall = time.perf_counter()
    info = benchlib.machine_info(args.threads)
    with benchlib.module_folder(args.module, args.checkpoint, MAX_SEQ_LENGTH) as module, \
            tempfile.TemporaryDirectory(prefix="bench_") as workdir:
        spec, counts = prepare(module, workdir, args, quick)
        spec_path = os.path.join(workdir, "spec.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(spec), f)
        print(f"{len(spec.texts)} sentences in {len(spec.batches)} batches; starting "
              f"{len(INFERENCE) + len(GEMM)} engine processes at most", flush=True)
        inference = [label for label in INFERENCE
                     if not args.engines or label == REFERENCE
                     or f"{label.engine}:{label.precision}" in args.engines]
        series, agreement = measure(inference + GEMM, spec_path, quick["rounds"],
                                    quick["passes"], "inference")
        if not args.no_training:
            trained, _ = measure(TRAINING, spec_path, quick["train_rounds"], 1, "train")
            series.update(trained)
        flops = matmul_flops(counts, _bert_config(module)) / len(counts)
    summary = summarize(series, flops)
    header = (f"{benchlib.format_machine(info)}\n{len(spec.texts)} sentences of {args.dev}, "
              f"batches of {args.batch_size} grouped by token count, {args.threads} threads, "
              f"each engine in its own process; median of {quick['rounds']} rounds x "
              f"{quick['passes']} passes; {flops / 1e9:.2f} GFLOP of matmuls per sentence\n"
              f"training: {quick['train_steps']} steps of {args.batch_size} MRPC pairs "
              f"(steps 2.. timed), all layers, {quick['train_rounds']} rounds")
    print("\n" + format_table(summary, header))
    report = {"machine": info, "settings": {**{k: os.fspath(v) if isinstance(v, Path) else v
                                               for k, v in vars(args).items()}, **quick},
              "sentences": len(spec.texts), "flops_per_sentence": flops,
              "agreement": agreement, "summary": summary,
              "series": [s.as_json() for s in series.values()],
              "wall_time_s": time.perf_counter() - wall}
    benchlib.write_json(args.json, report)
    print(f"\nWall time {report['wall_time_s']:.0f}s. Wrote {args.json}")
    if write_plot(args.plot, summary, f"{len(spec.texts)} SST-2 sentences, batch "
                  f"{args.batch_size}, {args.threads} threads, {info['cpu']}"):
        print(f"Wrote {args.plot}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker_main(*argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", type=Path,
                        help="hub module folder (default: export --checkpoint to a temp folder)")
    parser.add_argument("--checkpoint", type=Path, default=benchlib.DEFAULT_CHECKPOINT,
                        help="Google-format checkpoint (default: %(default)s)")
    parser.add_argument("--dev", type=Path, default=DEFAULT_DEV, help="default: %(default)s")
    parser.add_argument("--train", type=Path, default=DEFAULT_TRAIN,
                        help="MRPC training pairs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads of every engine (default: usable CPUs, %(default)s)")
    parser.add_argument("--no-training", action="store_true", help="inference only")
    parser.add_argument("--engines", type=lambda v: v.split(","),
                        help="inference engines to run, as ENGINE:PRECISION separated by "
                        "commas (ours-module:fp32, the reference, always runs); default: all "
                        f"of {', '.join(f'{l.engine}:{l.precision}' for l in INFERENCE)}")
    parser.add_argument("--quick", action="store_true",
                        help=f"for development: {QUICK} instead of {FULL}")
    for name in FULL:  # Each setting of --quick / the full run, one at a time.
        parser.add_argument(f"--{name.replace('_', '-')}", type=int,
                            help=f"override (full: {FULL[name] or 'all'}, "
                            f"quick: {QUICK[name]})")
    parser.add_argument("--json", type=Path, help=f"default: {RESULTS / 'bench.json'} for the "
                        f"full run (the README's table comes from it), runs/bench/ with --quick")
    parser.add_argument("--plot", type=Path, help="PNG of the rates; default: beside --json")
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = Path("runs", "bench", "quick.json") if args.quick else RESULTS / "bench.json"
    if args.plot is None:
        args.plot = args.json.with_suffix(".png")
    too_small = [f"--{name.replace('_', '-')} {getattr(args, name)}"
                 for name, least in (("batch_size", 1), ("threads", 1), ("sentences", 1),
                                     ("rounds", 1), ("passes", 1), ("train_steps", 2),
                                     ("train_rounds", 1))
                 if getattr(args, name) is not None and getattr(args, name) < least]
    if too_small:
        parser.error(f"expected at least 1 (2 for --train-steps: the first is not timed); "
                     f"received {', '.join(too_small)}")
    run_benchmark(args)


if __name__ == "__main__":
    main()
