"""`bert-layer demo`: the whole job on the embedded default model (see bert_layer.cli.demo_job)."""

from __future__ import annotations

import argparse
import os


def check(args: argparse.Namespace) -> None:
    """The default model's and the corpus's packages, before TensorFlow loads."""
    from bert_layer.data.corpora import rotten_tomatoes_path
    from bert_layer.export.default_model import default_model_dir

    default_model_dir()
    rotten_tomatoes_path()


def run(args: argparse.Namespace) -> None:
    from bert_layer.cli.demo_job import run_demo
    run_demo(args.workdir, args.dispatch, train_rows=args.train_rows, test_rows=args.test_rows,
             epochs=args.epochs, seed=args.seed)


def register(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(check=check, run=run)
