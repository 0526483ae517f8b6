"""Text to BERT word-piece ids: in the TensorFlow graph, or through Google's FullTokenizer.

Two tokenizers with one interface, `tokenize(texts) -> tf.RaggedTensor`, int32 ids of shape
`[batch, (tokens)]` for a string tensor of shape `[batch]`:

  GraphTokenizer: tensorflow-text and core TF ops only. Stateless (no lookup tables or other
    resources: the vocabulary and the Unicode tables are constants of the graph), so it runs
    eagerly, in `tf.function`, in `tf.data`, in TF1 graphs, and survives freezing.
  NumpyTokenizer: `bert.tokenization.FullTokenizer` through `tf.numpy_function`. The
    reference behaviour, but Python: it cannot be serialized, frozen or moved.

Both give the ids of `FullTokenizer.tokenize` + `convert_tokens_to_ids`; docs/tokenization.md
explains how the graph version reaches that, step by step.
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
# FastWordpieceTokenizer builds its model with this function; calling it directly gives the
# model as bytes, so that no tensor is made before the graph it belongs to exists.
from tensorflow_text.core.pybinds import pywrap_fast_wordpiece_tokenizer_model_builder

UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
PAD_TOKEN = "[PAD]"
SUFFIX_INDICATOR = "##"
# FullTokenizer's WordpieceTokenizer(max_input_chars_per_word=200): longer words, counted in
# characters (code points), become [UNK].
MAX_INPUT_CHARS_PER_WORD = 200
_MAX_BYTES_PER_CHAR = 4  # UTF-8

_NUM_CODE_POINTS = 0x110000
_SPACE = 0x20
_CAPITAL_SIGMA = 0x3A3
_SMALL_FINAL_SIGMA = 0x3C2

# Google's BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks only.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# Google's _is_punctuation: all non-letter, non-digit ASCII counts, e.g. "$", "^" and "`".
_ASCII_PUNCTUATION_RANGES = ((33, 47), (58, 64), (91, 96), (123, 126))

# Classes of input characters (before lower-casing): what _clean_text and
# _tokenize_chinese_chars do with them.
_KEEP, _DROP, _WHITESPACE, _CJK = 0, 1, 2, 3
# Classes of characters after lower-casing: what whitespace_tokenize and _run_split_on_punc
# do with them.
_WORD_CHAR, _SEPARATOR, _PUNCTUATION = 0, 1, 2
# Classes for Python's Final_Sigma rule (see _final_sigmas).
_NEUTRAL, _CASE_IGNORABLE, _CASED = 0, 1, 2


def load_vocab(vocab_file: str) -> list[str]:
    """Returns the tokens of `vocab_file` by id, as FullTokenizer's `load_vocab` reads them.

    One token a line, stripped of surrounding whitespace; the id is the line number. A
    repeated token keeps its first id and the lines after it move up by one, exactly as in
    FullTokenizer; so ids equal line numbers in vocabularies without repeats (BERT's).

    Raises:
      FileNotFoundError: `vocab_file` does not exist.
    """
    if not tf.io.gfile.exists(vocab_file):
        raise FileNotFoundError(f"Vocabulary file not found: {vocab_file}")
    with tf.io.gfile.GFile(vocab_file, "rb") as f:
        lines = f.read().split(b"\n")
    if lines[-1] == b"":  # A final newline ends the last line; it does not start a token.
        lines.pop()
    tokens = (line.decode("utf-8", "ignore").strip() for line in lines)
    return list(dict.fromkeys(tokens))


class _VocabTokenizer:
    """The vocabulary and special ids that both tokenizers share."""

    def __init__(self, vocab_file: str, do_lower_case: bool):
        if not isinstance(do_lower_case, (bool, np.bool_)):
            raise TypeError(f"do_lower_case must be a bool. Received: {do_lower_case!r}")
        self.vocab_file = vocab_file
        self.do_lower_case = bool(do_lower_case)
        self.vocab = load_vocab(vocab_file)
        ids = {token: i for i, token in enumerate(self.vocab)}
        missing = [t for t in (CLS_TOKEN, SEP_TOKEN, UNK_TOKEN) if t not in ids]
        if missing:
            raise ValueError(f"{vocab_file}: the vocabulary lacks {', '.join(missing)}; a BERT "
                             f"vocabulary needs {CLS_TOKEN}, {SEP_TOKEN} and {UNK_TOKEN}.")
        self.cls_id = ids[CLS_TOKEN]
        self.sep_id = ids[SEP_TOKEN]
        self.unk_id = ids[UNK_TOKEN]
        self.pad_id = ids.get(PAD_TOKEN, 0)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


# === Unicode tables, computed from this Python's unicodedata (the data FullTokenizer uses) ===


@dataclasses.dataclass(frozen=True)
class _StepTable:
    """A function of code points, constant on intervals: `labels[i]` on [starts[i], starts[i+1])."""

    starts: np.ndarray  # int32 [intervals], starts[0] == 0
    labels: np.ndarray  # int32 [intervals]

    @classmethod
    def from_dense(cls, values: np.ndarray) -> _StepTable:
        starts = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1])
        return cls(starts.astype(np.int32), values[starts].astype(np.int32))

    def lookup(self, code_points: tf.Tensor) -> tf.Tensor:
        """int32 labels of the int32 `code_points`, same shape (1-D)."""
        index = tf.searchsorted(tf.constant(self.starts), code_points, side="right") - 1
        return tf.gather(tf.constant(self.labels), index)


@dataclasses.dataclass(frozen=True)
class _UnicodeTables:
    input_class: _StepTable  # _KEEP, _DROP, _WHITESPACE or _CJK
    output_class: _StepTable  # _WORD_CHAR, _SEPARATOR or _PUNCTUATION
    sigma_context: _StepTable  # _NEUTRAL, _CASE_IGNORABLE or _CASED
    combining_class: _StepTable  # Canonical_Combining_Class, 0..254
    nonspacing_mark: _StepTable  # 1 for category Mn (what _run_strip_accents drops)
    # NFD(c.lower()) for every code point c it changes: a ragged table, sorted by key.
    lower_nfd_keys: np.ndarray  # int32 [K]
    lower_nfd_splits: np.ndarray  # int32 [K + 1]
    lower_nfd_values: np.ndarray  # int32 [sum of lengths]


@functools.cache
def _unicode_tables() -> _UnicodeTables:
    """Builds the tables once per process (about a second)."""
    chars = [chr(cp) for cp in range(_NUM_CODE_POINTS)]
    lowered = [c.lower() for c in chars]
    categories = np.array([unicodedata.category(c) for c in chars])

    # _clean_text drops \0, U+FFFD and control/format characters except \t, \n and \r, and
    # turns whitespace into " "; str.split() also splits on the other isspace() characters
    # (e.g. U+2028), so they separate words too.
    drop = np.isin(categories, ["Cc", "Cf"])
    drop[[ord("\t"), ord("\n"), ord("\r")]] = False
    drop[[0, 0xFFFD]] = True
    whitespace = (categories == "Zs") | np.array([c.isspace() for c in chars])
    input_class = np.full(_NUM_CODE_POINTS, _KEEP, np.int32)
    for first, last in _CJK_RANGES:
        input_class[first:last + 1] = _CJK
    input_class[whitespace] = _WHITESPACE
    input_class[drop] = _DROP

    output_class = np.full(_NUM_CODE_POINTS, _WORD_CHAR, np.int32)
    output_class[np.char.startswith(categories, "P")] = _PUNCTUATION
    for first, last in _ASCII_PUNCTUATION_RANGES:
        output_class[first:last + 1] = _PUNCTUATION
    output_class[whitespace] = _SEPARATOR

    keys, pieces = [], []
    for cp, (c, mapped) in enumerate(zip(chars, lowered)):
        if not unicodedata.is_normalized("NFD", mapped):
            mapped = unicodedata.normalize("NFD", mapped)
        if mapped != c and not 0xD800 <= cp <= 0xDFFF:
            keys.append(cp)
            pieces.append([ord(m) for m in mapped])
    lengths = [len(p) for p in pieces]

    tables = _UnicodeTables(
        input_class=_StepTable.from_dense(input_class),
        output_class=_StepTable.from_dense(output_class),
        sigma_context=_StepTable.from_dense(_sigma_context(lowered)),
        combining_class=_StepTable.from_dense(
            np.array([unicodedata.combining(c) for c in chars], np.int32)),
        nonspacing_mark=_StepTable.from_dense((categories == "Mn").astype(np.int32)),
        lower_nfd_keys=np.array(keys, np.int32),
        lower_nfd_splits=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32),
        lower_nfd_values=np.array([m for p in pieces for m in p], np.int32))
    _check_assumptions(chars, input_class, tables)
    return tables


def _sigma_context(lowered: list[str]) -> np.ndarray:
    """Python's Case_Ignorable and Cased properties, read off `str.lower()` itself.

    Python has no API for them, but its Final_Sigma rule shows them: "XΣ" ends in "ς" iff X
    is cased and not case-ignorable; "AXΣ" ends in "ς" iff X is either. A space before each
    probe keeps the probes apart (it is neither).
    """
    lengths = np.fromiter(map(len, lowered), np.int64, count=_NUM_CODE_POINTS)
    one_char = np.flatnonzero(lengths == 1)  # Their probes keep their length when lowered.
    one_char = one_char[(one_char < 0xD800) | (one_char > 0xDFFF)]  # No surrogates in text.

    def probe(prefix: str) -> np.ndarray:
        columns = [_SPACE, *map(ord, prefix), one_char, _CAPITAL_SIGMA]
        probes = np.stack(np.broadcast_arrays(*columns), axis=1).astype("<u4")
        text = probes.tobytes().decode("utf-32-le").lower().encode("utf-32-le")
        final = np.zeros(_NUM_CODE_POINTS, bool)
        final[one_char] = np.frombuffer(text, "<u4")[probes.shape[1] - 1::probes.shape[1]] == (
            _SMALL_FINAL_SIGMA)
        for cp in np.flatnonzero(lengths != 1):
            final[cp] = ord((prefix + chr(cp) + chr(_CAPITAL_SIGMA)).lower()[-1]) == (
                _SMALL_FINAL_SIGMA)
        return final

    cased_only = probe("")
    either = probe("A")
    context = np.full(_NUM_CODE_POINTS, _NEUTRAL, np.int32)
    context[either & ~cased_only] = _CASE_IGNORABLE
    context[cased_only] = _CASED
    return context


def _check_assumptions(chars: list[str], input_class: np.ndarray,
                       tables: _UnicodeTables) -> None:
    """The graph pipeline relies on these facts of Unicode; a future version could break them."""
    sigma = chr(_CAPITAL_SIGMA)
    problems = []
    if sigma.lower() != "\u03c3" or ("A" + sigma).lower() != "a\u03c2":
        problems.append("str.lower() of capital sigma")
    for cp in np.flatnonzero(input_class == _CJK)[::97]:  # A sample is enough: blocks are uniform.
        mapped = unicodedata.normalize("NFD", chars[cp].lower())
        if len(mapped) != 1 or unicodedata.combining(mapped) or not mapped.isalpha():
            problems.append(f"CJK U+{cp:04X} does not stay one letter")
    context = tables.sigma_context.labels[
        np.searchsorted(tables.sigma_context.starts, [_SPACE, 0x4E00], side="right") - 1]
    if context.any():
        problems.append("space or CJK is cased or case-ignorable")
    if problems:
        raise RuntimeError(f"This Python's Unicode data ({unicodedata.unidata_version}) breaks "
                           f"GraphTokenizer's assumptions: {problems}.")


# === Graph ops: FullTokenizer's BasicTokenizer on code points ===
# The code points of the whole batch are processed as one flat vector `code_points` [N] with
# the batch row of each in `rows` [N] (int64, sorted), so every step is one vectorised op.


def _final_sigmas(code_points: tf.Tensor, rows: tf.Tensor, tables: _UnicodeTables) -> tf.Tensor:
    """Writes "ς" for each "Σ" that str.lower() would lower to "ς".

    Python's rule (Unicode's Final_Sigma): Σ is final when the nearest character before it
    that is not case-ignorable is cased, and the nearest one after it is not cased (or
    absent), both within the word. Spaces and CJK ideographs end words and are neither.
    """
    context = tables.sigma_context.lookup(code_points)
    sigmas = tf.where(tf.equal(code_points, _CAPITAL_SIGMA))[:, 0]  # int64 [S]
    anchors = tf.where(tf.not_equal(context, _CASE_IGNORABLE))[:, 0]  # int64 [A], sigmas too
    num_anchors = tf.size(anchors, out_type=tf.int64)
    before = tf.searchsorted(anchors, sigmas, side="left", out_type=tf.int64) - 1
    after = tf.searchsorted(anchors, sigmas, side="right", out_type=tf.int64)
    # With no sigma the gathers below are empty; with one, anchors is not empty.
    before_pos = tf.gather(anchors, tf.maximum(before, 0))
    after_pos = tf.gather(anchors, tf.minimum(after, num_anchors - 1))
    sigma_rows = tf.gather(rows, sigmas)

    def cased_at(index, position):
        exists = (index >= 0) & (index < num_anchors)
        same_word = tf.equal(tf.gather(rows, position), sigma_rows)
        return exists & same_word & tf.equal(tf.gather(context, position), _CASED)

    final = cased_at(before, before_pos) & ~cased_at(after, after_pos)
    positions = tf.boolean_mask(sigmas, final)
    return tf.tensor_scatter_nd_update(
        code_points, positions[:, None],
        tf.fill(tf.shape(positions), tf.constant(_SMALL_FINAL_SIGMA, tf.int32)))


def _lower_nfd(code_points: tf.Tensor, per_char: list[tf.Tensor],
               tables: _UnicodeTables) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Maps each code point c to NFD(c.lower()), one to many; `per_char` values repeat along."""
    keys = tf.constant(tables.lower_nfd_keys)
    splits = tf.constant(tables.lower_nfd_splits)
    index = tf.minimum(tf.searchsorted(keys, code_points, side="left"), tf.size(keys) - 1)
    hit = tf.equal(tf.gather(keys, index), code_points)
    lengths = tf.where(hit, tf.gather(splits[1:] - splits[:-1], index), 1)
    first = tf.where(hit, tf.gather(splits, index), 0)
    offset = (tf.range(tf.reduce_sum(lengths))
              - tf.repeat(tf.cumsum(lengths, exclusive=True), lengths))  # Within each char.
    mapped = tf.gather(tf.constant(tables.lower_nfd_values), tf.repeat(first, lengths) + offset)
    code_points = tf.where(tf.repeat(hit, lengths), mapped, tf.repeat(code_points, lengths))
    return code_points, [tf.repeat(x, lengths) for x in per_char]


def _canonical_order(code_points: tf.Tensor, rows: tf.Tensor, per_char: list[tf.Tensor],
                     tables: _UnicodeTables) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
    """NFD's canonical reordering: marks after a starter sort stably by combining class.

    Per-character NFD above leaves this out; it matters for the marks that survive accent
    stripping (spacing marks such as U+1D16D), as the order of word characters.
    """
    combining = tf.cast(tables.combining_class.lookup(code_points), tf.int64)
    position = tf.range(tf.size(code_points, out_type=tf.int64))
    starter = tf.equal(combining, 0) | tf.not_equal(rows, _shift_right(rows, -1))
    starters = tf.boolean_mask(position, starter)
    group = tf.gather(starters, tf.cumsum(tf.cast(starter, tf.int64)) - 1)
    order = tf.argsort(group * 256 + combining, stable=True)
    return (tf.gather(code_points, order), tf.gather(rows, order),
            [tf.gather(x, order) for x in per_char])


def _shift_right(values: tf.Tensor, fill) -> tf.Tensor:
    """`values` moved one place right, `fill` first: the previous element of each."""
    return tf.concat([tf.fill([1], tf.constant(fill, values.dtype)), values], 0)[:-1]


def _group_words(code_points: tf.Tensor, rows: tf.Tensor, is_separator: tf.Tensor,
                 alone: tf.Tensor, num_rows: tf.Tensor) -> tf.RaggedTensor:
    """Words [batch, (words)] of the characters between separators; `alone` ones stand alone."""
    new_row = tf.not_equal(rows, _shift_right(rows, -1))
    after_break = _shift_right(is_separator | alone, True)
    starts = ~is_separator & (alone | after_break | new_row)
    keep = ~is_separator
    code_points, rows, starts = (tf.boolean_mask(x, keep) for x in (code_points, rows, starts))
    word_index = tf.cumsum(tf.cast(starts, tf.int64)) - 1
    word_chars = tf.RaggedTensor.from_value_rowids(
        code_points, word_index, nrows=tf.reduce_sum(tf.cast(starts, tf.int64)), validate=False)
    words = tf.strings.unicode_encode(word_chars, "UTF-8")
    return tf.RaggedTensor.from_value_rowids(
        words, tf.boolean_mask(rows, starts), nrows=num_rows, validate=False)


def _wordpiece_vocab(vocab: list[str]) -> list[str]:
    """`vocab` with each token that holds NUL (FastWordpieceTokenizer's trie cannot store one)
    replaced by a unique placeholder with a leading space. Neither is ever matched: words hold
    no NUL (_clean_text drops it) and no space, and vocab tokens are stripped."""
    return [f" unreachable token {i}" if "\x00" in t else t for i, t in enumerate(vocab)]


def _wordpiece_model(vocab: list[str]) -> np.ndarray:
    """FastWordpieceTokenizer's model for whole words (uint8 bytes), long enough for 200 chars."""
    model = pywrap_fast_wordpiece_tokenizer_model_builder.build_fast_wordpiece_model(
        _wordpiece_vocab(vocab), MAX_INPUT_CHARS_PER_WORD * _MAX_BYTES_PER_CHAR,
        SUFFIX_INDICATOR, UNK_TOKEN, True, False)  # no_pretokenization, support_detokenization
    return np.frombuffer(model, np.uint8)


def text_batch(texts) -> tf.Tensor:
    """`texts` as a string tensor of shape [batch]; ValueError for any other known rank."""
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    if texts.shape.rank is not None and texts.shape.rank != 1:
        raise ValueError(f"Expected a string tensor of shape [batch]. Received shape "
                         f"{texts.shape}.")
    return texts


class GraphTokenizer(_VocabTokenizer):
    """FullTokenizer's word-piece ids from stateless TensorFlow ops.

    The steps of Google's BasicTokenizer work on the code points of the batch, with tables
    computed from this Python's `unicodedata` and `str.lower()`, the very data FullTokenizer
    uses; then tf_text.FastWordpieceTokenizer (greedy longest match first, the same result as
    FullTokenizer's WordpieceTokenizer) maps each word to ids. The vocabulary and tables
    are graph constants: no resources, so graphs using it can be frozen and moved.

    Args:
      vocab_file: str. One token a line (see `load_vocab`); must hold [CLS], [SEP], [UNK].
      do_lower_case: bool. Lower-case and strip accents, as FullTokenizer(do_lower_case).

    Example (vocab ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn",
    "##ing", ","], lower-cased):
      tokenize(["UNwant\u00e9d,running"]) -> <tf.RaggedTensor [[7, 4, 5, 10, 8, 9]]>

    Note: no class of characters is known to give other ids than FullTokenizer, for any input
    bytes (docs/tokenization.md). The Unicode tables come from the Python that builds the
    graph, so a saved graph keeps that Python's Unicode version (3.11: Unicode 14.0).
    """

    def __init__(self, vocab_file: str, do_lower_case: bool):
        super().__init__(vocab_file, do_lower_case)
        self._tables = _unicode_tables()
        self._wordpiece_model = _wordpiece_model(self.vocab)
        # Eager calls run as one graph: dispatching its ~80 small ops one by one costs more
        # than the work itself.
        self._eager_tokenize = tf.function(
            self._tokenize, input_signature=[tf.TensorSpec([None], tf.string)])

    def split_words(self, texts) -> tf.RaggedTensor:
        """FullTokenizer's BasicTokenizer: string words `[batch, (words)]` of `texts` [batch]."""
        texts = text_batch(texts)
        chars = tf.strings.unicode_decode(texts, "UTF-8", errors="ignore")  # [B, (chars)]
        code_points, rows = chars.flat_values, chars.value_rowids()

        # _clean_text and _tokenize_chinese_chars.
        input_class = self._tables.input_class.lookup(code_points)
        keep = tf.not_equal(input_class, _DROP)
        code_points, rows, input_class = (
            tf.boolean_mask(x, keep) for x in (code_points, rows, input_class))
        code_points = tf.where(tf.equal(input_class, _WHITESPACE), _SPACE, code_points)
        alone = tf.equal(input_class, _CJK)

        if self.do_lower_case:  # token.lower(), then _run_strip_accents.
            code_points = _final_sigmas(code_points, rows, self._tables)
            code_points, (rows, alone) = _lower_nfd(code_points, [rows, alone], self._tables)
            code_points, rows, (alone,) = _canonical_order(
                code_points, rows, [alone], self._tables)
            keep = tf.equal(self._tables.nonspacing_mark.lookup(code_points), 0)
            code_points, rows, alone = (
                tf.boolean_mask(x, keep) for x in (code_points, rows, alone))

        # _run_split_on_punc and whitespace_tokenize.
        output_class = self._tables.output_class.lookup(code_points)
        alone |= tf.equal(output_class, _PUNCTUATION)
        return _group_words(code_points, rows, tf.equal(output_class, _SEPARATOR), alone,
                            chars.nrows())

    def tokenize(self, texts) -> tf.RaggedTensor:
        """int32 word-piece ids `[batch, (tokens)]` of the string tensor `texts` [batch]."""
        texts = text_batch(texts)
        if tf.executing_eagerly():
            return self._eager_tokenize(texts)
        return self._tokenize(texts)

    def _tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        words = self.split_words(texts)
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > (
            MAX_INPUT_CHARS_PER_WORD)
        # The word "[UNK]" is its own longest match, so it comes out as unk_id.
        flat_words = tf.where(too_long, UNK_TOKEN, words.flat_values)
        wordpiece = tf_text.FastWordpieceTokenizer(
            model_buffer=tf.constant(self._wordpiece_model), token_out_type=tf.int32)
        return words.with_flat_values(wordpiece.tokenize(flat_words)).merge_dims(1, 2)


class NumpyTokenizer(_VocabTokenizer):
    """Google's FullTokenizer run through `tf.numpy_function`: the original design.

    Same interface and ids as GraphTokenizer, but the graph holds a Python callback, so it
    cannot be saved, frozen or run outside this process.
    """

    def __init__(self, vocab_file: str, do_lower_case: bool):
        super().__init__(vocab_file, do_lower_case)
        from absl import flags
        from bert import tokenization
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()  # FullTokenizer reads --preserve_unused_tokens.
        self._full_tokenizer = tokenization.FullTokenizer(vocab_file, self.do_lower_case)

    def _tokenize_numpy(self, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        full = self._full_tokenizer
        ids = [full.convert_tokens_to_ids(full.tokenize(text)) for text in texts]
        return (np.array([i for row in ids for i in row], np.int32),
                np.array([len(row) for row in ids], np.int64))

    def tokenize(self, texts) -> tf.RaggedTensor:
        """int32 word-piece ids `[batch, (tokens)]` of the string tensor `texts` [batch]."""
        texts = text_batch(texts)
        values, lengths = tf.numpy_function(
            self._tokenize_numpy, [texts], [tf.int32, tf.int64], stateful=False,
            name="full_tokenizer")
        values.set_shape([None])
        lengths.set_shape([None])
        return tf.RaggedTensor.from_row_lengths(values, lengths, validate=False)


Tokenizer = GraphTokenizer | NumpyTokenizer
TOKENIZER_KINDS = {"graph": GraphTokenizer, "numpy": NumpyTokenizer}


def make_tokenizer(kind: str, vocab_file: str, do_lower_case: bool) -> Tokenizer:
    """The tokenizer of `kind`: "graph" (GraphTokenizer) or "numpy" (NumpyTokenizer)."""
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"Unknown tokenizer kind {kind!r}; expected one of "
                         f"{sorted(TOKENIZER_KINDS)}.")
    return TOKENIZER_KINDS[kind](vocab_file, do_lower_case)
