"""FullTokenizer's BasicTokenizer in core TensorFlow ops: texts to words, on code points.

The code points of the whole batch are processed as one flat vector `code_points` [N] with the
batch row of each in `rows` [N] (int64, sorted), so every step is one vectorised op. Tables
come from this Python's `unicodedata` (see unicode_tables and docs/tokenization.md). Only ops
that core TensorFlow registers: both word-piece tokenizers build on this.
"""

from __future__ import annotations

import tensorflow as tf

from bert_layer.text import unicode_tables as ut
from bert_layer.text.unicode_tables import StepTable, UnicodeTables


def _lookup(table: StepTable, code_points: tf.Tensor) -> tf.Tensor:
    """int32 labels of the int32 `code_points` [N] in `table`, same shape."""
    index = tf.searchsorted(tf.constant(table.starts), code_points, side="right") - 1
    return tf.gather(tf.constant(table.labels), index)


def final_sigmas(code_points: tf.Tensor, rows: tf.Tensor, tables: UnicodeTables) -> tf.Tensor:
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
    return map_code_points(code_points, per_char, tables.lower_nfd_keys,
                           tables.lower_nfd_splits, tables.lower_nfd_values)


def map_code_points(code_points: tf.Tensor, per_char: list[tf.Tensor], keys, splits,
                    values) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Maps each code point in the sorted int32 `keys` [K] to its values
    `values[splits[k]:splits[k + 1]]` (none to many code points); others stay. `per_char`
    tensors [N] repeat along."""
    keys = tf.constant(keys)
    splits = tf.constant(splits)
    index = tf.minimum(tf.searchsorted(keys, code_points, side="left"), tf.size(keys) - 1)
    hit = tf.equal(tf.gather(keys, index), code_points)
    lengths = tf.where(hit, tf.gather(splits[1:] - splits[:-1], index), 1)
    first = tf.where(hit, tf.gather(splits, index), 0)
    offset = (tf.range(tf.reduce_sum(lengths))
              - tf.repeat(tf.cumsum(lengths, exclusive=True), lengths))  # Within each char.
    mapped = tf.gather(tf.constant(values), tf.repeat(first, lengths) + offset)
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


def text_batch(texts) -> tf.Tensor:
    """`texts` as a string tensor of shape [batch]; ValueError for any other known rank."""
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    if texts.shape.rank is not None and texts.shape.rank != 1:
        raise ValueError(f"Expected a string tensor of shape [batch]. Received shape "
                         f"{texts.shape}.")
    return texts


def traced_tokenize(tokenize):
    """`tokenize` (string [batch] -> ragged ids) as one `tf.function`, traced once.

    Called eagerly, its ~1,300 small ops run as one graph (dispatching them one by one costs
    more than the work); called while a graph is built (a Keras model's train, test and
    predict functions, a `tf.data` map, an export or freeze), it adds one call to the traced
    function instead of building those ops again, which takes ~0.5-1 s each time.
    """
    return tf.function(tokenize, input_signature=[tf.TensorSpec([None], tf.string)],
                       autograph=False)


def split_words(texts, do_lower_case: bool, tables: UnicodeTables) -> tf.RaggedTensor:
    """FullTokenizer's BasicTokenizer: string words `[batch, (words)]` of `texts` [batch]."""
    texts = text_batch(texts)
    chars = tf.strings.unicode_decode(texts, "UTF-8", errors="ignore")  # [B, (chars)]
    code_points, rows = chars.flat_values, chars.value_rowids()

    # _clean_text and _tokenize_chinese_chars.
    input_class = _lookup(tables.input_class, code_points)
    keep = tf.not_equal(input_class, ut.DROP)
    code_points, rows, input_class = (
        tf.boolean_mask(x, keep) for x in (code_points, rows, input_class))
    code_points = tf.where(tf.equal(input_class, ut.WHITESPACE), ut.SPACE, code_points)
    alone = tf.equal(input_class, ut.CJK)

    if do_lower_case:  # token.lower(), then _run_strip_accents.
        code_points = final_sigmas(code_points, rows, tables)
        code_points, (rows, alone) = _lower_nfd(code_points, [rows, alone], tables)
        code_points, rows, (alone,) = _canonical_order(code_points, rows, [alone], tables)
        keep = tf.equal(_lookup(tables.nonspacing_mark, code_points), 0)
        code_points, rows, alone = (tf.boolean_mask(x, keep) for x in (code_points, rows, alone))

    # _run_split_on_punc and whitespace_tokenize.
    output_class = _lookup(tables.output_class, code_points)
    alone |= tf.equal(output_class, ut.PUNCTUATION)
    return _group_words(code_points, rows, tf.equal(output_class, ut.SEPARATOR), alone,
                        chars.nrows())
