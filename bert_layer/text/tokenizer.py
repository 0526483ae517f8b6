"""Text to BERT word-piece ids: in the TensorFlow graph, or through Google's FullTokenizer.

Three tokenizers with one interface, `tokenize(texts) -> tf.RaggedTensor`, int32 ids of shape
`[batch, (tokens)]` for a string tensor of shape `[batch]`:

  GraphTokenizer ("graph", the default): core TF ops, then tensorflow-text's
    FastWordpieceTokenizer, a custom op. Stateless (the vocabulary and Unicode tables are graph
    constants), so it runs eagerly, in `tf.function`, in `tf.data`, in TF1 graphs, and survives
    freezing; graphs holding it need `tensorflow_text` imported wherever they run.
  CoreTokenizer ("core"): the same steps, with WordPiece in core TF ops too
    (bert_layer.text.core_wordpiece). Graphs holding it load with TensorFlow alone: TF Serving,
    the C, Java and Go bindings, any process that never imports tensorflow_text.
  NumpyTokenizer ("numpy"): `bert.tokenization.FullTokenizer` through `tf.numpy_function`. The
    reference behaviour, but Python: it cannot be serialized, frozen or moved.

All give the ids of `FullTokenizer.tokenize` + `convert_tokens_to_ids`; docs/tokenization.md
explains how the graph versions reach that, step by step.

Why "graph" stays the default: scripts/bench_tokenizers.py on SST-2 dev (batches of 32, a
shared 2-CPU machine, so indicative only) measured the core tokenizer at 1.9x GraphTokenizer's
time alone (22.7 against 11.8 ms a batch) and a core-tokenizer frozen MiniLM classifier at 9.9%
fewer sentences/s end to end (24.1 against 26.7). That is not "within a few percent", and the
gap is largest where the tokenizer runs alone (tf.data preprocessing). Choose "core" for
modules, frozen graphs and SavedModels that must load without tensorflow-text: all kinds give
the same ids, so a model trained with one may be exported or frozen with another.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import tensorflow as tf

from bert_layer.text import TOKENIZER_NAMES
from bert_layer.text.basic_tokenizer import split_words, text_batch, traced_tokenize
from bert_layer.text.core_wordpiece import CoreWordpiece
from bert_layer.text.sentencepiece import is_sp_model_file, make_sentencepiece_tokenizer
from bert_layer.text.unicode_tables import unicode_tables
from bert_layer.text.vocab import (
    BERT_SPECIAL_TOKENS,
    SUFFIX_INDICATOR,
    UNK_TOKEN,
    SpecialTokens,
    load_vocab,
)

__all__ = ["GraphTokenizer", "CoreTokenizer", "NumpyTokenizer", "TOKENIZER_KINDS",
           "make_tokenizer", "text_batch"]

MAX_INPUT_CHARS_PER_WORD = 200
_MAX_BYTES_PER_CHAR = 4  # UTF-8


class _VocabTokenizer:
    """The vocabulary and special ids that every tokenizer shares.

    `special_tokens`: the model family's (bert_layer.text.vocab.SPECIAL_TOKENS), which the
    packing reads as `cls_id`, `sep_id`, `pad_id` and `special_tokens.pair_separators`.
    """

    def __init__(self, vocab_file: str, do_lower_case: bool,
                 special_tokens: SpecialTokens = BERT_SPECIAL_TOKENS):
        if not isinstance(do_lower_case, (bool, np.bool_)):
            raise TypeError(f"do_lower_case must be a bool. Received: {do_lower_case!r}")
        self.vocab_file = vocab_file
        self.do_lower_case = bool(do_lower_case)
        self.special_tokens = special_tokens
        self.vocab = load_vocab(vocab_file)
        ids = {token: i for i, token in enumerate(self.vocab)}
        needed = (special_tokens.cls, special_tokens.sep, UNK_TOKEN) + (
            (special_tokens.pad,) if special_tokens.pad else ())
        missing = [t for t in needed if t not in ids]
        if missing:
            raise ValueError(f"{vocab_file}: the vocabulary lacks {', '.join(missing)}; this "
                             f"model's vocabulary needs {', '.join(needed)}.")
        self.cls_id = ids[special_tokens.cls]
        self.sep_id = ids[special_tokens.sep]
        self.unk_id = ids[UNK_TOKEN]
        self.pad_id = ids[special_tokens.pad] if special_tokens.pad else 0


class _InGraphTokenizer(_VocabTokenizer):
    """BasicTokenizer in core TF ops (bert_layer.text.basic_tokenizer), then `_word_pieces`.

    The vocabulary and tables are graph constants: no resources, so graphs using it can be
    frozen and moved. The Unicode tables come from the Python that builds the graph, so a saved
    graph keeps that Python's Unicode version (3.11: Unicode 14.0).
    """

    def __init__(self, vocab_file: str, do_lower_case: bool,
                 special_tokens: SpecialTokens = BERT_SPECIAL_TOKENS):
        super().__init__(vocab_file, do_lower_case, special_tokens)
        self._tables = unicode_tables()
        self._traced = traced_tokenize(self._tokenize)

    def split_words(self, texts) -> tf.RaggedTensor:
        """FullTokenizer's BasicTokenizer: string words `[batch, (words)]` of `texts` [batch]."""
        return split_words(texts, self.do_lower_case, self._tables)

    def tokenize(self, texts) -> tf.RaggedTensor:
        """int32 word-piece ids `[batch, (tokens)]` of the string tensor `texts` [batch]."""
        return self._traced(text_batch(texts))

    def _tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        words = self.split_words(texts)
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > (
            MAX_INPUT_CHARS_PER_WORD)
        # The word "[UNK]" is its own longest match, so it comes out as unk_id.
        flat_words = tf.where(too_long, UNK_TOKEN, words.flat_values)
        return words.with_flat_values(self._word_pieces(flat_words)).merge_dims(1, 2)

    def _word_pieces(self, words: tf.Tensor) -> tf.RaggedTensor:
        """int32 ids `[W, (pieces)]` of the string words [W], each of 1 to 200 characters."""
        raise NotImplementedError


def _wordpiece_vocab(vocab: list[str]) -> list[str]:
    """`vocab` with each token that holds NUL (FastWordpieceTokenizer's trie cannot store one)
    replaced by a unique placeholder with a leading space. Neither is ever matched: words hold
    no NUL (_clean_text drops it) and no space, and vocab tokens are stripped."""
    return [f" unreachable token {i}" if "\x00" in t else t for i, t in enumerate(vocab)]


def _wordpiece_model(vocab: list[str]) -> np.ndarray:
    """FastWordpieceTokenizer's model for whole words (uint8 bytes), long enough for 200 chars."""
    # FastWordpieceTokenizer builds its model with this function; calling it directly gives the
    # model as bytes, so that no tensor is made before the graph it belongs to exists.
    from tensorflow_text.core.pybinds import pywrap_fast_wordpiece_tokenizer_model_builder

    model = pywrap_fast_wordpiece_tokenizer_model_builder.build_fast_wordpiece_model(
        _wordpiece_vocab(vocab), MAX_INPUT_CHARS_PER_WORD * _MAX_BYTES_PER_CHAR,
        SUFFIX_INDICATOR, UNK_TOKEN, True, False)  # no_pretokenization, support_detokenization
    return np.frombuffer(model, np.uint8)


class GraphTokenizer(_InGraphTokenizer):
    """FullTokenizer's word-piece ids from core TF ops and tensorflow-text's FastWordpiece.

    The steps of Google's BasicTokenizer work on the code points of the batch, with tables
    computed from this Python's `unicodedata` and `str.lower()`, the very data FullTokenizer
    uses; then tf_text.FastWordpieceTokenizer (greedy longest match first, the same result as
    FullTokenizer's WordpieceTokenizer) maps each word to ids. Its op,
    `FastWordpieceTokenizeWithOffsets`, is a custom op: a graph holding it runs only where
    `tensorflow_text` is imported (CoreTokenizer's graphs need TensorFlow alone).

    Args:
      vocab_file: str. One token a line (see `load_vocab`); must hold [CLS], [SEP], [UNK].
      do_lower_case: bool. Lower-case and strip accents, as FullTokenizer(do_lower_case).

    Example (vocab ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn",
    "##ing", ","], lower-cased):
      tokenize(["UNwant\u00e9d,running"]) -> <tf.RaggedTensor [[7, 4, 5, 10, 8, 9]]>

    Note: no class of characters is known to give other ids than FullTokenizer, for any input
    bytes (docs/tokenization.md).
    """

    def __init__(self, vocab_file: str, do_lower_case: bool,
                 special_tokens: SpecialTokens = BERT_SPECIAL_TOKENS):
        super().__init__(vocab_file, do_lower_case, special_tokens)
        self._wordpiece_model = _wordpiece_model(self.vocab)

    def _word_pieces(self, words: tf.Tensor) -> tf.RaggedTensor:
        import tensorflow_text as tf_text  # Here only: CoreTokenizer's users may lack it.

        wordpiece = tf_text.FastWordpieceTokenizer(
            model_buffer=tf.constant(self._wordpiece_model), token_out_type=tf.int32)
        return wordpiece.tokenize(words)


class CoreTokenizer(_InGraphTokenizer):
    """FullTokenizer's word-piece ids from ops that core TensorFlow registers, and no others.

    GraphTokenizer's steps, with WordPiece done by `CoreWordpiece` (candidate pieces looked up
    at once in a sorted constant table, then a greedy walk in one tf.while_loop) instead of
    tensorflow-text's custom op. Graphs, hub modules and SavedModels holding it load in any
    TensorFlow: TF Serving, the C/Java/Go bindings, a process that never imports tensorflow_text.

    Args:
      vocab_file: str. One token a line (see `load_vocab`); must hold [CLS], [SEP], [UNK].
      do_lower_case: bool. Lower-case and strip accents, as FullTokenizer(do_lower_case).

    Note: same ids as GraphTokenizer and FullTokenizer (tests/test_tokenizer.py runs both on
    the same property tests and data sets); about twice GraphTokenizer's time (see above).
    """

    def __init__(self, vocab_file: str, do_lower_case: bool,
                 special_tokens: SpecialTokens = BERT_SPECIAL_TOKENS):
        super().__init__(vocab_file, do_lower_case, special_tokens)
        self._wordpiece = CoreWordpiece(self.vocab, self.unk_id)

    def _word_pieces(self, words: tf.Tensor) -> tf.RaggedTensor:
        return self._wordpiece.tokenize(words)


class NumpyTokenizer(_VocabTokenizer):
    """Google's FullTokenizer run through `tf.numpy_function`: the original design.

    Same interface and ids as GraphTokenizer, but the graph holds a Python callback, so it
    cannot be saved, frozen or run outside this process.
    """

    def __init__(self, vocab_file: str, do_lower_case: bool,
                 special_tokens: SpecialTokens = BERT_SPECIAL_TOKENS):
        super().__init__(vocab_file, do_lower_case, special_tokens)
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


Tokenizer = GraphTokenizer | CoreTokenizer | NumpyTokenizer
TOKENIZER_KINDS = dict(zip(TOKENIZER_NAMES, (GraphTokenizer, CoreTokenizer, NumpyTokenizer)))


def make_tokenizer(kind: str, vocab_file: str, do_lower_case: bool,
                   keep_accents: bool = False, *,
                   special_tokens: SpecialTokens = BERT_SPECIAL_TOKENS) -> Tokenizer:
    """The tokenizer of `kind`: "graph", "core" or "numpy" (see the module docstring), with
    the model family's `special_tokens` (bert_layer.text.vocab.SPECIAL_TOKENS).

    A SentencePiece model (`vocab_file` ending in .model: ALBERT's) gets the SentencePiece
    tokenizer of that kind (bert_layer.text.sentencepiece; "core" refuses it), which alone
    reads `keep_accents` and packs with BERT's special tokens.

    One process shares one tokenizer per kind, options and vocabulary file (as it is on
    disk now), so its graph is traced once however many layers, models and Keras functions
    call it.
    """
    stat = os.stat(vocab_file) if os.path.isfile(vocab_file) else None
    file_key = (os.path.realpath(vocab_file), stat and stat.st_mtime_ns, stat and stat.st_size)
    return _shared_tokenizer(kind, vocab_file, file_key, bool(do_lower_case),
                             bool(keep_accents), special_tokens)


@functools.lru_cache(maxsize=32)
def _shared_tokenizer(kind: str, vocab_file: str, file_key: tuple, do_lower_case: bool,
                      keep_accents: bool, special_tokens: SpecialTokens) -> Tokenizer:
    del file_key  # In the cache key only: a vocabulary rewritten in place is read again.
    return _new_tokenizer(kind, vocab_file, do_lower_case, keep_accents,
                          special_tokens=special_tokens)


def _new_tokenizer(kind: str, vocab_file: str, do_lower_case: bool,
                   keep_accents: bool = False, *,
                   special_tokens: SpecialTokens = BERT_SPECIAL_TOKENS) -> Tokenizer:
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"Unknown tokenizer kind {kind!r}; expected one of "
                         f"{sorted(TOKENIZER_KINDS)}.")
    if is_sp_model_file(vocab_file):
        if special_tokens != BERT_SPECIAL_TOKENS:
            raise ValueError(f"{vocab_file}: a SentencePiece model packs with BERT's [CLS] and "
                             f"[SEP]; received special tokens {special_tokens}.")
        return make_sentencepiece_tokenizer(kind, vocab_file, do_lower_case, keep_accents)
    return TOKENIZER_KINDS[kind](vocab_file, do_lower_case, special_tokens)
