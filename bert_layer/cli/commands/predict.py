"""`bert-layer predict`: classify texts in length-grouped batches, in input order."""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time

from bert_layer.choices import INT8
from bert_layer.cli import tagging
from bert_layer.cli.columns import add_data_columns, positive_int, read_input_texts
from bert_layer.cli.precision_flag import add_precision_argument
from bert_layer.outputs import output_format

FORMAT_OF_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
PREDICTION_SUFFIXES = tuple(FORMAT_OF_SUFFIX)  # What --overwrite may replace.


def prediction_format(path: str | None, fmt: str | None) -> str:
    """--format, else the one --output's extension names, else CSV; refuses a --format that
    contradicts the extension (JSON lines in a .csv file)."""
    return output_format(path, FORMAT_OF_SUFFIX, named=fmt, default="csv")


def check(args: argparse.Namespace) -> None:
    """Model path, output path and the texts, before TensorFlow loads."""
    from bert_layer.inference.formats import (
        FROZEN_SUFFIX,
        KERAS_SUFFIX,
        SAVED_MODEL,
        TFLITE_SUFFIX,
        check_model_file,
    )
    from bert_layer.outputs import check_output_free

    kind = check_model_file(args.model, (FROZEN_SUFFIX, SAVED_MODEL, TFLITE_SUFFIX, KERAS_SUFFIX),
                            command="predict")
    if args.precision == INT8 and kind != TFLITE_SUFFIX:
        raise ValueError(f"--precision int8 runs .tflite models only: convert {args.model} with "
                         f"`bert-layer freeze --format tflite --precision int8`.")
    if kind == FROZEN_SUFFIX:
        from bert_layer.cli.preflight import check_frozen_graph_file
        check_frozen_graph_file(args.model)
    args.tagger = tagging.model_is_tagger(args.model)
    if args.tagger:
        return tagging.check_predict(args)
    if tagging.is_conll_path(args.input):
        raise ValueError(f"--input {args.input} is a CoNLL file, which taggers read; "
                         f"{args.model} is a classifier.")
    if args.runner == "beam" and args.output in (None, "-"):  # Before reading standard input.
        raise ValueError("--runner beam writes a file: pass --output FILE (.csv or .jsonl).")
    if args.runner == "beam" and args.precision is not None:
        raise ValueError("--runner beam runs the model as saved: freeze it with --precision "
                         "and leave --precision out here.")
    args.format = prediction_format(args.output, args.format)
    if args.output not in (None, "-"):  # Refuse before the work, not after it.
        inputs = [args.model] + ([args.input] if args.input not in (None, "-") else [])
        check_output_free(args.output, args.overwrite, is_dir=False, inputs=inputs,
                          suffixes=PREDICTION_SUFFIXES)
    args.texts = read_input_texts(args)


def run(args: argparse.Namespace) -> None:
    from bert_layer.cli import progress
    from bert_layer.cli.quiet import stderr_captured
    from bert_layer.inference.predict import predict_probabilities, write_predictions
    from bert_layer.inference.runtimes import load_classifier
    from bert_layer.outputs import atomic_output

    if args.tagger:
        return tagging.run_predict(args)
    texts = args.texts
    if args.runner == "beam":
        _run_on_beam(args, texts)
        return
    quiet = contextlib.nullcontext() if args.verbose else stderr_captured()
    with quiet:  # LiteRT's C++ notes ("Created TensorFlow Lite XNNPACK delegate for CPU").
        classifier = load_classifier(args.model, precision=args.precision)
    if getattr(classifier, "precision", None) == INT8:
        from bert_layer.inference.cpu import int8_note

        note = int8_note()
        if note:
            print(f"bert-layer predict: {note}", file=sys.stderr)
    start = time.perf_counter()
    bar = progress.bar(len(texts), "predict", unit="text")
    try:
        probabilities = predict_probabilities(classifier, texts, batch_size=args.batch_size,
                                              on_batch=bar.update)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    write = functools.partial(write_predictions, texts=texts, probabilities=probabilities,
                              class_names=classifier.class_names,
                              multi_label=classifier.multi_label, fmt=args.format,
                              task=classifier.task)
    if args.output in (None, "-"):
        write(sys.stdout)
        sys.stdout.flush()  # A closed pipe fails here, inside the CLI's error handling.
    else:
        inputs = [args.model] + ([args.input] if args.input not in (None, "-") else [])
        with atomic_output(args.output, overwrite=args.overwrite, is_dir=False, inputs=inputs,
                           suffixes=PREDICTION_SUFFIXES) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                write(f)
    print(f"Predicted {len(texts)} texts in {seconds:.2f}s "
          f"({len(texts) / max(seconds, 1e-9):.1f}/s)", file=sys.stderr)


def _run_on_beam(args: argparse.Namespace, texts: list[str]) -> None:
    try:
        from bert_layer.inference.beam import run_predict_pipeline
    except ImportError as e:
        raise ValueError(f"--runner beam needs Apache Beam ({e}); install it with "
                         f"pip install \"bert_layer[beam]\".") from None
    start = time.perf_counter()
    run_predict_pipeline(args.model, texts, args.output,
                         fmt=args.format,
                         batch_size=args.batch_size, beam_args=args.beam_option or [],
                         overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    print(f"Predicted {len(texts)} texts on Beam in {seconds:.2f}s "
          f"({len(texts) / max(seconds, 1e-9):.0f}/s)", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify texts with a frozen graph or saved model.",
                       description="Classifies the texts of a TSV/CSV file (or lines on "
                       "standard input) in length-grouped batches and writes label and "
                       "probabilities per text, in input order, as CSV or JSON lines.")
    p.add_argument("--model", required=True,
                   help="frozen graph (.pb), serving SavedModel folder, .tflite or saved model "
                   "(.keras); a classifier or a tagger")
    p.add_argument("--input", help="TSV/CSV file with a header, or a .txt file of one text "
                   "per line; default: lines on stdin. Taggers: text lines (-> JSON lines of "
                   "entities), or a CoNLL file (.conll: -> the file with a predicted-tag "
                   "column, and seqeval's report when it holds gold tags)")
    p.add_argument("--output", help="output file (.csv or .jsonl); default: stdout")
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from --output, else csv")
    add_data_columns(p, labels=False)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--stride", type=int,
                   help="taggers: texts longer than the model's max_seq_length wordpieces are "
                   "tagged in windows sharing this many pieces (default: 32, at most half "
                   "a window)")
    add_precision_argument(p, default=None, inference=True)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--runner", choices=("local", "beam"), default="local",
                   help="local: this process; beam: an Apache Beam pipeline (RunInference), "
                   "needs pip install \"bert_layer[beam]\" (default local)")
    p.add_argument("--beam-option", action="append", metavar="OPTION",
                   help="a Beam pipeline option, repeatable, written with '=': "
                   "--beam-option=--direct_num_workers=2 "
                   "--beam-option=--direct_running_mode=multi_processing, or "
                   "--beam-option=--runner=DataflowRunner ...")
    p.set_defaults(run=run, check=check)
