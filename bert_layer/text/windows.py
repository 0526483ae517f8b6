"""Long texts as overlapping windows: `[CLS] piece [SEP]` rows that together cover the text.

A text longer than `max_seq_length` wordpieces becomes windows of that length sharing `stride`
wordpieces with the previous one, exactly as a Hugging Face fast tokenizer called with
`truncation=True, max_length=L, stride=S, return_overflowing_tokens=True` cuts it (tokenizers'
`Encoding::truncate`: windows of R = L - 2 wordpieces start at 0, R - S, 2 (R - S), ... until
one reaches the end; S < R). A text that fits is one window, packed as `pack_inputs` packs it.

Pairs ("a ||| b"): the second text stays whole in every window and the first is windowed, as
question-answering code keeps the question whole (Hugging Face's `truncation="only_first"`
with the same `stride`): windows of R = L - 3 - len(b) wordpieces of `a`. A pair whose `b`
leaves no more than `stride` wordpieces of room while `a` does not fit is refused
(`InvalidArgumentError` quoting the texts), as Hugging Face refuses it.

Only TensorFlow ops (core ones), so the windowing lives inside frozen graphs and SavedModels
with any tokenizer; the numpy tokenizer's ids (a `tf.numpy_function`) go through the same ops.

Dimension legend:
  B = texts (documents)    W = windows of the batch (>= B: every text has at least one)
  T = packed length (longest window of the batch, at most max_seq_length)
"""

from __future__ import annotations

import tensorflow as tf

from bert_layer.text.packing import Preprocessor, pack_inputs, split_pairs
from bert_layer.text.strides import WINDOW_SPECIAL_TOKENS, check_stride
from bert_layer.text.tokenizer import Tokenizer, text_batch

# The feature naming, for each window, the text (row of the batch) it comes from: int32 [W],
# sorted, every text present.
WINDOW_DOCUMENT = "window_document"


def window_spans(lengths: tf.Tensor, room: tf.Tensor,
                 stride: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Where each window of each text starts, and how many wordpieces it holds.

    Args:
      lengths: int64 [B], the wordpieces of each (first) text.
      room: int64 [B], the wordpieces of that text a window can hold.
      stride: int >= 0, the wordpieces two windows share; `room - stride` >= 1 wherever a
        text does not fit (the caller checks).

    Returns:
      (document, start, size), int64 [W] each: the text, the first wordpiece, the count.
    """
    step = tf.maximum(room - stride, 1)
    excess = tf.maximum(lengths - room, 0)
    counts = 1 + (excess + step - 1) // step  # ceil(excess / step) more windows after the first.
    document = tf.repeat(tf.range(tf.size(lengths, out_type=tf.int64)), counts)
    index = tf.ragged.range(counts).flat_values  # 0, 1, ... within each text.
    start = index * tf.gather(step, document)
    size = tf.minimum(tf.gather(room, document), tf.gather(lengths, document) - start)
    return document, start, tf.maximum(size, 0)


def _slices(ids: tf.RaggedTensor, document: tf.Tensor, start: tf.Tensor,
            size: tf.Tensor) -> tf.RaggedTensor:
    """`ids[document[w]][start[w]:start[w] + size[w]]` for each window w, as [W, (size)]."""
    first = tf.gather(ids.row_starts(), document) + start
    index = tf.ragged.range(first, first + size)
    return index.with_flat_values(tf.gather(ids.flat_values, index.flat_values))


def window_inputs(first_ids: tf.RaggedTensor, second_ids: tf.RaggedTensor, is_pair: tf.Tensor,
                  *, max_seq_length: int, stride: int, cls_id: int, sep_id: int,
                  pad_id: int = 0, pair_separators: int = 1,
                  texts: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """Packed windows of each text: `input_ids`, `input_mask`, `segment_ids` int32 [W, T] and
    WINDOW_DOCUMENT int32 [W] (the text each window comes from).

    Args:
      first_ids, second_ids: int RaggedTensor [B, (tokens)], as for `pack_inputs`.
      is_pair: bool [B].
      max_seq_length: the length of a window, special tokens included.
      stride: the wordpieces a window shares with the previous one (see `check_stride`).
      cls_id, sep_id: ids of [CLS] and [SEP].
      pad_id, pair_separators: as for `pack_inputs` (MPNet's `<pad>` and `</s></s>`).
      texts: string [B], quoted when a pair leaves its first text no room to move on.
    """
    check_stride(stride, max_seq_length)
    pair = tf.cast(is_pair, tf.int64)
    len_a = first_ids.row_lengths()
    len_b = second_ids.row_lengths() * pair
    room = max_seq_length - WINDOW_SPECIAL_TOKENS - pair * (len_b + pair_separators)  # [B]
    stuck = (len_a > room) & (room - stride < 1)
    message = (f"A pair's second text stays whole in every window of {max_seq_length} "
               f"wordpieces; it must leave the first more than stride={stride} wordpieces of "
               f"room. These pairs do not fit:")
    check = tf.debugging.Assert(
        ~tf.reduce_any(stuck),
        [message, tf.boolean_mask(texts, stuck) if texts is not None else len_b],
        summarize=5, name="check_pair_fits_windows")
    with tf.control_dependencies([check]):
        room = tf.identity(room)
    document, start, size = window_spans(len_a, room, stride)
    features = pack_inputs(
        _slices(first_ids, document, start, size), tf.gather(second_ids, document),
        tf.gather(is_pair, document), max_seq_length=max_seq_length, cls_id=cls_id,
        sep_id=sep_id, pad_id=pad_id, pair_separators=pair_separators)
    features[WINDOW_DOCUMENT] = tf.cast(document, tf.int32)
    return features


class WindowPreprocessor(Preprocessor):
    """Strings [B] to the packed windows of `window_inputs` (one row per window).

    Args:
      tokenizer: a GraphTokenizer, CoreTokenizer or NumpyTokenizer.
      max_seq_length: int, the length of each window.
      stride: int, the wordpieces consecutive windows share (`check_stride`).
    """

    def __init__(self, tokenizer: Tokenizer, max_seq_length: int, stride: int):
        super().__init__(tokenizer, max_seq_length)
        check_stride(stride, max_seq_length)
        self.stride = stride

    def __call__(self, texts) -> dict[str, tf.Tensor]:
        texts = text_batch(texts)
        first, second, is_pair = split_pairs(texts)
        batch = tf.size(first, out_type=tf.int64)
        ids = self.tokenizer.tokenize(tf.concat([first, second], 0))  # [2B, (tokens)]
        return window_inputs(ids[:batch], ids[batch:], is_pair,
                             max_seq_length=self.max_seq_length, stride=self.stride,
                             cls_id=self.tokenizer.cls_id, sep_id=self.tokenizer.sep_id,
                             pad_id=self.tokenizer.pad_id,
                             pair_separators=self.tokenizer.special_tokens.pair_separators,
                             texts=texts)

    def windows_per_text(self, texts) -> tf.Tensor:
        """int32 [B]: how many windows each text becomes (training repeats its label so)."""
        texts = text_batch(texts)
        document = self(texts)[WINDOW_DOCUMENT]
        return tf.math.bincount(document, minlength=tf.size(texts), dtype=tf.int32)


def make_preprocessor(tokenizer: Tokenizer, max_seq_length: int,
                      stride: int | None = None) -> Preprocessor:
    """Texts cut at `max_seq_length` (stride None), or read as overlapping windows."""
    if stride is None:
        return Preprocessor(tokenizer, max_seq_length)
    return WindowPreprocessor(tokenizer, max_seq_length, stride)
