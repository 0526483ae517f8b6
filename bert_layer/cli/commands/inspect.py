"""`bert-layer inspect`: what a hub module, SavedModel, frozen graph or .tflite holds and
needs."""

from __future__ import annotations

import argparse
import dataclasses
import json


def check(args: argparse.Namespace) -> None:
    from bert_layer.cli.preflight import check_inspect_path

    check_inspect_path(args.path)


def run(args: argparse.Namespace) -> None:
    from bert_layer.inference.inspect import inspect_path

    inspection = inspect_path(args.path)
    if args.json:
        print(json.dumps(dataclasses.asdict(inspection), indent=2))
    else:
        print(inspection.text())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="tag sets, signatures, variables and non-core ops.",
                       description="Prints, for a hub module, a SavedModel, a frozen graph or "
                       "a .tflite: "
                       "its tag sets, signatures with input and output names, dtypes and "
                       "shapes, the variables' total size, and every op type that core "
                       "TensorFlow does not register, with the package that provides it "
                       "(checked in a fresh Python that imports TensorFlow alone).")
    p.add_argument("path", help="module or SavedModel folder, frozen graph (.pb) or .tflite")
    p.add_argument("--json", action="store_true", help="print the inspection as JSON")
    p.set_defaults(run=run, check=check)
