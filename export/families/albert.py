"""ALBERT: Google's checkpoints (`albert_config.json`, a SentencePiece model) and Hugging Face's.

ALBERT is BERT's maths with two differences, both graph switches of module_fn: embeddings of
`embedding_size` (128 in every release) projected to the hidden size by
`bert/encoder/embedding_hidden_mapping_in`, and one layer's weights shared by every depth
(`bert/encoder/transformer/group_0/inner_group_0/...`). Released models have one layer group
of one inner layer; other layouts (`num_hidden_groups`, `inner_group_num` > 1) are refused.
The vocabulary is a SentencePiece model (`30k-clean.model` in Google's folders, `spiece.model`
in Hugging Face's), tokenized by bert_layer.text.sentencepiece.
"""

from __future__ import annotations

from bert_layer.export.config import BertConfig
from bert_layer.export.families import SENTENCEPIECE, Family
from bert_layer.export.module_fn import Architecture, LayerScopes
from bert_layer.export.names import (
    POOLER_PREFIX,
    VariableSpec,
    dense_specs,
    embedding_specs,
    layer_norm_specs,
)

LAYER_SCOPE = "encoder/transformer/group_0/inner_group_0"
PROJECTION = "encoder/embedding_hidden_mapping_in"
ARCHITECTURE = Architecture(
    scope="bert", layer_scope=LAYER_SCOPE, embedding_projection=PROJECTION,
    layer=LayerScopes(attention="attention_1", attention_output="attention_1/output/dense",
                      attention_norm="LayerNorm", intermediate="ffn_1/intermediate/dense",
                      output="ffn_1/intermediate/output/dense", output_norm="LayerNorm_1"))
GOOGLE_CONFIG_FILE = "albert_config.json"
# Google's ALBERT config keys that select layouts other than the released ones, with the one
# value the exported graph computes.
_LAYOUT_KEYS = {"num_hidden_groups": 1, "inner_group_num": 1, "net_structure_type": 0,
                "gap_size": 0, "num_memory_blocks": 0, "down_scale_factor": 1}
_HEAD_KEYS = ("classifier_dropout_prob",)  # AlbertConfig's task heads, not the encoder.


def albert_specs(config: BertConfig, pooler: bool = True) -> list[VariableSpec]:
    """Every variable of an ALBERT model: the shared layer appears once."""
    e, h, i = config.embedding_width, config.hidden_size, config.intermediate_size
    g = f"bert/{LAYER_SCOPE}/"
    f = "encoder.albert_layer_groups.0.albert_layers.0."
    specs = [
        *embedding_specs(config, "bert/embeddings"),
        *dense_specs(f"bert/{PROJECTION}", "encoder.embedding_hidden_mapping_in", e, h),
        *dense_specs(g + "attention_1/self/query", f + "attention.query", h, h),
        *dense_specs(g + "attention_1/self/key", f + "attention.key", h, h),
        *dense_specs(g + "attention_1/self/value", f + "attention.value", h, h),
        *dense_specs(g + "attention_1/output/dense", f + "attention.dense", h, h),
        *layer_norm_specs(g + "LayerNorm", f + "attention.LayerNorm", h),
        *dense_specs(g + "ffn_1/intermediate/dense", f + "ffn", h, i),
        *dense_specs(g + "ffn_1/intermediate/output/dense", f + "ffn_output", i, h),
        *layer_norm_specs(g + "LayerNorm_1", f + "full_layer_layer_norm", h),
    ]
    if pooler:
        specs += dense_specs(POOLER_PREFIX + "dense", "pooler", h, h)
    return specs


def _check_layout(values: dict, source: str) -> dict:
    """`values` without ALBERT's layout keys, which must have the released layout's values."""
    for key, expected in _LAYOUT_KEYS.items():
        if values.get(key, expected) != expected:
            raise ValueError(f"{source}: `{key}` must be {expected!r} (released ALBERT models "
                             f"share one layer group of one layer). Received: {values[key]!r}")
    values = {k: v for k, v in values.items() if k not in _LAYOUT_KEYS and k not in _HEAD_KEYS}
    embedding_size = values.get("embedding_size")
    if embedding_size is None or embedding_size == values.get("hidden_size", 768):
        raise ValueError(f"{source}: ALBERT's `embedding_size` must be set and differ from "
                         f"`hidden_size` (Google's code skips embedding_hidden_mapping_in when "
                         f"they are equal, Hugging Face's applies it). Received: "
                         f"embedding_size={embedding_size!r}")
    return values


def read_config(path: str | None, values: dict | None,
                shapes: dict) -> tuple[BertConfig, tuple[str, ...]]:
    if values is None:
        raise FileNotFoundError(f"ALBERT config not found: expected {GOOGLE_CONFIG_FILE} "
                                f"(Google's) or bert_config.json (written by convert) beside "
                                f"the checkpoint.")
    values = _check_layout(values, path)
    notes = ()
    if path.endswith(GOOGLE_CONFIG_FILE) and values.get("hidden_act") == "gelu":
        # Google's ALBERT code computes "gelu" as the tanh approximation (its modeling.gelu);
        # Hugging Face's ALBERT configs say gelu_new for the same models.
        values = {**values, "hidden_act": "gelu_new"}
        notes = (f"{GOOGLE_CONFIG_FILE}: hidden_act \"gelu\" is Google's tanh approximation "
                 f"in ALBERT's code; exported as gelu_new.",)
    return BertConfig.from_dict(values, source=path), notes


def hf_config_values(values: dict, source: str) -> dict:
    return _check_layout(values, source)


FAMILY = Family(
    name="albert", architecture=ARCHITECTURE, vocabulary=SENTENCEPIECE,
    vocab_files=("30k-clean.model", "spiece.model"),
    config_files=("bert_config.json", GOOGLE_CONFIG_FILE), variable_specs=albert_specs,
    read_config=read_config, hf_prefix="albert.", hf_pooler_tensors=("pooler.weight",),
    hf_config_values=hf_config_values, pooler_scope=POOLER_PREFIX)
