"""The rule for `--stride` (long texts as overlapping windows): plain Python, no TensorFlow, so
that the command line checks it before TensorFlow loads. The windows: bert_layer.text.windows.
"""

from __future__ import annotations

# Each window is [CLS] text [SEP]: room for max_seq_length - 2 wordpieces of a single text.
WINDOW_SPECIAL_TOKENS = 2


def check_stride(stride: int | None, max_seq_length: int) -> None:
    """None: texts are cut at `max_seq_length` wordpieces. Else a longer text becomes windows
    sharing `stride` wordpieces, as a Hugging Face fast tokenizer's `stride` (which must be
    strictly less than the room left after the special tokens, so that each window moves on).
    """
    if stride is None:
        return
    room = max_seq_length - WINDOW_SPECIAL_TOKENS
    if isinstance(stride, bool) or not isinstance(stride, int) or not 0 <= stride < room:
        raise ValueError(f"stride (the wordpieces two windows share) must be an integer from 0 "
                         f"to {room - 1}: less than the {room} wordpieces of text a window of "
                         f"max_seq_length={max_seq_length} holds beside [CLS] and [SEP]. "
                         f"Received: {stride!r}")
