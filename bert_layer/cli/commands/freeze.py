"""`bert-layer freeze`: trained model -> frozen inference graph, serving SavedModel or .tflite."""

from __future__ import annotations

import argparse
import sys

from bert_layer.cli.precision_flag import add_precision_argument
from bert_layer.text import SAVABLE_TOKENIZERS

FORMATS = ("graph", "saved_model", "tflite")


def check(args: argparse.Namespace) -> None:
    from bert_layer.choices import INT8, TFLITE_PRECISIONS
    from bert_layer.inference.formats import (
        FROZEN_SUFFIXES,
        KERAS_SUFFIX,
        TFLITE_SUFFIX,
        check_model_file,
    )
    from bert_layer.outputs import check_output_free

    check_model_file(args.model, (KERAS_SUFFIX,), command="freeze")
    if args.format == "tflite":
        if args.tokenizer is not None:
            raise ValueError(f"--tokenizer {args.tokenizer} does not apply to --format tflite: "
                             f"a .tflite takes ids, and the tokenizer runs outside it (bert-layer "
                             f"predict runs it from the vocabulary in the file); drop --tokenizer.")
        if args.precision not in (None, *TFLITE_PRECISIONS):
            raise ValueError(f"--format tflite computes in {' or '.join(TFLITE_PRECISIONS)}, not "
                             f"{args.precision}: pass --precision int8 (smaller and faster) or "
                             f"fp32, or freeze to --format graph for {args.precision}.")
        if not args.out.lower().endswith(TFLITE_SUFFIX):
            raise ValueError(f"--out {args.out}: a --format tflite output is named *.tflite.")
        check_output_free(args.out, args.overwrite, is_dir=False, inputs=[args.model],
                          suffixes=(TFLITE_SUFFIX,))
        return
    if args.precision == INT8:
        # Measured (scripts/bench_int8.py, README "Precision"): TensorFlow 2.21's int8 matmul
        # kernels are slower than its fp32 ones on the CPUs we ran, LiteRT's int8 is not.
        raise ValueError(f"--precision int8 is written as a .tflite (LiteRT's int8 kernels; "
                         f"TensorFlow's int8 ops ran slower than fp32): pass --format tflite "
                         f"--out {args.out.rsplit('.', 1)[0]}.tflite.")
    if args.format == "saved_model":
        check_output_free(args.out, args.overwrite, kind="saved_model", inputs=[args.model])
    else:
        check_output_free(args.out, args.overwrite, is_dir=False, inputs=[args.model],
                          suffixes=FROZEN_SUFFIXES, named=FROZEN_SUFFIXES)


def run(args: argparse.Namespace) -> None:
    from bert_layer.cli import progress
    from bert_layer.cli.tagging import model_is_tagger, run_freeze

    if model_is_tagger(args.model):
        return run_freeze(args)
    from bert_layer.inference.runtimes import KerasClassifier

    if args.format == "tflite":
        _write_tflite(args)
        return
    with progress.working(f"freeze {args.model}"):
        classifier = KerasClassifier(args.model, precision=args.precision)
        if args.format == "saved_model":
            from bert_layer.inference.serving import write_serving_model

            write_serving_model(classifier.model, args.out, class_names=classifier.class_names,
                                multi_label=classifier.multi_label, tokenizer=args.tokenizer,
                                overwrite=args.overwrite, inputs=[args.model],
                                task=classifier.task)
            outputs = "score" if classifier.task == "regress" else \
                "probabilities, label, label_index"
            print(f"Saved {args.model} -> {args.out} (SavedModel; signatures serving_default: "
                  f"text -> {outputs}; ids; metadata)")
            return
        from bert_layer.inference.freeze import freeze_model

        report = freeze_model(classifier.model, args.out, class_names=classifier.class_names,
                              multi_label=classifier.multi_label, overwrite=args.overwrite,
                              inputs=[args.model], tokenizer=args.tokenizer,
                              task=classifier.task)
    print(f"Froze {args.model} -> {report.path} (inputs: {', '.join(report.inputs)})")
    print(report.table())


def _write_tflite(args: argparse.Namespace) -> None:
    from bert_layer.choices import INT8
    from bert_layer.cli import progress
    from bert_layer.inference.cpu import int8_note
    from bert_layer.inference.runtimes import KerasClassifier
    from bert_layer.inference.tflite import write_tflite

    precision = args.precision or "fp32"
    note = int8_note() if precision == INT8 else None
    if note:
        print(f"bert-layer freeze: {note}", file=sys.stderr)
    with progress.working(f"freeze {args.model}"):
        classifier = KerasClassifier(args.model, precision="fp32")  # int8 quantizes fp32.
        report = write_tflite(classifier.model, args.out, class_names=classifier.class_names,
                              multi_label=classifier.multi_label, precision=precision,
                              overwrite=args.overwrite, inputs=[args.model])
    print(f"Converted {args.model} -> {report.path} (TFLite, {report.precision}, "
          f"{report.bytes:,} bytes; inputs: input_ids, input_mask, segment_ids; builtin ops: "
          f"{', '.join(report.ops)})")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("freeze", help="trained model -> frozen graph, SavedModel or .tflite.",
                       description="Turns a trained .keras classifier into a frozen GraphDef "
                       "(.pb): variables as constants, Grappler's inference passes applied, "
                       "raw strings in and class probabilities out (ids in, for the numpy "
                       "tokenizer); or, with --format saved_model, into a TF2 SavedModel for "
                       "TF Serving (docs/serving.md); or, with --format tflite, into a TFLite "
                       "model of builtin ops (ids in, the vocabulary, casing and class names "
                       "as TFLite metadata) for LiteRT and the TFLite Task Library's "
                       "BertNLClassifier.")
    p.add_argument("--model", required=True, help="model.keras written by bert-layer train")
    p.add_argument("--out", required=True,
                   help="the .pb file, SavedModel folder or .tflite file to write")
    p.add_argument("--format", choices=FORMATS, default="graph",
                   help="graph: a frozen GraphDef .pb (default); saved_model: a SavedModel "
                   "folder with signatures serving_default (text in), ids and metadata; "
                   "tflite: a .tflite (fp32 or int8) for LiteRT, phones included")
    p.add_argument("--tokenizer", choices=SAVABLE_TOKENIZERS,
                   help="the tokenizer to put inside: graph (tensorflow-text's op; runs "
                   "where tensorflow_text is imported) or core (core TensorFlow ops only). "
                   "Same ids. Default: the model's own (graph for a numpy-tokenizer "
                   "SavedModel; a numpy-tokenizer .pb takes ids). Not for --format tflite")
    add_precision_argument(p, default=None, inference=True)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=run, check=check)
