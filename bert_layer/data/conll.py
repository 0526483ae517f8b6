"""CoNLL-style tagged sentences: one token a line, the tag in the last column. No TensorFlow.

Layout (CoNLL-2003, WNUT): columns separated by tabs (or, on lines without a tab, by spaces),
the token first and the IOB2 tag (`B-x`, `I-x`, `O`) last; sentences end at an empty or
whitespace-only line; `-DOCSTART-` lines are skipped. Every problem is one line naming the
file, the line and what was expected.

Dimension legend: n = sentences, w = words of one sentence.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from bert_layer.choices import OUTSIDE_TAG

DOCSTART = "-DOCSTART-"
_TAG = re.compile(r"^(?:O|[BI]-(\S+))$")


@dataclasses.dataclass(frozen=True, eq=False)
class TaggedSentences:
    """Words and (optionally) their IOB2 tags, as read from `source`.

    Attributes:
      words: list[list[str]] [n, (w)].
      tags: None (no tag column), or list[list[str]] [n, (w)].
      source: the file, for messages.
      lines: list[list[int]] [n, (w)]: the 1-based line of each word.
      rows: list[list[str]] [n, (w)]: each word's line as written (no newline), for writing
        the file back with a predicted column.
    """

    words: list[list[str]]
    tags: list[list[str]] | None
    source: str
    lines: list[list[int]]
    rows: list[list[str]]

    def __len__(self) -> int:
        return len(self.words)

    def entity_types(self) -> list[str]:
        """The entity types of `tags`, sorted."""
        return sorted({t[2:] for sentence in self.tags or [] for t in sentence if t != "O"})

    def take(self, indices: Sequence[int]) -> TaggedSentences:
        pick = lambda values: None if values is None else [values[i] for i in indices]  # noqa
        return TaggedSentences(pick(self.words), pick(self.tags), self.source,
                               pick(self.lines), pick(self.rows))


def tag_names(entity_types: Sequence[str]) -> list[str]:
    """The tag set of `entity_types`: "O", then "B-x", "I-x" for each type in order."""
    return [OUTSIDE_TAG] + [f"{p}-{t}" for t in entity_types for p in ("B", "I")]


def entity_type(tag: str) -> str | None:
    """"x" of "B-x"/"I-x"; None for "O" and anything else."""
    match = _TAG.match(tag)
    return match.group(1) if match else None


def _columns(line: str) -> list[str]:
    return line.split("\t") if "\t" in line else line.split()


def read_conll(path: str, *, tagged: bool | None = True) -> TaggedSentences:
    """Reads a CoNLL-style file.

    Args:
      path: the file (UTF-8).
      tagged: True: every token line must end in an IOB2 tag (training, dev data). False: the
        token is the first column and the rest is kept but not read. None: tagged when every
        token line has two columns or more and ends in an IOB2 tag (predict's input).

    Raises:
      FileNotFoundError, ValueError (one line: file, line, what was expected and found).
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: expected UTF-8 text, found byte {e.object[e.start]:#04x} at "
                         f"byte offset {e.start}.") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: expected a CoNLL file, found a folder.") from None
    raw_lines = text.splitlines()
    if tagged is None:
        tagged = _looks_tagged(raw_lines)
    sentences: list[list[tuple[str, str | None, int, str]]] = [[]]
    for number, line in enumerate(raw_lines, start=1):
        if not line.strip():
            if sentences[-1]:
                sentences.append([])
            continue
        columns = _columns(line.rstrip("\r\n"))
        if columns[0].strip() == DOCSTART:
            continue
        word = columns[0].strip()
        tag = None
        if tagged:
            if len(columns) < 2 or not columns[-1].strip():
                raise ValueError(f"{path}:{number}: expected a token and its tag (e.g. "
                                 f"'Paris<TAB>B-loc'), found one column: {line.strip()!r}.")
            tag = columns[-1].strip()
            if not _TAG.match(tag):
                raise ValueError(f"{path}:{number}: expected an IOB2 tag (O, B-type or I-type), "
                                 f"found {tag!r}.")
        if not word:
            raise ValueError(f"{path}:{number}: expected a token in the first column, found "
                             f"an empty one.")
        sentences[-1].append((word, tag, number, line.rstrip("\r\n")))
    sentences = [s for s in sentences if s]
    if not sentences:
        raise ValueError(f"{path}: expected at least one sentence (token lines separated by "
                         f"empty lines), found none.")
    return TaggedSentences(
        words=[[w for w, _, _, _ in s] for s in sentences],
        tags=[[t for _, t, _, _ in s] for s in sentences] if tagged else None,
        source=path, lines=[[n for _, _, n, _ in s] for s in sentences],
        rows=[[r for _, _, _, r in s] for s in sentences])


def _looks_tagged(lines: list[str]) -> bool:
    token_lines = [_columns(line) for line in lines if line.strip()]
    token_lines = [c for c in token_lines if c[0].strip() != DOCSTART]
    return bool(token_lines) and all(len(c) >= 2 and _TAG.match(c[-1].strip())
                                     for c in token_lines)


def check_known_tags(sentences: TaggedSentences, tags: Sequence[str]) -> None:
    """Raises on the first tag outside `tags` (a dev file with a type the model lacks)."""
    known = set(tags)
    for words_tags, lines in zip(sentences.tags or [], sentences.lines):
        for tag, line in zip(words_tags, lines):
            if tag not in known:
                raise ValueError(f"{sentences.source}:{line}: the tag {tag!r} is not one the "
                                 f"model knows; expected one of {sorted(known)}.")


def tagging_warnings(sentences: TaggedSentences) -> list[str]:
    """What a user should know before training on `sentences`: no entity at all, IOB1 data."""
    found = []
    if sentences.tags is not None and not sentences.entity_types():
        found.append(f"{sentences.source}: no entity at all (every tag is O): the tagger will "
                     f"learn to predict O only.")
    orphans = [line for tags, lines in zip(sentences.tags or [], sentences.lines)
               for i, (tag, line) in enumerate(zip(tags, lines))
               if tag.startswith("I-") and (i == 0 or entity_type(tags[i - 1]) != tag[2:])]
    if orphans:
        shown = ", ".join(map(str, orphans[:5])) + (", ..." if len(orphans) > 5 else "")
        found.append(f"{sentences.source}: {len(orphans)} I-x tags follow O or another type "
                     f"(lines {shown}): IOB1 data? Each is read as the start of an entity, as "
                     f"seqeval and conlleval do; convert the file to IOB2 to be sure.")
    return found


def summary(sentences: TaggedSentences) -> str:
    """One line: sentences, words, entities per type."""
    from collections import Counter

    counts = Counter(t[2:] for tags in sentences.tags or [] for t in tags if t.startswith("B-"))
    types = ", ".join(f"{name!r}: {counts[name]}" for name in sorted(counts))
    n_words = sum(len(w) for w in sentences.words)
    return (f"{sentences.source}: {len(sentences)} sentences, {n_words} words; "
            f"{sum(counts.values())} entities {{{types}}}")


def declared_tags(entity_types: Sequence[str], source: str = "--labels") -> list[str]:
    """The tag set of declared entity types ("person,loc"); "B-x"/"I-x" are read as "x"."""
    types = []
    for name in entity_types:
        name = name.strip()
        kind = entity_type(name) or name
        if not kind or kind == OUTSIDE_TAG or any(c.isspace() for c in kind):
            raise ValueError(f"{source}: expected entity types such as person,location; found "
                             f"{name!r}.")
        if kind not in types:
            types.append(kind)
    return tag_names(sorted(types))
