"""Freezing: the frozen graph equals the live Keras model, holds no variables, and stands alone."""

from __future__ import annotations

import collections
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import TINY_CONFIG, TINY_VOCAB

from bert_layer.contract import TOKEN_INPUTS
from bert_layer.inference.formats import read_graph_def
from bert_layer.inference.freeze import freeze_model
from bert_layer.inference.runtimes import FrozenClassifier
from bert_layer.training.classifier import ClassifierSpec, build_classifier

# Pairs, a text longer than max_seq_length=32 (alone and in a pair), empty texts, a word
# missing from the vocab, upper case, CJK.
TEXTS = ["the movie was great .", "a bad film ||| the plot was fun", "",
         " ".join(["good"] * 50), " ".join(["fun"] * 30) + " ||| " + " ".join(["bad"] * 30),
         "unwanted running !", "terrible acting ||| no", "THE MOVIE WAS GREAT .", "中 cafe",
         "it was not funny ||| "]
# Ops that hold or read variables, or draw random numbers (dropout).
STATEFUL_OPS = {"VarHandleOp", "ReadVariableOp", "VariableV2", "AssignVariableOp",
                "RandomUniform", "RandomStandardNormal", "StatelessRandomUniformV2",
                "PyFunc", "EagerPyFunc"}


def _spread_head(model: keras.Model, seed: int) -> None:
    """An untrained head of larger weights, so probabilities differ from text to text (a graph
    that ignored its input could not match)."""
    dense = model.get_layer("probabilities")
    rng = np.random.default_rng(seed)
    dense.kernel.assign(rng.normal(size=dense.kernel.shape).astype(np.float32))


def _keras_probabilities(model: keras.Model, texts: list[str], batch_size: int) -> np.ndarray:
    run = tf.function(lambda t: model(t, training=False),
                      input_signature=[tf.TensorSpec([None], tf.string)])
    return np.concatenate([run(tf.constant(texts[i:i + batch_size])).numpy()
                           for i in range(0, len(texts), batch_size)])


@pytest.fixture(scope="module")
def frozen(tiny_module_dir, tmp_path_factory):
    """A graph-tokenizer classifier frozen to a .pb; its module folder is deleted afterwards,
    so every test here also shows that the frozen graph needs nothing beside it."""
    folder = tmp_path_factory.mktemp("freeze")
    module = str(folder / "module")
    shutil.copytree(tiny_module_dir, module)
    spec = ClassifierSpec(module=module, class_names=("neg", "pos", "meh"), fine_tune_layers=1,
                          max_seq_length=32)
    model = build_classifier(spec)
    _spread_head(model, seed=0)
    expected = _keras_probabilities(model, TEXTS, batch_size=len(TEXTS))
    path = str(folder / "classifier.pb")
    report = freeze_model(model, path, class_names=list(spec.class_names))
    shutil.rmtree(module)
    return collections.namedtuple("Frozen", "path report expected")(path, report, expected)


@pytest.fixture(scope="module")
def frozen_numpy(tiny_module_dir, tmp_path_factory):
    """A multi-label, mean-pooled classifier with the numpy tokenizer, frozen to an ids graph."""
    spec = ClassifierSpec(module=tiny_module_dir, class_names=("act", "plot"), multi_label=True,
                          pooling="mean", fine_tune_layers=0, max_seq_length=32,
                          tokenizer="numpy")
    model = build_classifier(spec)
    _spread_head(model, seed=1)
    expected = _keras_probabilities(model, TEXTS, batch_size=len(TEXTS))
    path = str(tmp_path_factory.mktemp("freeze_numpy") / "classifier.pb")
    report = freeze_model(model, path, class_names=list(spec.class_names), multi_label=True)
    return collections.namedtuple("Frozen", "path report expected")(path, report, expected)


# === The graph tokenizer: strings in ===

@pytest.mark.large
def test_frozen_probabilities_equal_the_keras_model(frozen):
    probabilities = FrozenClassifier(frozen.path)(TEXTS)
    assert probabilities.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(probabilities, frozen.expected, atol=1e-5, rtol=0)
    assert np.ptp(frozen.expected, axis=0).max() > 0.5  # The texts' probabilities differ.


def test_frozen_graph_is_read_with_its_class_names(frozen):
    classifier = FrozenClassifier(frozen.path)
    assert classifier.class_names == ["neg", "pos", "meh"]
    assert classifier.multi_label is False
    assert classifier.takes_text is True and classifier.inputs == ("text",)


def test_frozen_graph_has_no_variables_dropout_or_training_nodes(frozen):
    graph_def = read_graph_def(frozen.path)
    ops = collections.Counter(node.op for node in graph_def.node)
    assert not STATEFUL_OPS & set(ops), sorted(STATEFUL_OPS & set(ops))
    names = [node.name.lower() for node in graph_def.node]
    assert [n for n in names if "dropout" in n or "training" in n] == []
    placeholders = [node for node in graph_def.node if node.op == "Placeholder"]
    assert [(p.name, p.attr["dtype"].type) for p in placeholders] == [("text", tf.string)]
    assert ops["MatMul"] + ops["BatchMatMulV2"] > 0  # Sanity: the encoder is there.


def test_frozen_graph_holds_only_public_ops(frozen):
    """Build-specific fusions (oneDNN's `_MklLayerNorm`, `_FusedMatMul`, ...) are left to the
    runtime that loads the graph: a TensorFlow without them must run it."""
    ops = {node.op for node in read_graph_def(frozen.path).node}
    assert sorted(op for op in ops if op.startswith("_")) == []


def test_the_runtime_applies_this_builds_fusions_to_the_frozen_graph(frozen):
    """What freeze leaves out, FrozenClassifier's session puts in where it runs: on a oneDNN
    build every LayerNorm runs as one op and the dense layers' matmuls with their bias (the
    session ran without them, ~1.4x slower in bf16, until this was checked)."""
    from tensorflow.python.util import _pywrap_util_port

    if not _pywrap_util_port.IsMklEnabled():
        pytest.skip("this TensorFlow build has no oneDNN fusions")
    classifier = FrozenClassifier(frozen.path)
    metadata = tf.compat.v1.RunMetadata()
    classifier._session.run(f"{classifier.output}:0", {"text:0": TEXTS}, run_metadata=metadata,
                            options=tf.compat.v1.RunOptions(output_partition_graphs=True))
    ran = collections.Counter(n.op for graph in metadata.partition_graphs for n in graph.node)
    layer_norms = 1 + 2 * TINY_CONFIG.num_hidden_layers
    assert ran["_MklLayerNorm"] == layer_norms, ran
    assert ran["_MklNativeFusedMatMul"] >= 6 * TINY_CONFIG.num_hidden_layers, ran


@pytest.mark.large
def test_cls_classifier_runs_the_last_layer_for_the_first_token_only(frozen):
    """The classifier reads pooled_output alone, so its frozen graph runs the module's
    first-token last layer ([B, H] rows) and none of the full one ([B*T, H])."""
    import tensorflow_text  # noqa: F401  (the graph tokenizer's ops)

    graph_def = read_graph_def(frozen.path)
    last = f"layer_{TINY_CONFIG.num_hidden_layers - 1}/"
    matmuls = [n.name for n in graph_def.node if n.op == "MatMul" and last in n.name]
    assert len(matmuls) == 6, matmuls  # query, key, value, attention output, FFN in and out
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        rows = {name.split(last)[1]: session.run(f"{name}:0", {"text:0": TEXTS}).shape[0]
                for name in matmuls}
        tokens = session.run("input_mask:0", {"text:0": TEXTS}).size  # B*T
    by_rows = collections.Counter(rows.values())
    assert by_rows == {tokens: 2, len(TEXTS): 4}, rows  # keys and values read every token


def test_freeze_report_counts_before_and_after(frozen):
    report = frozen.report
    assert report.path == frozen.path and report.inputs == ("text",)
    assert report.nodes_after < report.nodes_before
    assert report.nodes_after == len(read_graph_def(frozen.path).node)
    assert report.bytes_after == os.path.getsize(frozen.path)
    lines = report.table().splitlines()
    assert lines[0].split() == ["nodes", "bytes"]
    assert lines[1].split() == ["before", str(report.nodes_before), f"{report.bytes_before:,}"]
    assert lines[2].split() == ["after", str(report.nodes_after), f"{report.bytes_after:,}"]


# === The numpy tokenizer: ids in, tokenized outside ===

def test_numpy_tokenizer_model_freezes_to_an_ids_graph(frozen_numpy):
    graph_def = read_graph_def(frozen_numpy.path)
    placeholders = sorted(n.name for n in graph_def.node if n.op == "Placeholder")
    assert placeholders == sorted(TOKEN_INPUTS)
    assert not STATEFUL_OPS & {n.op for n in graph_def.node}  # No Python function inside.
    constants = {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in graph_def.node
                 if n.name in ("vocab", "do_lower_case", "max_seq_length")}
    assert [token.decode() for token in constants["vocab"]] == TINY_VOCAB
    assert bool(constants["do_lower_case"]) is True and int(constants["max_seq_length"]) == 32
    assert frozen_numpy.report.inputs == TOKEN_INPUTS


def test_frozen_ids_graph_tokenizes_outside_with_the_same_probabilities(frozen_numpy):
    classifier = FrozenClassifier(frozen_numpy.path)
    assert classifier.takes_text is False and classifier.inputs == TOKEN_INPUTS
    assert classifier.class_names == ["act", "plot"] and classifier.multi_label is True
    probabilities = classifier(TEXTS)
    np.testing.assert_allclose(probabilities, frozen_numpy.expected, atol=1e-5, rtol=0)
    assert np.ptp(frozen_numpy.expected, axis=0).max() > 0.05
    assert np.abs(probabilities.sum(axis=1) - 1).max() > 0.05  # Sigmoids, not a softmax.


# === Bad input ===

def test_file_that_is_not_a_graph_def(tmp_path):
    text = tmp_path / "notes.pb"
    text.write_text("this is not a graph\n")
    with pytest.raises(ValueError, match=r"notes.pb is not a frozen graph \(a serialized "
                       r"GraphDef\)"):
        FrozenClassifier(str(text))
    empty = tmp_path / "empty.pb"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pb is not a frozen graph: it holds no nodes"):
        FrozenClassifier(str(empty))


def test_graph_def_not_written_by_freeze(tmp_path):
    with tf.Graph().as_default() as graph:
        tf.constant(1.0, name="one")
    path = tmp_path / "other.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(ValueError, match=r"other.pb is not a graph written by `bert-layer "
                       r"freeze`: nodes \['probabilities', 'class_names', 'multi_label'\] "
                       r"are missing"):
        FrozenClassifier(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Frozen graph not found: .*missing.pb"):
        FrozenClassifier(str(tmp_path / "missing.pb"))


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "classifier.pb"
    out.write_text("user data")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(FileExistsError, match="already exists.*--overwrite"):
        freeze_model(model, str(out), class_names=["a", "b"])
    assert out.read_text() == "user data" and os.listdir(tmp_path) == ["classifier.pb"]


def test_model_without_bert_layer(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="plain")
    with pytest.raises(ValueError, match="exactly one BertLayer; found 0 in plain"):
        freeze_model(model, str(tmp_path / "x.pb"), class_names=["a", "b"])
    assert os.listdir(tmp_path) == []


# === The real default model ===

@pytest.mark.integration
def test_default_classifier_frozen_equals_keras_on_sst2(default_module_dir, sst2_dev, tmp_path):
    spec = ClassifierSpec(module=default_module_dir, class_names=("negative", "positive"),
                          pooling="cls", fine_tune_layers=0)
    model = build_classifier(spec)
    _spread_head(model, seed=2)
    expected = _keras_probabilities(model, sst2_dev, batch_size=64)
    path = str(tmp_path / "sst2.pb")
    freeze_model(model, path, class_names=list(spec.class_names))
    classifier = FrozenClassifier(path)
    probabilities = np.concatenate([classifier(sst2_dev[i:i + 64])
                                    for i in range(0, len(sst2_dev), 64)])
    assert probabilities.shape == (872, 2)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5, rtol=0)
    assert np.ptp(expected[:, 1]) > 0.1
