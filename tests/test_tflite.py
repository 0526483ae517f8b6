"""`bert-layer freeze --format tflite`: a .tflite of builtin ops that LiteRT runs, equal to the
frozen graph in fp32, int8 close to it, the Task Library's metadata, predict and inspect on
it, and bad input as one line, on the tiny module. The real model's int8 accuracy (SST-2 dev,
MRPC dev), label agreement and file sizes are a benchmark: scripts/bench_tflite_accuracy.py."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import assert_one_line_error, run_cli, tree_hashes

from bert_layer.inference.formats import read_tflite
from bert_layer.inference.freeze import freeze_model
from bert_layer.inference.predict import predict_probabilities
from bert_layer.inference.runtimes import FrozenClassifier, TFLiteClassifier, load_classifier
from bert_layer.inference.tflite import NotConvertibleError, write_tflite
from bert_layer.training.classifier import ClassifierSpec, build_classifier

# Pairs, a text longer than max_seq_length=32, an empty text, a word missing from the vocab,
# upper case, CJK.
TEXTS = ["the movie was great .", "a bad film ||| the plot was fun", "",
         " ".join(["good"] * 50), "unwanted running !", "THE MOVIE WAS GREAT .", "中 cafe",
         "it was not funny ||| so boring"]
CLASSES = ["neg", "pos", "meh"]
FP32_ATOL = 1e-4  # The bound: fp32 .tflite against the frozen graph.
# Dynamic-range int8 rounds weights to 1/254 of their range per channel and activations per
# batch: through the tiny model's 3 layers, probabilities move by a few 1e-2 at most; a wrong
# weight or unmasked padding moves them by more than 1e-1.
INT8_ATOL = 0.06


def _spread_head(model: keras.Model, seed: int) -> None:
    """Head weights large enough that probabilities differ from text to text."""
    dense = model.get_layer("probabilities")
    dense.kernel.assign(np.random.default_rng(seed).normal(size=dense.kernel.shape))


@pytest.fixture(scope="module")
def converted(tiny_module_dir, tmp_path_factory):
    """One classifier as a frozen graph, an fp32 and an int8 .tflite, and its model.keras."""
    folder = tmp_path_factory.mktemp("tflite")
    spec = ClassifierSpec(module=tiny_module_dir, class_names=tuple(CLASSES), max_seq_length=32)
    keras.utils.set_random_seed(0)
    model = build_classifier(spec)
    _spread_head(model, seed=0)
    paths = {"pb": str(folder / "classifier.pb"), "keras": str(folder / "model.keras")}
    freeze_model(model, paths["pb"], class_names=CLASSES)
    model.save(paths["keras"])
    reports = {}
    for precision in ("fp32", "int8"):
        paths[precision] = str(folder / f"{precision}.tflite")
        reports[precision] = write_tflite(model, paths[precision], class_names=CLASSES,
                                          precision=precision)
    return collections.namedtuple("Converted", "model paths reports")(model, paths, reports)


@pytest.mark.large
def test_fp32_tflite_equals_the_frozen_graph(converted):
    expected = FrozenClassifier(converted.paths["pb"])(TEXTS)
    assert np.ptp(expected, axis=0).max() > 0.3  # Probabilities really vary by text.
    tflite = TFLiteClassifier(converted.paths["fp32"])
    np.testing.assert_allclose(tflite(TEXTS), expected, atol=FP32_ATOL, rtol=0)
    # Length-grouped batches of other shapes (the interpreter resized between them).
    grouped = predict_probabilities(tflite, TEXTS, batch_size=3)
    np.testing.assert_allclose(grouped, expected, atol=FP32_ATOL, rtol=0)


def test_int8_tflite_is_close_to_fp32_and_holds_int8_weights(converted):
    from tensorflow.lite.tools import flatbuffer_utils

    expected = FrozenClassifier(converted.paths["pb"])(TEXTS)
    found = TFLiteClassifier(converted.paths["int8"], precision="int8")(TEXTS)
    assert 0 < np.abs(found - expected).max() < INT8_ATOL
    with open(converted.paths["int8"], "rb") as f:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(f.read()))
    int8 = flatbuffer_utils.schema_fb.TensorType.INT8
    weights = [t for t in model.subgraphs[0].tensors if t.type == int8]
    assert len(weights) >= 3 * 6  # Every dense kernel of the 3 layers, at least.


def test_tflite_runs_builtin_ops_only_on_dynamic_batch_and_length(converted):
    from ai_edge_litert.interpreter import Interpreter

    assert "CUSTOM" not in converted.reports["fp32"].ops  # Flex ops are custom ops.
    assert {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX"} <= set(converted.reports["fp32"].ops)
    interpreter = Interpreter(model_path=converted.paths["fp32"])
    inputs = interpreter.get_input_details()
    assert [(d["name"], d["dtype"], d["shape_signature"].tolist()) for d in inputs] == [
        (n, np.int32, [-1, -1]) for n in ("input_ids", "input_mask", "segment_ids")]
    assert interpreter.get_output_details()[0]["shape_signature"].tolist() == [-1, 3]


@pytest.mark.large
@pytest.mark.parametrize("pooling", ["first", "mean", "max"])
def test_every_pooling_converts_to_builtin_ops_and_equals_the_keras_model(
        pooling, tiny_module_dir, tmp_path):
    """The fixture's classifier pools with `cls`; the others take their own ops (a mask
    column for mean and max, a slice for first) and must convert too."""
    keras.utils.set_random_seed(0)
    model = build_classifier(ClassifierSpec(module=tiny_module_dir, class_names=tuple(CLASSES),
                                            max_seq_length=32, pooling=pooling))
    _spread_head(model, seed=1)
    path = str(tmp_path / "model.tflite")
    report = write_tflite(model, path, class_names=CLASSES)
    assert "CUSTOM" not in report.ops
    expected = model.predict(tf.constant(TEXTS), verbose=0)
    np.testing.assert_allclose(TFLiteClassifier(path)(TEXTS), expected, atol=FP32_ATOL, rtol=0)


def test_metadata_carries_vocabulary_casing_length_and_class_names(converted):
    from tensorflow.lite.tools import flatbuffer_utils

    bundle = read_tflite(converted.paths["fp32"])
    tokenizer = converted.model.get_layer("bert").preprocessor.tokenizer
    assert bundle.vocab == list(tokenizer.vocab)
    assert (bundle.class_names, bundle.do_lower_case, bundle.max_seq_length,
            bundle.multi_label, bundle.precision) == (CLASSES, True, 32, False, "fp32")
    with zipfile.ZipFile(converted.paths["fp32"]) as archive:
        assert sorted(archive.namelist()) == ["bert_layer.json", "labels.txt", "vocab.txt"]
    model = flatbuffer_utils.read_model(converted.paths["fp32"])
    (entry,) = [m for m in model.metadata if m.name == b"TFLITE_METADATA"]
    metadata = bytes(model.buffers[entry.buffer].data)
    assert metadata[4:8] == b"M001"  # The metadata schema's file identifier.
    for name in (b"ids", b"mask", b"segment_ids", b"probability", b"vocab.txt", b"labels.txt"):
        assert name in metadata


@pytest.mark.skipif(not os.environ.get("TFLITE_SUPPORT_PYTHON"),
                    reason="set TFLITE_SUPPORT_PYTHON to a Python with tflite-support "
                    "(scripts/check_tflite_metadata.py says how)")
def test_task_library_bert_nl_classifier_reads_the_file(converted):
    """tflite-support's own parser and BertNLClassifier (raw text in) on the file alone."""
    texts = ["the movie was great .", "unwanted running !", "a bad film"]  # Lower case: the
    # Task Library's BertTokenizer lower-cases.
    script = os.path.join(os.path.dirname(__file__), "..", "scripts",
                          "check_tflite_metadata.py")
    result = subprocess.run([os.environ["TFLITE_SUPPORT_PYTHON"], script,
                             converted.paths["fp32"], *texts],
                            capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(result.stdout)
    subgraph = report["metadata"]["subgraph_metadata"][0]
    assert [t["name"] for t in subgraph["input_tensor_metadata"]] == ["ids", "mask",
                                                                      "segment_ids"]
    assert report["packed_files"] == ["bert_layer.json", "labels.txt", "vocab.txt"]
    expected = TFLiteClassifier(converted.paths["fp32"])(texts)
    found = np.array([[scores[c] for c in CLASSES] for scores in report["classifications"]])
    np.testing.assert_allclose(found, expected, atol=FP32_ATOL, rtol=0)


def test_load_classifier_checks_the_precision(converted):
    assert load_classifier(converted.paths["int8"]).precision == "int8"
    with pytest.raises(ValueError, match="converted to compute in fp32, not int8.*--precision "
                                         "int8"):
        load_classifier(converted.paths["fp32"], precision="int8")


def test_a_graph_with_ops_outside_the_builtins_is_refused_with_what_to_do(converted):
    """A layer whose op TFLite's builtins lack (as the attention mask's new-axis StridedSlice
    of modules exported before this)."""
    inputs = keras.Input(shape=(), dtype="string")
    bert = converted.model.get_layer("bert")
    x = keras.layers.Lambda(lambda v: tf.math.special.bessel_i1e(v))(bert(inputs))
    model = keras.Model(inputs, converted.model.get_layer("probabilities")(x))
    with pytest.raises(NotConvertibleError, match="BesselI1e.*export the checkpoint again"):
        write_tflite(model, os.path.join(os.path.dirname(converted.paths["pb"]), "x.tflite"),
                     class_names=CLASSES)
    assert not os.path.exists(os.path.join(os.path.dirname(converted.paths["pb"]), "x.tflite"))


# === The command line ===


def test_cli_freezes_to_tflite_predicts_and_inspects(converted, tmp_path):
    out = tmp_path / "model.tflite"
    code, stdout, err = run_cli(["freeze", "--model", converted.paths["keras"], "--out",
                                 str(out), "--format", "tflite"])
    assert code == 0, err
    assert "TFLite, fp32" in stdout and "FULLY_CONNECTED" in stdout
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(t for t in TEXTS if t) + "\n", encoding="utf-8")
    predictions = tmp_path / "p.jsonl"
    code, _, err = run_cli(["predict", "--model", str(out), "--input", str(texts), "--output",
                            str(predictions)])
    assert code == 0, err
    rows = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    expected = FrozenClassifier(converted.paths["pb"])([t for t in TEXTS if t])
    found = np.array([[r["probabilities"][c] for c in CLASSES] for r in rows])
    np.testing.assert_allclose(found, expected, atol=FP32_ATOL + 1e-6, rtol=0)
    assert [r["label"] for r in rows] == [CLASSES[i] for i in expected.argmax(1)]
    code, stdout, err = run_cli(["inspect", str(out)])
    assert code == 0, err
    assert "TFLite model" in stdout and "input_ids" in stdout and "[?, ?]" in stdout
    assert "class names: neg, pos, meh" in stdout and "precision: fp32" in stdout


def test_int8_on_a_cpu_without_int8_instructions_works_and_says_so_once(converted, tmp_path,
                                                                        monkeypatch):
    from bert_layer.inference import cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"sse4_2", "avx2", "fma"}))
    out = tmp_path / "int8.tflite"
    code, _, err = run_cli(["freeze", "--model", converted.paths["keras"], "--out", str(out),
                            "--format", "tflite", "--precision", "int8"])
    assert code == 0, err
    assert err.count("no int8 dot-product instructions") == 1, err
    code, stdout, err = run_cli(["predict", "--model", str(out), "--precision", "int8"],
                                stdin="the movie was great .\nso boring\n")
    assert code == 0, err
    assert err.count("no int8 dot-product instructions") == 1, err
    assert len(stdout.splitlines()) == 3
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    code, _, err = run_cli(["predict", "--model", str(out)], stdin="so boring\n")
    assert code == 0 and "int8 dot-product" not in err


def _foreign_tflite(path) -> None:
    """A valid TFLite model that bert-layer did not write (no metadata)."""
    function = tf.function(lambda x: x * 2.0).get_concrete_function(
        tf.TensorSpec([None], tf.float32))
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([function]).convert())


@pytest.mark.parametrize("damage", ["truncated", "foreign", "not_tflite"])
def test_predict_refuses_a_damaged_or_foreign_tflite_in_one_line(converted, tmp_path, damage):
    bad = tmp_path / "model.tflite"
    data = open(converted.paths["fp32"], "rb").read()
    if damage == "truncated":
        bad.write_bytes(data[:len(data) // 2])
    elif damage == "foreign":
        _foreign_tflite(bad)
    else:
        bad.write_bytes(b"PK\x03\x04 this is a zip, or nothing")
    before = tree_hashes(tmp_path)
    code, stdout, err = run_cli(["predict", "--model", str(bad)], stdin="a fine film\n")
    assert code == 2 and stdout == ""
    fragment = {"truncated": "is truncated, or a TFLite model without bert_layer's metadata",
                "foreign": "is truncated, or a TFLite model without bert_layer's metadata",
                "not_tflite": "is not a TFLite model"}[damage]
    assert_one_line_error(err, "predict", str(bad), fragment, "bert-layer freeze --format tflite")
    assert tree_hashes(tmp_path) == before


@pytest.mark.parametrize("argv, fragments", [
    (["--format", "tflite", "--tokenizer", "core"], ["--tokenizer core does not apply",
                                                      "drop --tokenizer"]),
    (["--format", "tflite", "--precision", "bf16"], ["computes in fp32 or int8, not bf16"]),
    (["--precision", "int8"], ["--precision int8 is written as a .tflite", "--format tflite"]),
])
def test_freeze_refuses_what_cannot_be_converted_in_one_line(converted, tmp_path, argv,
                                                             fragments):
    out = tmp_path / ("model.tflite" if "tflite" in argv else "model.pb")
    before = tree_hashes(os.path.dirname(converted.paths["keras"]))
    code, _, err = run_cli(["freeze", "--model", converted.paths["keras"], "--out", str(out),
                            *argv])
    assert code == 2
    assert_one_line_error(err, "freeze", *fragments)
    assert not out.exists()
    assert tree_hashes(os.path.dirname(converted.paths["keras"])) == before


def test_predict_refuses_int8_for_a_frozen_graph(converted):
    code, _, err = run_cli(["predict", "--model", converted.paths["pb"], "--precision", "int8"],
                           stdin="a fine film\n")
    assert code == 2
    assert_one_line_error(err, "predict", "--precision int8 runs .tflite models only")
