"""`bert-layer train`: fine-tune a classifier on a TSV/CSV file."""

from __future__ import annotations

import argparse

from bert_layer.commands.columns import add_data_columns, read_labelled
from bert_layer.commands.precision import add_precision_argument


def run(args: argparse.Namespace) -> None:
    from bert_layer.classifier import ClassifierSpec
    from bert_layer.train import TrainConfig, train_classifier

    declared = args.labels.split(",") if args.labels else None
    train = read_labelled(args.train, args, declared)
    if args.max_train_rows is not None:  # 0 is an error below (no examples), not "all".
        train = train.take(range(min(args.max_train_rows, len(train))))
    dev = read_labelled(args.dev, args, train.classes) if args.dev else None
    spec = ClassifierSpec(bert_path=args.module, classes=tuple(train.classes),
                          multi_label=args.multi_label, pooling=args.pooling,
                          fine_tune_layers=args.fine_tune_layers,
                          max_seq_length=args.max_seq_length, tokenizer=args.tokenizer,
                          precision=args.precision)
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a classifier on a TSV/CSV file.",
                       description="Fine-tunes a BertLayer classifier with Keras fit (AdamW, "
                       "linear warm-up then decay, length-bucketed batches) and saves the best "
                       "epoch as OUT/model.keras with OUT/report.json.")
    p.add_argument("--module", required=True, help="hub module folder (bert-layer export)")
    p.add_argument("--train", required=True, help="training file (.tsv or .csv, with a header)")
    p.add_argument("--dev", help="validation file: accuracy and F1 each epoch, best epoch kept")
    p.add_argument("--out", required=True, help="output folder")
    add_data_columns(p, labels=True)
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
    add_precision_argument(p, default="fp32")
    p.add_argument("--no-bucketing", action="store_true", help="batches in file order")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(run=run)
