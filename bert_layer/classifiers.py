"""Trained classifiers behind one interface: texts in, class probabilities out.

`FrozenClassifier` runs a graph written by `bert-layer freeze`; `KerasClassifier` a saved
`.keras` model. Both satisfy `Classifier`, which `bert_layer.predict` relies on.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Protocol

import numpy as np
import tensorflow as tf

from bert_layer.contract import TOKEN_INPUTS
from bert_layer.freeze import (CLASS_NAMES, DO_LOWER_CASE, MAX_SEQ_LENGTH, MULTI_LABEL, OUTPUT,
                               TEXT_INPUT, VOCAB, read_graph_def)
from bert_layer.outputs import REPORT_FILE


class Classifier(Protocol):
    """What batch prediction needs of a trained model."""

    class_names: list[str]
    multi_label: bool

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Class probabilities float32 [batch, n_classes] for a batch of strings."""


class TokenizingClassifier(Classifier, Protocol):
    """A classifier whose tokenizer can run apart from its encoder (`tokenizes_apart`):
    batch prediction then groups texts by their real token counts (`bert_layer.predict`)."""

    tokenizes_apart: bool

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """int32 `input_ids`, `input_mask`, `segment_ids` [n, seq] for `texts`."""

    def run_ids(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities float32 [batch, n_classes] for tokenized features."""


class FrozenClassifier:
    """Runs a graph written by `freeze_model`: strings in, class probabilities out.

    A graph frozen with the numpy tokenizer takes ids: its vocabulary travels in the graph,
    and FullTokenizer runs here, outside it.

    Args:
      path: the `.pb` file.
      precision: None, or the precision ("fp32", "bf16") the graph must compute in (a
        frozen graph's precision is fixed by `bert-layer freeze --precision`).
    """

    def __init__(self, path: str | os.PathLike, precision: str | None = None):
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)

        self.path = os.fspath(path)
        graph_def = read_graph_def(self.path)
        self._constants = {n.name: n for n in graph_def.node if n.op == "Const"}
        nodes = {n.name for n in graph_def.node}
        missing = [n for n in (OUTPUT, CLASS_NAMES, MULTI_LABEL) if n not in nodes]
        if missing:
            raise ValueError(f"{self.path} is not a graph written by `bert-layer freeze`: "
                             f"nodes {missing} are missing.")
        self.class_names = [c.decode() for c in self._constant(CLASS_NAMES)]
        self.multi_label = bool(self._constant(MULTI_LABEL))
        self.precision = graph_precision(graph_def)
        if precision is not None and precision != self.precision:
            raise ValueError(f"{self.path} was frozen to compute in {self.precision}, not "
                             f"{precision}: freeze the model again with `bert-layer freeze "
                             f"--precision {precision}`.")
        self.takes_text = TEXT_INPUT in nodes
        self.inputs = (TEXT_INPUT,) if self.takes_text else TOKEN_INPUTS
        self._preprocessor = None if self.takes_text else self._numpy_preprocessor()
        wrapped = tf.compat.v1.wrap_function(
            lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
        tensor = lambda name: wrapped.graph.get_tensor_by_name(f"{name}:0")  # noqa: E731
        self._run = wrapped.prune(feeds=[tensor(n) for n in self.inputs],
                                  fetches=tensor(OUTPUT))
        self._run_ids = self._run
        # Graphs frozen since the tokenizer's outputs were named tokenize and encode apart.
        self.tokenizes_apart = all(n in nodes for n in TOKEN_INPUTS)
        if self.takes_text and self.tokenizes_apart:
            self._tokenize = wrapped.prune(feeds=[tensor(TEXT_INPUT)],
                                           fetches=[tensor(n) for n in TOKEN_INPUTS])
            self._run_ids = _ids_function(graph_def)

    def _constant(self, name: str) -> np.ndarray:
        return tf.make_ndarray(self._constants[name].attr["value"].tensor)

    def _numpy_preprocessor(self):
        from bert_layer.text.packing import Preprocessor
        from bert_layer.text.tokenizer import NumpyTokenizer

        vocab = [token.decode() for token in self._constant(VOCAB)]
        self._vocab_dir = tempfile.TemporaryDirectory(prefix="bert_layer_vocab_")
        vocab_file = os.path.join(self._vocab_dir.name, "vocab.txt")
        with open(vocab_file, "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token in vocab)
        tokenizer = NumpyTokenizer(vocab_file, bool(self._constant(DO_LOWER_CASE)))
        return Preprocessor(tokenizer, int(self._constant(MAX_SEQ_LENGTH)))

    def __call__(self, texts) -> np.ndarray:
        """Class probabilities [batch, n_classes] for a batch of strings."""
        texts = tf.constant(texts, dtype=tf.string)
        if self.takes_text:
            return self._run(texts).numpy()
        features = self._preprocessor(texts)
        return self._run(*[features[n] for n in TOKEN_INPUTS]).numpy()

    def tokenize(self, texts) -> dict[str, np.ndarray]:
        """int32 `input_ids`, `input_mask`, `segment_ids` [n, seq] for a list of strings."""
        texts = tf.constant(texts, dtype=tf.string)
        if self.takes_text:
            return {n: t.numpy() for n, t in zip(TOKEN_INPUTS, self._tokenize(texts))}
        return {n: t.numpy() for n, t in self._preprocessor(texts).items()}

    def run_ids(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities [batch, n_classes] for `tokenize`'s features (or a slice)."""
        return self._run_ids(*[tf.constant(features[n]) for n in TOKEN_INPUTS]).numpy()


def _ids_function(graph_def):
    """ids -> probabilities of a text graph, fed at its tokenizer's named outputs.

    The output waits (control edges) on the tokenizer's ragged-shape assertions, which
    read the text; fed ids skip the tokenizer, so a copy without control edges runs them.
    """
    ids_graph = type(graph_def)()
    ids_graph.CopyFrom(graph_def)
    for node in ids_graph.node:
        data_inputs = [i for i in node.input if not i.startswith("^")]
        del node.input[:]
        node.input.extend(data_inputs)
    wrapped = tf.compat.v1.wrap_function(
        lambda: tf.compat.v1.import_graph_def(ids_graph, name=""), [])
    return wrapped.prune(
        feeds=[wrapped.graph.get_tensor_by_name(f"{n}:0") for n in TOKEN_INPUTS],
        fetches=wrapped.graph.get_tensor_by_name(f"{OUTPUT}:0"))


def graph_precision(graph_def) -> str:
    """"bf16" when the graph's matmuls compute in bfloat16, else "fp32"."""
    bf16 = tf.bfloat16.as_datatype_enum
    matmuls = [n for n in graph_def.node if "MatMul" in n.op]
    return "bf16" if any(n.attr["T"].type == bf16 for n in matmuls) else "fp32"


class KerasClassifier:
    """A saved `.keras` classifier (strings -> probabilities) behind one traced function."""

    def __init__(self, path: str | os.PathLike, precision: str | None = None):
        import keras
        import tensorflow as tf

        import bert_layer.layer  # noqa: F401  (registers BertLayer for deserialization)
        from bert_layer.precision import with_precision

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"Saved model not found: {self.path}")
        self.model = keras.models.load_model(self.path, compile=False)
        if precision is not None:  # None: as trained.
            self.model = with_precision(self.model, precision)
        self.class_names, self.multi_label = _classes_beside(self.path, self.model)
        spec = tf.TensorSpec([None], tf.string)
        self._run = tf.function(lambda texts: self.model(texts, training=False),
                                input_signature=[spec])

    def __call__(self, texts) -> np.ndarray:
        import tensorflow as tf
        return self._run(tf.constant(texts, dtype=tf.string)).numpy()


def _classes_beside(model_path: str, model) -> tuple[list[str], bool]:
    """Class names from the training report next to the model, else "0", "1", ..."""
    report = os.path.join(os.path.dirname(model_path), REPORT_FILE)
    if os.path.isfile(report):
        with open(report, encoding="utf-8") as f:
            classifier = json.load(f)["classifier"]
        return list(classifier["classes"]), bool(classifier["multi_label"])
    return [str(i) for i in range(model.output_shape[-1])], False


def load_classifier(path: str | os.PathLike, precision: str | None = None) -> Classifier:
    """A frozen graph (`.pb`) or a saved Keras model (`.keras`), as texts -> probabilities,
    computing in `precision` ("fp32", "bf16"; None: as trained or frozen)."""
    path = os.fspath(path)
    if path.endswith(".pb"):
        return FrozenClassifier(path, precision)
    if path.endswith(".keras"):
        return KerasClassifier(path, precision)
    raise ValueError(f"Unknown model file {path}: expected a frozen graph (.pb) from "
                     f"`bert-layer freeze` or a Keras model (.keras) from `bert-layer train`.")
