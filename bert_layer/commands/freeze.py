"""`bert-layer freeze`: trained model -> frozen inference graph."""

from __future__ import annotations

import argparse

from bert_layer.commands.precision import add_precision_argument


def run(args: argparse.Namespace) -> None:
    from bert_layer.freeze import freeze_model
    from bert_layer.classifiers import KerasClassifier

    classifier = KerasClassifier(args.model, precision=args.precision)
    report = freeze_model(classifier.model, args.out, class_names=classifier.class_names,
                          multi_label=classifier.multi_label, overwrite=args.overwrite)
    print(f"Froze {args.model} -> {report.path} (inputs: {', '.join(report.inputs)})")
    print(report.table())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("freeze", help="trained model -> frozen, optimized inference graph.",
                       description="Turns a trained .keras classifier into a frozen GraphDef "
                       "(.pb): variables as constants, Grappler's inference passes applied, "
                       "raw strings in and class probabilities out (ids in, for the numpy "
                       "tokenizer).")
    p.add_argument("--model", required=True, help="model.keras written by bert-layer train")
    p.add_argument("--out", required=True, help="the .pb file to write")
    add_precision_argument(p, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(run=run)
