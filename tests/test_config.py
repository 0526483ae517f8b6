"""Tests for export/config.py: `BertConfig` reads, checks and writes bert_config.json."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
from tiny import TINY_CONFIG

from bert_layer.export.config import KEY_RULES, BertConfig, ConfigKeyWarning


def tiny_values(**changes) -> dict:
    return {**TINY_CONFIG.to_dict(), **changes}


def test_from_dict_round_trip_keeps_every_field():
    values = tiny_values(hidden_act="relu", hidden_dropout_prob=0.25, layer_norm_eps=1e-6)
    config = BertConfig.from_dict(values)
    assert config.to_dict() == values
    assert config.size_per_head == 8  # 32 / 4


def test_defaults_are_bert_base_apart_from_vocab():
    config = BertConfig(vocab_size=30522)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.intermediate_size, config.max_position_embeddings) == (768, 12, 12, 3072, 512)
    assert config.hidden_act == "gelu"
    assert config.layer_norm_eps == 1e-12


def test_unknown_keys_warn_once_each_naming_the_file_and_key():
    with pytest.warns(ConfigKeyWarning) as caught:
        config = BertConfig.from_dict(tiny_values(hiden_size=32, zzz=1), source="cfg.json")
    assert config == TINY_CONFIG
    assert [str(w.message).split(" ignored")[0] for w in caught] == [
        "cfg.json: unknown key `hiden_size`", "cfg.json: unknown key `zzz`"]
    assert all("\n" not in str(w.message) for w in caught)


# The keys of Google's multilingual_L-12_H-768_A-12 and chinese_L-12_H-768_A-12 configs.
GOOGLE_RELEASE_KEYS = {"directionality": "bidi", "pooler_fc_size": 768,
                       "pooler_num_attention_heads": 12, "pooler_num_fc_layers": 3,
                       "pooler_size_per_head": 128, "pooler_type": "first_token_transform"}
HF_KEYS = {"tie_word_embeddings": True, "classifier_dropout": None, "use_cache": True,
           "torch_dtype": "float32", "dtype": "float32", "model_type": "bert",
           "architectures": ["BertModel"], "transformers_version": "5.24.0",
           "position_embedding_type": "absolute", "is_decoder": False}


@pytest.mark.parametrize("extra", [GOOGLE_RELEASE_KEYS, HF_KEYS])
def test_harmless_keys_are_accepted_silently(extra):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert BertConfig.from_dict(tiny_values(**extra)) == TINY_CONFIG


@pytest.mark.parametrize("key, value, why", [
    ("position_embedding_type", "relative_key", "relative ones change every attention score"),
    ("is_decoder", True, "masks attention causally"),
    ("add_cross_attention", True, "cross-attention layers"),
])
def test_keys_that_change_the_architecture_are_errors_saying_why(key, value, why):
    with pytest.raises(ValueError, match=rf"cfg.json: `{key}` must be .* \(.*{why}.*\)\. "
                                         rf"Received: {value!r}"):
        BertConfig.from_dict(tiny_values(**{key: value}), source="cfg.json")


def test_every_rule_is_harmless_or_names_its_value():
    for key, (kind, rule) in KEY_RULES.items():
        assert kind in ("harmless", "required"), key
        assert isinstance(rule, str if kind == "harmless" else tuple), key


def test_extra_keys_to_write_must_be_in_the_rules(tmp_path):
    TINY_CONFIG.to_json_file(tmp_path / "a.json", do_lower_case=True)
    assert json.loads((tmp_path / "a.json").read_text())["do_lower_case"] is True
    with pytest.raises(ValueError, match=r"extra keys \['casing'\] .* not in KEY_RULES"):
        TINY_CONFIG.to_json_file(tmp_path / "b.json", casing=True)


def test_missing_vocab_size_is_named():
    values = tiny_values()
    del values["vocab_size"]
    with pytest.raises(ValueError, match="required key `vocab_size` is missing"):
        BertConfig.from_dict(values)


def test_hidden_size_must_be_divisible_by_heads():
    with pytest.raises(ValueError, match=r"`hidden_size` \(32\) must be divisible by "
                                         r"`num_attention_heads` \(5\)"):
        dataclasses.replace(TINY_CONFIG, num_attention_heads=5)


@pytest.mark.parametrize("name, value", [
    ("vocab_size", 0), ("hidden_size", -32), ("num_hidden_layers", 2.0),
    ("intermediate_size", True), ("type_vocab_size", "2")])
def test_sizes_must_be_positive_integers(name, value):
    with pytest.raises(ValueError, match=f"`{name}` must be a positive integer. "
                                         f"Received: {value!r}"):
        BertConfig.from_dict(tiny_values(**{name: value}))


@pytest.mark.parametrize("name", ["hidden_dropout_prob", "attention_probs_dropout_prob"])
@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_dropout_must_be_a_probability_below_one(name, value):
    with pytest.raises(ValueError, match=rf"`{name}` must be in \[0, 1\). Received: {value}"):
        BertConfig.from_dict(tiny_values(**{name: value}))


def test_unknown_activation_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"`hidden_act` must be one of .*'gelu'.*"
                                         r"Received: 'swish'"):
        BertConfig.from_dict(tiny_values(hidden_act="swish"))


def test_json_file_round_trip(tmp_path):
    path = tmp_path / "bert_config.json"
    TINY_CONFIG.to_json_file(path)
    assert json.loads(path.read_text(encoding="utf-8"))["intermediate_size"] == 37
    assert BertConfig.from_json_file(path) == TINY_CONFIG


def test_google_config_without_epsilon_reads(tmp_path):
    # Google's bert_config.json files have no layer_norm_eps; modeling.py uses 1e-12.
    values = tiny_values()
    del values["layer_norm_eps"]
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    assert BertConfig.from_json_file(path).layer_norm_eps == 1e-12


def test_missing_json_file_is_named(tmp_path):
    path = tmp_path / "nowhere" / "bert_config.json"
    with pytest.raises(FileNotFoundError, match="BERT config not found: .*nowhere"):
        BertConfig.from_json_file(path)


def test_invalid_json_is_named(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text("{vocab_size: 99", encoding="utf-8")
    with pytest.raises(ValueError, match="bert_config.json: not valid JSON"):
        BertConfig.from_json_file(path)


def test_json_that_is_not_an_object_is_rejected(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text("[99, 32]", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a JSON object, found list"):
        BertConfig.from_json_file(path)


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(tiny_values(num_layers=3)), encoding="utf-8")
    with pytest.warns(ConfigKeyWarning, match=r"bert_config.json: unknown key `num_layers` "
                                              r"ignored .*did you mean `num_hidden_layers`"):
        BertConfig.from_json_file(path)
