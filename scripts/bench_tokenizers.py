"""Core-ops WordPiece against tensorflow-text's FastWordpiece: alone, and end to end.

Prints, in one run on SST-2 dev (batches of 32 in file order):
  1. each in-graph tokenizer alone, in a tf.function: median milliseconds per batch
     ("graph": GraphTokenizer, FastWordpiece; "core": CoreTokenizer, core ops only);
  2. end to end: one MiniLM classifier (random head) frozen twice, with each tokenizer, run as
     `bert-layer predict` runs a frozen graph (raw strings in, probabilities out): sentences/s.
Passes alternate between the two, so that load on a shared machine hits both alike.

Usage:
  python scripts/bench_tokenizers.py [--module DIR | --checkpoint DIR] [--repeats 3] [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow reads it once, when loaded.

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import tensorflow as tf  # noqa: E402
from benchlib import module_folder  # noqa: E402

from bert_layer.choices import DEFAULT_MAX_SEQ_LENGTH  # noqa: E402
from bert_layer.data.examples import read_examples  # noqa: E402
from bert_layer.inference.freeze import freeze_model  # noqa: E402
from bert_layer.inference.runtimes import FrozenClassifier  # noqa: E402
from bert_layer.layers.hub_module import HubModule  # noqa: E402
from bert_layer.text.tokenizer import make_tokenizer  # noqa: E402
from bert_layer.training.classifier import ClassifierSpec, build_classifier  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = PROJECT_ROOT / "checkpoints" / "all-minilm-l6-v2"
DEFAULT_DEV = PROJECT_ROOT.parent / "shared" / "data" / "sst2" / "glue_dev.tsv"
KINDS = ("graph", "core")
BATCH_SIZE = 32
MAX_SEQ_LENGTH = DEFAULT_MAX_SEQ_LENGTH


def batches_of(texts: list[str]) -> list[list[str]]:
    return [texts[i:i + BATCH_SIZE] for i in range(0, len(texts), BATCH_SIZE)]


def tokenizer_ms(module: str, batches: list[list[str]], repeats: int) -> dict[str, float]:
    """Median ms per batch of each tokenizer, over `repeats` alternating passes."""
    info = HubModule(module).tokenization_info()
    spec = [tf.TensorSpec([None], tf.string)]
    runs = {kind: tf.function(make_tokenizer(kind, info.vocab_file, info.do_lower_case).tokenize,
                              input_signature=spec) for kind in KINDS}
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for kind, run in runs.items():  # Warm-up: tracing and first runs.
        for batch in batches[:3]:
            run(tf.constant(batch)).flat_values.numpy()
    for _ in range(repeats):
        for kind, run in runs.items():
            for batch in batches:
                texts = tf.constant(batch)
                start = time.perf_counter()
                run(texts).flat_values.numpy()
                times[kind].append(time.perf_counter() - start)
    return {kind: 1000 * statistics.median(t) for kind, t in times.items()}


def end_to_end(module: str, batches: list[list[str]], repeats: int,
               folder: str) -> dict[str, float]:
    """Sentences/s of the classifier frozen with each tokenizer (best of `repeats` passes)."""
    model = build_classifier(ClassifierSpec(module=module, class_names=("neg", "pos"),
                                            max_seq_length=MAX_SEQ_LENGTH))
    classifiers = {}
    for kind in KINDS:
        path = os.path.join(folder, f"{kind}.pb")
        freeze_model(model, path, class_names=["neg", "pos"], tokenizer=kind)
        classifiers[kind] = FrozenClassifier(path)
        classifiers[kind](batches[0])  # Warm-up.
    n = sum(len(b) for b in batches)
    best = {kind: 0.0 for kind in KINDS}
    for _ in range(repeats):
        for kind, classifier in classifiers.items():
            start = time.perf_counter()
            for batch in batches:
                classifier(batch)
            best[kind] = max(best[kind], n / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--module", type=Path, help="hub module (default: export --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--dev", type=Path, default=DEFAULT_DEV, help="SST-2 dev TSV")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="first 256 sentences only")
    args = parser.parse_args()
    texts = read_examples(str(args.dev), text_column="sentence").texts
    texts = texts[:256] if args.quick else texts
    batches = batches_of(texts)
    start = time.perf_counter()
    with module_folder(args.module, args.checkpoint, MAX_SEQ_LENGTH) as module, \
            tempfile.TemporaryDirectory(prefix="bench_tokenizers_") as folder:
        ms = tokenizer_ms(module, batches, args.repeats)
        rates = end_to_end(module, batches, args.repeats, folder)
    print(f"\nSST-2 dev: {len(texts)} sentences, batches of {BATCH_SIZE}, {args.repeats} "
          f"passes, {os.cpu_count()} CPUs visible (shared machines: indicative only)")
    print(f"{'tokenizer':<10}{'ms/batch alone':>16}{'frozen graph sentences/s':>27}")
    for kind in KINDS:
        print(f"{kind:<10}{ms[kind]:>16.2f}{rates[kind]:>27.1f}")
    print(f"core/graph: tokenizer x{ms['core'] / ms['graph']:.2f}, end to end "
          f"{100 * (rates['core'] / rates['graph'] - 1):+.1f}% "
          f"(measured in {time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
    main()
