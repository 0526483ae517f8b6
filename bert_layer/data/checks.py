"""What the user should see about their data before training: counts, classes, suspicions.

No TensorFlow here: `bert-layer train` prints these before it loads TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np

from bert_layer.data.examples import Examples

_SHOWN = 5  # Lines named in a warning before "...".


def summary(examples: Examples) -> str:
    """One line: how many examples, the classes and each class's count (for scores: each
    score's range and mean)."""
    if examples.scores:
        ranges = ", ".join(f"{name!r}: {column.min():g}..{column.max():g} (mean "
                           f"{column.mean():.3g})"
                           for name, column in zip(examples.classes, examples.labels.T))
        return f"{examples.source}: {len(examples)} examples; scores {{{ranges}}}"
    counts = class_counts(examples)
    classes = ", ".join(f"{name!r}: {count}" for name, count in counts.items())
    kind = "multi-label classes" if examples.multi_label else "classes"
    return f"{examples.source}: {len(examples)} examples; {len(counts)} {kind} {{{classes}}}"


def class_counts(examples: Examples) -> dict[str, int]:
    """Examples per class (for multi-label data, examples holding the class), in class order."""
    if examples.labels is None or examples.scores:
        return {}
    if examples.multi_label:
        per_class = examples.labels.sum(axis=0)  # [C]
    else:
        per_class = np.bincount(examples.labels, minlength=len(examples.classes))  # [C]
    return {name: int(n) for name, n in zip(examples.classes, per_class)}


def warnings_for(examples: Examples) -> list[str]:
    """Suspicious things in `examples`, one message each (empty when nothing is)."""
    found = []
    for key, what in ((_spelling_key, "differ only in case or spacing"),
                      (_number_key, "are the same number written differently")):
        similar = _similar_classes(examples.classes, key)
        if similar:
            groups = "; ".join(" / ".join(repr(n) for n in group) for group in similar)
            found.append(f"{examples.source}: labels that {what} are separate classes: "
                         f"{groups}. Fix the file, or declare the classes with --labels.")
    empty = [i for i, text in enumerate(examples.texts) if not text.strip()]
    if empty:
        found.append(f"{examples.source}: {len(empty)} of {len(examples)} texts are empty "
                     f"({_where(examples, empty)}).")
    merged = [i for i, text in enumerate(examples.texts) if _looks_like_rows(text)]
    if merged:
        found.append(f"{examples.source}: {len(merged)} quoted texts span lines that look like "
                     f"rows of their own ({_where(examples, merged)}); an unterminated quote "
                     f"may have merged rows.")
    return found


def _similar_classes(classes: list[str], key) -> list[list[str]]:
    """Groups of class names with the same `key` (names a reader takes for one class)."""
    groups: dict[object, list[str]] = {}
    for name in classes:
        groups.setdefault(key(name), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def _spelling_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _number_key(name: str) -> object:
    """The value of a finite number ('1', '1.0', '01', '+1' -> 1.0), else the name itself."""
    try:
        value = float(name)
    except ValueError:
        return name
    return value if math.isfinite(value) else name


def _looks_like_rows(text: str) -> bool:
    """A text holding a newline then a line ending in a delimiter and a short field."""
    lines = text.splitlines()
    return len(lines) > 1 and any(
        _ends_like_a_row(line) for line in lines[1:])


def _ends_like_a_row(line: str) -> bool:
    for delimiter in (",", "\t"):
        head, sep, tail = line.rpartition(delimiter)
        if sep and head and tail.strip() and len(tail.strip()) <= 20 and " " not in tail.strip():
            return True
    return False


def _where(examples: Examples, indices: list[int]) -> str:
    if examples.lines is None:
        named = [f"example {i + 1}" for i in indices[:_SHOWN]]
    else:
        named = [f"line {examples.lines[i]}" for i in indices[:_SHOWN]]
    return ", ".join(named) + (", ..." if len(indices) > _SHOWN else "")
