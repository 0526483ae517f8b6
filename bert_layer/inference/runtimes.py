"""Trained classifiers behind one interface: texts in, class probabilities out.

`FrozenClassifier` runs a graph written by `bert-layer freeze`, `SavedModelClassifier` a
serving SavedModel (`freeze --format saved_model`), `KerasClassifier` a saved `.keras` model.
All satisfy `Classifier`, which `bert_layer.inference.predict` relies on.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import Protocol

import numpy as np
import tensorflow as tf

from bert_layer.contract import TOKEN_INPUTS
from bert_layer.inference.custom_ops import (
    SAVED_MODEL_FILE,
    graph_op_types,
    register_ops_for,
    saved_model_op_types,
)
from bert_layer.inference.formats import (
    CLASS_NAMES,
    DO_LOWER_CASE,
    KERAS_SUFFIX,
    MAX_SEQ_LENGTH,
    MULTI_LABEL,
    OUTPUT,
    SPECIAL_TOKENS,
    TEXT_INPUT,
    VOCAB,
    check_model_file,
    read_graph_def,
)
from bert_layer.outputs import REPORT_FILE


class Classifier(Protocol):
    """What batch prediction needs of a trained model."""

    class_names: list[str]
    multi_label: bool

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Class probabilities float32 [batch, n_classes] for a batch of strings."""


class TokenizingClassifier(Classifier, Protocol):
    """A classifier whose tokenizer can run apart from its encoder (`tokenizes_apart`):
    batch prediction then groups texts by their real token counts
    (`bert_layer.inference.predict`)."""

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
        self.path = os.fspath(path)
        graph_def = read_graph_def(self.path)
        register_ops_for(graph_op_types(graph_def), self.path)  # e.g. tensorflow_text's.
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

    def _special_tokens(self):
        """The family's special tokens a numpy-tokenizer graph records (none: BERT's)."""
        from bert_layer.text.vocab import BERT_SPECIAL_TOKENS, SpecialTokens

        if SPECIAL_TOKENS not in self._constants:
            return BERT_SPECIAL_TOKENS
        cls, sep, pad, separators = (v.decode() for v in self._constant(SPECIAL_TOKENS))
        return SpecialTokens(cls=cls, sep=sep, pad=pad or None,
                             pair_separators=int(separators))

    def _numpy_preprocessor(self):
        from bert_layer.text.packing import Preprocessor
        from bert_layer.text.tokenizer import NumpyTokenizer

        vocab = [token.decode() for token in self._constant(VOCAB)]
        self._vocab_dir = tempfile.TemporaryDirectory(prefix="bert_layer_vocab_")
        vocab_file = os.path.join(self._vocab_dir.name, "vocab.txt")
        with open(vocab_file, "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token in vocab)
        tokenizer = NumpyTokenizer(vocab_file, bool(self._constant(DO_LOWER_CASE)),
                                   self._special_tokens())
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


class SavedModelClassifier:
    """Runs a serving SavedModel (`bert_layer.inference.serving`): strings in, class
    probabilities out.

    Args:
      path: the SavedModel folder.
    """

    def __init__(self, path: str | os.PathLike):
        from bert_layer.inference.serving import METADATA_SIGNATURE, SERVING_SIGNATURE

        self.path = os.fspath(path)
        register_ops_for(saved_model_op_types(self.path), self.path)
        self._loaded = tf.saved_model.load(self.path)
        missing = [name for name in (SERVING_SIGNATURE, METADATA_SIGNATURE)
                   if name not in self._loaded.signatures]
        if missing:
            raise ValueError(f"{self.path} is not a SavedModel written by `bert-layer freeze "
                             f"--format saved_model`: signatures {missing} are missing (it has "
                             f"{sorted(self._loaded.signatures)}).")
        metadata = self._loaded.signatures[METADATA_SIGNATURE]()
        self.class_names = [c.decode() for c in metadata["class_names"].numpy()]
        self.multi_label = bool(metadata["multi_label"].numpy())
        self._serve = self._loaded.signatures[SERVING_SIGNATURE]

    def __call__(self, texts) -> np.ndarray:
        """Class probabilities [batch, n_classes] for a batch of strings."""
        return self._serve(text=tf.constant(texts, dtype=tf.string))["probabilities"].numpy()


class KerasClassifier:
    """A saved `.keras` classifier (strings -> probabilities) behind one traced function.

    The model carries its module and class names. For models saved before it did, the
    module path stored at training time is looked up from the working folder, then from
    the model's folder and its parents, and the class names come from the report beside.
    """

    def __init__(self, path: str | os.PathLike, precision: str | None = None):
        import keras
        import tensorflow as tf

        import bert_layer.training.classifier  # noqa: F401  (registers the model's layers)
        from bert_layer.layers.module_source import folder_and_parents, module_search_dirs
        from bert_layer.layers.precision import with_precision

        self.path = os.fspath(path)
        check_model_file(self.path, (KERAS_SUFFIX,))
        try:
            with module_search_dirs(folder_and_parents(os.path.dirname(os.path.abspath(path)))):
                self.model = keras.models.load_model(self.path, compile=False)
        except Exception as e:
            # Keras wraps a missing module in deserialization errors: name the module.
            missing = _cause(e, FileNotFoundError)
            if missing is not None:
                raise FileNotFoundError(f"{self.path}: {missing}") from e
            if not isinstance(e, (OSError, zipfile.BadZipFile, KeyError)):
                raise
            # h5py and zipfile on bad bytes.
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"{self.path} is not a readable .keras model (corrupt or truncated: "
                             f"{first_line}); expected the model.keras written by "
                             f"`bert-layer train`.") from e
        if precision is not None:  # None: as trained.
            self.model = with_precision(self.model, precision)
        self.class_names, self.multi_label = _class_names(self.path, self.model)
        spec = tf.TensorSpec([None], tf.string)
        self._run = tf.function(lambda texts: self.model(texts, training=False),
                                input_signature=[spec])

    def __call__(self, texts) -> np.ndarray:
        import tensorflow as tf
        return self._run(tf.constant(texts, dtype=tf.string)).numpy()


def _cause(error: BaseException, kind: type) -> BaseException | None:
    """The first exception of `kind` in `error`'s chain of causes."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _class_names(model_path: str, model) -> tuple[list[str], bool]:
    """Class names from the model's head; for models saved before the head kept them,
    from the training report next to the model, else "0", "1", ..."""
    from bert_layer.training.classifier import find_head

    head = find_head(model)
    if head is not None:
        return list(head.class_names), head.multi_label
    report = os.path.join(os.path.dirname(model_path), REPORT_FILE)
    if os.path.isfile(report):
        with open(report, encoding="utf-8") as f:
            classifier = json.load(f)["classifier"]
        names = classifier.get("class_names", classifier.get("classes"))  # Older reports.
        return list(names), bool(classifier["multi_label"])
    return [str(i) for i in range(model.output_shape[-1])], False


def load_classifier(path: str | os.PathLike, precision: str | None = None) -> Classifier:
    """A frozen graph (`.pb`), a serving SavedModel folder or a saved Keras model (`.keras`), as
    texts -> probabilities, computing in `precision` ("fp32", "bf16"; None: as trained or
    frozen)."""
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        if precision is not None:
            raise ValueError(f"{path} is a SavedModel: its precision was fixed when it was "
                             f"written; write it again with `bert-layer freeze --format "
                             f"saved_model --precision {precision}`.")
        return SavedModelClassifier(path)
    if path.endswith(".pb"):
        return FrozenClassifier(path, precision)
    if path.endswith(".keras"):
        return KerasClassifier(path, precision)
    raise ValueError(f"Unknown model file {path}: expected a frozen graph (.pb) or a "
                     f"SavedModel folder from `bert-layer freeze`, or a Keras model (.keras) "
                     f"from `bert-layer train`.")
