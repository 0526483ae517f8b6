"""Arguments and reading shared by the commands that read TSV/CSV files."""

from __future__ import annotations

import argparse
import sys

from bert_layer.choices import WINDOW_POOLINGS


def positive_int(value: str) -> int:
    """An argparse type: refuses 0, negatives and non-numbers while parsing, before any work."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {value!r}")
    return number


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
    from bert_layer.data.examples import read_examples
    if path.lower().endswith(".txt"):
        raise ValueError(f"{path}: training needs labels, so it reads a TSV or CSV file with a "
                         f"header and a --label-column; a .txt file holds one text per line "
                         f"(fine for predict --input, not for training).")
    return read_examples(path, text_column=args.text_column, pair_column=args.pair_column,
                         label_column=args.label_column, labels=classes,
                         multi_label=args.multi_label)


def read_input_texts(args: argparse.Namespace) -> list[str]:
    """The texts of `--input`: lines on stdin (absent or '-'), a `.txt` file of one text per
    line, else a TSV/CSV file's `--text-column` (and `--pair-column`)."""
    from bert_layer.data.examples import read_examples, read_lines

    if args.input in (None, "-"):
        return read_lines(sys.stdin)
    if args.input.lower().endswith(".txt"):  # One text per line, no header.
        try:
            with open(args.input, encoding="utf-8") as f:
                return read_lines(f, source=args.input)
        except UnicodeDecodeError as e:
            raise ValueError(f"{args.input}: expected UTF-8 text, found byte "
                             f"{e.object[e.start]:#04x} at byte offset {e.start}.") from None
    return read_examples(args.input, text_column=args.text_column,
                         pair_column=args.pair_column).texts


def add_window_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """--stride and --window-pooling (train, embed)."""
    p.add_argument("--stride", type=int, help="read a text longer than --max-seq-length "
                   "wordpieces as overlapping windows of that length sharing STRIDE wordpieces "
                   "(Hugging Face's stride), each [CLS] ... [SEP]; a pair keeps its second text "
                   f"whole in every window. {what} (default: cut at --max-seq-length)")
    p.add_argument("--window-pooling", choices=WINDOW_POOLINGS, default=WINDOW_POOLINGS[0],
                   help="how a text combines its windows (default: %(default)s)")
