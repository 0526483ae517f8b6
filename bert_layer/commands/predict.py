"""`bert-layer predict`: classify texts in length-grouped batches, in input order."""

from __future__ import annotations

import argparse
import functools
import sys
import time

from bert_layer.commands.columns import add_data_columns
from bert_layer.commands.precision import add_precision_argument


def run(args: argparse.Namespace) -> None:
    from bert_layer.examples import read_examples, read_lines
    from bert_layer.outputs import atomic_output, check_output_free
    from bert_layer.classifiers import load_classifier
    from bert_layer.predict import output_format, predict_probabilities, write_predictions

    to_stdout = args.output in (None, "-")
    if not to_stdout:  # Refuse before the work, not after it.
        check_output_free(args.output, args.overwrite)
    if args.input in (None, "-"):
        texts = read_lines(sys.stdin)
    elif args.input.endswith(".txt"):  # One text per line, no header.
        with open(args.input, encoding="utf-8") as f:
            texts = read_lines(f)
    else:
        texts = read_examples(args.input, text_column=args.text_column,
                              pair_column=args.pair_column).texts
    classifier = load_classifier(args.model, precision=args.precision)
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify texts with a frozen graph or saved model.",
                       description="Classifies the texts of a TSV/CSV file (or lines on "
                       "standard input) in length-grouped batches and writes label and "
                       "probabilities per text, in input order, as CSV or JSON lines.")
    p.add_argument("--model", required=True, help="frozen graph (.pb) or saved model (.keras)")
    p.add_argument("--input", help="TSV/CSV file with a header, or a .txt file of one text per line; default: lines on stdin")
    p.add_argument("--output", help="output file (.csv or .jsonl); default: stdout")
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from --output, else csv")
    add_data_columns(p, labels=False)
    p.add_argument("--batch-size", type=int, default=32)
    add_precision_argument(p, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=run)
