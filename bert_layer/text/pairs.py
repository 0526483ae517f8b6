"""How a sentence pair is written in one string: "first ||| second". No TensorFlow here.

Data readers write and check pairs with this; `bert_layer.text.packing` splits them in the
graph. tests/reference_packing.py keeps its own copy on purpose (it is the reference).
"""

from __future__ import annotations

PAIR_SEPARATOR = "|||"


def check_pair_text(text: str) -> None:
    """Raises ValueError if `text` holds more than one PAIR_SEPARATOR."""
    count = text.count(PAIR_SEPARATOR)
    if count > 1:
        raise ValueError(f"Only one {PAIR_SEPARATOR} is allowed per text (first {PAIR_SEPARATOR} "
                         f"second); found {count} in {text!r}.")
