"""Which int8 route is fastest on this CPU: a paired measurement in one process.

The classifier of scripts/bench.py (all-MiniLM-L6-v2, one seeded head) runs ids ->
probabilities on the same tokenized SST-2 dev sentences, in the same length-grouped batches,
through every route, one pass each per round, the routes alternating within the round; each
route's speed is reported as the median over rounds of its pass-time ratio to the frozen fp32
graph's pass in the same round (so a machine busy for a while moves both sides).

Routes:
  tf-fp32          the frozen graph of `bert-layer freeze` (ids fed at the tokenizer's outputs)
  tflite-fp32      `freeze --format tflite` on LiteRT (XNNPACK)
  tflite-int8      `--precision int8`: dynamic range (int8 weights, activations per batch)
  tflite-int8-static  full integer: activations quantized with ranges calibrated on
                   `--calibration` texts (the converter's representative dataset)
  ort-int8         the same weights in PyTorch, exported to ONNX, `quantize_dynamic` QInt8
TensorFlow's own int8 kernels are measured per matmul, on the encoder's dense shapes: fp32
MatMul against QuantizeV2 -> Dequantize -> MatMul (the pattern oneDNN's remapper fuses into
its int8 matmul, as Intel's Neural Compressor writes it) and against QuantizedMatMul; a
route slower per matmul than fp32 cannot win end to end.

  python scripts/bench_int8.py                 # 256 sentences, 7 rounds (~3 min on 2 cores)
  python scripts/bench_int8.py --sentences 0   # all 872
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import benchlib  # noqa: E402
import numpy as np  # noqa: E402

CLASSES = ("0", "1")
SEED = 0
RESULTS = Path(__file__).resolve().parent / "results"


def _classifier(module: str):
    import keras

    from bert_layer.training.classifier import ClassifierSpec, build_classifier

    keras.utils.set_random_seed(SEED)
    return build_classifier(ClassifierSpec(module=module, class_names=CLASSES,
                                           fine_tune_layers=0, max_seq_length=128))


def _ort_int8(model, workdir: str, features: dict):
    """ONNX Runtime on the PyTorch BERT of the same weights and head, QInt8 dynamic."""
    import onnxruntime
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import BertForSequenceClassification

    from bert_layer.export.convert import default_model_dir

    transformers.logging.set_verbosity_error()
    torch_model = BertForSequenceClassification.from_pretrained(
        default_model_dir(), num_labels=len(CLASSES), dtype=torch.float32).eval()
    kernel, bias = model.get_layer("probabilities").get_weights()
    with torch.no_grad():
        torch_model.classifier.weight.copy_(torch.from_numpy(kernel.T.copy()))
        torch_model.classifier.bias.copy_(torch.from_numpy(bias))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    ours = ["input_ids", "input_mask", "segment_ids"]
    example = tuple(torch.from_numpy(features[n][:2].astype(np.int64)) for n in ours)
    path, quantized = os.path.join(workdir, "model.onnx"), os.path.join(workdir, "int8.onnx")
    torch.onnx.export(torch_model, example, path, input_names=names, output_names=["logits"],
                      opset_version=17, dynamo=False,
                      dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names},
                                    "logits": {0: "batch"}})
    quantize_dynamic(path, quantized, weight_type=QuantType.QInt8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    session = onnxruntime.InferenceSession(quantized, options,
                                           providers=["CPUExecutionProvider"])

    def run(batch: dict) -> np.ndarray:
        logits = session.run(None, {n: batch[o].astype(np.int64)
                                    for n, o in zip(names, ours)})[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return run, os.path.getsize(quantized), os.path.getsize(path)


def tf_int8_matmuls(hidden: int, intermediate: int, rows: int, rounds: int) -> dict:
    """Per dense shape of the encoder: TF's int8 routes' speed over fp32 MatMul (paired)."""
    import tensorflow as tf

    rng = np.random.default_rng(SEED)
    results = {}
    for k, n in ((hidden, hidden), (hidden, intermediate), (intermediate, hidden)):
        a = tf.constant(rng.normal(size=(rows, k)).astype(np.float32))
        w = rng.normal(size=(k, n)).astype(np.float32) * 0.05
        top = float(np.abs(w).max())
        wf, wq = tf.constant(w), tf.quantization.quantize(
            tf.constant(w), -top, top, tf.qint8, mode="SCALED", narrow_range=True).output
        wq8 = tf.quantization.quantize(wf, -top, top, tf.quint8, mode="MIN_FIRST")

        def activations():
            return tf.quantization.quantize(a, tf.reduce_min(a), tf.reduce_max(a), tf.quint8,
                                            mode="MIN_FIRST")

        fp32 = tf.function(lambda: tf.matmul(a, wf))

        @tf.function
        def qdq():
            q = activations()
            return tf.matmul(
                tf.quantization.dequantize(q.output, q.output_min, q.output_max,
                                           mode="MIN_FIRST"),
                tf.quantization.dequantize(wq, -top, top, mode="SCALED", narrow_range=True))

        @tf.function
        def quantized_matmul():
            q = activations()
            r = tf.raw_ops.QuantizedMatMul(a=q.output, b=wq8.output, min_a=q.output_min,
                                           max_a=q.output_max, min_b=wq8.output_min,
                                           max_b=wq8.output_max, Toutput=tf.qint32)
            return tf.quantization.dequantize(r.out, r.min_out, r.max_out, mode="MIN_FIRST")

        routes = {"qdq": qdq, "QuantizedMatMul": quantized_matmul}
        for f in (fp32, *routes.values()):
            f().numpy()
        ratios = {name: [] for name in routes}
        for _ in range(rounds):
            for name, f in routes.items():
                start = time.perf_counter()
                for _ in range(5):
                    fp32().numpy()
                middle = time.perf_counter()
                for _ in range(5):
                    f().numpy()
                ratios[name].append((middle - start) / (time.perf_counter() - middle))
        results[f"{rows}x{k}x{n}"] = {name: float(np.median(r)) for name, r in ratios.items()}
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=benchlib.DEFAULT_CHECKPOINT)
    parser.add_argument("--dev", type=Path,
                        default=benchlib.DATA_DIR / "sst2" / "glue_dev.tsv")
    parser.add_argument("--calibration", type=Path,
                        default=benchlib.DATA_DIR / "sst2" / "train.tsv",
                        help="texts for the static ranges (column `sentence`); default: "
                        "%(default)s")
    parser.add_argument("--calibration-rows", type=int, default=200)
    parser.add_argument("--sentences", type=int, default=256, help="0: all")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_int8.json")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from bert_layer.data.batching import length_grouped_batches
    from bert_layer.data.examples import read_examples
    from bert_layer.inference.freeze import freeze_model
    from bert_layer.inference.runtimes import FrozenClassifier, TFLiteClassifier
    from bert_layer.inference.tflite import convert, write_tflite

    threads = len(os.sched_getaffinity(0))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.get_logger().setLevel("ERROR")
    info = benchlib.machine_info(threads)
    texts = read_examples(os.fspath(args.dev), text_column="sentence").texts
    texts = texts[:args.sentences] if args.sentences else texts
    calibration = read_examples(os.fspath(args.calibration),
                                text_column="sentence").texts[:args.calibration_rows]
    with benchlib.module_folder(None, args.checkpoint, 128) as module, \
            tempfile.TemporaryDirectory(prefix="bench_int8_") as workdir:
        model = _classifier(module)
        paths = {"tf-fp32": os.path.join(workdir, "fp32.pb")}
        freeze_model(model, paths["tf-fp32"], class_names=list(CLASSES))
        frozen = FrozenClassifier(paths["tf-fp32"])
        features = frozen.tokenize(texts)
        lengths = features["input_mask"].sum(axis=1)
        batches = [{k: v[b, :lengths[b].max()] for k, v in features.items()}
                   for b in length_grouped_batches(lengths, args.batch_size)]
        runs, sizes = {"tf-fp32": frozen.run_ids}, {"tf-fp32": os.path.getsize(paths["tf-fp32"])}
        for precision in ("fp32", "int8"):
            path = os.path.join(workdir, f"{precision}.tflite")
            write_tflite(model, path, class_names=list(CLASSES), precision=precision)
            runs[f"tflite-{precision}"] = TFLiteClassifier(path, threads=threads).run_ids
            sizes[f"tflite-{precision}"] = os.path.getsize(path)
        sizes["tflite-fp32 (no metadata)"] = len(convert(model, "fp32"))
        path = os.path.join(workdir, "static.tflite")
        write_tflite(model, path, class_names=list(CLASSES), precision="int8",
                     calibration_texts=calibration)
        runs["tflite-int8-static"] = TFLiteClassifier(path, threads=threads).run_ids
        sizes["tflite-int8-static"] = os.path.getsize(path)
        try:
            runs["ort-int8"], sizes["ort-int8"], sizes["ort-fp32"] = _ort_int8(model, workdir,
                                                                               features)
        except ImportError as e:
            print(f"ONNX Runtime or PyTorch missing ({e}): no ort-int8 route.", flush=True)
        reference = np.concatenate([runs["tf-fp32"](b) for b in batches])
        fidelity = {}
        for name, run in runs.items():
            found = np.concatenate([run(b) for b in batches])
            fidelity[name] = {"max_abs_diff": float(np.abs(found - reference).max()),
                              "label_agreement": float(np.mean(found.argmax(1)
                                                               == reference.argmax(1)))}
        times = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                for b in batches:
                    run(b)
                times[name].append(time.perf_counter() - start)
        config = json.loads(Path(module, "assets", "bert_config.json").read_text())
        rows = int(np.mean([b["input_ids"].size for b in batches]))
        matmuls = tf_int8_matmuls(config["hidden_size"], config["intermediate_size"], rows,
                                  args.rounds)
    base = np.array(times["tf-fp32"])
    summary = {name: {"sentences_per_s": len(texts) / float(np.median(t)),
                      "speed_over_tf_fp32": float(np.median(base / np.array(t))),
                      "bytes": sizes.get(name), **fidelity[name]}
               for name, t in times.items()}
    print(benchlib.format_machine(info))
    print(f"{len(texts)} SST-2 dev sentences in {len(batches)} batches of {args.batch_size}, "
          f"{threads} threads, ids -> probabilities (tokenized once, outside the timing); "
          f"median over {args.rounds} alternating rounds of each route's ratio to tf-fp32 in "
          f"the same round\n")
    print(f"{'route':<22}{'sent/s':>9}{'x tf-fp32':>11}{'MB':>8}{'max|dp|':>10}{'labels':>8}")
    for name, s in summary.items():
        size = f"{s['bytes'] / 1e6:.1f}" if s["bytes"] else "?"
        print(f"{name:<22}{s['sentences_per_s']:>9.1f}{s['speed_over_tf_fp32']:>10.2f}x"
              f"{size:>8}{s['max_abs_diff']:>10.1e}{s['label_agreement']:>8.1%}")
    print(f"\nTensorFlow 2.21's int8 matmuls, speed over fp32 MatMul (paired, {args.rounds} "
          f"rounds), on the encoder's dense shapes (rows = a mean batch's tokens):")
    for shape, ratios in matmuls.items():
        print(f"  {shape:<16}" + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    benchlib.write_json(args.json, {"machine": info, "settings": {k: os.fspath(v) if isinstance(
        v, Path) else v for k, v in vars(args).items()}, "routes": summary,
        "fp32_bytes": sizes, "tf_int8_matmuls": matmuls})
    print(f"\nWrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
