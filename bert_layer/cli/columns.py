"""Arguments and reading shared by the commands that read TSV/CSV files."""

from __future__ import annotations

import argparse
import os
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
        add_label_column(p)
        p.add_argument("--labels", help="the declared label set, comma-separated "
                       "(default: the values found in the training file)")
        p.add_argument("--multi-label", action="store_true", help="labels are comma-separated "
                       "sets: one sigmoid per class instead of a softmax")


def add_label_column(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-column", action="append", help="column of the label (name or "
                   "0-based index; default: label); for scores (regression) repeat it, one "
                   "output per column")


def label_columns(args: argparse.Namespace) -> list[str]:
    """The --label-column values (default ["label"])."""
    return args.label_column or ["label"]


def single_label_column(args: argparse.Namespace) -> str:
    """The one --label-column of a classification task."""
    columns = label_columns(args)
    if len(columns) > 1:
        raise ValueError(f"--label-column is given {len(columns)} times ({columns}); classes "
                         f"come from one column (several are for --task regress).")
    return columns[0]


def read_scored(path: str, args: argparse.Namespace):
    """Texts and float scores of `path` (one per --label-column)."""
    from bert_layer.data.examples import read_scores
    _refuse_txt(path)
    return read_scores(path, text_column=args.text_column, pair_column=args.pair_column,
                       score_columns=label_columns(args))


def _refuse_txt(path: str) -> None:
    if path.lower().endswith(".txt"):
        raise ValueError(f"{path}: training needs labels, so it reads a TSV or CSV file with a "
                         f"header and a --label-column; a .txt file holds one text per line "
                         f"(fine for predict --input, not for training).")


def declared_labels(args: argparse.Namespace) -> list[str] | None:
    """--labels as a list; spaces around names are dropped, as they are from the file's."""
    return [name.strip() for name in args.labels.split(",")] if args.labels else None


def read_labelled(path: str, args: argparse.Namespace, classes=None):
    from bert_layer.data.examples import read_examples
    _refuse_txt(path)
    return read_examples(path, text_column=args.text_column, pair_column=args.pair_column,
                         label_column=single_label_column(args), labels=classes,
                         multi_label=args.multi_label)


def read_input_texts(args: argparse.Namespace) -> list[str]:
    """The texts of `--input`: lines on stdin (absent or '-'), a `.txt` file of one text per
    line, else a TSV/CSV file's `--text-column` (and `--pair-column`)."""
    from bert_layer.data.examples import read_examples, split_text_lines

    if args.input in (None, "-"):
        # Bytes, decoded here: the locale's decoding would let bad bytes through as
        # surrogates, to fail later in TensorFlow without a line number.
        stream = getattr(sys.stdin, "buffer", sys.stdin)
        return split_text_lines(stream.read(), source="<stdin>")
    if args.input.lower().endswith(".txt"):  # One text per line, no header.
        if not os.path.isfile(args.input):
            raise FileNotFoundError(f"Input file not found: {args.input} (expected a .txt "
                                    f"file of one text per line).")
        with open(args.input, "rb") as f:
            return split_text_lines(f.read(), source=args.input)
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
