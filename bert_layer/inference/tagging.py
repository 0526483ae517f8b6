"""Tagging with a trained tagger: raw text or CoNLL words in, entity spans or tags out.

Every runtime (a `.keras` tagger, a frozen `.pb`, a serving SavedModel) answers one question,
`run(words [B, W]) -> (probabilities [B, W, K], piece_counts [B, W])`; the rest is here, in
Python, the same for all of them:
  - raw text is split into words with character offsets (bert_layer.text.alignment.split_text),
    so `text[start:end]` is the entity whatever lower-casing or accent stripping the
    tokenizer does;
  - a sentence longer than max_seq_length wordpieces is run again in overlapping windows
    (`--stride` pieces shared), each word read from the window where it has most context;
  - tags become entities with seqeval's `get_entities` (an I-x after O starts an entity, as
    seqeval and conlleval read it); an entity's score is the mean probability of its words'
    tags.

Dimension legend: B = sentences, W = words, K = tags.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Protocol, TextIO

import numpy as np

from bert_layer.text.alignment import merge_rows, split_text, windowed
from bert_layer.training.specs import window_stride

# CoNLL file names predict reads as tagged words (anything else: one text a line).
CONLL_SUFFIXES = (".conll", ".iob", ".iob2", ".bio", ".bioes")


class Tagger(Protocol):
    """What tagging needs of a trained tagger."""

    tag_names: list[str]
    max_seq_length: int

    def run(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """words object [B, W] ("" pads) -> (probabilities float32 [B, W, K], piece_counts
        int32 [B, W])."""


@dataclasses.dataclass(frozen=True)
class Entity:
    start: int  # Character offsets into the text: text[start:end] is the entity.
    end: int
    text: str
    label: str
    score: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _run_rows(tagger: Tagger, rows: list[list[str]], batch_size: int,
              on_batch: Callable[[int], None] | None = None
              ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(probabilities [w, K], piece_counts [w]) of each row, batched by length."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    probabilities: list = [None] * len(rows)
    counts: list = [None] * len(rows)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(1, max(len(rows[i]) for i in batch))
        words = np.array([rows[i] + [""] * (width - len(rows[i])) for i in batch], dtype=object)
        p, c = tagger.run(words)
        for j, i in enumerate(batch):
            probabilities[i], counts[i] = p[j, :len(rows[i])], c[j, :len(rows[i])]
        if on_batch is not None:
            on_batch(len(batch))
    return probabilities, counts


def tag_probabilities(tagger: Tagger, sentences: list[list[str]], *,
                      stride: int | None = None, batch_size: int = 32,
                      on_batch: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Tag probabilities float32 [w, K] for every word of every sentence.

    Sentences that fit the model run once; longer ones run again in windows of
    `max_seq_length - 2` pieces sharing `stride` pieces (`window_stride`), each word read
    from the window where it has the most context on both sides. No word is left
    untagged."""
    budget = tagger.max_seq_length - 2
    stride = window_stride(stride, tagger.max_seq_length)
    probabilities, counts = _run_rows(tagger, sentences, batch_size, on_batch)
    long = [i for i, c in enumerate(counts) if int(c.sum()) > budget]
    if long:
        rows, origins = windowed([sentences[i] for i in long], [counts[i] for i in long],
                                 budget, stride)
        row_probabilities, _ = _run_rows(tagger, rows, batch_size)
        merged = merge_rows([list(p) for p in row_probabilities], origins,
                            [len(sentences[i]) for i in long])
        for i, values in zip(long, merged):
            probabilities[i] = np.stack(values) if values else probabilities[i]
    return probabilities


def tags_of(probabilities: np.ndarray, tag_names: list[str]) -> list[str]:
    return [tag_names[k] for k in probabilities.argmax(-1)] if len(probabilities) else []


def word_entities(tags: list[str], probabilities: np.ndarray) -> list[tuple[str, int, int, float]]:
    """(type, first word, last word, score) of each entity, seqeval's reading of `tags`."""
    from seqeval.metrics.sequence_labeling import get_entities

    chosen = probabilities.max(-1) if len(probabilities) else probabilities
    return [(kind, first, last, float(np.mean(chosen[first:last + 1])))
            for kind, first, last in get_entities(list(tags))]


def tag_texts(tagger: Tagger, texts: list[str], *, stride: int | None = None,
              batch_size: int = 32, on_batch: Callable[[int], None] | None = None
              ) -> list[list[Entity]]:
    """The entities of each raw text, with character offsets into it."""
    spans = [split_text(text) for text in texts]
    sentences = [[text[a:b] for a, b in s] for text, s in zip(texts, spans)]
    probabilities = tag_probabilities(tagger, sentences, stride=stride, batch_size=batch_size,
                                      on_batch=on_batch)
    results = []
    for text, word_spans, p in zip(texts, spans, probabilities):
        entities = []
        for kind, first, last, score in word_entities(tags_of(p, tagger.tag_names), p):
            start, end = word_spans[first][0], word_spans[last][1]
            entities.append(Entity(start, end, text[start:end], kind, score))
        results.append(entities)
    return results


def write_entities_jsonl(out: TextIO, texts: list[str], entities: list[list[Entity]]) -> None:
    for text, found in zip(texts, entities):
        record = {"text": text, "entities": [e.as_dict() for e in found]}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_conll(out: TextIO, rows: list[list[str]], tags: list[list[str]]) -> None:
    """Each word's line as read, then a tab and its predicted tag; an empty line after each
    sentence."""
    for sentence_rows, sentence_tags in zip(rows, tags):
        for row, tag in zip(sentence_rows, sentence_tags):
            out.write(f"{row}\t{tag}\n")
        out.write("\n")


# === Runtimes ===

def _load_serialized_layers() -> None:
    import bert_layer.training.tagger  # noqa: F401  (registers TaggerHead and WordBertLayer)


class KerasTagger:
    """A saved `.keras` tagger (bert_layer.training.tagger) behind one traced function."""

    def __init__(self, path: str | os.PathLike, precision: str | None = None, model=None):
        import tensorflow as tf

        from bert_layer.inference.runtimes import load_keras_model
        from bert_layer.inference.tagger_graphs import words_function
        from bert_layer.training.tagger import find_tagger_head

        _load_serialized_layers()
        self.path = os.fspath(path)
        self.model = model if model is not None else load_keras_model(self.path, precision)
        head = find_tagger_head(self.model)
        if head is None:
            raise ValueError(f"{self.path} is not a tagger (it has no TaggerHead): it was "
                             f"trained with --task classify; predict reads it as a classifier.")
        self.tag_names = list(head.tag_names)
        self.max_seq_length = self.model.get_layer("bert").max_seq_length
        self._run = tf.function(words_function(self.model),
                                input_signature=[tf.TensorSpec([None, None], tf.string)],
                                autograph=False)

    def run(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        out = self._run(tf.constant(words, dtype=tf.string))
        return out["probabilities"].numpy(), out["piece_counts"].numpy()


class FrozenTagger:
    """A tagger frozen by `bert-layer freeze` (bert_layer.inference.tagger_graphs)."""

    def __init__(self, graph_def, path: str):
        import tensorflow as tf

        from bert_layer.inference.custom_ops import graph_op_types, register_ops_for
        from bert_layer.inference.formats import (
            MAX_SEQ_LENGTH,
            PIECE_COUNTS,
            TAG_NAMES,
            TAG_PROBABILITIES,
            WORDS_INPUT,
        )

        self.path = path
        register_ops_for(graph_op_types(graph_def), path)
        constants = {n.name: tf.make_ndarray(n.attr["value"].tensor)
                     for n in graph_def.node if n.op == "Const"}
        self.tag_names = [t.decode() for t in constants[TAG_NAMES]]
        self.max_seq_length = int(constants[MAX_SEQ_LENGTH])
        wrapped = tf.compat.v1.wrap_function(
            lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
        tensor = lambda name: wrapped.graph.get_tensor_by_name(f"{name}:0")  # noqa: E731
        self._run = wrapped.prune(feeds=[tensor(WORDS_INPUT)],
                                  fetches=[tensor(TAG_PROBABILITIES), tensor(PIECE_COUNTS)])

    def run(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        probabilities, counts = self._run(tf.constant(words, dtype=tf.string))
        return probabilities.numpy(), counts.numpy()


class SavedModelTagger:
    """A serving SavedModel of a tagger, through its `words` signature."""

    def __init__(self, loaded, path: str):
        from bert_layer.inference.tagger_graphs import METADATA_SIGNATURE, WORDS_SIGNATURE

        self.path = path
        self._loaded = loaded
        metadata = loaded.signatures[METADATA_SIGNATURE]()
        self.tag_names = [t.decode() for t in metadata["tag_names"].numpy()]
        self.max_seq_length = int(metadata["max_seq_length"].numpy())
        self._words = loaded.signatures[WORDS_SIGNATURE]

    def run(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        out = self._words(words=tf.constant(words, dtype=tf.string))
        return out["probabilities"].numpy(), out["piece_counts"].numpy()


def is_tagger_file(path: str) -> bool:
    """True for a tagger `.keras` (read from its config, without TensorFlow), `.pb` or
    SavedModel; False for a classifier."""
    import zipfile

    from bert_layer.inference.formats import TAG_NAMES

    if path.endswith(".keras"):
        try:
            with zipfile.ZipFile(path) as archive:
                return b'"TaggerHead"' in archive.read("config.json")
        except (OSError, KeyError, zipfile.BadZipFile):
            return False
    if path.endswith(".pb"):  # The constant's node name, as the GraphDef's bytes hold it.
        with open(path, "rb") as f:
            return TAG_NAMES.encode() in f.read()
    saved_model = os.path.join(path, "saved_model.pb")
    if os.path.isfile(saved_model):
        with open(saved_model, "rb") as f:
            return b"tagger_metadata" in f.read()
    return False


def load_tagger(path: str | os.PathLike, precision: str | None = None) -> Tagger:
    """A tagger `.keras`, frozen `.pb` or serving SavedModel folder."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        return KerasTagger(path, precision)
    if precision is not None and not path.endswith(".keras"):
        raise ValueError(f"{path}: a frozen graph or SavedModel computes in the precision it "
                         f"was written with; freeze it again with --precision {precision}.")
    if path.endswith(".pb"):
        from bert_layer.inference.formats import read_graph_def

        return FrozenTagger(read_graph_def(path), path)
    import tensorflow as tf

    from bert_layer.inference.custom_ops import register_ops_for, saved_model_op_types

    register_ops_for(saved_model_op_types(path), path)
    return SavedModelTagger(tf.saved_model.load(path), path)
