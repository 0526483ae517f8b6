"""One check over every way a graph function runs: `assert_paths_agree`.

A function of a string batch (texts [B] -> a tensor or a dict of tensors, dense or ragged)
must give the same values eagerly, in `tf.function`, under `tf.data` (whole batch and split
into smaller batches), in a TF1 graph run by a Session, and frozen into a GraphDef and run in
a new graph. Tests of the tokenizers, the packer and the layer call it instead of writing each
path again.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

PATHS = ("eager", "tf_function", "tf_data", "tf_data_rebatched", "tf1_session", "frozen")
# Python code (tf.numpy_function) cannot be frozen into a GraphDef.
UNFREEZABLE = tuple(p for p in PATHS if p != "frozen")


def _dense(value) -> tf.Tensor:
    """Ragged results are compared padded with -1 (never a real id or value here)."""
    if isinstance(value, tf.RaggedTensor):
        return value.to_tensor(-1)
    return tf.convert_to_tensor(value)


def _flat(fn: Callable) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    def run(texts: tf.Tensor) -> dict[str, tf.Tensor]:
        out = fn(texts)
        out = out if isinstance(out, dict) else {"output": out}
        return {k: _dense(v) for k, v in out.items()}
    return run


REBATCH_SIZE = 2


def _run_path(path: str, run: Callable, texts: list[str]) -> dict[str, np.ndarray]:
    batch = tf.constant(texts, tf.string)
    spec = tf.TensorSpec([None], tf.string)
    if path == "eager":
        return {k: v.numpy() for k, v in run(batch).items()}
    if path == "tf_function":
        return {k: v.numpy() for k, v in tf.function(run, input_signature=[spec])(batch).items()}
    if path == "tf_data":
        dataset = tf.data.Dataset.from_tensor_slices(batch).batch(len(texts)).map(run)
        return next(dataset.as_numpy_iterator())
    if path == "tf_data_rebatched":  # A list of batches: each is padded to its own longest.
        dataset = tf.data.Dataset.from_tensor_slices(batch).batch(REBATCH_SIZE).map(run)
        return list(dataset.as_numpy_iterator())
    if path == "tf1_session":
        with tf.Graph().as_default() as graph:
            placeholder = tf.compat.v1.placeholder(tf.string, [None])
            outputs = run(placeholder)
            with tf.compat.v1.Session(graph=graph) as session:
                session.run(tf.compat.v1.global_variables_initializer())
                return session.run(outputs, {placeholder: texts})
    if path == "frozen":
        concrete = tf.function(run, input_signature=[spec]).get_concrete_function()
        frozen = convert_variables_to_constants_v2(concrete)
        graph_def = frozen.graph.as_graph_def()
        names = [t.name for t in frozen.outputs]
        keys = list(concrete.structured_outputs)  # tf.function returns dicts in sorted order.
        with tf.Graph().as_default() as graph:  # Moved: a graph that never saw `run`.
            tf.graph_util.import_graph_def(graph_def, name="moved")
            inputs = graph.get_tensor_by_name(f"moved/{frozen.inputs[0].name}")
            fetches = [graph.get_tensor_by_name(f"moved/{n}") for n in names]
            with tf.compat.v1.Session(graph=graph) as session:
                values = session.run(fetches, {inputs: texts})
        return dict(zip(sorted(keys), values))
    raise ValueError(f"Unknown path {path!r}; expected one of {PATHS}.")


def assert_paths_agree(fn: Callable, texts: list[str], expected: dict | np.ndarray, *,
                       paths: tuple[str, ...] = PATHS, atol: float = 0.0) -> None:
    """Runs `fn` on `texts` along each of `paths` and compares with `expected`.

    Args:
      fn: texts (string Tensor [B]) -> a Tensor or a dict of Tensors (ragged allowed).
      texts: at least 3 texts, so that `tf_data_rebatched` really splits the batch.
      expected: the values (ragged results as lists of rows are padded with -1 here).
      paths: which of `PATHS` to run (numpy_function code: `UNFREEZABLE`).
      atol: 0 compares exactly (ids); floats from different kernels may need a little.
    """
    run = _flat(fn)
    if not isinstance(expected, dict):
        expected = {"output": expected}
    expected = {k: _dense(tf.ragged.constant(v) if isinstance(v, list) else v).numpy()
                for k, v in expected.items()}
    for path in paths:
        got = _run_path(path, run, texts)
        batches = got if isinstance(got, list) else [got]
        start = 0
        for index, batch in enumerate(batches):
            assert sorted(batch) == sorted(expected), f"{path}: outputs {sorted(batch)}"
            rows = len(next(iter(batch.values())))
            for key, value in expected.items():
                _assert_rows_equal(batch[key], value[start:start + rows], atol,
                                   f"{key} along the {path} path, batch {index}")
            start += rows
        assert start == len(texts), f"{path}: {start} rows for {len(texts)} texts"


def _assert_rows_equal(got: np.ndarray, expected: np.ndarray, atol: float, what: str) -> None:
    """Equal up to the batch's own width; beyond it `expected` may hold only padding."""
    if got.ndim >= 2 and got.shape[1] < expected.shape[1]:
        padding = expected[:, got.shape[1]:]
        assert np.isin(padding, [0, -1]).all(), f"{what}: cut off real values"
        expected = expected[:, :got.shape[1]]
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0, err_msg=what)
