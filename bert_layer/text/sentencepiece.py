"""SentencePiece vocabularies (ALBERT): text to ids in the graph and through the library.

ALBERT tokenizes as Hugging Face's slow (sentencepiece-based) `AlbertTokenizer` does, which
is Google's ALBERT `preprocess_text` + `encode_pieces` with two options:

  1. `preprocess_text`: whitespace runs become one space, ends stripped (`" ".join(
     text.strip().split())`); "``" and "''" become '"'; unless `keep_accents`, NFKD with the
     combining characters dropped; with `do_lower_case`, `str.lower()`.
  2. The SentencePiece model's pieces, except that a piece ending in a digit and "," is
     encoded again without the "," (and without "▁"), then "," appended (`encode_pieces`).
  3. Ids by `PieceToId` (unknown pieces: the model's unk id).

Two tokenizers with the WordPiece tokenizers' interface (`tokenize(texts)` -> int32 ragged
ids [batch, (tokens)], `cls_id`, `sep_id`):

  SentencePieceGraphTokenizer ("graph"): step 1 in core TF ops on code points, with tables
    from this Python's `unicodedata` (exactly Python's NFKD, combining classes and
    lower-casing, Final_Sigma included), then tensorflow-text's `FastSentencepieceTokenizer`
    (custom ops, so graphs need `tensorflow_text` imported; see `_segmenter` for why not its
    `SentencepieceTokenizer`) and step 2 on its pieces.
  SentencePieceNumpyTokenizer ("numpy"): the `sentencepiece` library in Python through
    `tf.numpy_function`; not savable.

There is no core-ops SentencePiece here: the unigram model's Viterbi search over the
model's normalizer (a compiled character map) would have to be rewritten in TF ops, and that
is a reimplementation of SentencePiece no library maintains. So "core" refuses SentencePiece
vocabularies (`CORE_REFUSAL`), and ALBERT modules need tensorflow-text wherever they run.
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata

import numpy as np

from bert_layer.text.unicode_tables import NUM_CODE_POINTS

SPIECE_UNDERLINE = "\u2581"
CLS_PIECE, SEP_PIECE = "[CLS]", "[SEP]"
CORE_REFUSAL = ("the core tokenizer has no SentencePiece (ALBERT's vocabulary): use "
                "--tokenizer graph (tensorflow-text's SentencepieceTokenizer op; loaders must "
                "import tensorflow_text)")


@dataclasses.dataclass(frozen=True)
class SpModel:
    """A SentencePiece model file, read and checked for what packing needs."""

    path: str
    model: bytes  # The serialized ModelProto (what tensorflow-text's op takes).
    piece_count: int
    cls_id: int
    sep_id: int
    unk_id: int
    comma_is_piece: bool  # Decides how the graph tokenizer segments (see _segmenter).


def is_sp_model_file(path: str) -> bool:
    """True for a SentencePiece model: a .model file (Google's 30k-clean, HF's spiece)."""
    return str(path).endswith(".model")


@functools.lru_cache(maxsize=8)
def read_sp_model(path: str) -> SpModel:
    """Loads `path` with the sentencepiece library; it must hold [CLS] and [SEP] pieces."""
    import sentencepiece as spm

    with open(path, "rb") as f:
        model = f.read()
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(model)
    except (RuntimeError, OSError) as e:
        raise ValueError(f"{path}: not a SentencePiece model ({e}).") from None
    ids = {piece: processor.PieceToId(piece) for piece in (CLS_PIECE, SEP_PIECE)}
    missing = [p for p, i in ids.items() if processor.IdToPiece(i) != p]
    if missing:
        raise ValueError(f"{path}: the SentencePiece model lacks the pieces {missing}; ALBERT's "
                         f"models hold {CLS_PIECE} and {SEP_PIECE} (control symbols) for "
                         f"packing.")
    return SpModel(path=path, model=model, piece_count=processor.GetPieceSize(),
                   cls_id=ids[CLS_PIECE], sep_id=ids[SEP_PIECE], unk_id=processor.unk_id(),
                   comma_is_piece=processor.IdToPiece(processor.PieceToId(",")) == ",")


def infer_do_lower_case(sp_model_file: str) -> bool:
    """Lower-cased models have no upper-case letters in their normal pieces."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=sp_model_file)
    for i in range(processor.GetPieceSize()):
        if processor.IsControl(i) or processor.IsUnknown(i):
            continue
        piece = processor.IdToPiece(i)
        if piece != piece.lower():
            return False
    return True


# === Python: Hugging Face's slow AlbertTokenizer ===

def preprocess_text(text: str, do_lower_case: bool, keep_accents: bool) -> str:
    """ALBERT's text preprocessing (step 1 of the module docstring)."""
    text = " ".join(text.strip().split())
    text = text.replace("``", '"').replace("''", '"')
    if not keep_accents:
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    return text.lower() if do_lower_case else text


def encode_pieces(processor, text: str) -> list[str]:
    """The pieces of preprocessed `text`, with ALBERT's digit-comma rule (step 2)."""
    pieces = []
    for piece in processor.encode(text, out_type=str):
        if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
            again = processor.encode(piece[:-1].replace(SPIECE_UNDERLINE, ""), out_type=str)
            if piece[0] != SPIECE_UNDERLINE and again and again[0][0] == SPIECE_UNDERLINE:
                again = again[1:] if len(again[0]) == 1 else [again[0][1:], *again[1:]]
            pieces += [*again, piece[-1]]
        else:
            pieces.append(piece)
    return pieces


# === Tables for the graph (from this Python's unicodedata) ===

@dataclasses.dataclass(frozen=True)
class CodePointMap:
    """A one-to-many map of code points: keys [K] sorted, values[splits[k]:splits[k+1]]."""

    keys: np.ndarray
    splits: np.ndarray
    values: np.ndarray

    @classmethod
    def from_dict(cls, mapping: dict[int, str]) -> CodePointMap:
        keys = sorted(mapping)
        lengths = [len(mapping[k]) for k in keys]
        return cls(np.array(keys, np.int32),
                   np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32),
                   np.array([ord(c) for k in keys for c in mapping[k]], np.int32))


def _text_code_points():
    return (cp for cp in range(NUM_CODE_POINTS) if not 0xD800 <= cp <= 0xDFFF)


@functools.cache
def strip_accents_map() -> CodePointMap:
    """c -> NFKD(c) without its combining characters, for every c it changes.

    Per character, this equals ALBERT's NFKD of the whole text followed by dropping the
    combining characters: NFKD decomposes each character alone, and its only step across
    characters (reordering combining marks) moves characters that are dropped here anyway.
    """
    mapping = {}
    for cp in _text_code_points():
        c = chr(cp)
        mapped = unicodedata.normalize("NFKD", c)
        mapped = "".join(m for m in mapped if not unicodedata.combining(m))
        if mapped != c:
            mapping[cp] = mapped
    return CodePointMap.from_dict(mapping)


@functools.cache
def lower_map() -> CodePointMap:
    """c -> c.lower() for every c it changes (Final_Sigma is context: see final_sigmas)."""
    return CodePointMap.from_dict({cp: chr(cp).lower() for cp in _text_code_points()
                                   if chr(cp).lower() != chr(cp)})


def _regex_class(predicate) -> str:
    """An RE2 character class of the code points where `predicate(chr(cp))` holds."""
    ranges, start = [], None
    for cp in range(NUM_CODE_POINTS + 1):
        hit = cp < NUM_CODE_POINTS and not 0xD800 <= cp <= 0xDFFF and predicate(chr(cp))
        if hit and start is None:
            start = cp
        elif not hit and start is not None:
            ranges.append((start, cp - 1))
            start = None
    return "[" + "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}"
                         for a, b in ranges) + "]"


@functools.cache
def whitespace_class() -> str:
    """Python's whitespace (what str.split() splits on), as an RE2 class."""
    return _regex_class(str.isspace)


@functools.cache
def digit_class() -> str:
    """Python's str.isdigit() characters, as an RE2 class."""
    return _regex_class(str.isdigit)


# === The tokenizers ===

class _SentencePieceTokenizer:
    """The model and special ids both tokenizers share (`vocab_file` is the model file)."""

    def __init__(self, sp_model_file: str, do_lower_case: bool, keep_accents: bool = False):
        for name, value in (("do_lower_case", do_lower_case), ("keep_accents", keep_accents)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool. Received: {value!r}")
        self.vocab_file = sp_model_file
        self.do_lower_case = bool(do_lower_case)
        self.keep_accents = bool(keep_accents)
        self.sp_model = read_sp_model(sp_model_file)
        self.cls_id = self.sp_model.cls_id
        self.sep_id = self.sp_model.sep_id
        self.unk_id = self.sp_model.unk_id
        # BERT's packing ([CLS] a [SEP] b [SEP]), padded with id 0 (ALBERT's <pad>).
        from bert_layer.text.vocab import BERT_SPECIAL_TOKENS  # Here: vocab imports TF.
        self.special_tokens = BERT_SPECIAL_TOKENS
        self.pad_id = 0


class SentencePieceGraphTokenizer(_SentencePieceTokenizer):
    """ALBERT's tokenization in the graph: core TF ops, then tensorflow-text's
    FastSentencepieceTokenizer (see the module docstring and `_segmenter`). Stateless: the
    model is a constant (and an op attribute) of the traced function, so graphs freeze and
    move.

    Args:
      sp_model_file: str. A SentencePiece model holding [CLS] and [SEP].
      do_lower_case: bool. Lower-case (str.lower()) after preprocessing.
      keep_accents: bool. Skip the NFKD + combining-character removal.
    """

    def __init__(self, sp_model_file: str, do_lower_case: bool, keep_accents: bool = False):
        super().__init__(sp_model_file, do_lower_case, keep_accents)
        from bert_layer.text.basic_tokenizer import traced_tokenize
        from bert_layer.text.unicode_tables import unicode_tables
        self._tables = unicode_tables() if self.do_lower_case else None
        self._maps = ((None if self.keep_accents else strip_accents_map()),
                      lower_map() if self.do_lower_case else None)
        self._traced = traced_tokenize(self._tokenize)

    def tokenize(self, texts):
        """int32 ids `[batch, (tokens)]` of the string tensor `texts` [batch]."""
        from bert_layer.text.basic_tokenizer import text_batch
        return self._traced(text_batch(texts))

    def preprocess(self, texts):
        """ALBERT's preprocess_text on a string tensor [batch], in core TF ops."""
        import tensorflow as tf

        from bert_layer.text.basic_tokenizer import final_sigmas, map_code_points
        texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="ignore")
        texts = tf.strings.regex_replace(texts, whitespace_class() + "+", " ")
        texts = tf.strings.regex_replace(texts, "^ | $", "")
        texts = tf.strings.regex_replace(texts, "``", '"')
        texts = tf.strings.regex_replace(texts, "''", '"')
        strip, lower = self._maps
        if strip is None and lower is None:
            return texts
        chars = tf.strings.unicode_decode(texts, "UTF-8")
        code_points, rows = chars.flat_values, chars.value_rowids()
        if strip is not None:
            code_points, (rows,) = map_code_points(code_points, [rows], strip.keys,
                                                   strip.splits, strip.values)
        if lower is not None:
            code_points = final_sigmas(code_points, rows, self._tables)
            code_points, (rows,) = map_code_points(code_points, [rows], lower.keys,
                                                   lower.splits, lower.values)
        chars = tf.RaggedTensor.from_value_rowids(code_points, rows, nrows=chars.nrows(),
                                                  validate=False)
        return tf.strings.unicode_encode(chars, "UTF-8")

    def _tokenize(self, texts):
        import tensorflow as tf
        import tensorflow_text as tf_text

        # The pieces' strings and ids: tensorflow-text's SentencepieceTokenizer (no search).
        sp = tf_text.SentencepieceTokenizer(model=self.sp_model.model, out_type=tf.string)
        segment = self._segmenter(sp)
        pieces = segment(self.preprocess(texts))  # [B, (pieces)]
        fixed = _split_digit_commas(segment, pieces.flat_values)  # [P, (pieces)]
        merged = pieces.with_flat_values(fixed).merge_dims(1, 2)  # [B, (pieces)]
        return merged.with_flat_values(tf.cast(sp.string_to_id(merged.flat_values), tf.int32))

    def _segmenter(self, sp):
        """strings [N] -> pieces [N, (pieces)] as the `sentencepiece` library segments them.

        tensorflow-text's `SentencepieceTokenizer` bundles an older SentencePiece whose Viterbi
        search breaks exact ties the other way ("000" -> "00" "0" where the library, and so
        ALBERT's tokenizers, give "0" "00": both sums are the same floats), while its
        `FastSentencepieceTokenizer` breaks them as the library does. The fast op returns ids
        only, so pieces are named by id and an unknown run becomes "<unk>". That is exact
        where "," is a piece: no unknown run can then end in a digit and "," (the only surface
        the digit-comma rule reads). Where "," is no piece, the unknown runs' text is taken
        from the older op, in order: ties are between paths of known pieces (an unknown run
        costs the model's lowest score less 10), so both ops find the same runs, and a
        mismatch would fail loudly in the scatter, not shift pieces.
        """
        import tensorflow as tf
        import tensorflow_text as tf_text

        fast = tf_text.FastSentencepieceTokenizer(self.sp_model.model)
        unk_id = self.sp_model.unk_id

        def segment(strings):
            ids = fast.tokenize(strings).with_row_splits_dtype(tf.int64)
            pieces = sp.id_to_string(ids.flat_values)
            if not self.sp_model.comma_is_piece:
                surfaces = sp.tokenize(strings).flat_values
                unknown = tf.boolean_mask(surfaces, tf.equal(sp.string_to_id(surfaces), unk_id))
                pieces = tf.tensor_scatter_nd_update(
                    pieces, tf.where(tf.equal(ids.flat_values, unk_id)), unknown)
            return ids.with_flat_values(pieces)
        return segment


def _split_digit_commas(segment, pieces):
    """`encode_pieces`' rule on string pieces [P]: [P, (pieces)], each piece [piece] or, for
    one ending in a digit and ",", its digits re-encoded (`segment`) then ","."""
    import tensorflow as tf

    match = tf.strings.regex_full_match(pieces, "(?s).+" + digit_class() + ",")
    index = tf.where(match)[:, 0]  # int64 [M]
    matched = tf.gather(pieces, index)
    prefix = tf.strings.regex_replace(matched, ",$", "")  # The one "," at the end.
    again = segment(tf.strings.regex_replace(prefix, SPIECE_UNDERLINE, ""))  # [M, (k)]
    # Where the piece had no leading "▁" but the re-encoding starts with one, drop it (and
    # the piece it was, if it was alone).
    first = again[:, :1].flat_values  # Never empty: the prefix holds a digit.
    drop = (~tf.strings.regex_full_match(matched, f"{SPIECE_UNDERLINE}(?s).*")
            & tf.strings.regex_full_match(first, f"{SPIECE_UNDERLINE}(?s).*"))
    first_fixed = tf.strings.regex_replace(first, f"^{SPIECE_UNDERLINE}", "")
    first_fixed = tf.where(drop, first_fixed, first)
    keep_first = ~(drop & tf.equal(first, SPIECE_UNDERLINE))
    rest = again[:, 1:]
    head = tf.RaggedTensor.from_row_lengths(
        tf.boolean_mask(first_fixed, keep_first), tf.cast(keep_first, tf.int64))
    comma = tf.RaggedTensor.from_row_lengths(tf.fill(tf.shape(index), ","),
                                             tf.ones_like(index))
    replacement = tf.concat([head, rest, comma], axis=1)  # [M, (k)]

    # Rows: [piece] for the others, the replacement for the matched ones.
    count = tf.size(pieces, out_type=tf.int64)
    lengths = tf.tensor_scatter_nd_update(tf.ones([count], tf.int64), index[:, None],
                                          replacement.row_lengths())
    starts = tf.cumsum(lengths, exclusive=True)
    total = tf.reduce_sum(lengths)
    values = tf.tensor_scatter_nd_update(tf.fill([total], ""), starts[:, None], pieces)
    positions = (tf.gather(starts, index)[:, None]
                 + tf.ragged.range(replacement.row_lengths()))  # [M, (k)]
    values = tf.tensor_scatter_nd_update(values, positions.flat_values[:, None],
                                         replacement.flat_values)
    return tf.RaggedTensor.from_row_lengths(values, lengths, validate=False)


class SentencePieceNumpyTokenizer(_SentencePieceTokenizer):
    """The `sentencepiece` library through `tf.numpy_function`: the reference behaviour
    (Hugging Face's slow AlbertTokenizer), but Python: it cannot be saved or frozen."""

    def __init__(self, sp_model_file: str, do_lower_case: bool, keep_accents: bool = False):
        super().__init__(sp_model_file, do_lower_case, keep_accents)
        import sentencepiece as spm
        self._processor = spm.SentencePieceProcessor(model_file=sp_model_file)

    def encode(self, text: str) -> list[int]:
        """The ids of one text."""
        text = preprocess_text(text, self.do_lower_case, self.keep_accents)
        return [self._processor.PieceToId(p) for p in encode_pieces(self._processor, text)]

    def _tokenize_numpy(self, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = [self.encode(t.decode("utf-8", errors="ignore")) for t in texts]
        return (np.array([i for row in ids for i in row], np.int32),
                np.array([len(row) for row in ids], np.int64))

    def tokenize(self, texts):
        import tensorflow as tf

        from bert_layer.text.basic_tokenizer import text_batch
        values, lengths = tf.numpy_function(
            self._tokenize_numpy, [text_batch(texts)], [tf.int32, tf.int64], stateful=False,
            name="sentencepiece_tokenizer")
        values.set_shape([None])
        lengths.set_shape([None])
        return tf.RaggedTensor.from_row_lengths(values, lengths, validate=False)


SENTENCEPIECE_TOKENIZERS = {"graph": SentencePieceGraphTokenizer,
                            "numpy": SentencePieceNumpyTokenizer}


def make_sentencepiece_tokenizer(kind: str, sp_model_file: str, do_lower_case: bool,
                                 keep_accents: bool = False):
    """The SentencePiece tokenizer of `kind` ("graph" or "numpy"; "core" is refused)."""
    if kind == "core":
        raise ValueError(f"{sp_model_file}: {CORE_REFUSAL}.")
    if kind not in SENTENCEPIECE_TOKENIZERS:
        raise ValueError(f"Unknown tokenizer kind {kind!r}; expected one of "
                         f"{sorted(SENTENCEPIECE_TOKENIZERS)} for a SentencePiece model.")
    return SENTENCEPIECE_TOKENIZERS[kind](sp_model_file, do_lower_case, keep_accents)
