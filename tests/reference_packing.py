"""Google's reference preprocessing: FullTokenizer + run_classifier's packing, in plain Python.

`bert.run_classifier` does not import on TF 2 (it needs tf.contrib), so its
`_truncate_seq_pair` and the packing of `convert_single_example` are restated here.
"""

from __future__ import annotations

import numpy as np
from absl import flags
from bert.tokenization import FullTokenizer

PAIR_SEPARATOR = "|||"


def full_tokenizer(vocab_file: str, do_lower_case: bool) -> FullTokenizer:
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # FullTokenizer reads --preserve_unused_tokens.
    return FullTokenizer(vocab_file, do_lower_case=do_lower_case)


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """run_classifier._truncate_seq_pair, verbatim in behaviour."""
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def reference_ids(tokenizer: FullTokenizer, text: str,
                  max_seq_length: int) -> tuple[list[int], list[int]]:
    """Ids and segments of `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` for `a` or `a ||| b`."""
    parts = text.split(PAIR_SEPARATOR)
    tokens_a = tokenizer.tokenize(parts[0])
    tokens_b = tokenizer.tokenize(parts[1]) if len(parts) == 2 else None
    if tokens_b is not None:
        truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
        tokens = ["[CLS]"] + tokens_a + ["[SEP]"] + tokens_b + ["[SEP]"]
        segments = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    else:
        tokens = ["[CLS]"] + tokens_a[: max_seq_length - 2] + ["[SEP]"]
        segments = [0] * len(tokens)
    return tokenizer.convert_tokens_to_ids(tokens), segments


def reference_features(tokenizer: FullTokenizer, texts: list[str],
                       max_seq_length: int) -> dict[str, np.ndarray]:
    """int32 input_ids, input_mask, segment_ids [batch, longest], zero-padded."""
    rows = [reference_ids(tokenizer, t, max_seq_length) for t in texts]
    longest = max(len(ids) for ids, _ in rows)
    features = {k: np.zeros([len(rows), longest], np.int32)
                for k in ("input_ids", "input_mask", "segment_ids")}
    for i, (ids, segments) in enumerate(rows):
        features["input_ids"][i, : len(ids)] = ids
        features["input_mask"][i, : len(ids)] = 1
        features["segment_ids"][i, : len(ids)] = segments
    return features
