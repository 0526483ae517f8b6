"""`bert-layer evaluate`: score a trained model on a labelled TSV/CSV file."""

from __future__ import annotations

import argparse
import json
import sys

from bert_layer.cli.columns import add_data_columns, add_label_column

EVALUATION_SUFFIXES = (".json",)  # What --overwrite may replace.


def check(args: argparse.Namespace) -> None:
    """Model path, input and output paths, before TensorFlow loads."""
    import os

    from bert_layer.inference.formats import (
        FROZEN_SUFFIX,
        KERAS_SUFFIX,
        SAVED_MODEL,
        check_model_file,
    )
    from bert_layer.outputs import check_output_free

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; received {args.batch_size}.")
    check_model_file(args.model, (FROZEN_SUFFIX, SAVED_MODEL, KERAS_SUFFIX), command="evaluate")
    if args.input.lower().endswith(".txt"):
        raise ValueError(f"{args.input}: evaluate needs labels, so it reads a TSV or CSV file "
                         f"with a header and a --label-column; a .txt file holds texts only.")
    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"Data file not found: {args.input!r} (expected a TSV or CSV "
                                f"file with a header row).")
    if args.output is not None:
        if not args.output.lower().endswith(EVALUATION_SUFFIXES):
            raise ValueError(f"--output {args.output}: expected a .json file name.")
        check_output_free(args.output, args.overwrite, is_dir=False,
                          inputs=[args.model, args.input], suffixes=EVALUATION_SUFFIXES)


def run(args: argparse.Namespace) -> None:
    from bert_layer.cli import progress
    from bert_layer.inference.evaluate import evaluate, format_table, read_for
    from bert_layer.inference.runtimes import load_classifier
    from bert_layer.outputs import atomic_output

    model = load_classifier(args.model)
    examples = read_for(model, args.input, text_column=args.text_column,
                        pair_column=args.pair_column, label_columns=args.label_column)
    bar = progress.bar(len(examples), "evaluate", unit="text")
    try:
        result = evaluate(model, examples, batch_size=args.batch_size, on_batch=bar.update)
    finally:
        bar.close()
    result["model"] = args.model
    if args.output is not None:
        with atomic_output(args.output, overwrite=args.overwrite, is_dir=False,
                           inputs=[args.model, args.input], suffixes=EVALUATION_SUFFIXES) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(result, f, indent=2)
    print(format_table(result))
    if args.output is not None:
        print(f"Wrote {args.output}", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a trained model on a labelled file.",
                       description="Predicts a labelled TSV/CSV file with a frozen graph, "
                       "serving SavedModel or .keras model and prints (and with --output "
                       "writes as JSON) scikit-learn's accuracy, per-class precision, recall "
                       "and F1, macro and weighted averages and the confusion matrix; for a "
                       "regressor Pearson, Spearman (scipy) and MSE.")
    p.add_argument("--model", required=True,
                   help="frozen graph (.pb), serving SavedModel folder or saved model (.keras)")
    p.add_argument("--input", required=True, help="TSV/CSV file with a header and labels")
    p.add_argument("--output", help="write the numbers to this .json file")
    add_data_columns(p, labels=False)
    add_label_column(p)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=run, check=check)
