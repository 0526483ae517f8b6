"""Trained classifiers behind one interface: texts in, class probabilities out (for a
regressor, `task == "regress"`: scores out, one column per name in `class_names`).

`FrozenClassifier` runs a graph written by `bert-layer freeze`, `SavedModelClassifier` a
serving SavedModel (`freeze --format saved_model`), `TFLiteClassifier` a `.tflite` (`freeze
--format tflite`, on LiteRT), `KerasClassifier` a saved `.keras` model.
All satisfy `Classifier`, which `bert_layer.inference.predict` relies on.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from typing import Protocol

import numpy as np
import tensorflow as tf

from bert_layer.contract import SAVED_MODEL_FILE, TOKEN_INPUTS
from bert_layer.inference.custom_ops import (
    graph_op_types,
    register_ops_for,
    saved_model_op_types,
)
from bert_layer.inference.formats import (
    CLASS_NAMES,
    DO_LOWER_CASE,
    FROZEN_SUFFIX,
    KERAS_SUFFIX,
    MAX_SEQ_LENGTH,
    MULTI_LABEL,
    OUTPUT,
    SCORE_OUTPUT,
    SPECIAL_TOKENS,
    TEXT_INPUT,
    TFLITE_SUFFIX,
    VOCAB,
    WINDOW_STRIDE,
    check_model_file,
    read_graph_def,
    read_tflite,
)
from bert_layer.outputs import REPORT_FILE

# Of Grappler's passes, the one a frozen graph still needs where it runs: `bert-layer freeze`
# ran the others and left the remapper's fusions out of the file (they are build-specific
# ops, such as oneDNN's _MklLayerNorm and fused matmuls); this build applies the ones it has.
RUNTIME_GRAPPLER_PASSES = ("remap",)


class Classifier(Protocol):
    """What batch prediction needs of a trained model."""

    class_names: list[str]  # A regressor's: its score names.
    multi_label: bool
    task: str  # "classify" or "regress"

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Class probabilities (or scores) float32 [batch, n_classes] for a batch of strings."""


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

    The graph is imported once and run by a TF1 `Session` with Grappler's remapper alone:
    `bert-layer freeze` applied the other inference passes already, and a second pass over
    the constants at the first call costs seconds and a copy of every weight; the remapper's
    fusions (LayerNorm in one op, fused matmuls) are this build's and run here. (The graph
    wrapped as TF2 functions, one per entry point, held up to four copies of the weights and
    took 12 s to the first prediction with all-MiniLM-L6-v2; see scripts/bench_cold_start.py.)

    Args:
      path: the `.pb` file.
      precision: None, or the precision ("fp32", "bf16") the graph must compute in (a
        frozen graph's precision is fixed by `bert-layer freeze --precision`).
    """

    def __init__(self, path: str | os.PathLike, precision: str | None = None):
        self.path = os.fspath(path)
        graph_def = read_graph_def(self.path)
        register_ops_for(graph_op_types(graph_def), self.path)  # e.g. tensorflow_text's.
        nodes = {n.name: n for n in graph_def.node}
        self.output = SCORE_OUTPUT if SCORE_OUTPUT in nodes else OUTPUT
        self.task = "regress" if self.output == SCORE_OUTPUT else "classify"
        missing = [n for n in (self.output, CLASS_NAMES, MULTI_LABEL) if n not in nodes]
        if missing:
            raise ValueError(f"{self.path} is not a graph written by `bert-layer freeze`: "
                             f"nodes {missing} are missing.")
        constant = lambda name: tf.make_ndarray(nodes[name].attr["value"].tensor)  # noqa: E731
        self.class_names = [c.decode() for c in constant(CLASS_NAMES)]
        self.multi_label = bool(constant(MULTI_LABEL))
        self.precision = graph_precision(graph_def)
        if precision is not None and precision != self.precision:
            raise ValueError(f"{self.path} was frozen to compute in {self.precision}, not "
                             f"{precision}: freeze the model again with `bert-layer freeze "
                             f"--precision {precision}`.")
        self.takes_text = TEXT_INPUT in nodes
        self.inputs = (TEXT_INPUT,) if self.takes_text else TOKEN_INPUTS
        self._preprocessor = None if self.takes_text else self._numpy_preprocessor(constant, nodes)
        # Graphs frozen since the tokenizer's outputs were named tokenize and encode apart.
        # Not those of windowed models: their rows of ids are windows, not texts.
        self.tokenizes_apart = (self.takes_text and all(n in nodes for n in TOKEN_INPUTS)
                                and WINDOW_STRIDE not in nodes)
        if self.tokenizes_apart:
            _add_ids_output(graph_def, nodes[self.output])
        self._graph = tf.Graph()
        with self._graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        self._session = tf.compat.v1.Session(graph=self._graph, config=session_config())

    def _tensor(self, name: str) -> tf.Tensor:
        return self._graph.get_tensor_by_name(f"{name}:0")

    def _numpy_preprocessor(self, constant, nodes: dict):
        vocab = [token.decode() for token in constant(VOCAB)]
        self._vocab_dir, preprocessor = numpy_preprocessor(
            vocab, bool(constant(DO_LOWER_CASE)), int(constant(MAX_SEQ_LENGTH)),
            _special_tokens(constant, nodes))
        return preprocessor

    def _run(self, fetches, feeds: dict[str, np.ndarray]):
        try:
            return self._session.run(fetches, {self._tensor(n): v for n, v in feeds.items()})
        except tf.errors.OpError as e:  # The op's own message first, as TF2 functions give it.
            raise type(e)(e.node_def, e.op, _without_session_preamble(e.message)) from None

    def __call__(self, texts) -> np.ndarray:
        """Class probabilities [batch, n_classes] for a batch of strings."""
        if self.takes_text:
            return self._run(self._tensor(self.output), {TEXT_INPUT: _strings(texts)})
        return self.run_ids(self.tokenize(texts))

    def tokenize(self, texts) -> dict[str, np.ndarray]:
        """int32 `input_ids`, `input_mask`, `segment_ids` [n, seq] for a list of strings."""
        if self.takes_text:
            fetches = {n: self._tensor(n) for n in TOKEN_INPUTS}
            return self._run(fetches, {TEXT_INPUT: _strings(texts)})
        features = self._preprocessor(tf.constant(texts, dtype=tf.string))
        return {n: np.asarray(features[n]) for n in TOKEN_INPUTS}

    def run_ids(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities [batch, n_classes] for `tokenize`'s features (or a slice)."""
        output = IDS_OUTPUT if self.tokenizes_apart else self.output
        return self._run(self._tensor(output), {n: features[n] for n in TOKEN_INPUTS})


def _special_tokens(constant, nodes: dict):
    """The family's special tokens a numpy-tokenizer graph records (none: BERT's)."""
    from bert_layer.text.vocab import BERT_SPECIAL_TOKENS, SpecialTokens

    if SPECIAL_TOKENS not in nodes:
        return BERT_SPECIAL_TOKENS
    cls, sep, pad, separators = (v.decode() for v in constant(SPECIAL_TOKENS))
    return SpecialTokens(cls=cls, sep=sep, pad=pad or None, pair_separators=int(separators))


def numpy_preprocessor(vocab: list[str], do_lower_case: bool, max_seq_length: int,
                       special_tokens=None):
    """(temporary folder holding the vocabulary, FullTokenizer's Preprocessor): strings ->
    int32 ids, mask, segments, for models whose tokenizer runs outside them, packed with the
    family's `special_tokens` (None: BERT's). Keep the folder as long as the preprocessor."""
    from bert_layer.text.packing import Preprocessor
    from bert_layer.text.tokenizer import NumpyTokenizer
    from bert_layer.text.vocab import BERT_SPECIAL_TOKENS

    folder = tempfile.TemporaryDirectory(prefix="bert_layer_vocab_")
    vocab_file = os.path.join(folder.name, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in vocab)
    tokenizer = NumpyTokenizer(vocab_file, do_lower_case, special_tokens or BERT_SPECIAL_TOKENS)
    return folder, Preprocessor(tokenizer, max_seq_length)


class TFLiteClassifier:
    """Runs a `.tflite` written by `bert-layer freeze --format tflite` on LiteRT (XNNPACK):
    FullTokenizer here, from the vocabulary and casing in the file's metadata, then ids ->
    probabilities in the interpreter.

    Args:
      path: the `.tflite` file.
      precision: None, or the precision ("fp32", "int8") the file must compute in.
      threads: the interpreter's threads (default: the CPUs this process may use).
    """

    tokenizes_apart = True
    task = "classify"  # `freeze --format tflite` writes classifiers only.

    def __init__(self, path: str | os.PathLike, precision: str | None = None,
                 threads: int | None = None):
        self.path = os.fspath(path)
        bundle = read_tflite(self.path)
        if precision is not None and precision != bundle.precision:
            raise ValueError(f"{self.path} was converted to compute in {bundle.precision}, not "
                             f"{precision}: convert the model again with `bert-layer freeze "
                             f"--format tflite --precision {precision}`.")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise ValueError(f"Running {self.path} needs LiteRT ({e}); install it with "
                             f"pip install \"bert_layer[tflite]\".") from None
        self.class_names, self.multi_label = bundle.class_names, bundle.multi_label
        self.precision = bundle.precision
        self._vocab_dir, self._preprocessor = numpy_preprocessor(
            bundle.vocab, bundle.do_lower_case, bundle.max_seq_length)
        threads = threads or len(os.sched_getaffinity(0))
        self._interpreter = Interpreter(model_content=bundle.model, num_threads=threads)
        inputs = {d["name"]: d["index"] for d in self._interpreter.get_input_details()}
        if sorted(inputs) != sorted(TOKEN_INPUTS):
            raise ValueError(f"{self.path} takes {sorted(inputs)}, not {list(TOKEN_INPUTS)}: "
                             f"it was not written by `bert-layer freeze --format tflite`.")
        self._inputs = [inputs[n] for n in TOKEN_INPUTS]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._shape = None
        # Plans the graph now (LiteRT applies XNNPACK and says so on stderr here, not later).
        self.run_ids({n: np.zeros([1, 1], np.int32) for n in TOKEN_INPUTS})

    def tokenize(self, texts) -> dict[str, np.ndarray]:
        """int32 `input_ids`, `input_mask`, `segment_ids` [n, seq] for a list of strings."""
        features = self._preprocessor(tf.constant(texts, dtype=tf.string))
        return {n: t.numpy() for n, t in features.items()}

    def run_ids(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities [batch, n_classes] for `tokenize`'s features (or a slice)."""
        values = [np.ascontiguousarray(features[n], dtype=np.int32) for n in TOKEN_INPUTS]
        if values[0].shape != self._shape:  # Resizing re-plans the interpreter: only then.
            for index, value in zip(self._inputs, values):
                self._interpreter.resize_tensor_input(index, value.shape, strict=True)
            self._interpreter.allocate_tensors()
            self._shape = values[0].shape
        for index, value in zip(self._inputs, values):
            self._interpreter.set_tensor(index, value)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output).copy()

    def __call__(self, texts) -> np.ndarray:
        """Class probabilities [batch, n_classes] for a batch of strings."""
        return self.run_ids(self.tokenize(texts))


# The output fed at the tokenizer's named outputs (added at load, not stored in the file), and
# the scope of the nodes it runs.
IDS_OUTPUT = "probabilities_from_ids"
_IDS_SCOPE = "from_ids/"


def _add_ids_output(graph_def, output) -> None:
    """Adds IDS_OUTPUT: ids -> probabilities, fed at the tokenizer's named outputs.

    The output and some encoder nodes wait (control edges) on the tokenizer's ragged-shape
    assertions, which read the text; fed ids skip the tokenizer. Constants between the ids and
    the output lose their control edges in place (a constant's value depends on none; the
    weights are among them, so they are not copied), the other nodes that wait, and those
    after them, are copied under `from_ids/` without the waits. The text path keeps its
    assertions: its output still waits on them.
    """
    nodes = {n.name: n for n in graph_def.node}

    def source(name: str) -> str:
        return name.split(":")[0]

    def data_inputs(node) -> list[str]:
        return [i for i in node.input if not i.startswith("^")]

    closure, stack = [], [source(i) for i in data_inputs(output)]
    seen = set(stack)
    while stack:  # Between the fed ids and the output, by data edges.
        node = nodes[stack.pop()]
        if node.name == TEXT_INPUT:
            raise ValueError("the frozen graph's output reads the text past its tokenizer's "
                             "outputs: it cannot be fed ids.")
        if node.name in TOKEN_INPUTS:
            continue
        closure.append(node)
        for name in data_inputs(node):
            if source(name) not in seen:
                seen.add(source(name))
                stack.append(source(name))
    for node in closure:
        if node.op == "Const" and len(data_inputs(node)) != len(node.input):
            inputs = data_inputs(node)
            del node.input[:]
            node.input.extend(inputs)
    copied: set[str] = set()
    changed = True
    while changed:  # A node waits, or reads one that is copied: copy it (to a fixed point).
        changed = False
        for node in closure:
            if node.name not in copied and (
                    len(data_inputs(node)) != len(node.input)
                    or any(source(i) in copied for i in data_inputs(node))):
                copied.add(node.name)
                changed = True
    for original in [n for n in closure if n.name in copied] + [output]:
        node = graph_def.node.add()
        node.CopyFrom(original)
        node.name = IDS_OUTPUT if original is output else _IDS_SCOPE + original.name
        del node.input[:]
        node.input.extend(_IDS_SCOPE + i if source(i) in copied else i
                          for i in data_inputs(original))


def _without_session_preamble(message: str) -> str:
    """A Session's error message from the failing op's own words on: the session puts
    'Graph execution error:', 'Detected at node ...' and 'Node: ...' lines before them."""
    lines = message.splitlines()
    node_lines = [i for i, line in enumerate(lines) if line.startswith("Node: ")]
    if lines and lines[0].startswith("Graph execution error") and node_lines:
        return "\n".join(lines[node_lines[0] + 1:]) or message
    return message


def session_config() -> tf.compat.v1.ConfigProto:
    """Grappler's remapper alone (see RUNTIME_GRAPPLER_PASSES); constant folding off, Grappler's
    and the classic optimizer's, which would copy the weights at the first run."""
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.optimizers.extend(RUNTIME_GRAPPLER_PASSES)
    config.graph_options.optimizer_options.opt_level = tf.compat.v1.OptimizerOptions.L0
    # The graph is complete before the first run: the session may drop its copy of the
    # GraphDef once it has built its own.
    config.experimental.optimize_for_static_graph = True
    return config


def _strings(texts) -> np.ndarray:
    return np.asarray(list(texts) if not isinstance(texts, np.ndarray) else texts, dtype=object)


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
        from bert_layer.inference.formats import METADATA_SIGNATURE, SERVING_SIGNATURE

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
        # SavedModels written before regressors existed have no task: classifiers.
        self.task = metadata["task"].numpy().decode() if "task" in metadata else "classify"
        self._output = "score" if self.task == "regress" else "probabilities"
        self._serve = self._loaded.signatures[SERVING_SIGNATURE]

    def __call__(self, texts) -> np.ndarray:
        """Class probabilities (or scores) [batch, n_classes] for a batch of strings."""
        return self._serve(text=tf.constant(texts, dtype=tf.string))[self._output].numpy()


class KerasClassifier:
    """A saved `.keras` classifier (strings -> probabilities) behind one traced function.

    The model carries its module and class names. For models saved before it did, the
    module path stored at training time is looked up from the working folder, then from
    the model's folder and its parents, and the class names come from the report beside.
    """

    def __init__(self, path: str | os.PathLike, precision: str | None = None):
        import tensorflow as tf

        self.path = os.fspath(path)
        self.model = load_keras_model(self.path, precision)
        self.class_names, self.multi_label, self.task = _class_names(self.path, self.model)
        spec = tf.TensorSpec([None], tf.string)
        self._run = tf.function(lambda texts: self.model(texts, training=False),
                                input_signature=[spec], autograph=False)

    def __call__(self, texts) -> np.ndarray:
        import tensorflow as tf
        return self._run(tf.constant(texts, dtype=tf.string)).numpy()


def load_keras_model(path: str, precision: str | None = None):
    """The `.keras` model at `path` (classifier or tagger), computing in `precision` (None: as
    trained); one-line errors for a missing module or a corrupt file."""
    import keras

    import bert_layer.training.classifier  # noqa: F401  (registers the model's layers)
    from bert_layer.layers.module_source import folder_and_parents, module_search_dirs
    from bert_layer.layers.precision import with_precision

    check_model_file(path, (KERAS_SUFFIX,))
    try:
        with module_search_dirs(folder_and_parents(os.path.dirname(os.path.abspath(path)))):
            model = keras.models.load_model(path, compile=False)
    except Exception as e:
        # Keras wraps a missing module in deserialization errors: name the module.
        missing = _cause(e, FileNotFoundError)
        if missing is not None:
            raise FileNotFoundError(f"{path}: {missing}") from e
        if not isinstance(e, (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError)):
            raise
        # h5py and zipfile on bad bytes; Keras's deserialization errors (a flattened
        # traceback with terminal colours): their first line, plain.
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        first_line = (text.splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{path} is not a readable .keras model ({first_line}); "
                         f"expected the model.keras written by `bert-layer train`.") from e
    if precision is not None:  # None: as trained.
        model = with_precision(model, precision)
    return model


def _cause(error: BaseException, kind: type) -> BaseException | None:
    """The first exception of `kind` in `error`'s chain of causes."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _class_names(model_path: str, model) -> tuple[list[str], bool, str]:
    """Class names (or score names), multi_label and the task from the model's head; for
    models saved before the head kept them, from the training report next to the model, else
    "0", "1", ..."""
    from bert_layer.training.classifier import find_head
    from bert_layer.training.regressor import find_regression_head

    regression_head = find_regression_head(model)
    if regression_head is not None:
        return list(regression_head.score_names), False, "regress"
    head = find_head(model)
    if head is not None:
        return list(head.class_names), head.multi_label, "classify"
    report = os.path.join(os.path.dirname(model_path), REPORT_FILE)
    if os.path.isfile(report):
        with open(report, encoding="utf-8") as f:
            classifier = json.load(f)["classifier"]
        names = classifier.get("class_names", classifier.get("classes"))  # Older reports.
        return list(names), bool(classifier["multi_label"]), "classify"
    return [str(i) for i in range(model.output_shape[-1])], False, "classify"


def load_classifier(path: str | os.PathLike, precision: str | None = None) -> Classifier:
    """A frozen graph (`.pb`), a serving SavedModel folder, a `.tflite` or a saved Keras model
    (`.keras`), as texts -> probabilities, computing in `precision` ("fp32", "bf16", "int8";
    None: as trained or frozen)."""
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        if precision is not None:
            raise ValueError(f"{path} is a SavedModel: its precision was fixed when it was "
                             f"written; write it again with `bert-layer freeze --format "
                             f"saved_model --precision {precision}`.")
        return SavedModelClassifier(path)
    if path.endswith(FROZEN_SUFFIX):
        return FrozenClassifier(path, precision)
    if path.lower().endswith(TFLITE_SUFFIX):
        return TFLiteClassifier(path, precision)
    if path.endswith(KERAS_SUFFIX):
        return KerasClassifier(path, precision)
    raise ValueError(f"Unknown model file {path}: expected a frozen graph (.pb), a .tflite or "
                     f"a SavedModel folder from `bert-layer freeze`, or a Keras model (.keras) "
                     f"from `bert-layer train`.")
