"""Unicode tables for the graph tokenizer, computed from this Python's `unicodedata`.

`FullTokenizer` decides per character (is it whitespace, a control character, CJK,
punctuation; what does it lower-case to; is it an accent). These tables hold the same
decisions for every code point as intervals, so graph ops can look them up. Pure numpy:
no TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata

import numpy as np

NUM_CODE_POINTS = 0x110000
SPACE = 0x20
CAPITAL_SIGMA = 0x3A3
SMALL_FINAL_SIGMA = 0x3C2

# Google's BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks only.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# Google's _is_punctuation: all non-letter, non-digit ASCII counts, e.g. "$", "^" and "`".
ASCII_PUNCTUATION_RANGES = ((33, 47), (58, 64), (91, 96), (123, 126))

# Classes of input characters (before lower-casing): what _clean_text and
# _tokenize_chinese_chars do with them.
KEEP, DROP, WHITESPACE, CJK = 0, 1, 2, 3
# Classes of characters after lower-casing: what whitespace_tokenize and _run_split_on_punc
# do with them.
WORD_CHAR, SEPARATOR, PUNCTUATION = 0, 1, 2
# Classes for Python's Final_Sigma rule (see _final_sigmas).
NEUTRAL, CASE_IGNORABLE, CASED = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class StepTable:
    """A function of code points, constant on intervals: `labels[i]` on [starts[i], starts[i+1])."""

    starts: np.ndarray  # int32 [intervals], starts[0] == 0
    labels: np.ndarray  # int32 [intervals]

    @classmethod
    def from_dense(cls, values: np.ndarray) -> StepTable:
        starts = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1])
        return cls(starts.astype(np.int32), values[starts].astype(np.int32))


@dataclasses.dataclass(frozen=True)
class UnicodeTables:
    input_class: StepTable  # KEEP, DROP, WHITESPACE or CJK
    output_class: StepTable  # WORD_CHAR, SEPARATOR or PUNCTUATION
    sigma_context: StepTable  # NEUTRAL, CASE_IGNORABLE or CASED
    combining_class: StepTable  # Canonical_Combining_Class, 0..254
    nonspacing_mark: StepTable  # 1 for category Mn (what _run_strip_accents drops)
    # NFD(c.lower()) for every code point c it changes: a ragged table, sorted by key.
    lower_nfd_keys: np.ndarray  # int32 [K]
    lower_nfd_splits: np.ndarray  # int32 [K + 1]
    lower_nfd_values: np.ndarray  # int32 [sum of lengths]


@functools.cache
def unicode_tables() -> UnicodeTables:
    """Builds the tables once per process (about a second)."""
    chars = [chr(cp) for cp in range(NUM_CODE_POINTS)]
    lowered = [c.lower() for c in chars]
    categories = np.array([unicodedata.category(c) for c in chars])

    # _clean_text drops \0, U+FFFD and control/format characters except \t, \n and \r, and
    # turns whitespace into " "; str.split() also splits on the other isspace() characters
    # (e.g. U+2028), so they separate words too.
    drop = np.isin(categories, ["Cc", "Cf"])
    drop[[ord("\t"), ord("\n"), ord("\r")]] = False
    drop[[0, 0xFFFD]] = True
    whitespace = (categories == "Zs") | np.array([c.isspace() for c in chars])
    input_class = np.full(NUM_CODE_POINTS, KEEP, np.int32)
    for first, last in CJK_RANGES:
        input_class[first:last + 1] = CJK
    input_class[whitespace] = WHITESPACE
    input_class[drop] = DROP

    output_class = np.full(NUM_CODE_POINTS, WORD_CHAR, np.int32)
    output_class[np.char.startswith(categories, "P")] = PUNCTUATION
    for first, last in ASCII_PUNCTUATION_RANGES:
        output_class[first:last + 1] = PUNCTUATION
    output_class[whitespace] = SEPARATOR

    keys, pieces = [], []
    for cp, (c, mapped) in enumerate(zip(chars, lowered)):
        if not unicodedata.is_normalized("NFD", mapped):
            mapped = unicodedata.normalize("NFD", mapped)
        if mapped != c and not 0xD800 <= cp <= 0xDFFF:
            keys.append(cp)
            pieces.append([ord(m) for m in mapped])
    lengths = [len(p) for p in pieces]

    tables = UnicodeTables(
        input_class=StepTable.from_dense(input_class),
        output_class=StepTable.from_dense(output_class),
        sigma_context=StepTable.from_dense(_sigma_context(lowered)),
        combining_class=StepTable.from_dense(
            np.array([unicodedata.combining(c) for c in chars], np.int32)),
        nonspacing_mark=StepTable.from_dense((categories == "Mn").astype(np.int32)),
        lower_nfd_keys=np.array(keys, np.int32),
        lower_nfd_splits=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32),
        lower_nfd_values=np.array([m for p in pieces for m in p], np.int32))
    _check_assumptions(chars, input_class, tables)
    return tables


def _sigma_context(lowered: list[str]) -> np.ndarray:
    """Python's Case_Ignorable and Cased properties, read off `str.lower()` itself.

    Python has no API for them, but its Final_Sigma rule shows them: "XΣ" ends in "ς" iff X
    is cased and not case-ignorable; "AXΣ" ends in "ς" iff X is either. A space before each
    probe keeps the probes apart (it is neither).
    """
    lengths = np.fromiter(map(len, lowered), np.int64, count=NUM_CODE_POINTS)
    one_char = np.flatnonzero(lengths == 1)  # Their probes keep their length when lowered.
    one_char = one_char[(one_char < 0xD800) | (one_char > 0xDFFF)]  # No surrogates in text.

    def probe(prefix: str) -> np.ndarray:
        columns = [SPACE, *map(ord, prefix), one_char, CAPITAL_SIGMA]
        probes = np.stack(np.broadcast_arrays(*columns), axis=1).astype("<u4")
        text = probes.tobytes().decode("utf-32-le").lower().encode("utf-32-le")
        final = np.zeros(NUM_CODE_POINTS, bool)
        final[one_char] = np.frombuffer(text, "<u4")[probes.shape[1] - 1::probes.shape[1]] == (
            SMALL_FINAL_SIGMA)
        for cp in np.flatnonzero(lengths != 1):
            final[cp] = ord((prefix + chr(cp) + chr(CAPITAL_SIGMA)).lower()[-1]) == (
                SMALL_FINAL_SIGMA)
        return final

    cased_only = probe("")
    either = probe("A")
    context = np.full(NUM_CODE_POINTS, NEUTRAL, np.int32)
    context[either & ~cased_only] = CASE_IGNORABLE
    context[cased_only] = CASED
    return context


def _check_assumptions(chars: list[str], input_class: np.ndarray,
                       tables: UnicodeTables) -> None:
    """The graph pipeline relies on these facts of Unicode; a future version could break them."""
    sigma = chr(CAPITAL_SIGMA)
    problems = []
    if sigma.lower() != "\u03c3" or ("A" + sigma).lower() != "a\u03c2":
        problems.append("str.lower() of capital sigma")
    for cp in np.flatnonzero(input_class == CJK)[::97]:  # A sample is enough: blocks are uniform.
        mapped = unicodedata.normalize("NFD", chars[cp].lower())
        if len(mapped) != 1 or unicodedata.combining(mapped) or not mapped.isalpha():
            problems.append(f"CJK U+{cp:04X} does not stay one letter")
    context = tables.sigma_context.labels[
        np.searchsorted(tables.sigma_context.starts, [SPACE, 0x4E00], side="right") - 1]
    if context.any():
        problems.append("space or CJK is cased or case-ignorable")
    if problems:
        raise RuntimeError(f"This Python's Unicode data ({unicodedata.unidata_version}) breaks "
                           f"GraphTokenizer's assumptions: {problems}.")
