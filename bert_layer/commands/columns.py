"""Arguments and reading shared by the commands that read TSV/CSV files."""

from __future__ import annotations

import argparse


def add_data_columns(p: argparse.ArgumentParser, labels: bool) -> None:
    p.add_argument("--text-column", default="sentence", help="column of the text (name or "
                   "0-based index; default: sentence)")
    p.add_argument("--pair-column", help="column of the second sentence, for pair tasks")
    if labels:
        p.add_argument("--label-column", default="label", help="column of the label "
                       "(default: label)")
        p.add_argument("--labels", help="the declared label set, comma-separated "
                       "(default: the values found in the training file)")
        p.add_argument("--multi-label", action="store_true", help="labels are comma-separated "
                       "sets: one sigmoid per class instead of a softmax")


def declared_labels(args: argparse.Namespace) -> list[str] | None:
    """--labels as a list; spaces around names are dropped, as they are from the file's."""
    return [name.strip() for name in args.labels.split(",")] if args.labels else None


def read_labelled(path: str, args: argparse.Namespace, classes=None):
    from bert_layer.examples import read_examples
    if path.lower().endswith(".txt"):
        raise ValueError(f"{path}: training needs labels, so it reads a TSV or CSV file with a "
                         f"header and a --label-column; a .txt file holds one text per line "
                         f"(fine for predict --input, not for training).")
    return read_examples(path, text_column=args.text_column, pair_column=args.pair_column,
                         label_column=args.label_column, labels=classes,
                         multi_label=args.multi_label)
