"""Sentence embeddings: `pooling="first"`, `normalize`, and `bert-layer embed`.

Values are checked against the numpy reference BERT (tiny module) and, on the real default
model, against sentence-transformers itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings

import numpy as np
import pytest
import tensorflow as tf
from google_hub_module import copy_vocab, write_google_module
from reference_bert import bert_forward, mean_pool
from reference_packing import full_tokenizer, reference_features
from tiny import TINY_CONFIG

from bert_layer.cli.main import main
from bert_layer.export.checkpoint import load_checkpoint
from bert_layer.inference.embed import embed_texts, make_embedder
from bert_layer.layers.layer import BertLayer

MAX_LEN = 40
# Lengths out of order, so that length-grouped batches must be put back in input order.
TEXTS = ["good", "the movie was very good and the plot was great .", "a bad film",
         "i love this film ||| the plot was fun", "", "unwanted running !"]


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint_dir):
    return load_checkpoint(tiny_checkpoint_dir)


def _reference(checkpoint, texts: list[str], pooling: str, normalize: bool) -> np.ndarray:
    """The numpy BERT's pooled vectors [n, H] for `texts`, each text on its own."""
    vectors = []
    for text in texts:
        features = reference_features(full_tokenizer(checkpoint.vocab_file, True), [text],
                                      MAX_LEN)
        sequence, pooled = bert_forward(checkpoint.weights, TINY_CONFIG, **features)
        vector = {"first": sequence[:, 0], "cls": pooled,
                  "mean": mean_pool(sequence, features["input_mask"])}[pooling][0]
        vector = vector.astype(np.float64)
        vectors.append(vector / np.linalg.norm(vector) if normalize else vector)
    return np.array(vectors)


@pytest.mark.parametrize("pooling, normalize", [("first", True), ("first", False),
                                                ("mean", True), ("cls", True)])
def test_embed_texts_match_the_reference_in_input_order(tiny_module_dir, checkpoint, pooling,
                                                        normalize):
    layer = make_embedder(tiny_module_dir, pooling=pooling, normalize=normalize,
                          max_seq_length=MAX_LEN)
    embeddings = embed_texts(layer, TEXTS, batch_size=2)
    assert embeddings.dtype == np.float32 and embeddings.shape == (6, TINY_CONFIG.hidden_size)
    np.testing.assert_allclose(embeddings, _reference(checkpoint, TEXTS, pooling, normalize),
                               atol=1e-5)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)


def test_first_is_not_the_pooler(tiny_module_dir):
    first, cls = (make_embedder(tiny_module_dir, pooling=p, max_seq_length=MAX_LEN)(
        tf.constant(TEXTS[:3])).numpy() for p in ("first", "cls"))
    assert np.abs(first - cls).max() > 0.1


def test_embed_texts_of_nothing_is_an_empty_matrix(tiny_module_dir):
    layer = make_embedder(tiny_module_dir, pooling="mean", max_seq_length=MAX_LEN)
    assert embed_texts(layer, []).shape == (0, TINY_CONFIG.hidden_size)


# === A module without a pooler ===


@pytest.fixture(scope="module")
def no_pooler_module_dir(checkpoint, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("no_pooler")
    vocab = copy_vocab(checkpoint.vocab_file, str(root / "export_machine"))
    return write_google_module(str(root / "module"), TINY_CONFIG, checkpoint.weights, vocab,
                               pooler=False)


def _warnings_of(make):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = make()
    return result, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_cls_on_a_module_without_pooler_warns_and_suggests_first(no_pooler_module_dir):
    _, messages = _warnings_of(
        lambda: BertLayer(no_pooler_module_dir, pooling="cls", max_seq_length=MAX_LEN))
    assert len(messages) == 1
    assert messages[0].startswith(f"The module {no_pooler_module_dir} has no pooler weights "
                                  f"(bert/pooler/*): its pooled_output is not a trained pooler")
    assert "pass pooling='first'" in messages[0]


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_other_poolings_on_a_module_without_pooler_do_not_warn(no_pooler_module_dir,
                                                                checkpoint, pooling):
    layer, messages = _warnings_of(
        lambda: make_embedder(no_pooler_module_dir, pooling=pooling, max_seq_length=MAX_LEN))
    assert messages == []
    assert not any("pooler" in w.path for w in layer.weights)
    np.testing.assert_allclose(embed_texts(layer, TEXTS, batch_size=4),
                               _reference(checkpoint, TEXTS, pooling, False), atol=1e-5)


def test_cls_on_a_module_with_a_pooler_does_not_warn(tiny_module_dir):
    _, messages = _warnings_of(
        lambda: BertLayer(tiny_module_dir, pooling="cls", max_seq_length=MAX_LEN))
    assert messages == []


# === bert-layer embed ===


def _embed(module_dir: str, *args: str) -> int:
    return main(["embed", "--module", module_dir, "--max-seq-length", str(MAX_LEN), *args])


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    return str(path)


@pytest.mark.large
def test_embed_command_writes_npy_and_jsonl_in_input_order(
        tiny_module_dir, checkpoint, texts_file, tmp_path, capsys):
    npy, jsonl = str(tmp_path / "out.npy"), str(tmp_path / "out.jsonl")
    for output in (npy, jsonl):
        assert _embed(tiny_module_dir, "--input", texts_file, "--pooling", "first",
                      "--normalize", "--batch-size", "2", "--output", output) == 0
    assert "Embedded 6 texts (32 values each)" in capsys.readouterr().err
    matrix = np.load(npy)
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, _reference(checkpoint, TEXTS, "first", True), atol=1e-5)
    with open(jsonl, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["text"] for r in records] == TEXTS
    np.testing.assert_array_equal(np.array([r["embedding"] for r in records], np.float32),
                                  matrix)
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl", "out.npy"]  # No temporary left.


@pytest.mark.large
def test_embed_command_reads_tsv_pairs_and_stdin(tiny_module_dir, checkpoint, tmp_path,
                                                 monkeypatch):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("id\tfirst\tsecond\n1\ta bad film\tthe plot was fun\n2\tgood\tboring\n",
                   encoding="utf-8")
    assert _embed(tiny_module_dir, "--input", str(tsv), "--text-column", "first",
                  "--pair-column", "second", "--pooling", "mean",
                  "--output", str(tmp_path / "pairs.npy")) == 0
    pairs = ["a bad film ||| the plot was fun", "good ||| boring"]
    np.testing.assert_allclose(np.load(tmp_path / "pairs.npy"),
                               _reference(checkpoint, pairs, "mean", False), atol=1e-5)
    monkeypatch.setattr("sys.stdin", io.StringIO("a bad film\ngood\n"))
    assert _embed(tiny_module_dir, "--pooling", "cls", "--output",
                  str(tmp_path / "stdin.npy")) == 0
    np.testing.assert_allclose(np.load(tmp_path / "stdin.npy"),
                               _reference(checkpoint, ["a bad film", "good"], "cls", False),
                               atol=1e-5)


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.large
def test_embed_command_keeps_an_existing_output_unless_told(tiny_module_dir, texts_file,
                                                            tmp_path, capsys):
    output = tmp_path / "taken.npy"
    output.write_bytes(b"the user's file")
    before = _digest(output)
    assert _embed(tiny_module_dir, "--input", texts_file, "--pooling", "mean",
                  "--output", str(output)) == 2
    assert "Output path already exists" in capsys.readouterr().err
    assert _digest(output) == before
    assert _embed(tiny_module_dir, "--input", texts_file, "--pooling", "mean", "--overwrite",
                  "--output", str(output)) == 0
    assert np.load(output).shape == (6, TINY_CONFIG.hidden_size)


@pytest.mark.parametrize("args, message", [
    (["--pooling", "mean", "--output", "{tmp}/out.csv"],
     r"--output .*/out.csv: expected a file ending in .npy or .jsonl, found .csv"),
    (["--pooling", "mean", "--input", "{tmp}/missing.tsv", "--output", "{tmp}/out.npy"],
     r"missing.tsv"),
    (["--pooling", "mean", "--max-seq-length", "65", "--output", "{tmp}/out.npy"],
     r"--max-seq-length=65 exceeds the 64 position embeddings"),
], ids=["extension", "missing_input", "max_seq_length"])
def test_embed_command_errors_are_one_line_and_write_nothing(
        tiny_module_dir, texts_file, tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--input" not in args:
        args += ["--input", texts_file]
    code = main(["embed", "--module", tiny_module_dir, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("bert-layer embed: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_embed_command_refuses_a_bad_batch_size_while_parsing(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", "--module", str(tmp_path), "--pooling", "mean", "--batch-size", value,
              "--output", str(tmp_path / "out.npy")])
    assert exit_info.value.code == 2
    assert (f"bert-layer embed: error: argument --batch-size: expected a positive integer, "
            f"found {value!r}") in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_embed_command_names_a_missing_module(texts_file, tmp_path, capsys):
    code = main(["embed", "--module", str(tmp_path / "nope"), "--pooling", "mean",
                 "--input", texts_file, "--output", str(tmp_path / "out.npy")])
    assert code == 2
    assert (f"--module {tmp_path / 'nope'}: not found; expected a hub module folder"
            in capsys.readouterr().err)


# === The real default model against sentence-transformers ===


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.integration
def test_embed_equals_sentence_transformers_on_every_sst2_dev_sentence(
        default_module_dir, default_model_dir, sst2_dev, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts_file = tmp_path / "sst2_dev.txt"
    texts_file.write_text("".join(t + "\n" for t in sst2_dev), encoding="utf-8")
    output = tmp_path / "embeddings.npy"
    # 256: the model's own max_seq_length (sentence_bert_config.json), so nothing is cut
    # differently.
    assert main(["embed", "--module", default_module_dir, "--input", str(texts_file),
                 "--pooling", "mean", "--normalize", "--max-seq-length", "256",
                 "--output", str(output)]) == 0
    ours = np.load(output)
    # The model folder holds modules.json (Transformer, mean Pooling, Normalize).
    model = sentence_transformers.SentenceTransformer(default_model_dir, device="cpu")
    expected = model.encode(sst2_dev, normalize_embeddings=True, batch_size=64)
    assert ours.shape == expected.shape == (872, 384)
    cosines = _cosines(ours, expected)
    assert cosines.min() >= 0.99999, (cosines.argmin(), cosines.min())
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


# === "first" for classifiers too: one list of vector poolings ===


def test_a_classifier_accepts_first_and_refuses_no_pooling(tiny_module_dir):
    from bert_layer.training.classifier import ClassifierSpec, build_classifier

    spec = ClassifierSpec(module=tiny_module_dir, class_names=("neg", "pos"), pooling="first",
                          max_seq_length=MAX_LEN)
    assert build_classifier(spec).get_layer("bert").pooling == "first"
    with pytest.raises(ValueError, match=r"pooling must be one of \['cls', 'first', 'mean', "
                                         r"'max'\]. Received: None"):
        ClassifierSpec(module=tiny_module_dir, class_names=("neg", "pos"), pooling=None,
                       max_seq_length=MAX_LEN)
