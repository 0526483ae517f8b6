"""Packing: Google's layout and truncation, pairs, dynamic padding, real-data parity.

The reference is tests/reference_packing.py: FullTokenizer plus run_classifier's
`_truncate_seq_pair` and `convert_single_example` packing, restated in plain Python.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import tensorflow as tf
from paths import PATHS, UNFREEZABLE, assert_paths_agree
from real_data import read_mrpc_dev, read_sst2_dev
from reference_packing import full_tokenizer, reference_features, truncate_seq_pair
from tiny import TINY_VOCAB

from bert_layer.text.packing import (
    PAIR_SEPARATOR,
    Preprocessor,
    check_max_seq_length,
    pack_inputs,
    split_pairs,
)
from bert_layer.text.pairs import check_pair_text
from bert_layer.text.tokenizer import make_tokenizer

KINDS = ["graph", "numpy"]
CLS, SEP = 2, 3  # Ids in TINY_VOCAB ([PAD] is 0).
TEXTS = ["the movie was great .", "unwanted running !", "a bad film ||| the plot was fun", "",
         "terrible acting , boring plot ||| no", "it |||"]


@pytest.fixture(scope="module")
def tiny_vocab(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny_vocab") / "vocab.txt"
    path.write_text("".join(t + "\n" for t in TINY_VOCAB), encoding="utf-8")
    return str(path)


def _ragged(rows: list[list[int]]) -> tf.RaggedTensor:
    return tf.ragged.constant(rows, dtype=tf.int32, ragged_rank=1, inner_shape=())


def _numpy(features: dict[str, tf.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in features.items()}


# === pack_inputs ===


def test_golden_packing():
    features = _numpy(pack_inputs(
        _ragged([[11, 12, 13], [14], [], [15, 16]]), _ragged([[21], [22, 23], [], []]),
        tf.constant([True, False, True, False]), max_seq_length=16, cls_id=CLS, sep_id=SEP))
    # The batch is 7 wide: its longest row, not max_seq_length. Row 1 is no pair, so its
    # second ids are ignored; row 2 is a pair of empty texts.
    np.testing.assert_array_equal(features["input_ids"], [[2, 11, 12, 13, 3, 21, 3],
                                                          [2, 14, 3, 0, 0, 0, 0],
                                                          [2, 3, 3, 0, 0, 0, 0],
                                                          [2, 15, 16, 3, 0, 0, 0]])
    np.testing.assert_array_equal(features["segment_ids"], [[0, 0, 0, 0, 0, 1, 1],
                                                            [0, 0, 0, 0, 0, 0, 0],
                                                            [0, 0, 1, 0, 0, 0, 0],
                                                            [0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(features["input_mask"], [[1, 1, 1, 1, 1, 1, 1],
                                                           [1, 1, 1, 0, 0, 0, 0],
                                                           [1, 1, 1, 0, 0, 0, 0],
                                                           [1, 1, 1, 1, 0, 0, 0]])
    assert {v.dtype for v in features.values()} == {np.dtype(np.int32)}


def test_truncation_tie_keeps_the_odd_token_in_a():
    # a and b have 4 tokens each, room for 5: Google pops b first, so a keeps 3 and b 2
    # (tf_text.ShrinkLongestTrimmer would keep 2 and 3).
    features = pack_inputs(_ragged([[11, 12, 13, 14]]), _ragged([[21, 22, 23, 24]]),
                           tf.constant([True]), max_seq_length=8, cls_id=CLS, sep_id=SEP)
    assert features["input_ids"].numpy().tolist() == [[2, 11, 12, 13, 3, 21, 22, 3]]


def _reference_row(a: list[int], b: list[int], is_pair: bool,
                   max_seq_length: int) -> tuple[list[int], list[int]]:
    """run_classifier's packing of already tokenized a and b: (ids, segment ids)."""
    a, b = list(a), list(b)
    if not is_pair:
        ids = [CLS] + a[:max_seq_length - 2] + [SEP]
        return ids, [0] * len(ids)
    truncate_seq_pair(a, b, max_seq_length - 3)
    return [CLS] + a + [SEP] + b + [SEP], [0] * (len(a) + 2) + [1] * (len(b) + 1)


@pytest.mark.parametrize("max_seq_length", range(3, 15))
def test_truncation_matches_truncate_seq_pair(max_seq_length):
    """Every pair of lengths up to 12 + 12, pairs and singles, ties included."""
    cases = list(itertools.product(range(13), range(13), [True, False]))
    firsts = [[100 + i for i in range(la)] for la, _, _ in cases]
    seconds = [[200 + i for i in range(lb)] for _, lb, _ in cases]
    is_pair = [pair for _, _, pair in cases]
    features = _numpy(pack_inputs(_ragged(firsts), _ragged(seconds), tf.constant(is_pair),
                                  max_seq_length=max_seq_length, cls_id=CLS, sep_id=SEP))
    rows = [_reference_row(a, b, p, max_seq_length) for a, b, p in zip(firsts, seconds, is_pair)]
    width = max(len(ids) for ids, _ in rows)
    assert width == max_seq_length and features["input_ids"].shape == (len(cases), width)
    for i, (ids, segments) in enumerate(rows):
        padding = [0] * (width - len(ids))
        assert features["input_ids"][i].tolist() == ids + padding, cases[i]
        assert features["segment_ids"][i].tolist() == segments + padding, cases[i]
        assert features["input_mask"][i].tolist() == [1] * len(ids) + padding, cases[i]


def test_pack_inputs_rejects_dense_ids():
    with pytest.raises(TypeError, match="first_ids must be a RaggedTensor"):
        pack_inputs(tf.constant([[1, 2]]), _ragged([[1]]), tf.constant([False]),
                    max_seq_length=8, cls_id=CLS, sep_id=SEP)


# === Pairs ===


def test_split_pairs():
    first, second, is_pair = split_pairs(["a ||| b", "no pair", "x|||", "", "|||y"])
    assert first.numpy().tolist() == [b"a ", b"no pair", b"x", b"", b""]
    assert second.numpy().tolist() == [b" b", b"", b"", b"", b"y"]
    assert is_pair.numpy().tolist() == [True, False, True, False, True]


TWO_SEPARATORS = "one ||| two ||| three"
SEPARATOR_ERROR = r"(?s)Only one \|\|\| is allowed.*one \|\|\| two \|\|\| three"


def test_more_than_one_separator_fails_eagerly():
    with pytest.raises(tf.errors.InvalidArgumentError, match=SEPARATOR_ERROR):
        split_pairs(["fine ||| pair", TWO_SEPARATORS])


def test_more_than_one_separator_fails_in_tf1_graph(tiny_vocab):
    with tf.Graph().as_default() as graph:
        texts = tf.compat.v1.placeholder(tf.string, [None])
        features = Preprocessor(make_tokenizer("graph", tiny_vocab, True), 16)(texts)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(features, {texts: ["fine ||| pair"]})
            with pytest.raises(tf.errors.InvalidArgumentError, match=SEPARATOR_ERROR):
                session.run(features, {texts: [TWO_SEPARATORS]})


def test_split_pairs_rejects_a_scalar():
    with pytest.raises(ValueError, match=r"shape \[batch\].*\(\)"):
        split_pairs("a ||| b")


def test_check_pair_text():
    check_pair_text("a ||| b")
    check_pair_text("no pair")
    with pytest.raises(ValueError, match=r"Only one \|\|\| is.*found 2 in 'one \|\|\| two"):
        check_pair_text(TWO_SEPARATORS)


# === Preprocessor ===


@pytest.mark.parametrize("max_seq_length", [2, 0, 128.0, True])
def test_preprocessor_rejects_max_seq_length(max_seq_length, tiny_vocab):
    with pytest.raises(ValueError, match=rf"integer >= 3.*Received: {max_seq_length!r}"):
        Preprocessor(make_tokenizer("graph", tiny_vocab, True), max_seq_length)


def test_one_rule_for_max_seq_length_and_positions():
    # A 1024-position model takes 600 (no hard-coded 512); the message names the limit.
    check_max_seq_length(600, 1024)
    with pytest.raises(ValueError, match=r"max_seq_length=1025 exceeds the 1024 position "
                                         r"embeddings of the checkpoint x; pass .*<= 1024"):
        check_max_seq_length(1025, 1024, source="the checkpoint x")


@pytest.mark.parametrize("kind", KINDS)
def test_dynamic_padding(kind, tiny_vocab):
    preprocess = Preprocessor(make_tokenizer(kind, tiny_vocab, True), 128)
    features = preprocess(["the movie was great .", "a film ||| fun"])
    assert features["input_ids"].shape == (2, 7)  # [CLS] 5 tokens [SEP]: far below 128.
    empty = preprocess(tf.constant([], tf.string))
    # [CLS] [SEP]'s width, as for one empty text: the encoder's first-token slices stay in
    # bounds, so BertLayer returns [0, hidden] (issue 17).
    assert {tuple(v.shape) for v in empty.values()} == {(0, 2)}


@pytest.mark.large
@pytest.mark.parametrize("kind", KINDS)
def test_every_execution_path_matches_the_reference(kind, tiny_vocab):
    expected = reference_features(full_tokenizer(tiny_vocab, True), TEXTS, max_seq_length=9)
    preprocess = Preprocessor(make_tokenizer(kind, tiny_vocab, True), 9)
    assert_paths_agree(preprocess, TEXTS, expected,
                       paths=PATHS if kind == "graph" else UNFREEZABLE)


# === Real data ===


@functools.cache
def _dataset_reference(vocab_file: str,
                       max_seq_length: int) -> tuple[list[str], dict[str, np.ndarray]]:
    """MRPC dev pairs ("s1 ||| s2") and SST-2 dev sentences, with the reference features."""
    texts = [f"{a} {PAIR_SEPARATOR} {b}" for a, b, _ in read_mrpc_dev()] + read_sst2_dev()
    return texts, reference_features(full_tokenizer(vocab_file, True), texts, max_seq_length)


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("max_seq_length", [128, 16])
def test_parity_on_mrpc_pairs_and_sst2(kind, max_seq_length, real_vocab):
    texts, expected = _dataset_reference(real_vocab, max_seq_length)
    assert len(texts) == 408 + 872
    features = _numpy(Preprocessor(make_tokenizer(kind, real_vocab, True), max_seq_length)(texts))
    for name in expected:
        np.testing.assert_array_equal(features[name], expected[name], err_msg=name)
