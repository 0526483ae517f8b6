"""Labelled texts from TSV/CSV files or standard input: `Examples`, read strictly.

A BertLayer tokenizes inside the graph, so this module deals in strings and labels only: a
sentence pair is one string, `"first ||| second"`.

Dimension legend: n = examples, C = classes.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

from bert_layer.text.pairs import PAIR_SEPARATOR, check_pair_text

_DELIMITERS = {".tsv": "\t", ".tab": "\t", ".csv": ","}
_SNIFF_DELIMITERS = "\t,;|"
_SNIFF_BYTES = 64 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: `==` on arrays is ambiguous.
class Examples:
    """Texts, their labels and the class names, as read from `source`.

    Attributes:
      texts: list[str] [n]. A pair is written f"{first} {PAIR_SEPARATOR} {second}".
      labels: None (no label column), int32 class indices [n], or, for multi-label data,
        float32 multi-hot rows [n, C], or, for scores (`scores`), float32 [n, C].
      classes: list[str] [C]. Class names; `labels` index into it. Empty when unknown. For
        scores: the name of each score (its label column).
      source: str. Where the examples came from (a path, or a name), for messages.
      lines: None, or list[int] [n]: the 1-based line of `source` where each example starts.
      scores: bool. The labels are numbers to regress on (`read_scores`), not classes.
    """

    texts: list[str]
    labels: np.ndarray | None
    classes: list[str]
    source: str
    lines: list[int] | None = None
    scores: bool = False

    def __post_init__(self) -> None:
        if self.labels is None:
            return
        n, shape = len(self.texts), self.labels.shape
        if self.labels.ndim not in (1, 2) or shape[0] != n:
            raise ValueError(f"{self.source}: labels must have shape [{n}] or [{n}, classes] "
                             f"for {n} texts, found shape {list(shape)}.")
        if self.labels.ndim == 2 and shape[1] != len(self.classes):
            raise ValueError(f"{self.source}: multi-hot labels have {shape[1]} columns but "
                             f"there are {len(self.classes)} classes {self.classes}.")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def multi_label(self) -> bool:
        """True when `labels` are multi-hot rows [n, C]."""
        return not self.scores and self.labels is not None and self.labels.ndim == 2

    def take(self, indices: Sequence[int] | np.ndarray, source: str | None = None) -> Examples:
        """The examples at `indices`, in that order (same classes)."""
        indices = np.asarray(indices, dtype=np.int64)
        return Examples(texts=[self.texts[i] for i in indices],
                        labels=None if self.labels is None else self.labels[indices],
                        classes=list(self.classes), source=source or self.source,
                        lines=None if self.lines is None else [self.lines[i] for i in indices],
                        scores=self.scores)


@dataclasses.dataclass(frozen=True)
class Table:
    """A parsed file: its header and its rows, each with the 1-based line where it starts."""

    source: str
    header: list[str]
    rows: list[list[str]]
    lines: list[int]
# ---------------------------------------------------------------------------------------------
# Reading files.


def read_examples(path: str, *, text_column: str | int, pair_column: str | int | None = None,
                  label_column: str | int | None = None, labels: Sequence[str] | None = None,
                  multi_label: bool = False, label_separator: str = ",") -> Examples:
    """Reads texts (and labels) from a TSV or CSV file with a header row.

    Args:
      path: str. `.tsv`/`.tab` files are tab-separated and read without quoting (GLUE files
        hold unbalanced double quotes); `.csv` files are comma-separated with standard
        quoting; other names are sniffed. UTF-8, with or without a byte-order mark.
      text_column: the text's column: a header name, or a 0-based index (int or digits;
        digits that name one column and index another are refused).
      pair_column: the second text of a pair, or None. Pairs become "first ||| second".
      label_column: the label's column, or None for unlabelled data (prediction).
      labels: the declared class names, in index order; None infers them (sorted; numerically
        when every label is a number, so "0", "1", "10" map to 0, 1, 2).
      multi_label: each label field holds zero or more class names separated by
        `label_separator`; labels are then float32 multi-hot rows [n, C].
      label_separator: str. Separates class names in a multi-label field.

    Returns:
      Examples. Text fields are kept as written (an empty text is valid input); label values
      are stripped of surrounding whitespace. Blank lines are skipped.

    Raises:
      FileNotFoundError: `path` is not a file.
      ValueError: the file is empty, has no rows, lacks a column, has a row with the wrong
        number of fields, or a label outside `labels`; the message names the file and line.

    Example:
      >>> read_examples("dev.tsv", text_column="#1 String", pair_column="#2 String",
      ...               label_column="Quality", labels=["0", "1"])  # doctest: +SKIP
    """
    if labels is not None:
        labels = _check_declared_labels(labels, path)
    table = _read_table(path)
    return examples_from_table(table, text_column=text_column, pair_column=pair_column,
                                label_column=label_column, labels=labels,
                                multi_label=multi_label, label_separator=label_separator)


def read_scores(path: str, *, text_column: str | int, pair_column: str | int | None = None,
                score_columns: Sequence[str | int] = ("label",)) -> Examples:
    """Reads texts and numeric labels (regression targets) from a TSV or CSV file.

    Args:
      path, text_column, pair_column: as for `read_examples`.
      score_columns: one column (name or 0-based index) per score; each becomes an output.

    Returns:
      Examples with `scores=True`, float32 labels [n, len(score_columns)] and `classes` the
      score columns' header names.

    Raises:
      ValueError: a field that does not parse as a finite number (naming file, line, column
        and value), or what `read_examples` refuses.
    """
    if not score_columns:
        raise ValueError(f"{path}: score_columns must name at least one column.")
    table = _read_table(path)
    unlabelled = examples_from_table(table, text_column=text_column, pair_column=pair_column,
                                     label_column=None, labels=None, multi_label=False,
                                     label_separator=",")
    indices = [column_index(table, c, "label_column") for c in score_columns]
    if len(set(indices)) != len(indices):
        raise ValueError(f"{path}: label_column names the same column twice: "
                         f"{list(score_columns)}.")
    labels = np.empty([len(table.rows), len(indices)], np.float32)  # [n, C]
    for i, (line, row) in enumerate(zip(table.lines, table.rows)):
        for j, index in enumerate(indices):
            value = _as_number(row[index].strip())
            if value is None:
                raise ValueError(f"{path}: line {line}: column {table.header[index]!r} holds "
                                 f"{row[index]!r}; expected a finite number (a score).")
            labels[i, j] = value
    return dataclasses.replace(unlabelled, labels=labels,
                               classes=[table.header[i] for i in indices], scores=True)


def read_lines(stream: Iterable[str], source: str = "<stdin>") -> list[str]:
    """One text per line (e.g. `sys.stdin` for predict), line endings removed.

    Empty lines are kept as empty texts, so that output line i always answers input line i;
    the newline that ends the last line does not start another one ("a\\nb\\n" is 2 texts).
    A byte-order mark at the start is dropped. Pairs are written "first ||| second"; a line
    with more than one separator is a ValueError naming `source` and the line.
    """
    texts = []
    for line in stream:
        if line.endswith("\r\n"):
            line = line[:-2]
        elif line.endswith(("\n", "\r")):
            line = line[:-1]
        texts.append(line)
    if texts and texts[0].startswith("\ufeff"):
        texts[0] = texts[0][1:]
    check_pair_texts(texts, source, range(1, len(texts) + 1))
    return texts


def split_text_lines(data: bytes | str, source: str = "<stdin>") -> list[str]:
    """One text per line of a whole input (a .txt file's or stdin's bytes), as `read_lines`.

    Lines end at "\\n" (a "\\r" before it is dropped): a lone carriage return inside a line
    stays in its text, so output line i answers input line i. Only an input with no "\\n"
    at all (old Mac files) is split at carriage returns. Bytes must be UTF-8.

    Raises:
      ValueError: not UTF-8 (naming `source`, the line and the byte), or a line with more
        than one pair separator.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise ValueError(f"{source}: expected UTF-8 text, found byte {data[e.start]:#04x} "
                             f"at byte offset {e.start} (line {line}).") from None
    else:
        text = data
    ending = "\n" if "\n" in text or "\r" not in text else "\r"
    lines = text.split(ending)
    if lines[-1] == "":
        lines.pop()  # The newline that ends the last line starts no text.
    texts = [line[:-1] if ending == "\n" and line.endswith("\r") else line for line in lines]
    if texts and texts[0].startswith("\ufeff"):
        texts[0] = texts[0][1:]
    for line, text_ in enumerate(texts, start=1):
        if _SURROGATE.search(text_):  # Bad bytes a text stream let through (surrogateescape).
            raise ValueError(f"{source}: expected UTF-8 text, found bytes that are not UTF-8 "
                             f"(line {line}).")
    check_pair_texts(texts, source, range(1, len(texts) + 1))
    return texts


def check_pair_texts(texts: Sequence[str], source: str, lines: Iterable[int]) -> None:
    """The pair rule of `check_pair_text` on every text, naming the file and line."""
    for line, text in zip(lines, texts):
        if text.count(PAIR_SEPARATOR) > 1:  # Cheap test first; the rule words the message.
            try:
                check_pair_text(text)
            except ValueError as e:
                raise ValueError(f"{source}: line {line}: {e}") from None


def _read_table(path: str) -> Table:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Data file not found: {path!r} (expected a TSV or CSV file "
                                f"with a header row).")
    delimiter = _delimiter(path)
    # Tab-separated files are not quoted: GLUE strings hold unbalanced double quotes.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return parse_table(f, path, delimiter=delimiter, quoting=quoting)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: expected UTF-8 text, found byte {e.object[e.start]:#04x} "
                         f"at byte offset {e.start}.") from e


def _delimiter(path: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    if extension in _DELIMITERS:
        return _DELIMITERS[extension]
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        sample = f.read(_SNIFF_BYTES)
    try:
        return csv.Sniffer().sniff(sample, delimiters=_SNIFF_DELIMITERS).delimiter
    except csv.Error as e:
        raise ValueError(
            f"{path}: cannot tell the field delimiter from the extension {extension!r} "
            f"(expected .tsv, .tab or .csv) nor from the content ({e}). Rename the file to "
            f".tsv or .csv.") from e


def parse_table(lines: Iterable[str], source: str, *, delimiter: str, quoting: int) -> Table:
    """Header and rows of a delimited text; checks that every row has the header's width."""
    # strict: a quote that is not closed properly is an error, not rows merged into one field.
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting, strict=True)
    header, rows, starts = None, [], []
    previous_end = 0
    try:
        for row in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not row:
                continue  # A blank line.
            if header is None:
                header = row
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{source}: line {start} has {len(row)} fields, expected {len(header)} "
                    f"as in the header {header}{_delimiter_hint(delimiter)}.")
            rows.append(row)
            starts.append(start)
    except csv.Error as e:
        start = previous_end + 1
        where = f"line {start}" if start == reader.line_num else \
            f"the row starting on line {start} (read up to line {reader.line_num})"
        raise ValueError(f"{source}: cannot parse {where}: {e}; expected every quoted field to "
                         f"end with a quote followed by {delimiter!r} or the end of the line "
                         f"(an unterminated quote?).") from e
    if header is None:
        raise ValueError(f"{source}: the file is empty; expected a header row, then one row "
                         f"per example.")
    if not rows:
        raise ValueError(f"{source}: expected rows after the header {header}, found none.")
    return Table(source=source, header=header, rows=rows, lines=starts)


def _delimiter_hint(delimiter: str) -> str:
    if delimiter == "\t":
        return " (tab-separated, no quoting: a text must not contain a tab)"
    return f" (delimiter {delimiter!r}; quote fields that contain it)"


# ---------------------------------------------------------------------------------------------
# From rows to examples.


def examples_from_table(table: Table, *, text_column: str | int,
                         pair_column: str | int | None, label_column: str | int | None,
                         labels: list[str] | None, multi_label: bool,
                         label_separator: str) -> Examples:
    indices = distinct_columns(table, text_column=text_column, pair_column=pair_column,
                               label_column=label_column)
    text_index, pair_index, label_index = (indices.get(k) for k in ("text_column",
                                                                    "pair_column",
                                                                    "label_column"))
    texts = [row[text_index] for row in table.rows]
    if pair_index is not None:
        texts = _join_pairs(table, texts, [row[pair_index] for row in table.rows])
    else:
        check_pair_texts(texts, table.source, table.lines)
    if label_index is None:
        return Examples(texts=texts, labels=None, classes=list(labels or []),
                        source=table.source, lines=list(table.lines))
    values = [row[label_index].strip() for row in table.rows]
    if multi_label:
        if not label_separator:
            raise ValueError(f"{table.source}: label_separator must be a non-empty string, "
                             f"found {label_separator!r}.")
        names = [[part.strip() for part in v.split(label_separator) if part.strip()]
                 for v in values]
    else:
        names = [[v] if v else [] for v in values]  # An empty label is reported below.
    classes = labels if labels is not None else _infer_classes(names)
    if not classes:
        raise ValueError(f"{table.source}: column {table.header[label_index]!r} holds no "
                         f"labels; expected at least one class name.")
    return Examples(texts=texts, labels=_encode_labels(table, names, classes, multi_label),
                    classes=classes, source=table.source, lines=list(table.lines))


def distinct_columns(table: Table, **columns: str | int | None) -> dict[str, int]:
    """`column_index` of each argument given (None: absent); two arguments naming one column
    (the text as its own label, a pair of the text with itself) are refused."""
    indices = {argument: column_index(table, column, argument)
               for argument, column in columns.items() if column is not None}
    seen: dict[int, str] = {}
    for argument, index in indices.items():
        if index in seen:
            raise ValueError(f"{table.source}: {seen[index]} and {argument} both name column "
                             f"{index} ({table.header[index]!r}); expected different columns.")
        seen[index] = argument
    return indices


def column_index(table: Table, column: str | int, argument: str) -> int:
    """A header name, or a 0-based index given as int or digits (a name takes precedence).

    Digits that name one column and index another (header '1', '0') are refused: which the
    user meant cannot be told, and taking the wrong one swaps texts and labels."""
    header = table.header
    found = ", ".join(f"{i}: {name!r}" for i, name in enumerate(header))
    if (isinstance(column, str) and column in header and column.isascii() and column.isdigit()
            and int(column) < len(header) and header.index(column) != int(column)):
        raise ValueError(f"{table.source}: {argument} {column!r} is both the name of column "
                         f"{header.index(column)} and the 0-based index of column {int(column)} "
                         f"({header[int(column)]!r}); expected a header whose names are not "
                         f"digits (does the file lack a header row?). Columns found: {found}.")
    if isinstance(column, str) and column in header:
        if header.count(column) > 1:
            raise ValueError(f"{table.source}: {argument} {column!r} names several columns; "
                             f"give its 0-based index instead. Columns found: {found}.")
        return header.index(column)
    is_index = isinstance(column, int) or (isinstance(column, str) and column.isascii()
                                           and column.isdigit())
    if is_index and not isinstance(column, bool) and 0 <= int(column) < len(header):
        return int(column)
    raise ValueError(f"{table.source}: {argument} {column!r} is not a column name nor a 0-based "
                     f"index below {len(header)}. Columns found: {found}.")


def _join_pairs(table: Table, first: list[str], second: list[str]) -> list[str]:
    for line, a, b in zip(table.lines, first, second):
        if PAIR_SEPARATOR in a or PAIR_SEPARATOR in b:
            raise ValueError(f"{table.source}: line {line} has a pair text containing the pair "
                             f"separator {PAIR_SEPARATOR!r}; expected it only between the two "
                             f"texts, so the pair could not be split back.")
    return [f"{a} {PAIR_SEPARATOR} {b}" for a, b in zip(first, second)]


def _check_declared_labels(labels: Sequence[str], source: str) -> list[str]:
    if isinstance(labels, str):
        raise ValueError(f"{source}: labels must be a list of class names, found the string "
                         f"{labels!r}.")
    labels = list(labels)
    duplicates = sorted({name for name in labels if labels.count(name) > 1})
    if not labels or duplicates or not all(isinstance(name, str) for name in labels):
        raise ValueError(f"{source}: labels must be a non-empty list of distinct strings, "
                         f"found {labels!r}.")
    return labels


def _infer_classes(names: list[list[str]]) -> list[str]:
    """Sorted distinct label values; numerically when all of them are finite numbers."""
    distinct = {name for row in names for name in row}
    numbers = {name: _as_number(name) for name in distinct}
    if all(value is not None for value in numbers.values()):
        return sorted(distinct, key=lambda name: (numbers[name], name))
    return sorted(distinct)


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _encode_labels(table: Table, names: list[list[str]], classes: list[str],
                   multi_label: bool) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    for line, row in zip(table.lines, names):
        if not multi_label and not row:
            raise ValueError(f"{table.source}: line {line} has an empty label; expected one "
                             f"of {classes}.")
        for name in row:
            if name not in index:
                raise ValueError(f"{table.source}: line {line} has label {name!r}, expected "
                                 f"one of {classes}.")
    if not multi_label:
        return np.array([index[row[0]] for row in names], dtype=np.int32)  # [n]
    multi_hot = np.zeros([len(names), len(classes)], dtype=np.float32)  # [n, C]
    for i, row in enumerate(names):
        multi_hot[i, [index[name] for name in row]] = 1.0
    return multi_hot
