"""Long texts as overlapping windows (`--stride`): Hugging Face's windows, one row per document
through every path (Keras, frozen graph, serving SavedModel, predict, Beam, embed), each
window a training example, and bad flags refused before any work."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from harness import assert_one_line_error, run_cli, tree_hashes
from reference_bert import bert_forward, mean_pool
from tiny import TINY_CONFIG, TINY_VOCAB

from bert_layer.export.checkpoint import load_checkpoint
from bert_layer.inference.embed import embed_texts, make_embedder
from bert_layer.inference.runtimes import load_classifier
from bert_layer.text.tokenizer import make_tokenizer
from bert_layer.text.windows import WINDOW_DOCUMENT, WindowPreprocessor

WORDS = ["the", "movie", "was", "great", ".", "unwanted", "running", "actor", "is", "so",
         "funny", "and", "good", "but", "boring", "terrible", "中", "cafe", ",", "!"]


def documents(n: int, seed: int, longest: int = 60) -> list[str]:
    """`n` texts of 0 to `longest` words of the tiny vocabulary (some missing: [UNK])."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(0, longest + 1))) for _ in range(n)]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def hf_tokenizer(vocab_file):
    from transformers import BertTokenizerFast
    return BertTokenizerFast(vocab_file, do_lower_case=True)


def _rows(features: dict[str, tf.Tensor], name: str) -> list[list[int]]:
    """The unpadded rows of feature `name`."""
    mask = features["input_mask"].numpy()
    return [[int(v) for v, m in zip(row, mask_row) if m]
            for row, mask_row in zip(features[name].numpy(), mask)]


def assert_windows_equal_hf(features, expected) -> None:
    assert _rows(features, "input_ids") == expected["input_ids"]
    assert _rows(features, "segment_ids") == expected["token_type_ids"]
    assert features[WINDOW_DOCUMENT].numpy().tolist() == expected["overflow_to_sample_mapping"]


# === The windows equal Hugging Face's ===

@pytest.mark.parametrize("kind", ["graph", "core", "numpy"])
@pytest.mark.parametrize("max_seq_length, stride", [(8, 2), (10, 0), (6, 3), (16, 7), (64, 10)])
def test_windows_equal_hugging_face_fast_tokenizer(vocab_file, hf_tokenizer, kind,
                                                   max_seq_length, stride):
    texts = documents(12, seed=max_seq_length + stride) + ["", "good", "UNWANTED Running"]
    preprocessor = WindowPreprocessor(make_tokenizer(kind, vocab_file, True), max_seq_length,
                                      stride)
    expected = hf_tokenizer(texts, truncation=True, max_length=max_seq_length, stride=stride,
                            return_overflowing_tokens=True)
    assert_windows_equal_hf(preprocessor(texts), expected)
    counts = np.bincount(expected["overflow_to_sample_mapping"], minlength=len(texts))
    assert preprocessor.windows_per_text(texts).numpy().tolist() == counts.tolist()
    assert counts.max() > 1 or max_seq_length == 64  # Long texts did become windows.


@pytest.mark.parametrize("max_seq_length, stride", [(14, 2), (16, 0), (20, 5)])
def test_pairs_keep_the_second_text_whole_in_every_window(vocab_file, hf_tokenizer,
                                                          max_seq_length, stride):
    firsts, seconds = documents(8, seed=1), documents(8, seed=2, longest=3)
    preprocessor = WindowPreprocessor(make_tokenizer("core", vocab_file, True), max_seq_length,
                                      stride)
    features = preprocessor([f"{a} ||| {b}" for a, b in zip(firsts, seconds)])
    expected = hf_tokenizer(firsts, seconds, truncation="only_first", max_length=max_seq_length,
                            stride=stride, return_overflowing_tokens=True)
    assert_windows_equal_hf(features, expected)


@pytest.mark.large
def test_a_pair_whose_second_text_leaves_no_room_is_refused_naming_it(vocab_file):
    preprocessor = WindowPreprocessor(make_tokenizer("core", vocab_file, True), 10, 2)
    fits = "good ||| the movie"
    stuck = "the movie was great . the end ||| it was so so good"  # b: 6 pieces, room 1.
    assert preprocessor([fits])[WINDOW_DOCUMENT].numpy().tolist() == [0]
    with pytest.raises(tf.errors.InvalidArgumentError, match="second text stays whole") as e:
        preprocessor([fits, stuck])
    assert "it was so so good" in e.value.message


@pytest.mark.integration
@pytest.mark.large
def test_windows_equal_hugging_face_on_real_documents(real_vocab, default_model_dir):
    """The real vocabulary on 20 Newsgroups documents (each of several windows)."""
    import sys

    from transformers import BertTokenizerFast
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    from bench_long_docs import read_newsgroups

    try:
        # 60 documents: each batch runs the windowing eagerly, which is slow on 2 cores.
        texts = [text for _, text in read_newsgroups("test")[:60]]
    except FileNotFoundError as e:
        pytest.skip(str(e))
    hf = BertTokenizerFast(real_vocab, do_lower_case=True)
    for kind in ("graph", "core"):
        preprocessor = WindowPreprocessor(make_tokenizer(kind, real_vocab, True), 128, 64)
        for start in range(0, len(texts), 20):
            batch = texts[start:start + 20]
            expected = hf(batch, truncation=True, max_length=128, stride=64,
                          return_overflowing_tokens=True)
            assert_windows_equal_hf(preprocessor(batch), expected)


# === A trained windowed classifier, through every path ===

MAX_LEN, STRIDE = 16, 4
LONG = documents(10, seed=7, longest=60) + ["", "good", "bad ||| the movie"]


def _write_tsv(path, rows) -> str:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["sentence", "label"])
        writer.writerows(rows)
    return str(path)


def _labelled_documents(n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i, text in enumerate(documents(n, seed, longest=40)):
        label = ["neg", "pos"][i % 2]
        word = rng.choice(["bad", "boring"] if label == "neg" else ["good", "great"])
        rows.append((f"{text} {word}", label))
    return rows


def _cli(*argv: str) -> None:
    code, out, err = run_cli(list(argv))
    assert code == 0, err


@pytest.fixture(scope="module")
def windowed(tiny_module_dir, tmp_path_factory):
    """One epoch of `bert-layer train --stride`, frozen to a core-tokenizer graph and a
    serving SavedModel."""
    folder = tmp_path_factory.mktemp("windowed")
    train = _write_tsv(folder / "train.tsv", _labelled_documents(24, seed=3))
    dev = _write_tsv(folder / "dev.tsv", _labelled_documents(8, seed=4))
    out = str(folder / "run")
    _cli("train", "--module", tiny_module_dir, "--train", train, "--dev", dev, "--out", out,
         "--max-seq-length", str(MAX_LEN), "--stride", str(STRIDE), "--epochs", "1",
         "--batch-size", "8", "--fine-tune-layers", "1", "--learning-rate", "1e-3")
    paths = {"keras": os.path.join(out, "model.keras"), "graph": str(folder / "frozen.pb"),
             "saved_model": str(folder / "serving")}
    _cli("freeze", "--model", paths["keras"], "--out", paths["graph"], "--tokenizer", "core")
    _cli("freeze", "--model", paths["keras"], "--out", paths["saved_model"], "--format",
         "saved_model", "--tokenizer", "core")
    return {**paths, "folder": folder, "run": out}


def _window_probabilities(model, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each window's probabilities [W, K] (the model's head on the windows' rows alone) and
    each window's document [W]."""
    from bert_layer.inference.graphs import find_bert_layer

    bert = find_bert_layer(model)
    features = bert.preprocess(tf.constant(texts))
    windows = []
    for w in range(features["input_ids"].shape[0]):  # One window a batch: no pooling at all.
        row = {n: features[n][w:w + 1] for n in ("input_ids", "input_mask", "segment_ids")}
        x = bert.encode(row, training=False)["pooled_output"]
        for name in ("head_dropout", "probabilities"):
            x = model.get_layer(name)(x, training=False)
        windows.append(x.numpy()[0])
    return np.array(windows), features[WINDOW_DOCUMENT].numpy()


@pytest.mark.large
def test_the_document_gets_the_mean_of_its_windows_probabilities(windowed):
    keras_model = load_classifier(windowed["keras"])
    got = keras_model(LONG)
    windows, document = _window_probabilities(keras_model.model, LONG)
    assert got.shape == (len(LONG), 2) and len(document) > 2 * len(LONG)
    expected = np.array([windows[document == d].mean(axis=0) for d in range(len(LONG))])
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.large
def test_frozen_serving_and_keras_agree_on_long_texts(windowed):
    keras_p = load_classifier(windowed["keras"])(LONG)
    frozen = load_classifier(windowed["graph"])
    assert not frozen.tokenizes_apart  # Its rows of ids would be windows, not texts.
    np.testing.assert_allclose(frozen(LONG), keras_p, atol=1e-5)
    np.testing.assert_allclose(load_classifier(windowed["saved_model"])(LONG), keras_p,
                               atol=1e-5)


@pytest.mark.large
def test_the_serving_ids_signature_takes_the_windows_documents(windowed):
    from bert_layer.inference.graphs import find_bert_layer

    keras_model = load_classifier(windowed["keras"])
    features = find_bert_layer(keras_model.model).preprocess(tf.constant(LONG))
    serve_ids = tf.saved_model.load(windowed["saved_model"]).signatures["ids"]
    got = serve_ids(**features)["probabilities"].numpy()
    np.testing.assert_allclose(got, keras_model(LONG), atol=1e-5)


def _predicted_rows(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))[1:]


@pytest.mark.large
@pytest.mark.parametrize("kind", ["keras", "graph", "saved_model"])
def test_predict_writes_one_row_per_document(windowed, kind, tmp_path):
    texts = [t for t in LONG if t]  # A .txt file: one text per line.
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = str(tmp_path / "p.csv")
    _cli("predict", "--model", windowed[kind], "--input", str(source), "--output", out,
         "--batch-size", "3")
    rows = _predicted_rows(out)
    assert [r[0] for r in rows] == texts
    expected = load_classifier(windowed["keras"])(texts)
    np.testing.assert_allclose([[float(x) for x in r[2:]] for r in rows], expected, atol=2e-6)


def test_beam_writes_one_row_per_document(windowed, tmp_path):
    pytest.importorskip("apache_beam")
    from bert_layer.inference.beam import run_predict_pipeline

    out = str(tmp_path / "beam.csv")
    run_predict_pipeline(windowed["graph"], LONG, out, fmt="csv", batch_size=3)
    rows = _predicted_rows(out)
    assert [r[0] for r in rows] == LONG
    np.testing.assert_allclose([[float(x) for x in r[2:]] for r in rows],
                               load_classifier(windowed["keras"])(LONG), atol=2e-6)


def test_training_gives_each_window_its_documents_label(windowed):
    """The dataset fit reads: one label row per window, the document's."""
    import keras

    from bert_layer.data.batching import make_dataset
    from bert_layer.data.examples import Examples
    from bert_layer.training.train import _label_per_window

    model = keras.models.load_model(windowed["keras"], compile=False)
    texts = LONG[:6]
    labels = np.eye(2, dtype=np.float32)[[0, 1, 1, 0, 1, 0]]
    examples = Examples(texts=texts, labels=labels, classes=["neg", "pos"], source="x")
    (batch_texts, batch_labels), = _label_per_window(
        make_dataset(examples, batch_size=6, shuffle=False, seed=0, bucket=False), model)
    document = model.get_layer("bert").preprocess(batch_texts)[WINDOW_DOCUMENT].numpy()
    np.testing.assert_array_equal(batch_labels.numpy(), labels[document])
    assert len(document) > len(texts)


def test_training_batches_hold_at_most_batch_size_windows(windowed):
    """`train --stride` sizes its batches by windows, not documents: the run's optimizer
    updates are the window-budget batches of its training texts (8 windows a batch), more
    than 24 documents / 8 gives when documents span several windows."""
    import keras

    from bert_layer.data.batching import count_window_budget_batches
    from bert_layer.training.train import _windows_per_text

    model = keras.models.load_model(windowed["keras"], compile=False)
    texts = [text for text, _ in _labelled_documents(24, seed=3)]
    windows = _windows_per_text(model, texts, chunk=5)
    document = model.get_layer("bert").preprocess(tf.constant(texts))[WINDOW_DOCUMENT].numpy()
    np.testing.assert_array_equal(windows, np.bincount(document, minlength=len(texts)))
    with open(os.path.join(windowed["run"], "report.json"), encoding="utf-8") as f:
        updates = json.load(f)["training_options"]["optimizer_updates"]
    assert updates == count_window_budget_batches(windows, 8) > 24 // 8


def test_max_window_pooling_takes_each_class_maximum(tiny_module_dir):
    from bert_layer.training.classifier import ClassifierSpec, build_classifier

    model = build_classifier(ClassifierSpec(tiny_module_dir, ("neg", "pos"), max_seq_length=12,
                                            stride=3, window_pooling="max"))
    got = model(tf.constant(LONG), training=False).numpy()
    windows, document = _window_probabilities(model, LONG)
    expected = np.array([windows[document == d].max(axis=0) for d in range(len(LONG))])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # In training the windows pass through, one row each.
    assert model(tf.constant(LONG), training=True).shape[0] == len(document)


# === embed: a document's vector from its windows' ===

@pytest.mark.parametrize("normalize", [False, True])
def test_embed_of_a_long_document_is_the_mean_of_its_windows_vectors(
        tiny_module_dir, tiny_checkpoint_dir, hf_tokenizer, normalize):
    """Windows from Hugging Face's tokenizer, vectors from the numpy reference BERT."""
    checkpoint = load_checkpoint(tiny_checkpoint_dir)
    layer = make_embedder(tiny_module_dir, pooling="mean", normalize=normalize,
                          max_seq_length=MAX_LEN, stride=STRIDE)
    got = embed_texts(layer, LONG, batch_size=4)
    assert got.shape == (len(LONG), TINY_CONFIG.hidden_size)
    windows = hf_tokenizer([t.replace(" ||| ", " ") if "|||" not in t else t.split(" ||| ")[0]
                            for t in LONG[:-1]], truncation=True, max_length=MAX_LEN,
                           stride=STRIDE, return_overflowing_tokens=True)
    document = np.array(windows["overflow_to_sample_mapping"])
    vectors = []
    for ids, types in zip(windows["input_ids"], windows["token_type_ids"]):
        features = {"input_ids": np.array([ids]), "input_mask": np.ones([1, len(ids)], int),
                    "segment_ids": np.array([types])}
        sequence, _ = bert_forward(checkpoint.weights, TINY_CONFIG, **features)
        vector = mean_pool(sequence, features["input_mask"])[0].astype(np.float64)
        vectors.append(vector / np.linalg.norm(vector) if normalize else vector)
    vectors = np.array(vectors)
    for d in range(len(LONG) - 1):  # The last text is a pair: checked by the windows' tests.
        expected = vectors[document == d].mean(axis=0)
        if normalize:
            expected /= np.linalg.norm(expected)
        np.testing.assert_allclose(got[d], expected, atol=1e-5)


# === Bad flags: one line, exit 2, nothing written ===

@pytest.mark.parametrize("argv, fragments", [
    (["--stride", "128"], ["--stride", "from 0 to 125", "Received: 128"]),
    (["--stride", "126"], ["--stride", "Received: 126"]),
    (["--stride", "-1"], ["--stride", "Received: -1"]),
    (["--stride", "30", "--max-seq-length", "32"], ["from 0 to 29", "--max-seq-length=32"]),
    (["--stride", "4", "--distribute", "mirrored"], ["--stride", "one replica"]),
])
def test_train_refuses_bad_strides_before_any_work(argv, fragments, tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\ngood\tpos\nbad\tneg\n", encoding="utf-8")
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["train", "--module", "missing_module", "--train", str(train),
                            "--out", str(tmp_path / "run"), *argv])
    assert code == 2
    assert_one_line_error(err, "train", *fragments)
    assert tree_hashes(tmp_path) == before


def test_embed_refuses_a_bad_stride_before_any_work(tmp_path):
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["embed", "--module", "missing_module", "--output",
                            str(tmp_path / "e.npy"), "--pooling", "mean", "--stride", "200"])
    assert code == 2
    assert_one_line_error(err, "embed", "--stride", "Received: 200")
    assert tree_hashes(tmp_path) == before


def test_a_windowed_numpy_tokenizer_model_freezes_with_the_tokenizer_inside(tiny_module_dir,
                                                                           tmp_path):
    from bert_layer.inference.freeze import freeze_model
    from bert_layer.training.classifier import ClassifierSpec, build_classifier

    model = build_classifier(ClassifierSpec(tiny_module_dir, ("neg", "pos"), max_seq_length=12,
                                            stride=3, tokenizer="numpy"))
    with pytest.raises(ValueError, match="tokenizer='graph' or 'core'"):
        freeze_model(model, str(tmp_path / "m.pb"), class_names=["neg", "pos"])
    assert os.listdir(tmp_path) == []
