"""The tagging side of `train --task tag`, `predict` and `freeze`: CoNLL files in, a tagger,
entities or a tagged CoNLL file out. The commands dispatch here; checks run before TensorFlow."""

from __future__ import annotations

import argparse
import os
import sys
import time

from bert_layer.cli.columns import declared_labels

# Flags of classifier training that mean nothing for a tagger.
_CLASSIFIER_ONLY = {"multi_label": "--multi-label", "pair_column": "--pair-column"}


# === train --task tag ===

def check_train(args: argparse.Namespace) -> None:
    """Reads and checks the CoNLL files (one-line errors naming file and line), prints a
    summary and warnings; everything before TensorFlow."""
    from bert_layer.data.conll import (
        check_known_tags,
        declared_tags,
        read_conll,
        summary,
        tag_names,
        tagging_warnings,
    )
    from bert_layer.outputs import check_output_free
    from bert_layer.training.specs import TaggerSpec

    for name, flag in _CLASSIFIER_ONLY.items():
        if getattr(args, name, None):
            raise ValueError(f"{flag} is for classifiers; --task tag reads CoNLL files.")
    inputs = [args.module, args.train] + ([args.dev] if args.dev else [])
    check_output_free(args.out, args.overwrite, kind="run", inputs=inputs)
    train = read_conll(args.train, tagged=True)
    if args.max_train_rows is not None:
        train = train.take(range(min(args.max_train_rows, len(train))))
    labels = declared_labels(args)
    tags = declared_tags(labels) if labels else tag_names(train.entity_types())
    check_known_tags(train, tags)
    dev = read_conll(args.dev, tagged=True) if args.dev else None
    if dev is not None:
        check_known_tags(dev, tags)
    for sentences in (train, dev) if dev is not None else (train,):
        print(summary(sentences), file=sys.stderr)
    for warning in tagging_warnings(train) + (tagging_warnings(dev) if dev else []):
        print(f"bert-layer train: warning: {warning}", file=sys.stderr)
    args.tag_spec = TaggerSpec(module=args.module, tag_names=tuple(tags),
                               fine_tune_layers=args.fine_tune_layers,
                               max_seq_length=args.max_seq_length, tokenizer=args.tokenizer,
                               precision=args.precision, stride=args.stride)
    args.train_sentences, args.dev_sentences = train, dev


def run_train(args: argparse.Namespace) -> dict:
    from bert_layer.training.tagger import train_tagger

    report = train_tagger(args.tag_spec, args.train_sentences, args.dev_sentences, args.out,
                          args.config, overwrite=args.overwrite, resume=args.resume)
    print_tagging_summary(report, args.out)
    return report


def entity_table(scores: dict[str, float], prefix: str = "val_") -> str:
    """Per-type precision, recall, F1 and support from `{prefix}{type}_{metric}` keys, then
    the micro average over entities (seqeval's report)."""
    types = sorted(k[len(prefix):-len("_support")] for k in scores
                   if k.startswith(prefix) and k.endswith("_support"))
    lines = [f"{'':>14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for name in types:
        row = [scores[f"{prefix}{name}_{m}"] for m in ("precision", "recall", "f1")]
        lines.append(f"{name:>14}" + "".join(f"{v:>10.4f}" for v in row)
                     + f"{int(scores[f'{prefix}{name}_support']):>9}")
    total = [scores.get(f"{prefix}entity_{m}", float("nan")) for m in ("precision", "recall", "f1")]
    support = sum(int(scores[f"{prefix}{n}_support"]) for n in types)
    lines.append(f"{'all entities':>14}" + "".join(f"{v:>10.4f}" for v in total)
                 + f"{support:>9}")
    return "\n".join(lines)


def print_tagging_summary(report: dict, out: str) -> None:
    if report["resumed_from_epoch"]:
        print(f"resumed at epoch {report['resumed_from_epoch']} (epochs before it were "
              f"finished by an interrupted run)")
    for epoch in report["epochs"]:
        scores = "  ".join(f"{k}={epoch[k]:.4f}" for k in ("loss", "val_loss", "val_entity_f1")
                           if k in epoch)
        print(f"epoch {epoch['epoch']}: {scores}  "
              f"({epoch['examples_per_second']:.1f} sentences/s)")
    if "val_entity_f1" in report["best"]:
        print(f"best epoch {report['best_epoch']} (dev entity F1, seqeval):")
        print(entity_table(report["best"]))
    print(f"{report['wall_seconds']:.0f}s in all. Model and report in {out}")


# === predict ===

def is_conll_path(path: str | None) -> bool:
    from bert_layer.inference.tagging import CONLL_SUFFIXES

    return bool(path) and path.lower().endswith(CONLL_SUFFIXES)


def check_predict(args: argparse.Namespace) -> None:
    """For a tagger: the input (text lines, or a CoNLL file) and the output it fits."""
    from bert_layer.data.conll import read_conll
    from bert_layer.data.examples import read_lines
    from bert_layer.inference.tagging import CONLL_SUFFIXES
    from bert_layer.outputs import check_output_free

    if args.runner != "local":
        raise ValueError("--runner beam runs classifiers; a tagger predicts with --runner local.")
    if args.stride is not None and args.stride < 0:
        raise ValueError(f"--stride must be >= 0; received {args.stride}.")
    inputs = [args.model] + ([args.input] if args.input not in (None, "-") else [])
    to_file = args.output not in (None, "-")
    if is_conll_path(args.input):
        args.conll = read_conll(args.input, tagged=None)
        if to_file and not is_conll_path(args.output):
            raise ValueError(f"--output {args.output}: a CoNLL input is written back as a "
                             f"CoNLL file with a predicted-tag column; expected a name ending "
                             f"in {' or '.join(CONLL_SUFFIXES)}.")
        if to_file:
            check_output_free(args.output, args.overwrite, is_dir=False, inputs=inputs,
                              suffixes=CONLL_SUFFIXES)
        return
    args.conll = None
    if args.format == "csv" or (to_file and not args.output.lower().endswith(
            (".jsonl", ".json"))):
        raise ValueError(f"A tagger writes JSON lines ({{\"text\", \"entities\"}}); expected "
                         f"--output ending in .jsonl (or stdout) and no --format csv; found "
                         f"{args.output or '--format ' + args.format}.")
    if to_file:
        check_output_free(args.output, args.overwrite, is_dir=False, inputs=inputs,
                          suffixes=(".jsonl", ".json"))
    if args.input in (None, "-"):
        args.texts = read_lines(sys.stdin)
    elif args.input.lower().endswith(".txt"):
        try:
            with open(args.input, encoding="utf-8") as f:
                args.texts = read_lines(f, source=args.input)
        except UnicodeDecodeError as e:
            raise ValueError(f"{args.input}: expected UTF-8 text, found byte "
                             f"{e.object[e.start]:#04x} at byte offset {e.start}.") from None
    else:
        raise ValueError(f"--input {args.input}: a tagger reads text lines (.txt, or stdin) or "
                         f"a CoNLL file ({', '.join(CONLL_SUFFIXES)}).")


def run_predict(args: argparse.Namespace) -> None:
    from bert_layer.cli import progress
    from bert_layer.inference.tagging import load_tagger

    tagger = load_tagger(args.model, precision=args.precision)
    start = time.perf_counter()
    if args.conll is not None:
        n = _predict_conll(args, tagger)
    else:
        n = _predict_texts(args, tagger, progress)
    seconds = time.perf_counter() - start
    print(f"Tagged {n} texts in {seconds:.2f}s ({n / max(seconds, 1e-9):.1f}/s)",
          file=sys.stderr)


def _write(args: argparse.Namespace, write, suffixes: tuple[str, ...]) -> None:
    from bert_layer.outputs import atomic_output

    if args.output in (None, "-"):
        write(sys.stdout)
        sys.stdout.flush()
        return
    inputs = [args.model] + ([args.input] if args.input not in (None, "-") else [])
    with atomic_output(args.output, overwrite=args.overwrite, is_dir=False, inputs=inputs,
                       suffixes=suffixes) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            write(f)


def _predict_texts(args: argparse.Namespace, tagger, progress) -> int:
    from bert_layer.inference.tagging import tag_texts, write_entities_jsonl

    bar = progress.bar(len(args.texts), "tag", unit="text")
    try:
        found = tag_texts(tagger, args.texts, stride=args.stride, batch_size=args.batch_size,
                          on_batch=bar.update)
    finally:
        bar.close()
    _write(args, lambda f: write_entities_jsonl(f, args.texts, found), (".jsonl", ".json"))
    return len(args.texts)


def _predict_conll(args: argparse.Namespace, tagger) -> int:
    from bert_layer.data.conll import check_known_tags
    from bert_layer.inference.tagging import (
        CONLL_SUFFIXES,
        tag_probabilities,
        tags_of,
        write_conll,
    )
    from bert_layer.training.tagger import entity_scores

    sentences = args.conll
    if sentences.tags is not None:  # Before the work: gold tags the model cannot predict.
        check_known_tags(sentences, tagger.tag_names)
    probabilities = tag_probabilities(tagger, sentences.words, stride=args.stride,
                                      batch_size=args.batch_size)
    predicted = [tags_of(p, tagger.tag_names) for p in probabilities]
    _write(args, lambda f: write_conll(f, sentences.rows, predicted), CONLL_SUFFIXES)
    if sentences.tags is not None:
        report_to = sys.stderr if args.output in (None, "-") else sys.stdout
        scores = entity_scores(sentences.tags, predicted)
        print(f"{sentences.source}: entity scores (seqeval) against its gold tags:",
              file=report_to)
        print(entity_table(scores, prefix=""), file=report_to)
    return len(sentences)


# === freeze ===

def run_freeze(args: argparse.Namespace) -> None:
    from bert_layer.cli import progress
    from bert_layer.inference.tagging import KerasTagger

    with progress.working(f"freeze {args.model}"):
        tagger = KerasTagger(args.model, precision=args.precision)
        if args.format == "saved_model":
            from bert_layer.inference.tagger_graphs import write_serving_tagger

            write_serving_tagger(tagger.model, args.out, tokenizer=args.tokenizer,
                                 overwrite=args.overwrite, inputs=[args.model])
            print(f"Saved {args.model} -> {args.out} (SavedModel; signatures serving_default: "
                  f"text -> starts, ends, labels, scores, count, untagged_words; words; "
                  f"metadata)")
            return
        from bert_layer.inference.tagger_graphs import freeze_tagger

        report = freeze_tagger(tagger.model, args.out, overwrite=args.overwrite,
                               inputs=[args.model], tokenizer=args.tokenizer)
    print(f"Froze {args.model} -> {report.path} (inputs: {', '.join(report.inputs)})")
    print(report.table())


def model_is_tagger(path: str) -> bool:
    """TF-free: whether the model file holds a tagger."""
    from bert_layer.inference.tagging import is_tagger_file

    return os.path.exists(path) and is_tagger_file(path)
