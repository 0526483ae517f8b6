"""Arguments shared by the commands that read TSV/CSV files."""

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


def read_labelled(path: str, args: argparse.Namespace, classes=None):
    from bert_layer.examples import read_examples
    return read_examples(path, text_column=args.text_column, pair_column=args.pair_column,
                         label_column=args.label_column, labels=classes,
                         multi_label=args.multi_label)
