"""The reference ALBERT tokenization: Hugging Face's slow `AlbertTokenizer` (transformers 4).

transformers 5 keeps only the `tokenizers`-backed AlbertTokenizer, so its slow, sentencepiece
based one is copied here from transformers v4.46 (src/transformers/models/albert/
tokenization_albert.py: `preprocess_text` and `_tokenize`, unchanged but for `self`), the
tokenization ALBERT's users ran for years. It is Google's ALBERT `preprocess_text` and
`encode_pieces` with the quote replacement and `keep_accents` added.
"""

from __future__ import annotations

import unicodedata

import sentencepiece as spm

SPIECE_UNDERLINE = "▁"


class SlowAlbertTokenizer:
    def __init__(self, vocab_file: str, do_lower_case: bool = True, remove_space: bool = True,
                 keep_accents: bool = False):
        self.do_lower_case = do_lower_case
        self.remove_space = remove_space
        self.keep_accents = keep_accents
        self.sp_model = spm.SentencePieceProcessor()
        self.sp_model.Load(vocab_file)

    def preprocess_text(self, inputs):
        if self.remove_space:
            outputs = " ".join(inputs.strip().split())
        else:
            outputs = inputs
        outputs = outputs.replace("``", '"').replace("''", '"')

        if not self.keep_accents:
            outputs = unicodedata.normalize("NFKD", outputs)
            outputs = "".join([c for c in outputs if not unicodedata.combining(c)])
        if self.do_lower_case:
            outputs = outputs.lower()

        return outputs

    def _tokenize(self, text: str) -> list[str]:
        """Tokenize a string."""
        text = self.preprocess_text(text)
        pieces = self.sp_model.encode(text, out_type=str)
        new_pieces = []
        for piece in pieces:
            if len(piece) > 1 and piece[-1] == str(",") and piece[-2].isdigit():
                # Logic to handle special cases see https://github.com/google-research/bert/blob/master/README.md#tokenization  # noqa: E501
                # `9,9` -> ['▁9', ',', '9'] instead of [`_9,`, '9']
                cur_pieces = self.sp_model.EncodeAsPieces(piece[:-1].replace(SPIECE_UNDERLINE, ""))  # noqa: E501
                if piece[0] != SPIECE_UNDERLINE and cur_pieces[0][0] == SPIECE_UNDERLINE:
                    if len(cur_pieces[0]) == 1:
                        cur_pieces = cur_pieces[1:]
                    else:
                        cur_pieces[0] = cur_pieces[0][1:]
                cur_pieces.append(piece[-1])
                new_pieces.extend(cur_pieces)
            else:
                new_pieces.append(piece)

        return new_pieces

    def encode(self, text: str) -> list[int]:
        """The ids of `text`, without [CLS] and [SEP]."""
        return [self.sp_model.PieceToId(piece) for piece in self._tokenize(text)]
