"""Mixed bfloat16: the module's `tokens_bf16` signature and BertLayer under a bf16 policy.

The fp32 path is checked against the numpy reference elsewhere; here bf16 is checked
against fp32 (within bfloat16's ~3 significant digits), on both tag sets, with training,
and in a frozen graph. The real-model accuracy checks are the integration tests at the end.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_layer.layers.layer import BertLayer

TEXTS = ["the movie was great .", "a bad film ||| the plot was fun", "unwanted running !",
         "i love this film , it was very good and not boring"]
# bfloat16 keeps 8 bits of mantissa (~0.4% relative error per rounding). Through the tiny
# model's 3 layers the pooled output (tanh, |x| <= 1) moves by ~1e-2 on CPUs with bf16
# instructions, and by up to 0.034 measured on an AVX2-only AMD EPYC (no avx512_bf16: the
# matmuls round more often); a wrong weight, a missing LayerNorm or unmasked padding moves it
# by ~1e-1 and more.
BF16_ATOL = 5e-2


@pytest.fixture(scope="module")
def layers(tiny_module_dir):
    """(fp32, bf16) BertLayers on the tiny module, built, as_dict."""
    fp32 = BertLayer(tiny_module_dir, max_seq_length=40, as_dict=True, n_fine_tune_layers=-1)
    bf16 = BertLayer(tiny_module_dir, max_seq_length=40, as_dict=True, n_fine_tune_layers=-1,
                     dtype="mixed_bfloat16")
    fp32.build(), bf16.build()
    return fp32, bf16


def test_module_has_a_bf16_signature_in_both_tag_sets(tiny_module_dir):
    from bert_layer.layers.hub_module import HubModule
    module = HubModule(tiny_module_dir)
    for tags in (frozenset(), frozenset({"train"})):
        signature = module.meta_graph(tags).signature_def["tokens_bf16"]
        assert sorted(signature.inputs) == ["input_ids", "input_mask", "segment_ids"]
        assert {k: v.dtype for k, v in signature.outputs.items()} == {
            "pooled_output": tf.float32.as_datatype_enum,
            "sequence_output": tf.float32.as_datatype_enum}
        graph_def, _, _ = module.signature_graph(tags, "tokens_bf16")
        matmuls = [n for n in graph_def.node if n.op in ("MatMul", "BatchMatMulV2")]
        assert matmuls and all(n.attr["T"].type == tf.bfloat16.as_datatype_enum
                               for n in matmuls)


def test_bf16_weights_stay_float32_and_outputs_are_float32(layers):
    _, bf16 = layers
    assert bf16.compute_dtype == "bfloat16"
    assert {w.dtype for w in bf16.weights} == {"float32"}
    outputs = bf16(tf.constant(TEXTS), training=False)
    assert outputs["pooled_output"].dtype == tf.float32
    assert outputs["sequence_output"].dtype == tf.float32


def test_bf16_outputs_are_close_to_fp32_but_not_equal(layers):
    fp32, bf16 = layers
    a, b = fp32(tf.constant(TEXTS)), bf16(tf.constant(TEXTS))
    for key in ("pooled_output", "sequence_output"):
        diff = np.abs(a[key].numpy() - b[key].numpy()).max()
        assert 0 < diff < BF16_ATOL * (1 if key == "pooled_output" else 4), (key, diff)


def test_global_policy_gives_the_bf16_layer(tiny_module_dir, layers):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = BertLayer(tiny_module_dir, max_seq_length=40, as_dict=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    np.testing.assert_array_equal(layer(tf.constant(TEXTS))["pooled_output"].numpy(),
                                  layers[1](tf.constant(TEXTS))["pooled_output"].numpy())


def test_bf16_train_graph_applies_dropout(layers):
    _, bf16 = layers
    first = bf16(tf.constant(TEXTS), training=True)["pooled_output"].numpy()
    second = bf16(tf.constant(TEXTS), training=True)["pooled_output"].numpy()
    assert np.abs(first - second).max() > 1e-3


def test_bf16_gradients_reach_every_float32_weight(layers):
    _, bf16 = layers
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(bf16(tf.constant(TEXTS), training=True)["pooled_output"] ** 2)
    grads = tape.gradient(loss, bf16.trainable_weights)
    assert len(grads) == len(bf16.trainable_weights) > 0
    for weight, grad in zip(bf16.trainable_weights, grads):
        assert grad is not None and grad.dtype == tf.float32, weight.path
    assert sum(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads) == len(grads)


def test_float16_policy_is_refused(tiny_module_dir):
    with pytest.raises(ValueError, match="float32 or bfloat16.*mixed_float16"):
        BertLayer(tiny_module_dir, dtype="mixed_float16")


def test_module_without_bf16_signature_is_refused_for_bf16(tiny_module_dir, tmp_path):
    import shutil

    from tensorflow.core.protobuf import saved_model_pb2
    copy = shutil.copytree(tiny_module_dir, tmp_path / "module")
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((copy / "saved_model.pb").read_bytes())
    for meta_graph in saved_model.meta_graphs:
        del meta_graph.signature_def["tokens_bf16"]
    (copy / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    BertLayer(str(copy), max_seq_length=40)  # float32 still works.
    with pytest.raises(ValueError, match="no `tokens_bf16` signature.*dtype='float32'"):
        BertLayer(str(copy), max_seq_length=40, dtype="mixed_bfloat16")


# === Classifiers: freezing, precision flags, prediction ===

CLASSIFIER_TEXTS = TEXTS + ["", "THE FILM ||| not fun at all", " ".join(["good"] * 50)]


@pytest.fixture(scope="module")
def bf16_frozen(tiny_module_dir, tmp_path_factory):
    """(fp32 model, bf16 frozen path, fp32 frozen path) of one classifier."""
    from bert_layer.inference.freeze import freeze_model
    from bert_layer.layers.precision import with_precision
    from bert_layer.training.classifier import ClassifierSpec, build_classifier

    spec = ClassifierSpec(module=tiny_module_dir, class_names=("a", "b", "c"),
                          max_seq_length=32)
    keras.utils.set_random_seed(0)
    model = build_classifier(spec)
    dense = model.get_layer("probabilities")  # A spread head: probabilities vary by text.
    dense.kernel.assign(np.random.default_rng(0).normal(size=dense.kernel.shape))
    folder = tmp_path_factory.mktemp("bf16_freeze")
    paths = {}
    for precision in ("fp32", "bf16"):
        paths[precision] = str(folder / f"{precision}.pb")
        freeze_model(with_precision(model, precision), paths[precision], class_names=["a", "b",
                                                                                      "c"])
    return model, paths


@pytest.mark.large
def test_with_precision_clones_with_the_same_weights(bf16_frozen):
    from bert_layer.layers.precision import with_precision
    model, _ = bf16_frozen
    bf16 = with_precision(model, "bf16")
    assert bf16.get_layer("bert").compute_dtype == "bfloat16"
    assert bf16.get_layer("probabilities").compute_dtype == "float32"
    assert with_precision(model, "fp32") is model
    for a, b in zip(model.weights, bf16.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_frozen_bf16_graph_keeps_bf16_matmuls_and_bf16_constants(bf16_frozen):
    from bert_layer.inference.formats import read_graph_def
    _, paths = bf16_frozen
    graph_def = read_graph_def(paths["bf16"])
    bf16 = tf.bfloat16.as_datatype_enum
    matmuls = [n for n in graph_def.node if "MatMul" in n.op]
    assert matmuls and sum(n.attr["T"].type == bf16 for n in matmuls) >= len(matmuls) - 1
    # Grappler folded the casts of the weights: bf16 constants, not float32 ones cast at run.
    assert any(n.op == "Const" and n.attr["dtype"].type == bf16 for n in graph_def.node)
    fp32_graph = read_graph_def(paths["fp32"])
    assert not any(n.attr["T"].type == bf16 for n in fp32_graph.node if "MatMul" in n.op)


def test_frozen_bf16_probabilities_are_close_to_fp32(bf16_frozen):
    from bert_layer.inference.runtimes import FrozenClassifier
    _, paths = bf16_frozen
    fp32 = FrozenClassifier(paths["fp32"])(CLASSIFIER_TEXTS)
    bf16 = FrozenClassifier(paths["bf16"])(CLASSIFIER_TEXTS)
    assert np.ptp(fp32, axis=0).max() > 0.3
    assert 0 < np.abs(fp32 - bf16).max() < BF16_ATOL


def test_frozen_graph_precision_is_checked(bf16_frozen):
    from bert_layer.inference.runtimes import FrozenClassifier
    _, paths = bf16_frozen
    assert FrozenClassifier(paths["bf16"], precision="bf16").precision == "bf16"
    assert FrozenClassifier(paths["fp32"]).precision == "fp32"
    with pytest.raises(ValueError, match="frozen to compute in fp32, not bf16.*--precision bf16"):
        FrozenClassifier(paths["fp32"], precision="bf16")


def test_predict_groups_by_real_token_counts_and_equals_whole_batches(bf16_frozen):
    from bert_layer.inference.predict import predict_probabilities
    from bert_layer.inference.runtimes import FrozenClassifier
    _, paths = bf16_frozen
    classifier = FrozenClassifier(paths["fp32"])
    assert classifier.tokenizes_apart
    features = classifier.tokenize(CLASSIFIER_TEXTS)
    assert features["input_mask"].shape == (len(CLASSIFIER_TEXTS), 32)
    # [CLS] the movie was great . [SEP]; [CLS] a bad film [SEP] the plot was fun [SEP];
    # [CLS] un ##want ##ed runn ##ing ! [SEP]
    assert features["input_mask"].sum(axis=1).tolist()[:3] == [7, 10, 8]
    expected = classifier(CLASSIFIER_TEXTS)  # One batch, straight from the strings.
    batched = predict_probabilities(classifier, CLASSIFIER_TEXTS, batch_size=2)
    np.testing.assert_allclose(batched, expected, atol=1e-5, rtol=0)


@pytest.mark.large
def test_cli_trains_in_bf16_freezes_and_predicts_in_either_precision(tiny_module_dir, tmp_path,
                                                                    capsys):
    import json

    from bert_layer.cli.main import main
    from bert_layer.inference.formats import read_graph_def
    from bert_layer.inference.runtimes import graph_precision

    rows = [("the movie was good .", "1"), ("so boring", "0"), ("great fun", "1"),
            ("the worst plot", "0")] * 4
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows),
                     encoding="utf-8")
    run_dir = tmp_path / "run"
    assert main(["train", "--module", tiny_module_dir, "--train", str(train), "--out",
                 str(run_dir), "--epochs", "1", "--batch-size", "8", "--max-seq-length", "32",
                 "--precision", "bf16"]) == 0
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert report["classifier"]["precision"] == "bf16"
    model = str(run_dir / "model.keras")
    for precision in ("bf16", "fp32"):  # The bf16-trained model frozen in both precisions.
        out = tmp_path / f"{precision}.pb"
        assert main(["freeze", "--model", model, "--out", str(out), "--precision",
                     precision]) == 0
        assert graph_precision(read_graph_def(str(out))) == precision
    capsys.readouterr()
    code = main(["predict", "--model", str(tmp_path / "fp32.pb"), "--input", str(train),
                 "--precision", "bf16"])
    assert code == 2
    assert "frozen to compute in fp32, not bf16" in capsys.readouterr().err
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--model", model, "--input", str(train), "--output", str(out),
                 "--precision", "fp32"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(rows) + 1


# === The real model: bf16 against fp32 on SST-2 dev and MRPC dev ===

AGREEMENT = 0.995  # bf16 labels equal to fp32 labels on at least this share of examples.
COSINE = 0.999  # bf16 embeddings' cosine to fp32, for every example.


def _embed(layer: BertLayer, texts: list[str], batch_size: int = 64) -> dict[str, np.ndarray]:
    """pooled ("cls") and mean embeddings [n, H], float32, in input order."""
    forward = tf.function(lambda t: layer(t, training=False),
                          input_signature=[tf.TensorSpec([None], tf.string)])
    outputs = [forward(tf.constant(texts[i:i + batch_size]))
               for i in range(0, len(texts), batch_size)]
    mask = [o["input_mask"].numpy()[:, :, None].astype(np.float32) for o in outputs]
    return {"cls": np.concatenate([o["pooled_output"].numpy() for o in outputs]),
            "mean": np.concatenate([(o["sequence_output"].numpy() * m).sum(1) / m.sum(1)
                                    for o, m in zip(outputs, mask)])}


def _fit_probe(features: np.ndarray, labels: np.ndarray, steps: int = 300) -> tuple:
    """A logistic-regression head fitted on fp32 features (numpy gradient descent): the
    linear classifier a fine-tuned head would be, with a trained classifier's margins (a
    random head would put examples near its boundary by chance)."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    x = (features - mean) / std
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        w -= 0.5 * (x.T @ (p - labels) / len(x) + 1e-3 * w)
        b -= 0.5 * float(np.mean(p - labels))
    return lambda f: ((f - mean) / std @ w + b) > 0


def _labelled(dataset: str) -> tuple[list[str], np.ndarray]:
    from real_data import DATA_DIR

    from bert_layer.data.examples import read_examples
    if dataset == "sst2":
        path = os.path.join(DATA_DIR, "sst2", "glue_dev.tsv")
        columns = {"text_column": "sentence", "label_column": "label"}
    else:
        path = os.path.join(DATA_DIR, "mrpc", "dev.tsv")
        columns = {"text_column": "#1 String", "pair_column": "#2 String",
                   "label_column": "Quality"}
    if not os.path.isfile(path):
        pytest.skip(f"Data file not found: {path}")
    examples = read_examples(path, labels=["0", "1"], **columns)
    return examples.texts, np.asarray(examples.labels)


@pytest.fixture(scope="module")
def real_layers(default_module_dir):
    layers = {precision: BertLayer(default_module_dir, as_dict=True, n_fine_tune_layers=0,
                                   dtype=dtype)
              for precision, dtype in (("fp32", "float32"), ("bf16", "mixed_bfloat16"))}
    for layer in layers.values():
        layer.build()  # Eagerly: weights built inside a tf.function stay zero (issue 9b).
    return layers


@pytest.mark.integration
@pytest.mark.parametrize("dataset", ["sst2", "mrpc"])
def test_bf16_classifier_labels_and_embeddings_match_fp32(real_layers, dataset):
    texts, labels = _labelled(dataset)
    fp32, bf16 = (_embed(real_layers[p], texts) for p in ("fp32", "bf16"))
    for pooling in ("cls", "mean"):
        a, b = fp32[pooling], bf16[pooling]
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() >= COSINE, (pooling, cosine.min(), np.mean(cosine))
        assert np.abs(a - b).max() > 0  # bf16 really ran.
    predict = _fit_probe(fp32["mean"], labels)
    expected, found = predict(fp32["mean"]), predict(bf16["mean"])
    assert np.mean(expected == labels) > {"sst2": 0.8, "mrpc": 0.7}[dataset]  # A real classifier.
    assert np.mean(found == expected) >= AGREEMENT, np.mean(found == expected)
