"""`bert-layer freeze`: trained model -> frozen inference graph, or serving SavedModel."""

from __future__ import annotations

import argparse

from bert_layer.cli.precision_flag import add_precision_argument
from bert_layer.text import SAVABLE_TOKENIZERS


def check(args: argparse.Namespace) -> None:
    from bert_layer.inference.formats import FROZEN_SUFFIXES, KERAS_SUFFIX, check_model_file
    from bert_layer.outputs import check_output_free

    check_model_file(args.model, (KERAS_SUFFIX,), command="freeze")
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("freeze", help="trained model -> frozen graph or serving SavedModel.",
                       description="Turns a trained .keras classifier into a frozen GraphDef "
                       "(.pb): variables as constants, Grappler's inference passes applied, "
                       "raw strings in and class probabilities out (ids in, for the numpy "
                       "tokenizer); or, with --format saved_model, into a TF2 SavedModel for "
                       "TF Serving (docs/serving.md).")
    p.add_argument("--model", required=True, help="model.keras written by bert-layer train")
    p.add_argument("--out", required=True, help="the .pb file (or SavedModel folder) to write")
    p.add_argument("--format", choices=("graph", "saved_model"), default="graph",
                   help="graph: a frozen GraphDef .pb (default); saved_model: a SavedModel "
                   "folder with signatures serving_default (text in), ids and metadata")
    p.add_argument("--tokenizer", choices=SAVABLE_TOKENIZERS,
                   help="the tokenizer to put inside: graph (tensorflow-text's op; runs "
                   "where tensorflow_text is imported) or core (core TensorFlow ops only). "
                   "Same ids. Default: the model's own (graph for a numpy-tokenizer "
                   "SavedModel; a numpy-tokenizer .pb takes ids)")
    add_precision_argument(p, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=run, check=check)
