"""`--class-weight`: from the user's setting to one weight per class. No TensorFlow here, so
that `bert-layer train` refuses a bad setting before TensorFlow loads.

Single-label data: the weights go to Keras `fit(class_weight=...)`, which scales each example's
loss by its class's weight. Multi-label data: each class's weight multiplies the loss of its
positive examples (`bert_layer.training.classifier.PositiveWeightedBinaryCrossentropy`).
"""

from __future__ import annotations

import math

import numpy as np

from bert_layer.choices import BALANCED
from bert_layer.data.examples import Examples


def parse_class_weight(setting: str) -> str | dict[str, float]:
    """"balanced", or "name=weight,name=weight" as {name: weight}.

    Raises ValueError for a malformed pair, a repeated name or a weight that is not a finite
    number > 0.
    """
    if setting.strip() == BALANCED:
        return BALANCED
    weights: dict[str, float] = {}
    for part in setting.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not sep or not name or not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"class_weight {setting!r}: expected {BALANCED!r} or "
                             f"name=weight pairs with weights > 0 separated by commas (e.g. "
                             f"neg=1,pos=3); found {part!r}.")
        if name in weights:
            raise ValueError(f"class_weight {setting!r} names class {name!r} twice.")
        weights[name] = weight
    return weights


def resolve_class_weights(setting: str, train: Examples) -> dict[str, float]:
    """One weight per class of `train`, in class order (classes not named weigh 1).

    Raises ValueError for a class the data does not have, or "balanced" with a class that has
    no training example (its weight would be infinite) or, multi-label, is in every example
    (its weight would be 0).
    """
    parsed = parse_class_weight(setting)
    if parsed != BALANCED:
        unknown = [name for name in parsed if name not in train.classes]
        if unknown:
            raise ValueError(f"class_weight names {unknown[0]!r}, which is not a class of "
                             f"{train.source}; the classes are {list(train.classes)}.")
        return {name: parsed.get(name, 1.0) for name in train.classes}
    return dict(zip(train.classes, _balanced(train)))


def _balanced(train: Examples) -> list[float]:
    from sklearn.utils.class_weight import compute_class_weight

    if train.multi_label:  # Positive weight = negatives / positives, per class.
        positives = train.labels.sum(axis=0)  # [C]
        missing = [c for c, n in zip(train.classes, positives) if n == 0]
    else:
        positives = np.bincount(train.labels, minlength=len(train.classes))
        missing = [c for c, n in zip(train.classes, positives) if n == 0]
    if missing:
        raise ValueError(f"class_weight {BALANCED!r}: class {missing[0]!r} has no example in "
                         f"{train.source}, so no balanced weight; name the weights instead "
                         f"(e.g. {train.classes[0]}=1,...).")
    if train.multi_label:
        everywhere = [c for c, n in zip(train.classes, positives) if n == len(train)]
        if everywhere:  # Its weight, negatives / positives, would be 0: no loss at all.
            raise ValueError(f"class_weight {BALANCED!r}: class {everywhere[0]!r} is positive "
                             f"in every example of {train.source}, so its balanced weight "
                             f"would be 0 (nothing learnt); name the weights instead "
                             f"(e.g. {everywhere[0]}=1,...).")
        return [float((len(train) - n) / n) for n in positives]
    weights = compute_class_weight(BALANCED, classes=np.arange(len(train.classes)),
                                   y=train.labels)
    return [float(w) for w in weights]
