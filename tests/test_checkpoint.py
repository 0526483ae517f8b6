"""Tests for export/checkpoint.py: Google-format folders, written, read back and checked."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from conftest import TINY_CONFIG, TINY_VOCAB, random_weights
from bert_layer.export.checkpoint import (
    check_weights,
    find_checkpoint_prefix,
    load_checkpoint,
    write_checkpoint,
    write_checkpoint_folder,
)
from bert_layer.export.names import is_optimizer_slot, variable_specs

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


def test_optimizer_slots_are_skipped(tmp_path):
    weights = random_weights(TINY_CONFIG, 3)
    training_state = {"global_step": np.array(1000, np.int64)}
    for name, value in weights.items():
        training_state[name + "/adam_m"] = np.ones_like(value)
        training_state[name + "/adam_v"] = np.ones_like(value)
    write_checkpoint_folder(str(tmp_path), TINY_CONFIG, TINY_VOCAB, weights)
    write_checkpoint({**weights, **training_state}, str(tmp_path / "bert_model.ckpt"))
    checkpoint = load_checkpoint(tmp_path)
    assert list(checkpoint.weights) == list(weights)
    np.testing.assert_array_equal(checkpoint.weights[QUERY_KERNEL], weights[QUERY_KERNEL])


@pytest.mark.parametrize("name, expected", [
    ("global_step", True),
    (QUERY_KERNEL + "/adam_m", True),
    (QUERY_KERNEL + "/adam_v", True),
    (QUERY_KERNEL, False),
    ("bert/embeddings/adam_mode", False),
])
def test_is_optimizer_slot(name, expected):
    assert is_optimizer_slot(name) is expected


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
