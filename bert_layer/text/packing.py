"""Packing word-piece ids into BERT inputs: `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`
(MPNet: `<s> a </s>` or `<s> a </s></s> b </s>`, padded with `<pad>`).

Texts hold one sentence, or a pair written "a ||| b". The packed batch is as wide as its
longest packed row, capped at `max_seq_length`: never padded further. Truncation is Google's
`run_classifier._truncate_seq_pair` (tf_text.ShrinkLongestTrimmer breaks ties the other way:
for a = b = 4 tokens and room for 5 it keeps 2 + 3, Google keeps 3 + 2).

Dimension legend:
  B = batch size    T = packed length (longest row of the batch, at most max_seq_length)
"""

from __future__ import annotations

import tensorflow as tf

from bert_layer.text.pairs import PAIR_SEPARATOR
from bert_layer.text.tokenizer import Tokenizer, text_batch

MIN_SEQ_LENGTH = 3  # [CLS] a [SEP] b [SEP] with a and b emptied.


def split_pairs(texts) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Splits "a ||| b" texts into (first, second, is_pair), each of shape [B].

    A text without separator gives (text, "", False). Whitespace around the separator stays
    in `first` and `second`; tokenization drops it.

    Raises:
      tf.errors.InvalidArgumentError (when run): a text holds more than one separator; the
        message quotes the texts that do.
    """
    texts = text_batch(texts)
    parts = tf.strings.split(texts, sep=PAIR_SEPARATOR)  # [B, (parts)], at least one part each.
    count = parts.row_lengths()
    check = tf.debugging.Assert(
        tf.reduce_all(count <= 2),
        [f"Only one {PAIR_SEPARATOR} is allowed per text (first {PAIR_SEPARATOR} second); "
         f"these texts have more:", tf.boolean_mask(texts, count > 2)],
        summarize=10, name="check_one_pair_separator")
    with tf.control_dependencies([check]):  # In TF1 graphs nothing else would run the check.
        starts = tf.identity(parts.row_starts())
    is_pair = tf.equal(count, 2)
    first = tf.gather(parts.values, starts)
    second_index = tf.minimum(starts + 1, tf.size(parts.values, out_type=tf.int64) - 1)
    second = tf.where(is_pair, tf.gather(parts.values, second_index), "")
    return first, second, is_pair


def check_max_seq_length(max_seq_length: int, positions: int | None = None,
                         source: str = "the model", minimum: int = MIN_SEQ_LENGTH) -> None:
    """The one rule: room for [CLS] and two [SEP], and no more than the position embeddings.

    Args:
      max_seq_length: the longest packed row asked for.
      positions: the model's `max_position_embeddings` (None: not known here).
      source: what `positions` comes from, for the message.
      minimum: the specials of an emptied pair (`min_seq_length`; 4 for MPNet's).
    """
    if not isinstance(max_seq_length, int) or isinstance(max_seq_length, bool) \
            or max_seq_length < minimum:
        raise ValueError(f"max_seq_length must be an integer >= {minimum} (room for the "
                         f"first token and the separators of a pair). Received: "
                         f"{max_seq_length!r}")
    if positions is not None and max_seq_length > positions:
        raise ValueError(f"max_seq_length={max_seq_length} exceeds the {positions} position "
                         f"embeddings of {source}; pass max_seq_length <= {positions}.")


def min_seq_length(pair_separators: int) -> int:
    """The specials of a pair with both texts emptied: first token, separators, last."""
    return 2 + pair_separators


def _truncated_lengths(len_a: tf.Tensor, len_b: tf.Tensor,
                       budget: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The lengths `_truncate_seq_pair(a, b, budget)` leaves, in closed form.

    Google removes one token at a time from the longer list, from `b` on ties, until the
    total fits; so a long list shrinks to what the other leaves, and two long ones meet at
    half the budget, `a` keeping the odd token.
    """
    keep_a = tf.minimum(len_a, tf.maximum(budget - len_b, (budget + 1) // 2))
    keep_b = tf.minimum(len_b, tf.maximum(budget - len_a, budget // 2))
    return keep_a, keep_b


def _gather_rows(ids: tf.RaggedTensor, index: tf.Tensor) -> tf.Tensor:
    """`ids[i, index[i, j]]` as [B, T], or 0 where `index` is outside row i."""
    inside = (index >= 0) & (index < ids.row_lengths()[:, None])
    flat_index = tf.where(inside, ids.row_starts()[:, None] + index, 0)
    values = tf.concat([tf.cast(ids.flat_values, tf.int32), [0]], 0)  # Never empty.
    return tf.where(inside, tf.gather(values, flat_index), 0)


def pack_inputs(first_ids: tf.RaggedTensor, second_ids: tf.RaggedTensor, is_pair: tf.Tensor,
                *, max_seq_length: int, cls_id: int, sep_id: int, pad_id: int = 0,
                pair_separators: int = 1) -> dict[str, tf.Tensor]:
    """Packs word-piece ids into int32 `input_ids`, `input_mask`, `segment_ids` of shape [B, T].

    Rows are `[CLS] a [SEP]`, or `[CLS] a [SEP] b [SEP]` where `is_pair` (even with `b`
    empty), truncated as Google's run_classifier does; segment 0 covers [CLS] a [SEP] and 1
    covers b [SEP]. Padding (id 0, mask 0) fills up to T, the longest row of the batch.

    Args:
      first_ids: int RaggedTensor [B, (a)], the ids of `a`.
      second_ids: int RaggedTensor [B, (b)], the ids of `b` (ignored where not `is_pair`).
      is_pair: bool Tensor [B].
      max_seq_length: int in [3, 512]. T is at most this.
      cls_id, sep_id: int. Ids of [CLS] and [SEP] (MPNet's `<s>` and `</s>`).
      pad_id: int. The id of padding positions (0: BERT's [PAD]; MPNet's `<pad>` is 1).
      pair_separators: int. [SEP]s between a and b: 1 (BERT), 2 (MPNet's
        `<s> a </s></s> b </s>`, where both separators stay in segment 0).

    Note: a pair whose `b` has no tokens ("a |||") keeps its `[SEP] [SEP]`, as in
    tests/reference_packing.py; run_classifier, which tests `if tokens_b:`, would pack it as
    the single text `a`.
    """
    check_max_seq_length(max_seq_length, minimum=min_seq_length(pair_separators))
    for name, ids in (("first_ids", first_ids), ("second_ids", second_ids)):
        if not isinstance(ids, tf.RaggedTensor) or ids.shape.rank != 2:
            raise TypeError(f"{name} must be a RaggedTensor of shape [batch, (tokens)]. "
                            f"Received: {ids!r}")
    pair = tf.cast(is_pair, tf.int64)  # [B]
    len_a = first_ids.row_lengths()
    len_b = second_ids.row_lengths() * pair
    keep_a, keep_b = _truncated_lengths(len_a, len_b, max_seq_length - 2 - pair * pair_separators)
    # Position of b's first token (or of padding, for a single text).
    b_start = keep_a + 2 + pair * (pair_separators - 1)
    length = b_start + pair * (keep_b + 1)  # [B]

    # T >= 2, the length of an empty text ([CLS] [SEP]): an empty batch packs to [0, 2], so
    # the encoder's first-token slices stay in bounds and it returns [0, hidden].
    position = tf.range(tf.reduce_max(tf.concat([length, [2]], 0)))[None, :]  # [1, T]
    b_start, keep_a, keep_b, length, pair = (
        x[:, None] for x in (b_start, keep_a, keep_b, length, pair))  # [B, 1] each
    is_cls = tf.equal(position, 0)
    is_sep = ((position > keep_a) & (position < b_start)) | (
        tf.equal(position, b_start + keep_b) & tf.equal(pair, 1))
    in_a = (position >= 1) & (position <= keep_a)
    input_mask = position < length  # [B, T]
    input_ids = tf.where(
        is_cls, cls_id, tf.where(
            is_sep, sep_id, tf.where(
                in_a, _gather_rows(first_ids, position - 1),
                tf.where(input_mask, _gather_rows(second_ids, position - b_start), pad_id))))
    segment_ids = input_mask & (position >= b_start)
    return {"input_ids": tf.cast(input_ids, tf.int32),
            "input_mask": tf.cast(input_mask, tf.int32),
            "segment_ids": tf.cast(segment_ids, tf.int32)}


class Preprocessor:
    """Strings [B] ("a" or "a ||| b") to the packed BERT inputs of `pack_inputs`.

    Args:
      tokenizer: a GraphTokenizer or NumpyTokenizer (see bert_layer.text.tokenizer).
      max_seq_length: int >= 3. The longest packed row; callers that know the model check it
        against its positions with `check_max_seq_length`.
    """

    def __init__(self, tokenizer: Tokenizer, max_seq_length: int):
        check_max_seq_length(max_seq_length, minimum=min_seq_length(
            tokenizer.special_tokens.pair_separators))
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length

    def __call__(self, texts) -> dict[str, tf.Tensor]:
        first, second, is_pair = split_pairs(texts)
        batch = tf.size(first, out_type=tf.int64)
        # One tokenizer call for both halves: half the ops, and one word-piece model constant.
        ids = self.tokenizer.tokenize(tf.concat([first, second], 0))  # [2B, (tokens)]
        return pack_inputs(ids[:batch], ids[batch:], is_pair, max_seq_length=self.max_seq_length,
                           cls_id=self.tokenizer.cls_id, sep_id=self.tokenizer.sep_id,
                           pad_id=self.tokenizer.pad_id,
                           pair_separators=self.tokenizer.special_tokens.pair_separators)
