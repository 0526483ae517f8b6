"""`bert-layer train`: fine-tune a classifier (or, with --task regress, a regressor) on a TSV/CSV
file, or (--task tag) a tagger on CoNLL files (bert_layer.cli.tagging)."""

from __future__ import annotations

import argparse
import os
import sys

from bert_layer.choices import DISTRIBUTE_CHOICES, MIN_CLASSES, TASKS, VECTOR_POOLINGS
from bert_layer.cli.columns import (
    add_data_columns,
    add_window_arguments,
    declared_labels,
    positive_int,
    read_labelled,
    read_scored,
)
from bert_layer.cli.precision_flag import add_precision_argument
from bert_layer.text import TOKENIZER_NAMES
from bert_layer.text.strides import check_stride
from bert_layer.training.specs import (
    ClassifierSpec,
    TrainConfig,
    check_windowed_training,
    default,
)

_CONFIG = TrainConfig()  # The defaults, defined there once.


def check(args: argparse.Namespace) -> None:
    """Everything that needs no TensorFlow: settings, output path, data (with a summary)."""
    args.config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        warmup_fraction=args.warmup_fraction, seed=args.seed, bucket=not args.no_bucketing,
        distribute=args.distribute, class_weight=args.class_weight,
        early_stopping_patience=args.early_stopping_patience,
        gradient_accumulation=args.gradient_accumulation)
    _check_task_options(args)
    if args.resume and args.distribute == "multi-worker":
        raise ValueError("--resume is not supported with --distribute multi-worker (each worker "
                         "would need its own backup); rerun without --resume.")
    check_stride(args.stride, args.max_seq_length)
    check_windowed_training(args.stride, args.distribute)
    if args.max_train_rows is not None and args.max_train_rows < 1:
        raise ValueError(f"--max-train-rows must be >= 1; received {args.max_train_rows}.")
    if args.distribute == "multi-worker":  # The cluster first: before any output or data.
        from bert_layer.training.distribute import check_tf_config
        check_tf_config(os.environ.get("TF_CONFIG"))
    from bert_layer.cli.preflight import check_module_folder

    check_module_folder(args.module)
    if args.task == "tag":
        from bert_layer.cli.tagging import check_train
        return check_train(args)
    from bert_layer.data.checks import summary, warnings_for  # numpy: after the cheap checks
    from bert_layer.outputs import check_output_free

    inputs = [args.module, args.train] + ([args.dev] if args.dev else [])
    check_output_free(args.out, args.overwrite, kind="run", inputs=inputs)
    if args.task == "regress":
        train = read_scored(args.train, args)
    else:
        train = read_labelled(args.train, args, declared_labels(args))
    if args.max_train_rows is not None:
        train = train.take(range(min(args.max_train_rows, len(train))))
    if args.dev is None:
        dev = None
    else:
        dev = read_scored(args.dev, args) if args.task == "regress" else \
            read_labelled(args.dev, args, train.classes)
    for examples in (train, dev) if dev is not None else (train,):
        print(summary(examples), file=sys.stderr)
        for warning in warnings_for(examples):
            print(f"bert-layer train: warning: {warning}", file=sys.stderr)
    if args.class_weight is not None:  # Every class it names must be one of the data's.
        from bert_layer.training.class_weights import resolve_class_weights
        resolve_class_weights(args.class_weight, train)
    if len(train.classes) < MIN_CLASSES and not args.multi_label and args.task == "classify":
        raise ValueError(f"{args.train}: a classifier needs at least {MIN_CLASSES} classes; "
                         f"found only {train.classes}. Declare the classes with --labels "
                         f"(e.g. --labels 0,1) if the file lacks examples of some.")
    args.train_examples, args.dev_examples = train, dev


def _check_task_options(args: argparse.Namespace) -> None:
    """What --task allows, and what needs --dev."""
    if args.task == "regress":
        for flag, given in (("--labels", args.labels), ("--multi-label", args.multi_label),
                            ("--class-weight", args.class_weight)):
            if given:
                raise ValueError(f"{flag} is for classes; --task regress reads numbers from "
                                 f"each --label-column.")
    if args.early_stopping_patience is not None and not args.dev:
        raise ValueError("--early-stopping-patience watches the dev metric: pass --dev.")


def run(args: argparse.Namespace) -> None:
    if args.task == "tag":
        from bert_layer.cli.tagging import run_train
        return _interruptible(run_train, args)
    from bert_layer.training.train import train_classifier

    train = args.train_examples
    spec = ClassifierSpec(module=args.module, class_names=tuple(train.classes),
                          multi_label=args.multi_label, pooling=args.pooling,
                          fine_tune_layers=args.fine_tune_layers,
                          max_seq_length=args.max_seq_length, tokenizer=args.tokenizer,
                          precision=args.precision, task=args.task, stride=args.stride,
                          window_pooling=args.window_pooling)
    try:
        report = train_classifier(spec, train, args.dev_examples, args.out, args.config,
                                  overwrite=args.overwrite, resume=args.resume)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or a SIGTERM handler's exit.
        _print_resume_hint(args.out)
        raise
    _print_training_summary(report, args.out)


def _interruptible(train, args: argparse.Namespace):
    try:
        return train(args)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or a SIGTERM handler's exit.
        _print_resume_hint(args.out)
        raise


def _print_resume_hint(out: str) -> None:
    import sys

    from bert_layer.training.backup import backup_dir

    if os.path.isdir(backup_dir(out)):
        print(f"bert-layer train: interrupted; the finished epochs are kept in "
              f"{backup_dir(out)}. Run the same command with --resume to continue.",
              file=sys.stderr)


def _print_training_summary(report: dict, out: str) -> None:
    """After the epochs' own lines (printed as each ends): the best epoch, time and output."""
    from bert_layer.training.train import epoch_line, scores

    epochs = report["epochs"]
    if report["resumed_from_epoch"]:
        print(f"resumed at epoch {report['resumed_from_epoch']}; the epochs before it, finished "
              f"by the interrupted run:")
        for epoch in epochs[:report["resumed_from_epoch"] - 1]:
            print(f"  {epoch_line(epoch['epoch'], len(epochs), epoch)}")
    _print_training_options(report["training_options"])
    distribution = report["distribution"]
    written = (f"Model and report in {out}." if distribution["chief"] else
               "This worker is not the chief: the chief writes the model and report.")
    print(f"{distribution['global_batch_size']} examples a step on {distribution['replicas']} "
          f"replica(s) of {distribution['workers']} worker(s) ({distribution['strategy']}).")
    best = epochs[report["best_epoch"] - 1]
    if report["dev_examples"]:
        values = "  ".join(f"{k} {v:.4f}" for k, v in scores(report["best"]).items())
        by = report["training_options"]["best_epoch_by"]
        kept = f"Kept epoch {best['epoch']} of {len(epochs)} (best {by}): {values}."
    else:
        values = "  ".join(f"{k} {v:.4f}" for k, v in scores(best).items())
        kept = f"Kept the last epoch ({len(epochs)}; no --dev to choose by): {values}."
    print(f"{kept}\n{report['wall_seconds']:.0f}s in all. {written}")


def _print_training_options(options: dict) -> None:
    """The options that changed how training went."""
    if options["class_weights"]:
        print(f"class weights: {options['class_weights']}")
    if options["stopped_early_after_epoch"]:
        print(f"stopped early after epoch {options['stopped_early_after_epoch']} (no "
              f"{options['best_epoch_by']} gain for {options['early_stopping_patience']} "
              f"epochs); the best epoch's weights are kept")
    if options["gradient_accumulation"] > 1:
        print(f"{options['gradient_accumulation']} batches an update: "
              f"{options['effective_batch_size']} examples an optimizer update")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a classifier (TSV/CSV) or tagger (CoNLL).",
                       description="Fine-tunes a BertLayer classifier (or, with --task tag, a "
                       "token classifier on CoNLL files) with Keras fit (AdamW, linear warm-up "
                       "then decay) and saves the best epoch as OUT/model.keras with "
                       "OUT/report.json.")
    p.add_argument("--task", choices=TASKS, default=TASKS[0],
                   help="classify: one class per text (or several with --multi-label; the "
                   "default); regress: a number per --label-column, MSE loss, dev Pearson picks "
                   "the best epoch; tag: one IOB2 tag per word (CoNLL files, entity F1 by "
                   "seqeval)")
    p.add_argument("--module", required=True, help="hub module folder (bert-layer export)")
    p.add_argument("--train", required=True, help="training file (.tsv or .csv, with a header; "
                   "for --task tag a CoNLL file: token and tag columns)")
    p.add_argument("--dev", help="validation file: scores each epoch, best epoch kept (accuracy;"
                   " for --task tag, entity F1)")
    p.add_argument("--out", required=True, help="output folder")
    add_data_columns(p, labels=True)
    spec = {f: default(ClassifierSpec, f)
            for f in ("pooling", "fine_tune_layers", "max_seq_length", "tokenizer")}
    p.add_argument("--pooling", choices=VECTOR_POOLINGS, default=spec["pooling"])
    p.add_argument("--fine-tune-layers", type=int, default=spec["fine_tune_layers"],
                   help=f"last N encoder layers to train; -1 trains all "
                   f"(default {spec['fine_tune_layers']})")
    p.add_argument("--epochs", type=int, default=_CONFIG.epochs)
    p.add_argument("--batch-size", type=positive_int, default=_CONFIG.batch_size)
    p.add_argument("--learning-rate", type=float, default=_CONFIG.learning_rate,
                   help=f"peak learning rate, > 0 (default {_CONFIG.learning_rate})")
    p.add_argument("--warmup-fraction", type=float, default=_CONFIG.warmup_fraction)
    p.add_argument("--max-seq-length", type=int, default=spec["max_seq_length"])
    add_window_arguments(p, "Each window is a training example carrying its text's label "
                         "(a batch holds at most --batch-size windows; a text of more, alone); "
                         "a text's prediction combines its windows' probabilities. With --task "
                         "tag, long sentences are always windows (default stride 32, at most "
                         "half a window).")
    p.add_argument("--max-train-rows", type=int, help="use only the first N training rows "
                   "(sentences, for --task tag)")
    p.add_argument("--tokenizer", choices=TOKENIZER_NAMES, default=spec["tokenizer"],
                   help="graph (tensorflow-text), core (core TensorFlow ops only) or numpy "
                   "(FullTokenizer in Python); same ids")
    add_precision_argument(p, default=default(ClassifierSpec, "precision"))
    p.add_argument("--no-bucketing", action="store_true", help="batches in file order")
    p.add_argument("--seed", type=int, default=_CONFIG.seed)
    p.add_argument("--distribute", choices=DISTRIBUTE_CHOICES, default=_CONFIG.distribute,
                   help="tf.distribute strategy: mirrored = every GPU (else CPU) of this "
                   "machine; multi-worker = the cluster in TF_CONFIG, one process per worker, "
                   "the chief writes OUT. --batch-size is per replica (default none)")
    p.add_argument("--class-weight", help="'balanced' (n / (classes x count), scikit-learn's) "
                   "or name=weight pairs, e.g. neg=1,pos=3 (classes not named weigh 1); "
                   "multi-label: the weight of each class's positive examples")
    p.add_argument("--early-stopping-patience", type=int, metavar="N",
                   help="stop when the dev metric that picks the best epoch has not improved "
                   "for N epochs (needs --dev); the best epoch's weights are kept")
    p.add_argument("--gradient-accumulation", type=int, metavar="N",
                   default=_CONFIG.gradient_accumulation,
                   help="average the gradients of N batches into one optimizer update "
                   "(effective batch N x --batch-size; the learning-rate schedule counts "
                   "updates)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last finished epoch (kept in "
                   "OUT.backup/ until the output is written)")
    p.set_defaults(run=run, check=check)

