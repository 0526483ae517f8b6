"""The exported hub module: format, signatures, numerical parity, relocation, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from reference_bert import bert_forward
from reference_packing import full_tokenizer, reference_features
from tiny import TINY_CONFIG, TINY_VOCAB, random_weights

from bert_layer.export.checkpoint import (
    load_checkpoint,
    write_checkpoint,
    write_checkpoint_folder,
)
from bert_layer.export.writer import MODULE_DEF_FILE, export_module, infer_do_lower_case

hub = pytest.importorskip("tensorflow_hub")

TINY_TEXTS = ["the movie was great .", "unwanted running !", "a bad film ||| the plot was fun",
              "", "terrible acting , boring plot ||| no"]


def _features(batch: int, seq: int, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
    """Random ids with a ragged mask (row i has seq - i real tokens) and two segments."""
    rng = np.random.default_rng(seed)
    lengths = np.maximum(seq - np.arange(batch), 2)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(5, vocab_size, size=[batch, seq]).astype(np.int32) * mask
    segments = ((np.arange(seq)[None, :] >= lengths[:, None] // 2) * mask).astype(np.int32)
    return {"input_ids": ids, "input_mask": mask, "segment_ids": segments}


def _run_tokens(module, features):
    outputs = module.signatures["tokens"](**{k: tf.constant(v) for k, v in features.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def test_module_layout(tiny_module_dir):
    names = sorted(os.listdir(tiny_module_dir))
    assert names == [".bert_layer", "assets", "saved_model.pb", MODULE_DEF_FILE, "variables"]
    assert sorted(os.listdir(os.path.join(tiny_module_dir, "assets"))) == [
        "bert_config.json", "vocab.txt"]
    with open(os.path.join(tiny_module_dir, MODULE_DEF_FILE), "rb") as f:
        assert f.read() == b"\x08\x03"  # ModuleDef{format: FORMAT_V3}


@pytest.mark.parametrize("tags", [set(), {"train"}])
def test_both_tag_sets_have_all_signatures(tiny_module_dir, tags):
    module = hub.load(tiny_module_dir, tags=tags)
    assert sorted(module.signatures) == [
        "default", "text", "tokenization_info", "tokens", "tokens_bf16"]


@pytest.mark.large
def test_tokens_signature_matches_numpy_reference(tiny_module_dir, tiny_checkpoint_dir):
    module = hub.load(tiny_module_dir, tags=set())
    features = _features(batch=3, seq=7, vocab_size=TINY_CONFIG.vocab_size, seed=1)
    outputs = _run_tokens(module, features)
    weights = load_checkpoint(tiny_checkpoint_dir).weights
    sequence, pooled = bert_forward(weights, TINY_CONFIG, **features)
    assert outputs["sequence_output"].shape == (3, 7, 32)
    assert outputs["pooled_output"].shape == (3, 32)
    np.testing.assert_allclose(outputs["sequence_output"], sequence, atol=1e-4)
    np.testing.assert_allclose(outputs["pooled_output"], pooled, atol=1e-4)


def test_default_signature_is_tokens(tiny_module_dir):
    module = hub.load(tiny_module_dir, tags=set())
    features = {k: tf.constant(v) for k, v in _features(2, 5, 99, seed=2).items()}
    a = module.signatures["default"](**features)["pooled_output"].numpy()
    b = module.signatures["tokens"](**features)["pooled_output"].numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.large
def test_train_graph_applies_dropout_and_inference_graph_is_deterministic(tiny_module_dir):
    features = _features(batch=2, seq=6, vocab_size=TINY_CONFIG.vocab_size, seed=3)
    train = hub.load(tiny_module_dir, tags={"train"})
    first, second = _run_tokens(train, features), _run_tokens(train, features)
    assert np.abs(first["sequence_output"] - second["sequence_output"]).max() > 1e-3
    inference = hub.load(tiny_module_dir, tags=set())
    first, second = _run_tokens(inference, features), _run_tokens(inference, features)
    np.testing.assert_array_equal(first["sequence_output"], second["sequence_output"])


def test_text_signature_tokenizes_like_full_tokenizer(tiny_module_dir):
    module = hub.load(tiny_module_dir, tags=set())
    outputs = module.signatures["text"](text=tf.constant(TINY_TEXTS))
    vocab = os.path.join(tiny_module_dir, "assets", "vocab.txt")
    expected = reference_features(full_tokenizer(vocab, True), TINY_TEXTS, max_seq_length=32)
    for name, value in expected.items():
        np.testing.assert_array_equal(outputs[name].numpy(), value, err_msg=name)
    # The encoder outputs equal the tokens signature on the same ids.
    tokens = _run_tokens(module, expected)
    np.testing.assert_allclose(outputs["pooled_output"].numpy(), tokens["pooled_output"],
                               atol=1e-6)


def test_text_signature_pads_to_the_batch_longest_and_truncates(tiny_module_dir):
    module = hub.load(tiny_module_dir, tags=set())
    short = module.signatures["text"](text=tf.constant(["good", "a good film"]))
    assert short["input_ids"].shape == (2, 5)  # [CLS] a good film [SEP]
    long_text = " ".join(["good"] * 100)
    truncated = module.signatures["text"](text=tf.constant([long_text]))
    assert truncated["input_ids"].shape == (1, 32)  # the module's max_seq_length


def test_tokenization_info_points_into_the_module(tiny_module_dir):
    info = hub.load(tiny_module_dir, tags=set()).signatures["tokenization_info"]()
    vocab_file = info["vocab_file"].numpy().decode()
    assert vocab_file == os.path.join(tiny_module_dir, "assets", "vocab.txt")
    with open(vocab_file, encoding="utf-8") as f:
        assert [line.rstrip("\n") for line in f] == TINY_VOCAB
    assert bool(info["do_lower_case"].numpy()) is True


def test_module_still_loads_after_the_folder_moves(tiny_module_dir, tmp_path):
    moved = str(tmp_path / "moved_module")
    shutil.copytree(tiny_module_dir, moved)
    module = hub.load(moved, tags={"train"})
    vocab_file = module.signatures["tokenization_info"]()["vocab_file"].numpy().decode()
    assert vocab_file == os.path.join(moved, "assets", "vocab.txt")
    features = _features(2, 4, 99, seed=4)
    assert _run_tokens(module, features)["pooled_output"].shape == (2, 32)


@pytest.mark.large
def test_hub_keras_layer_runs_the_tokens_signature(tiny_module_dir):
    pytest.importorskip("tf_keras")
    layer = hub.KerasLayer(tiny_module_dir, signature="tokens", signature_outputs_as_dict=True)
    features = _features(2, 5, 99, seed=5)
    outputs = layer({k: tf.constant(v) for k, v in features.items()})
    expected = _run_tokens(hub.load(tiny_module_dir, tags=set()), features)
    np.testing.assert_allclose(outputs["pooled_output"].numpy(), expected["pooled_output"],
                               atol=1e-6)


def test_infer_do_lower_case(tmp_path):
    cased = tmp_path / "cased.txt"
    cased.write_text("[PAD]\n[UNK]\nthe\nThe\n", encoding="utf-8")
    uncased = tmp_path / "uncased.txt"
    uncased.write_text("[PAD]\n[UNK]\n[unused0]\nthe\n", encoding="utf-8")
    assert infer_do_lower_case(str(cased)) is False
    assert infer_do_lower_case(str(uncased)) is True


# === Checkpoints as Google released them ===

# The extra keys of Google's multilingual_L-12_H-768_A-12 and chinese_L-12_H-768_A-12 configs.
MULTILINGUAL_KEYS = {"directionality": "bidi", "pooler_fc_size": 768,
                     "pooler_num_attention_heads": 12, "pooler_num_fc_layers": 3,
                     "pooler_size_per_head": 128, "pooler_type": "first_token_transform"}


@pytest.mark.large
def test_released_checkpoint_exports_the_encoder_and_names_what_it_left_out(tmp_path, capsys):
    from bert_layer.cli.main import main
    checkpoint = tmp_path / "multi_cased_L-3_H-32_A-4"
    weights = random_weights(TINY_CONFIG, 11)
    write_checkpoint_folder(str(checkpoint), TINY_CONFIG, TINY_VOCAB, weights)
    config = {**json.loads((checkpoint / "bert_config.json").read_text()), **MULTILINGUAL_KEYS}
    (checkpoint / "bert_config.json").write_text(json.dumps(config))
    # What run_pretraining.py and run_classifier.py save beside the encoder.
    extra = {"global_step": np.array(7, np.int64),
             "cls/predictions/output_bias": np.ones([99], np.float32),
             "cls/predictions/transform/dense/kernel": np.ones([32, 32], np.float32),
             "cls/seq_relationship/output_weights": np.ones([2, 32], np.float32),
             "output_weights": np.ones([2, 32], np.float32),
             "output_bias": np.ones([2], np.float32)}
    for name in list(weights) + ["output_weights"]:
        extra[name + "/adam_m"] = np.zeros_like(weights.get(name, extra.get(name)))
        extra[name + "/adam_v"] = np.zeros_like(weights.get(name, extra.get(name)))
    write_checkpoint({**weights, **extra}, str(checkpoint / "bert_model.ckpt"))
    before = {name: (checkpoint / name).read_bytes() for name in os.listdir(checkpoint)}

    module_dir = tmp_path / "module"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(module_dir),
                 "--max-seq-length", "16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    left_out = [line for line in lines if line.startswith("Left out")]
    slots = 2 * (len(weights) + 1)
    assert left_out == [f"Left out {slots + 6} variables that are not BERT's encoder: "
                        f"Adam slots */adam_m, */adam_v ({slots}); "
                        f"classifier head output_weights, output_bias (2); "
                        f"cls/predictions/* (2); cls/seq_relationship/* (1); global_step (1)."]
    # The checkpoint folder is read, never changed.
    assert {name: (checkpoint / name).read_bytes() for name in os.listdir(checkpoint)} == before

    features = _features(batch=3, seq=7, vocab_size=TINY_CONFIG.vocab_size, seed=2)
    outputs = _run_tokens(hub.load(str(module_dir), tags=set()), features)
    sequence, pooled = bert_forward(weights, TINY_CONFIG, **features)
    np.testing.assert_allclose(outputs["sequence_output"], sequence, atol=1e-4)
    np.testing.assert_allclose(outputs["pooled_output"], pooled, atol=1e-4)
    assets_config = json.loads((module_dir / "assets" / "bert_config.json").read_text())
    assert assets_config == {**TINY_CONFIG.to_dict(), "do_lower_case": True, "has_pooler": True}


# === Bad input ===

def _export_fails(checkpoint_dir, out_dir, match, **kwargs):
    with pytest.raises((ValueError, FileNotFoundError, FileExistsError), match=match):
        export_module(checkpoint_dir, out_dir, **kwargs)
    parent = os.path.dirname(str(out_dir))
    leftovers = [n for n in os.listdir(parent) if n.startswith(".")]
    assert leftovers == [], f"temporary folders left behind: {leftovers}"


@pytest.mark.large
def test_existing_output_needs_overwrite(tiny_checkpoint_dir, tmp_path):
    out = tmp_path / "module"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    _export_fails(tiny_checkpoint_dir, out, "already exists.*--overwrite")
    assert (out / "keep.txt").read_text() == "user data"
    # --overwrite replaces only what bert-layer wrote: not a folder holding the user's file...
    _export_fails(tiny_checkpoint_dir, out, "was not written by bert-layer", overwrite=True)
    assert (out / "keep.txt").read_text() == "user data"
    (out / "keep.txt").unlink()  # ...but an empty one, which loses nothing.
    export_module(tiny_checkpoint_dir, out, max_seq_length=16, overwrite=True)
    assert (out / "saved_model.pb").exists()
    assert json.loads((out / ".bert_layer").read_text())["kind"] == "module"


def test_config_disagreeing_with_checkpoint_names_the_variable(tmp_path):
    checkpoint = tmp_path / "ckpt"
    write_checkpoint_folder(str(checkpoint), TINY_CONFIG, TINY_VOCAB,
                            random_weights(TINY_CONFIG, 0))
    config = json.loads((checkpoint / "bert_config.json").read_text())
    config["intermediate_size"] = 40
    (checkpoint / "bert_config.json").write_text(json.dumps(config))
    _export_fails(checkpoint, tmp_path / "module",
                  r"bert/encoder/layer_0/intermediate/dense/kernel has shape \[32, 37\] "
                  r"but the config expects \[32, 40\]")
    assert not (tmp_path / "module").exists()


def test_vocab_disagreeing_with_config(tiny_checkpoint_dir, tmp_path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint_dir, checkpoint)
    with open(checkpoint / "vocab.txt", "a", encoding="utf-8") as f:
        f.write("extra\n")
    _export_fails(checkpoint, tmp_path / "module", "has 100 tokens but the config says "
                  "vocab_size=99")


@pytest.mark.parametrize("missing", ["bert_config.json", "vocab.txt", "bert_model.ckpt.index"])
def test_missing_checkpoint_file_is_named(tiny_checkpoint_dir, tmp_path, missing):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint_dir, checkpoint)
    os.remove(checkpoint / missing)
    expected = "No BERT checkpoint" if missing.endswith(".index") else missing
    _export_fails(checkpoint, tmp_path / "module", expected)


def test_max_seq_length_beyond_position_embeddings(tiny_checkpoint_dir, tmp_path):
    _export_fails(tiny_checkpoint_dir, tmp_path / "module",
                  r"max_seq_length=65 exceeds the 64 position embeddings of the checkpoint .*<= 64",
                  max_seq_length=65)


def test_a_python_tokenizer_cannot_go_into_a_module(tiny_checkpoint_dir, tmp_path):
    _export_fails(tiny_checkpoint_dir, tmp_path / "module",
                  r"tokenizer must be one of \['graph', 'core'\].*'numpy'", tokenizer="numpy")


def test_cli_reports_errors_with_exit_code(tiny_checkpoint_dir, tmp_path):
    out = tmp_path / "module"
    out.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "bert_layer.cli.main", "export", "--checkpoint", tiny_checkpoint_dir,
         "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "bert-layer export: error: Output path already exists" in result.stderr


# === The real default model ===

@pytest.mark.integration
def test_default_module_matches_reference_on_sst2(default_module_dir, default_checkpoint_dir,
                                                  sst2_dev):
    checkpoint = load_checkpoint(default_checkpoint_dir)
    module = hub.load(default_module_dir, tags=set())
    tokenizer = full_tokenizer(checkpoint.vocab_file, True)
    texts = sst2_dev[:16]
    features = reference_features(tokenizer, texts, max_seq_length=128)
    outputs = _run_tokens(module, features)
    sequence, pooled = bert_forward(checkpoint.weights, checkpoint.config, **features)
    np.testing.assert_allclose(outputs["sequence_output"], sequence, atol=1e-4)
    np.testing.assert_allclose(outputs["pooled_output"], pooled, atol=1e-4)


@pytest.mark.integration
def test_default_text_signature_ids_equal_full_tokenizer(default_module_dir, sst2_dev,
                                                         mrpc_dev):
    module = hub.load(default_module_dir, tags=set())
    vocab_file = os.path.join(default_module_dir, "assets", "vocab.txt")
    tokenizer = full_tokenizer(vocab_file, True)
    texts = sst2_dev + [f"{a} ||| {b}" for a, b, _ in mrpc_dev]
    for start in range(0, len(texts), 64):
        batch = texts[start:start + 64]
        outputs = module.signatures["text"](text=tf.constant(batch))
        expected = reference_features(tokenizer, batch, max_seq_length=128)
        for name, value in expected.items():
            np.testing.assert_array_equal(outputs[name].numpy(), value,
                                          err_msg=f"{name}, batch at {start}")
