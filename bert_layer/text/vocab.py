"""WordPiece vocabularies: one reader for ids, one for rows, and the special tokens.

Two semantics, named apart because they differ on repeated lines:
  load_vocab: ids as `bert.tokenization.FullTokenizer` 1.0.4 (the pinned reference) gives
    them; a repeated token keeps its first id.
  read_vocab_lines: one entry per line, as the embedding matrix has one row per line.
"""

from __future__ import annotations

import dataclasses
import hashlib

import tensorflow as tf

UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
SUFFIX_INDICATOR = "##"


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """The tokens a model family packs its inputs with (see bert_layer.text.packing).

    `pad` None pads with id 0 (BERT's [PAD]; vocabularies without "[PAD]" pad with 0 too).
    `pair_separators` is how many `sep` stand between the two texts of a pair: BERT's
    `[CLS] a [SEP] b [SEP]` has one, MPNet's `<s> a </s></s> b </s>` two.
    """

    cls: str = CLS_TOKEN
    sep: str = SEP_TOKEN
    pad: str | None = None
    pair_separators: int = 1


# By the `model_type` a converted folder and a module's assets/bert_config.json record
# (bert_layer.export.families; absent: BERT). MPNet's vocabulary is BERT's uncased one with
# `<s>`, `<pad>`, `</s>`, `<unk>` in front and `<mask>` at the end: it holds [CLS] and [SEP]
# too, so only the model type tells which pair the model was trained with. Its unknown token
# stays [UNK] (transformers' MPNetTokenizer).
SPECIAL_TOKENS = {
    "bert": SpecialTokens(),
    "mpnet": SpecialTokens(cls="<s>", sep="</s>", pad="<pad>", pair_separators=2),
    # BERT's [CLS]/[SEP] (ALBERT's SentencePiece vocabularies hold them too).
    "electra": SpecialTokens(),
    "albert": SpecialTokens(),
}
BERT_SPECIAL_TOKENS = SPECIAL_TOKENS["bert"]


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


def file_sha256(path: str) -> str:
    """The hex sha256 of a file's bytes (a vocabulary is a few hundred kB: read at once)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_ids_match_rows(vocab_file: str) -> int:
    """Every line's id (`load_vocab`) is its line number (`read_vocab_lines`): the embedding
    matrix has one row per line, and the tokenizer must pick that row. Returns the size.

    A repeated token breaks this: FullTokenizer keeps its first id and every later line moves
    up by one against its row, so most tokens would read another token's vector. Refused.

    Raises:
      ValueError: naming the file, the first line whose id and row disagree, and why.
    """
    rows = read_vocab_lines(vocab_file)
    ids = load_vocab(vocab_file)
    if ids == rows:
        return len(rows)
    first_line: dict[str, int] = {}
    for line, token in enumerate(rows, start=1):
        if token in first_line:
            raise ValueError(
                f"{vocab_file}: line {line} repeats the token {token!r} of line "
                f"{first_line[token]}; every later id would shift by one against the embedding "
                f"rows. Expected each token once (one token a line, line i = row i).")
        first_line[token] = line
    line = next((i for i, (a, b) in enumerate(zip(ids, rows)) if a != b), min(len(ids),
                                                                          len(rows)))
    raise ValueError(f"{vocab_file}: line {line + 1} reads as {len(rows)} rows but {len(ids)} ids "
                     f"(a carriage return or form feed inside a line?); expected one token a "
                     f"line, ended by a newline.")


def read_vocab_lines(vocab_file: str) -> list[str]:
    """The tokens of a WordPiece `vocab.txt`, one per line (embedding row), strict UTF-8."""
    try:
        with open(vocab_file, encoding="utf-8") as f:
            return [line.strip() for line in f]
    except FileNotFoundError:
        raise FileNotFoundError(f"Vocabulary file not found: {vocab_file}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{vocab_file}: not UTF-8 text ({e}).") from None
