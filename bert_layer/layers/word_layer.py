"""WordBertLayer: a BertLayer read at words, not texts (the tagger's body).

Each word is tokenized alone inside the graph (bert_layer.text.alignment), and the encoder's
sequence output is read at each word's first wordpiece. Dimension legend: B = sentences,
W = words, T = wordpieces, H = hidden size.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from bert_layer.layers.layer import BertLayer
from bert_layer.text.alignment import align_words


@keras.saving.register_keras_serializable(package="bert_layer")
class WordBertLayer(BertLayer):
    """BertLayer(pooling=None) on words: string [B, W] ("" pads) -> the sequence output at
    each word's first wordpiece, float32 [B, W, H], and whether the word has one, bool [B, W].

    Takes BertLayer's arguments (pooling and do_preprocessing are fixed). Each word is
    tokenized alone, as FullTokenizer and Hugging Face's `is_split_into_words=True` do.
    """

    def __init__(self, module: str | None = None, **kwargs):
        for fixed in ("pooling", "do_preprocessing", "as_dict", "normalize"):
            kwargs.pop(fixed, None)
        super().__init__(module, pooling=None, do_preprocessing=True, **kwargs)

    def align(self, words: tf.Tensor, tokenizer=None) -> dict[str, tf.Tensor]:
        """`align_words` of the words [B, W] with this layer's tokenizer (or `tokenizer`),
        `first_piece` and `piece_counts` [B, W] as wide as `words`."""
        words = tf.convert_to_tensor(words)
        if words.dtype != tf.string:
            raise TypeError(f"WordBertLayer expects words, a string tensor [batch, words]; "
                            f"received dtype {words.dtype.name}.")
        ragged = tf.RaggedTensor.from_tensor(words, padding="")
        aligned = align_words(tokenizer or self.preprocessor.tokenizer, ragged,
                              self.max_seq_length)
        # Trailing "" columns dropped by from_tensor come back, as padding.
        missing = tf.shape(words)[1] - tf.shape(aligned["first_piece"])[1]
        for name, pad in (("first_piece", -1), ("piece_counts", 0)):
            aligned[name] = tf.pad(aligned[name], [[0, 0], [0, missing]], constant_values=pad)
        return aligned

    def call(self, words, training=None):
        aligned = self.align(words)
        return self.read_words(aligned, training=training)

    def read_words(self, aligned: dict[str, tf.Tensor], training=None):
        sequence = self.encode(aligned, training=training)  # [B, T, H]
        first = aligned["first_piece"]  # [B, W]
        states = tf.gather(sequence, tf.maximum(first, 0), batch_dims=1)  # [B, W', H]
        has_piece = first >= 0
        states = states * tf.expand_dims(tf.cast(has_piece, states.dtype), -1)
        return states, has_piece

    def compute_output_spec(self, words, training=None):
        batch, n_words = words.shape[0], words.shape[1]
        return (keras.KerasTensor((batch, n_words, self.hidden_size), "float32"),
                keras.KerasTensor((batch, n_words), "bool"))
