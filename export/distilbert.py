"""DistilBERT folders read as BERT: config keys and tensor names renamed, token types added.

DistilBERT's maths is BERT's encoder (word + position embeddings, LayerNorm, post-LayerNorm
blocks) without token-type embeddings and without a pooler. So a DistilBERT checkpoint is
a BERT checkpoint with `type_vocab_size` 2 and all-zero token-type embeddings (segment 1
then adds nothing, as in DistilBERT), and no `bert/pooler/*`: the module's pooled_output is
then the first token's state (see `bert_layer.export.module_fn.bert_model`).
"""

from __future__ import annotations

import re

import numpy as np

# DistilBertConfig key -> BertConfig key. `vocab_size`, `max_position_embeddings` and
# `initializer_range` keep their names; other keys go through config.KEY_RULES.
_CONFIG_KEYS = {
    "dim": "hidden_size",
    "n_layers": "num_hidden_layers",
    "n_heads": "num_attention_heads",
    "hidden_dim": "intermediate_size",
    "activation": "hidden_act",
    "dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
}
# transformers' DistilBERT builds every LayerNorm with eps=1e-12, not from its config.
_LAYER_NORM_EPS = 1e-12
TYPE_VOCAB_SIZE = 2  # Room for BERT's two segments; their embeddings are zeros.
PREFIX = "distilbert."  # Of DistilBertFor* task models; DistilBertModel has none.

# DistilBERT's name inside `transformer.layer.N.` -> BERT's inside `encoder.layer.N.`.
_LAYER_NAMES = {
    "attention.q_lin": "attention.self.query",
    "attention.k_lin": "attention.self.key",
    "attention.v_lin": "attention.self.value",
    "attention.out_lin": "attention.output.dense",
    "sa_layer_norm": "attention.output.LayerNorm",
    "ffn.lin1": "intermediate.dense",
    "ffn.lin2": "output.dense",
    "output_layer_norm": "output.LayerNorm",
}
_LAYER_TENSOR = re.compile(r"transformer\.layer\.(\d+)\.(.+)\.(weight|bias)")


def bert_config_values(values: dict, source: str) -> dict:
    """A DistilBertConfig's keys as BertConfig's, with BERT's fixed DistilBERT settings."""
    clashes = sorted(key for key in _CONFIG_KEYS if _CONFIG_KEYS[key] in values and key in values)
    if clashes:
        key = clashes[0]
        raise ValueError(f"{source}: `{key}` and `{_CONFIG_KEYS[key]}` both set BertConfig's "
                         f"`{_CONFIG_KEYS[key]}`; a DistilBERT config has only `{key}`.")
    renamed = {_CONFIG_KEYS.get(key, key): value for key, value in values.items()}
    return {**renamed, "type_vocab_size": TYPE_VOCAB_SIZE, "layer_norm_eps": _LAYER_NORM_EPS}


def bert_tensors(tensors: dict[str, np.ndarray], hidden_size: int) -> dict[str, np.ndarray]:
    """DistilBERT tensors (prefix already stripped) under Hugging Face BertModel's names.

    Embedding tensors keep their names; zero token-type embeddings are added. Names that
    are not DistilBERT's encoder (heads, buffers) pass through and are ignored later.
    """
    renamed = {}
    for name, value in tensors.items():
        match = _LAYER_TENSOR.fullmatch(name)
        if match and match.group(2) in _LAYER_NAMES:
            index, part, kind = match.groups()
            name = f"encoder.layer.{index}.{_LAYER_NAMES[part]}.{kind}"
        renamed[name] = value
    renamed["embeddings.token_type_embeddings.weight"] = np.zeros(
        (TYPE_VOCAB_SIZE, hidden_size), np.float32)
    return renamed
