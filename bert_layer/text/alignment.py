"""Words to wordpieces for token classification, in the graph: each word's first piece.

Each word is tokenized exactly as the tokenizer tokenizes it alone (as a Hugging Face fast
tokenizer does with `is_split_into_words=True`: its pieces get that word's index); the pieces
of a text are packed `[CLS] pieces [SEP]`, and each word is read at its first piece. A word
that tokenizes to nothing (a control or zero-width character) has no first piece: its
position is -1, and the words after it keep theirs.

Raw text is split into words with character offsets by `split_text` (Python) and
`split_text_tf` (graph ops), the same rule in both: BasicTokenizer's split on the original
characters (whitespace separates, punctuation and CJK ideographs stand alone).

Dimension legend: B = texts, W = words (longest text of the batch), T = packed length,
N = words of the whole batch.
"""

from __future__ import annotations

import numpy as np

from bert_layer.text import unicode_tables as ut


def _classes(code_points: np.ndarray, table: ut.StepTable) -> np.ndarray:
    return table.labels[np.searchsorted(table.starts, code_points, side="right") - 1]


def _split_rule(input_class, output_class):
    """(separator, stands alone) per character, from its two classes (numpy or TF)."""
    separator = (input_class == ut.WHITESPACE) | (
        (output_class == ut.SEPARATOR) & (input_class != ut.DROP))
    alone = ((input_class == ut.CJK) | (output_class == ut.PUNCTUATION)) & ~separator
    return separator, alone


def split_text(text: str) -> list[tuple[int, int]]:
    """The words of `text` as (start, end) character offsets: `text[start:end]` is a word."""
    if not text:
        return []
    tables = ut.unicode_tables()
    code_points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4").astype(
        np.int64)
    separator, alone = _split_rule(_classes(code_points, tables.input_class),
                                   _classes(code_points, tables.output_class))
    spans = []
    start = None
    for i in range(len(text)):
        if separator[i]:
            if start is not None:
                spans.append((start, i))
            start = None
        elif alone[i]:
            if start is not None:
                spans.append((start, i))
            spans.append((i, i + 1))
            start = None
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(text)))
    return spans


def split_text_tf(texts):
    """`split_text` in graph ops: texts string [B] -> (words string, starts int64, ends int64),
    each a RaggedTensor [B, (words)]; offsets count characters (code points)."""
    import tensorflow as tf

    from bert_layer.text.basic_tokenizer import _lookup, _shift_right

    tables = ut.unicode_tables()
    chars = tf.strings.unicode_decode(texts, "UTF-8")  # [B, (chars)]
    code_points, rows = chars.flat_values, chars.value_rowids()
    position = tf.range(tf.size(rows, out_type=tf.int64)) - tf.gather(chars.row_starts(), rows)
    separator, alone = _split_rule(_lookup(tables.input_class, code_points),
                                   _lookup(tables.output_class, code_points))
    new_row = tf.not_equal(rows, _shift_right(rows, -1))
    starts = ~separator & (alone | _shift_right(separator | alone, True) | new_row)
    keep = ~separator
    code_points, rows, starts, position = (
        tf.boolean_mask(x, keep) for x in (code_points, rows, starts, position))
    word_index = tf.cumsum(tf.cast(starts, tf.int64)) - 1
    n_words = tf.reduce_sum(tf.cast(starts, tf.int64))
    word_chars = tf.RaggedTensor.from_value_rowids(code_points, word_index, nrows=n_words)
    words = tf.strings.unicode_encode(word_chars, "UTF-8")
    word_starts = tf.boolean_mask(position, starts)
    word_ends = tf.math.unsorted_segment_max(position, word_index, n_words) + 1
    word_rows = tf.boolean_mask(rows, starts)
    nrows = chars.nrows()

    def per_text(values):
        return tf.RaggedTensor.from_value_rowids(values, word_rows, nrows=nrows)

    return per_text(words), per_text(word_starts), per_text(word_ends)


def align_words(tokenizer, words, max_seq_length: int) -> dict:
    """Packs the words of each text as BERT inputs and finds each word's first piece.

    Args:
      tokenizer: a tokenizer of bert_layer.text.tokenizer (any kind).
      words: string RaggedTensor [B, (words)].
      max_seq_length: the packed length cap; pieces past it are cut off.

    Returns:
      dict of int32 [B, T] `input_ids`, `input_mask`, `segment_ids`; int32 [B, T] `word_ids`
      (the word of each piece, -1 for [CLS], [SEP] and padding: Hugging Face's `word_ids()`);
      int32 [B, W] `first_piece` (each word's first piece position, -1 when the word has no
      piece or its first piece was cut off, and for padding); int32 [B, W] `piece_counts`.
    """
    import tensorflow as tf

    from bert_layer.text.packing import pack_inputs

    pieces = tokenizer.tokenize(words.flat_values)  # [N, (pieces)]
    counts = pieces.row_lengths()  # int64 [N]
    per_text = tf.RaggedTensor.from_row_splits(
        pieces.flat_values, tf.gather(pieces.row_splits, words.row_splits))  # [B, (P)]
    word_rows = words.value_rowids()
    offset = pieces.row_starts() - tf.gather(per_text.row_starts(), word_rows)  # [N]
    budget = max_seq_length - 2
    fits = (counts > 0) & (offset < budget)
    first_piece = words.with_flat_values(tf.where(fits, offset + 1, -1))
    local_word = tf.range(tf.size(word_rows, out_type=tf.int64)) - tf.gather(
        words.row_starts(), word_rows)
    word_of_piece = per_text.with_flat_values(tf.repeat(local_word, counts))  # [B, (P)]
    batch = words.nrows()
    no_pieces = tf.RaggedTensor.from_row_lengths(
        tf.zeros([0], per_text.dtype), tf.zeros([batch], tf.int64))
    features = pack_inputs(per_text, no_pieces, tf.zeros([batch], tf.bool),
                           max_seq_length=max_seq_length, cls_id=tokenizer.cls_id,
                           sep_id=tokenizer.sep_id, pad_id=tokenizer.pad_id)
    width = tf.shape(features["input_ids"])[1]
    word_ids = word_of_piece[:, :budget].to_tensor(default_value=-1)
    word_ids = tf.pad(word_ids, [[0, 0], [1, 0]], constant_values=-1)
    word_ids = tf.pad(word_ids, [[0, 0], [0, width - tf.shape(word_ids)[1]]],
                      constant_values=-1)
    return {**features, "word_ids": tf.cast(word_ids, tf.int32),
            "first_piece": tf.cast(first_piece.to_tensor(default_value=-1), tf.int32),
            "piece_counts": tf.cast(words.with_flat_values(counts).to_tensor(), tf.int32)}


def windows(piece_counts: list[int] | np.ndarray, budget: int,
            stride: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Overlapping windows of words for a text longer than `budget` pieces.

    Each window is words [start, end) holding at most `budget` pieces (a single word longer
    than that stands alone: its first piece still fits); the next one starts back so that the
    two share at most `stride` pieces. Each word is read from the window where it has the
    most context: the largest min(pieces before it, pieces after it) in that window, as
    BERT's run_squad `_check_is_max_context` chooses.

    Returns (windows, the window index of each word).
    """
    counts = np.asarray(piece_counts, np.int64)
    n = len(counts)
    cum = np.concatenate([[0], np.cumsum(counts)])
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = int(np.searchsorted(cum, cum[start] + budget, side="right")) - 1
        end = min(max(end, start + 1), n)
        spans.append((start, end))
        if end >= n:
            break
        following = end
        while following - 1 > start and cum[end] - cum[following - 1] <= stride:
            following -= 1
        start = following
    best = []
    for i in range(n):
        scores = [(min(cum[i] - cum[s], cum[e] - cum[i + 1]), -k)
                  for k, (s, e) in enumerate(spans) if s <= i < e]
        best.append(-max(scores)[1])
    return spans, best


def windowed(sentences: list[list[str]], counts: list, budget: int, stride: int
             ) -> tuple[list[list[str]], list[tuple[int, int, list[bool]]]]:
    """Every sentence as rows that fit `budget` wordpieces: itself, or its `windows`.

    Returns (rows, origins): each row's words, and its (sentence index, first word, which of
    its words are read from this row)."""
    rows, origins = [], []
    for index, (words, count) in enumerate(zip(sentences, counts)):
        if int(np.sum(count)) <= budget:
            rows.append(list(words))
            origins.append((index, 0, [True] * len(words)))
            continue
        spans, best = windows(count, budget, stride)
        for k, (start, end) in enumerate(spans):
            rows.append(list(words[start:end]))
            origins.append((index, start, [best[i] == k for i in range(start, end)]))
    return rows, origins


def merge_rows(row_values: list, origins: list[tuple[int, int, list[bool]]],
               lengths: list[int]) -> list[list]:
    """Per-word values of the rows of `windowed` back into sentences of `lengths` words."""
    merged = [[None] * n for n in lengths]
    for values, (sentence, start, owned) in zip(row_values, origins):
        for j, own in enumerate(owned):
            if own:
                merged[sentence][start + j] = values[j]
    missing = [(s, i) for s, row in enumerate(merged) for i, v in enumerate(row) if v is None]
    if missing:  # Never silently untagged: windows cover every word.
        raise RuntimeError(f"No window labelled words {missing[:5]}.")
    return merged
