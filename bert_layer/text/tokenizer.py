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

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
# FastWordpieceTokenizer builds its model with this function; calling it directly gives the
# model as bytes, so that no tensor is made before the graph it belongs to exists.
from tensorflow_text.core.pybinds import pywrap_fast_wordpiece_tokenizer_model_builder

from bert_layer.text import TOKENIZER_NAMES, unicode_tables as ut
from bert_layer.text.unicode_tables import UnicodeTables, StepTable, unicode_tables
from bert_layer.text.vocab import CLS_TOKEN, SEP_TOKEN, SUFFIX_INDICATOR, UNK_TOKEN, load_vocab

MAX_INPUT_CHARS_PER_WORD = 200
_MAX_BYTES_PER_CHAR = 4  # UTF-8


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


def _lookup(table: StepTable, code_points: tf.Tensor) -> tf.Tensor:
    """int32 labels of the int32 `code_points` [N] in `table`, same shape."""
    index = tf.searchsorted(tf.constant(table.starts), code_points, side="right") - 1
    return tf.gather(tf.constant(table.labels), index)


# === Graph ops: FullTokenizer's BasicTokenizer on code points ===
# The code points of the whole batch are processed as one flat vector `code_points` [N] with
# the batch row of each in `rows` [N] (int64, sorted), so every step is one vectorised op.


def _final_sigmas(code_points: tf.Tensor, rows: tf.Tensor, tables: UnicodeTables) -> tf.Tensor:
    """Writes "ς" for each "Σ" that str.lower() would lower to "ς".

    Python's rule (Unicode's Final_Sigma): Σ is final when the nearest character before it
    that is not case-ignorable is cased, and the nearest one after it is not cased (or
    absent), both within the word. Spaces and CJK ideographs end words and are neither.
    """
    context = _lookup(tables.sigma_context, code_points)
    sigmas = tf.where(tf.equal(code_points, ut.CAPITAL_SIGMA))[:, 0]  # int64 [S]
    anchors = tf.where(tf.not_equal(context, ut.CASE_IGNORABLE))[:, 0]  # int64 [A], sigmas too
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
        return exists & same_word & tf.equal(tf.gather(context, position), ut.CASED)

    final = cased_at(before, before_pos) & ~cased_at(after, after_pos)
    positions = tf.boolean_mask(sigmas, final)
    return tf.tensor_scatter_nd_update(
        code_points, positions[:, None],
        tf.fill(tf.shape(positions), tf.constant(ut.SMALL_FINAL_SIGMA, tf.int32)))


def _lower_nfd(code_points: tf.Tensor, per_char: list[tf.Tensor],
               tables: UnicodeTables) -> tuple[tf.Tensor, list[tf.Tensor]]:
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
                     tables: UnicodeTables) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
    """NFD's canonical reordering: marks after a starter sort stably by combining class.

    Per-character NFD above leaves this out; it matters for the marks that survive accent
    stripping (spacing marks such as U+1D16D), as the order of word characters.
    """
    combining = tf.cast(_lookup(tables.combining_class, code_points), tf.int64)
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
        self._tables = unicode_tables()
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
        input_class = _lookup(self._tables.input_class, code_points)
        keep = tf.not_equal(input_class, ut.DROP)
        code_points, rows, input_class = (
            tf.boolean_mask(x, keep) for x in (code_points, rows, input_class))
        code_points = tf.where(tf.equal(input_class, ut.WHITESPACE), ut.SPACE, code_points)
        alone = tf.equal(input_class, ut.CJK)

        if self.do_lower_case:  # token.lower(), then _run_strip_accents.
            code_points = _final_sigmas(code_points, rows, self._tables)
            code_points, (rows, alone) = _lower_nfd(code_points, [rows, alone], self._tables)
            code_points, rows, (alone,) = _canonical_order(
                code_points, rows, [alone], self._tables)
            keep = tf.equal(_lookup(self._tables.nonspacing_mark, code_points), 0)
            code_points, rows, alone = (
                tf.boolean_mask(x, keep) for x in (code_points, rows, alone))

        # _run_split_on_punc and whitespace_tokenize.
        output_class = _lookup(self._tables.output_class, code_points)
        alone |= tf.equal(output_class, ut.PUNCTUATION)
        return _group_words(code_points, rows, tf.equal(output_class, ut.SEPARATOR), alone,
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
TOKENIZER_KINDS = dict(zip(TOKENIZER_NAMES, (GraphTokenizer, NumpyTokenizer)))


def make_tokenizer(kind: str, vocab_file: str, do_lower_case: bool) -> Tokenizer:
    """The tokenizer of `kind`: "graph" (GraphTokenizer) or "numpy" (NumpyTokenizer)."""
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"Unknown tokenizer kind {kind!r}; expected one of "
                         f"{sorted(TOKENIZER_KINDS)}.")
    return TOKENIZER_KINDS[kind](vocab_file, do_lower_case)
