"""WordPiece (greedy longest match first) in core TensorFlow ops: words to ids.

FullTokenizer's WordpieceTokenizer takes, from the start of a word, the longest piece that is in
the vocabulary (written "##piece" after the word's first character) and goes on after it; if
some position has no piece at all, the whole word is [UNK]. Here, for all words of a batch at
once, hand-written because no core TensorFlow op does WordPiece (tf_text's ops are custom ops):

1. every candidate piece: each start position of each word, each length up to the longest
   vocabulary entry (C candidates, about characters x that length at most);
2. one stateless lookup for all of them: a 64-bit fingerprint of the piece and whether it is a
   suffix, `searchsorted` in a sorted constant table of the vocabulary's fingerprints, then an
   exact string comparison with the entry found, so a collision can never give a wrong id;
3. the longest match per start position;
4. a greedy walk from each word's first character, every word at once, in one tf.while_loop.

Why not a StaticHashTable: a table is a resource, and freezing a graph
(`convert_variables_to_constants_v2`) leaves its handle an unfed input. Constants survive
freezing, and every op used here is registered by core TensorFlow.

Dimension legend: W = words, P = characters of all words, C = candidate pieces, V = table rows.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bert_layer.text.vocab import SUFFIX_INDICATOR

# A piece's key: its fingerprint bucket * 2 + is_suffix, so it fits in int64.
_HASH_BUCKETS = 2 ** 62


def _keys(pieces: tf.Tensor, is_suffix: tf.Tensor) -> tf.Tensor:
    """int64 keys of string `pieces` [C] with bool `is_suffix` [C] (Fingerprint64, stable)."""
    buckets = tf.strings.to_hash_bucket_fast(pieces, _HASH_BUCKETS)
    return buckets * 2 + tf.cast(is_suffix, tf.int64)


def _numpy_keys(pieces: list[bytes], is_suffix: np.ndarray) -> np.ndarray:
    """`_keys` computed now, in a graph of its own: callers may be building a TF1 graph."""
    with tf.Graph().as_default():
        keys = _keys(tf.constant(pieces, tf.string), tf.constant(is_suffix))
        with tf.compat.v1.Session() as session:
            return session.run(keys)


class CoreWordpiece:
    """FullTokenizer's WordpieceTokenizer for whole words, as core TensorFlow ops.

    Args:
      vocab: tokens by id, as `load_vocab` reads them (a repeated token keeps its first id).
      unk_id: the id a word gets when some position of it matches no piece.

    The caller limits words to 200 characters (FullTokenizer's max_input_chars_per_word).
    """

    def __init__(self, vocab: list[str], unk_id: int):
        pieces, suffix, ids = [], [], []
        for i, token in enumerate(vocab):
            pieces.append(token)
            suffix.append(False)
            ids.append(i)
            if token.startswith(SUFFIX_INDICATOR) and len(token) > len(SUFFIX_INDICATOR):
                pieces.append(token[len(SUFFIX_INDICATOR):])  # Matched after a word's start.
                suffix.append(True)
                ids.append(i)
        encoded = [p.encode("utf-8") for p in pieces]
        keys = _numpy_keys(encoded, np.array(suffix))
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._pieces = np.array(encoded, dtype=object)[order]
        self._ids = np.array(ids, np.int32)[order]
        # Rows sharing one key (a fingerprint collision) are all compared; normally 1.
        self._max_collisions = int(np.unique(keys, return_counts=True)[1].max())
        self.max_piece_chars = max(len(p) for p in pieces)  # Code points, as FullTokenizer.
        self.unk_id = unk_id

    def _lookup(self, pieces: tf.Tensor, is_suffix: tf.Tensor) -> tf.Tensor:
        """int32 ids of string `pieces` [C] (with bool `is_suffix` [C]); -1 where absent."""
        keys = _keys(pieces, is_suffix)
        table_keys = tf.constant(self._keys)
        table_pieces = tf.constant(self._pieces, tf.string)
        table_ids = tf.constant(self._ids)
        first = tf.searchsorted(table_keys, keys, side="left", out_type=tf.int32)
        last_row = tf.size(table_keys) - 1
        ids = tf.fill(tf.shape(keys), -1)
        for k in range(self._max_collisions):
            row = tf.minimum(first + k, last_row)
            hit = (tf.equal(tf.gather(table_keys, row), keys)
                   & tf.equal(tf.gather(table_pieces, row), pieces))
            ids = tf.where(hit, tf.gather(table_ids, row), ids)
        return ids

    def tokenize(self, words: tf.Tensor) -> tf.RaggedTensor:
        """int32 word-piece ids `[W, (pieces)]` of the UTF-8 string `words` [W]."""
        _, char_starts = tf.strings.unicode_decode_with_offsets(words, "UTF-8")  # [W, (n)]
        n = char_starts.row_lengths()  # int64 [W]
        first = char_starts.row_starts()  # [W] flat index of each word's first character
        word = char_starts.value_rowids()  # [P]
        position = tf.range(tf.size(word, out_type=tf.int64)) - tf.gather(first, word)  # [P]
        best_len, best_id = self._longest_matches(words, char_starts, word, position, n)
        is_start, bad = self._walk(n, first, best_len)
        # A word with a position that no piece starts at becomes [UNK], at its first position.
        bad = tf.gather(bad, word)
        keep = tf.where(bad, tf.equal(position, 0), is_start)
        ids = tf.where(bad, self.unk_id, best_id)
        return tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(ids, keep), tf.boolean_mask(word, keep),
            nrows=tf.size(words, out_type=tf.int64), validate=False)

    def _longest_matches(self, words, char_starts, word, position,
                         n) -> tuple[tf.Tensor, tf.Tensor]:
        """For each character [P]: the length (chars, 0 if none) and id of the longest piece
        starting there ("##"-piece after the word's first character)."""
        starts = char_starts.flat_values  # [P] byte offset of each character
        is_last = tf.equal(position, tf.gather(n, word) - 1)
        ends = tf.where(is_last, tf.cast(tf.gather(tf.strings.length(words), word), tf.int64),
                        tf.concat([starts[1:], tf.zeros([1], tf.int64)], 0)[:tf.size(starts)])
        count = tf.minimum(tf.gather(n, word) - position, self.max_piece_chars)  # [P]
        block = tf.cumsum(count, exclusive=True)  # [P] first candidate of each character
        candidate_at = tf.repeat(tf.range(tf.size(count, out_type=tf.int64)), count)  # [C]
        length = tf.range(tf.reduce_sum(count)) - tf.gather(block, candidate_at) + 1  # [C]
        byte_start = tf.gather(starts, candidate_at)
        byte_end = tf.gather(ends, candidate_at + length - 1)
        pieces = tf.strings.substr(tf.gather(words, tf.gather(word, candidate_at)), byte_start,
                                   byte_end - byte_start)
        ids = self._lookup(pieces, tf.gather(position, candidate_at) > 0)  # [C]
        best_len = tf.math.unsorted_segment_max(
            tf.where(ids >= 0, length, 0), candidate_at, tf.size(count, out_type=tf.int64))
        best_id = tf.gather(tf.concat([ids, [-1]], 0),
                            tf.where(best_len > 0, block + best_len - 1, tf.size(ids, tf.int64)))
        return best_len, best_id

    @staticmethod
    def _walk(n: tf.Tensor, first: tf.Tensor, best_len: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Greedy longest match first, all words at once: (bool [P] a piece starts here,
        bool [W] the word is [UNK])."""
        def active(at, bad):
            return (at < n) & ~bad

        def step(at, bad, is_start):
            live = active(at, bad)
            char = tf.where(live, first + at, 0)
            length = tf.where(live, tf.gather(best_len, char), 0)
            found = live & (length > 0)
            is_start = tf.tensor_scatter_nd_update(
                is_start, tf.boolean_mask(char, found)[:, None],
                tf.ones(tf.reduce_sum(tf.cast(found, tf.int32))[None], tf.bool))
            return at + length, bad | (live & ~found), is_start

        at, bad, is_start = tf.while_loop(
            lambda at, bad, _: tf.reduce_any(active(at, bad)), step,
            (tf.zeros_like(n), tf.zeros_like(n, tf.bool), tf.zeros_like(best_len, tf.bool)))
        return is_start, bad
