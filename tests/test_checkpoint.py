"""Tests for export/checkpoint.py: Google-format folders, written, read back and checked."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from tiny import TINY_CONFIG, TINY_VOCAB, random_weights

from bert_layer.export.checkpoint import (
    check_weights,
    find_checkpoint_prefix,
    load_checkpoint,
    write_checkpoint,
    write_checkpoint_folder,
)
from bert_layer.export.names import left_out_group, variable_specs

QUERY_KERNEL = "bert/encoder/layer_1/attention/self/query/kernel"


@pytest.fixture
def checkpoint_copy(tiny_checkpoint_dir, tmp_path) -> str:
    """A private copy of the tiny checkpoint folder, free to damage."""
    return shutil.copytree(tiny_checkpoint_dir, tmp_path / "checkpoint")


def test_tiny_config_has_every_variable_once():
    names = [spec.name for spec in variable_specs(TINY_CONFIG)]
    # Embeddings 3 + LayerNorm 2; per layer 4 attention denses, 2 ffn denses (2 each),
    # 2 LayerNorms (2 each) = 16; pooler 2.
    assert len(names) == 5 + 3 * 16 + 2
    assert len(set(names)) == len(names)


def test_write_then_load_round_trip(tiny_checkpoint_dir):
    expected = random_weights(TINY_CONFIG, 0)
    checkpoint = load_checkpoint(tiny_checkpoint_dir)
    assert checkpoint.config == TINY_CONFIG
    assert checkpoint.vocab_file == os.path.join(tiny_checkpoint_dir, "vocab.txt")
    with open(checkpoint.vocab_file, encoding="utf-8") as f:
        assert f.read().splitlines() == TINY_VOCAB
    assert list(checkpoint.weights) == [spec.name for spec in variable_specs(TINY_CONFIG)]
    for name, value in expected.items():
        assert checkpoint.weights[name].dtype == np.float32, name
        np.testing.assert_array_equal(checkpoint.weights[name], value, err_msg=name)


def test_check_weights_names_the_variable_and_both_shapes():
    weights = random_weights(TINY_CONFIG, 1)
    weights[QUERY_KERNEL] = np.zeros((32, 31), np.float32)
    with pytest.raises(ValueError, match=rf"test source: variable {QUERY_KERNEL} has shape "
                                         r"\[32, 31\] but the config expects \[32, 32\]"):
        check_weights(weights, TINY_CONFIG, source="test source")


def test_check_weights_lists_missing_and_unexpected_names():
    weights = random_weights(TINY_CONFIG, 1)
    del weights["bert/pooler/dense/bias"]
    weights["bert/encoder/layer_3/output/dense/bias"] = np.zeros(32, np.float32)
    with pytest.raises(ValueError) as raised:
        check_weights(weights, TINY_CONFIG, source="test source")
    message = str(raised.value)
    assert "missing (1): ['bert/pooler/dense/bias']" in message
    assert "unexpected (1): ['bert/encoder/layer_3/output/dense/bias']" in message


def test_check_weights_returns_float32_in_spec_order():
    weights = random_weights(TINY_CONFIG, 2)
    shuffled = {name: weights[name].astype(np.float64) for name in reversed(list(weights))}
    checked = check_weights(shuffled, TINY_CONFIG, source="test")
    assert list(checked) == [spec.name for spec in variable_specs(TINY_CONFIG)]
    assert all(value.dtype == np.float32 for value in checked.values())


def test_vocab_size_mismatch_is_named(checkpoint_copy):
    with open(os.path.join(checkpoint_copy, "vocab.txt"), "a", encoding="utf-8") as f:
        f.write("extra\n")
    with pytest.raises(ValueError, match=r"vocab.txt has 100 tokens but the config says "
                                         r"vocab_size=99"):
        load_checkpoint(checkpoint_copy)


def test_missing_vocab_is_named(checkpoint_copy):
    os.remove(os.path.join(checkpoint_copy, "vocab.txt"))
    with pytest.raises(FileNotFoundError, match="Vocabulary file not found: .*vocab.txt"):
        load_checkpoint(checkpoint_copy)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="Checkpoint folder not found: .*absent"):
        load_checkpoint(tmp_path / "absent")


def test_missing_checkpoint_lists_what_is_there(checkpoint_copy):
    for name in os.listdir(checkpoint_copy):
        if name.startswith("bert_model.ckpt"):
            os.remove(os.path.join(checkpoint_copy, name))
    with pytest.raises(FileNotFoundError, match=r"expected bert_model.ckpt.index .*"
                                                r"found \['bert_config.json', 'vocab.txt'\]"):
        load_checkpoint(checkpoint_copy)


def test_unreadable_checkpoint_is_reported(checkpoint_copy):
    with open(os.path.join(checkpoint_copy, "bert_model.ckpt.index"), "wb") as f:
        f.write(b"not a checkpoint index")
    with pytest.raises(ValueError, match="Cannot read the checkpoint .*bert_model.ckpt"):
        load_checkpoint(checkpoint_copy)


def write_released_checkpoint(directory, weights: dict, extra: dict) -> None:
    """A tiny checkpoint folder whose checkpoint also holds `extra` (heads, slots, ...)."""
    write_checkpoint_folder(str(directory), TINY_CONFIG, TINY_VOCAB, weights)
    write_checkpoint({**weights, **extra}, str(directory / "bert_model.ckpt"))


def google_training_state(weights: dict) -> dict:
    """What Google's run_pretraining.py / run_classifier.py save beside the encoder."""
    rng = np.random.default_rng(5)
    state = {"global_step": np.array(1000, np.int64),
             # run_pretraining.py's heads: masked LM (tied to word embeddings) and next sentence.
             "cls/predictions/output_bias": rng.normal(size=[99]).astype(np.float32),
             "cls/predictions/transform/dense/kernel": np.ones([32, 32], np.float32),
             "cls/predictions/transform/dense/bias": np.ones([32], np.float32),
             "cls/predictions/transform/LayerNorm/gamma": np.ones([32], np.float32),
             "cls/predictions/transform/LayerNorm/beta": np.ones([32], np.float32),
             "cls/seq_relationship/output_weights": np.ones([2, 32], np.float32),
             "cls/seq_relationship/output_bias": np.ones([2], np.float32),
             # run_classifier.py's head.
             "output_weights": np.ones([3, 32], np.float32),
             "output_bias": np.ones([3], np.float32)}
    for name, value in list(weights.items()) + [("output_weights", np.ones([3, 32]))]:
        state[name + "/adam_m"] = np.ones_like(value, dtype=np.float32)
        state[name + "/adam_v"] = np.ones_like(value, dtype=np.float32)
    return state


def test_heads_slots_and_global_step_are_left_out_and_named(tmp_path):
    weights = random_weights(TINY_CONFIG, 3)
    write_released_checkpoint(tmp_path, weights, google_training_state(weights))
    checkpoint = load_checkpoint(tmp_path)
    assert list(checkpoint.weights) == list(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(checkpoint.weights[name], value, err_msg=name)
    slots = 2 * (len(weights) + 1)
    assert dict(checkpoint.left_out) == {
        "Adam slots */adam_m, */adam_v": slots, "cls/predictions/*": 5,
        "cls/seq_relationship/*": 2, "classifier head output_weights, output_bias": 2,
        "global_step": 1}
    summary = checkpoint.left_out_summary()
    assert "\n" not in summary
    assert summary.startswith(f"Left out {slots + 10} variables that are not BERT's encoder: ")
    assert "cls/predictions/* (5)" in summary and "global_step (1)" in summary


def test_nothing_left_out_gives_an_empty_summary(tiny_checkpoint_dir):
    checkpoint = load_checkpoint(tiny_checkpoint_dir)
    assert checkpoint.left_out == () and checkpoint.left_out_summary() == ""


def test_unknown_variable_under_bert_is_still_an_error(tmp_path):
    weights = random_weights(TINY_CONFIG, 3)
    extra = {**google_training_state(weights),
             "bert/encoder/layer_0/attention/self/rel_bias": np.ones([4], np.float32)}
    write_released_checkpoint(tmp_path, weights, extra)
    with pytest.raises(ValueError, match=r"bert_model.ckpt: the variables do not match .*\n"
                                         r"  missing \(0\): \[\]\n  unexpected \(1\): "
                                         r"\['bert/encoder/layer_0/attention/self/rel_bias'\]"):
        load_checkpoint(tmp_path)


def test_misshaped_encoder_variable_beside_heads_names_both_shapes(tmp_path):
    weights = random_weights(TINY_CONFIG, 3)
    training_state = google_training_state(weights)
    weights[QUERY_KERNEL] = np.zeros([32, 30], np.float32)
    write_checkpoint_folder(str(tmp_path), TINY_CONFIG, TINY_VOCAB, random_weights(TINY_CONFIG, 3))
    write_checkpoint({**weights, **training_state}, str(tmp_path / "bert_model.ckpt"))
    with pytest.raises(ValueError, match=rf"variable {QUERY_KERNEL} has shape \[32, 30\] but "
                                         r"the config expects \[32, 32\]"):
        load_checkpoint(tmp_path)


def test_checkpoint_without_pooler_loads_without_it(tmp_path):
    weights = random_weights(TINY_CONFIG, 3)
    encoder = {k: v for k, v in weights.items() if not k.startswith("bert/pooler/")}
    write_checkpoint_folder(str(tmp_path), TINY_CONFIG, TINY_VOCAB, encoder)
    checkpoint = load_checkpoint(tmp_path)
    assert not checkpoint.has_pooler
    assert list(checkpoint.weights) == [s.name for s in variable_specs(TINY_CONFIG, pooler=False)]
    assert len(checkpoint.weights) == len(weights) - 2


def test_half_a_pooler_is_missing_the_other_half():
    weights = random_weights(TINY_CONFIG, 1)
    del weights["bert/pooler/dense/kernel"]
    with pytest.raises(ValueError, match=r"missing \(1\): \['bert/pooler/dense/kernel'\]"):
        check_weights(weights, TINY_CONFIG, source="test source")


@pytest.mark.parametrize("name, expected", [
    ("global_step", "global_step"),
    (QUERY_KERNEL + "/adam_m", "Adam slots */adam_m, */adam_v"),
    ("cls/predictions/output_bias/adam_v", "Adam slots */adam_m, */adam_v"),
    ("cls/squad/output_weights", "cls/squad/*"),
    ("output_bias", "classifier head output_weights, output_bias"),
    ("loss/total", "loss/*"),
    ("beta1_power", "beta1_power"),
    (QUERY_KERNEL, None),
    ("bert/embeddings/adam_mode", None),
])
def test_left_out_group(name, expected):
    assert left_out_group(name) == expected


def test_other_checkpoint_names_are_found(checkpoint_copy):
    for name in os.listdir(checkpoint_copy):
        if name.startswith("bert_model.ckpt"):
            new_name = name.replace("bert_model.ckpt", "model.ckpt-1000")
            os.rename(os.path.join(checkpoint_copy, name), os.path.join(checkpoint_copy, new_name))
    prefix = find_checkpoint_prefix(str(checkpoint_copy))
    assert prefix == os.path.join(checkpoint_copy, "model.ckpt-1000")
    assert load_checkpoint(checkpoint_copy).config == TINY_CONFIG


def test_write_rejects_a_vocab_of_the_wrong_length(tmp_path):
    with pytest.raises(ValueError, match="98 vocab tokens but vocab_size=99"):
        write_checkpoint_folder(str(tmp_path), TINY_CONFIG, TINY_VOCAB[:-1],
                                random_weights(TINY_CONFIG, 0))


def test_write_rejects_weights_of_the_wrong_shape(tmp_path):
    weights = random_weights(TINY_CONFIG, 0)
    weights["bert/embeddings/word_embeddings"] = np.zeros((98, 32), np.float32)
    with pytest.raises(ValueError, match=r"bert/embeddings/word_embeddings has shape \[98, 32\]"):
        write_checkpoint_folder(str(tmp_path / "out"), TINY_CONFIG, TINY_VOCAB, weights)
    assert not os.path.exists(tmp_path / "out")
