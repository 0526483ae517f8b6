"""Google's BERT variable names and shapes: the checkpoint contract, in one table.

Names are kept verbatim (`LayerNorm/gamma`, `self/query`) because every Google
checkpoint and TF1 Hub module uses them; `hf_name` gives the Hugging Face
`BertModel` name of the same tensor, and `transpose` says that Hugging Face
stores the dense kernel as [out, in] where Google stores [in, out].
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bert_layer.export.config import BertConfig

ENCODER_LAYER_PREFIX = "bert/encoder/layer_{}/"
MODEL_SCOPE = "bert/"
POOLER_PREFIX = "bert/pooler/"
# MPNet's relative position bias [buckets, N], shared by all layers. Under embeddings/ (no
# Google name exists): like the embeddings it feeds every layer, so `tune_embeddings` trains it.
RELATIVE_ATTENTION_BIAS = "bert/embeddings/relative_attention_bias"


@dataclasses.dataclass(frozen=True)
class VariableSpec:
    name: str  # Google's name, e.g. "bert/encoder/layer_0/attention/self/query/kernel".
    shape: tuple[int, ...]
    hf_name: str  # Hugging Face's name, e.g. "encoder.layer.0.attention.self.query.weight".
    transpose: bool = False


def dense_specs(google: str, hf: str, n_in: int, n_out: int) -> list[VariableSpec]:
    return [VariableSpec(f"{google}/kernel", (n_in, n_out), f"{hf}.weight", transpose=True),
            VariableSpec(f"{google}/bias", (n_out,), f"{hf}.bias")]


def layer_norm_specs(google: str, hf: str, size: int) -> list[VariableSpec]:
    return [VariableSpec(f"{google}/gamma", (size,), f"{hf}.weight"),
            VariableSpec(f"{google}/beta", (size,), f"{hf}.bias")]


def embedding_specs(config: BertConfig, google_scope: str) -> list[VariableSpec]:
    """Word, token-type and position embeddings and their LayerNorm, `embedding_width` wide."""
    e = config.embedding_width
    return [
        VariableSpec(f"{google_scope}/word_embeddings", (config.vocab_size, e),
                     "embeddings.word_embeddings.weight"),
        VariableSpec(f"{google_scope}/token_type_embeddings", (config.type_vocab_size, e),
                     "embeddings.token_type_embeddings.weight"),
        VariableSpec(f"{google_scope}/position_embeddings", (config.max_position_embeddings, e),
                     "embeddings.position_embeddings.weight"),
        *layer_norm_specs(f"{google_scope}/LayerNorm", "embeddings.LayerNorm", e),
    ]


def variable_specs(config: BertConfig, pooler: bool = True) -> list[VariableSpec]:
    """Every variable of a BERT model with `config`, in graph-building order.

    `pooler=False` leaves out `bert/pooler/*`: checkpoints of token-level task models
    (token classification, question answering), TinyBERT and DistilBERT have none.
    """
    h, i = config.hidden_size, config.intermediate_size
    specs = embedding_specs(config, "bert/embeddings")
    if config.relative_attention_num_buckets:  # MPNet: one bias per bucket and head.
        specs.append(VariableSpec(
            RELATIVE_ATTENTION_BIAS, (config.relative_attention_num_buckets,
                                      config.num_attention_heads),
            "encoder.relative_attention_bias.weight"))
    for n in range(config.num_hidden_layers):
        g, f = ENCODER_LAYER_PREFIX.format(n), f"encoder.layer.{n}."
        specs += [
            *dense_specs(g + "attention/self/query", f + "attention.self.query", h, h),
            *dense_specs(g + "attention/self/key", f + "attention.self.key", h, h),
            *dense_specs(g + "attention/self/value", f + "attention.self.value", h, h),
            *dense_specs(g + "attention/output/dense", f + "attention.output.dense", h, h),
            *layer_norm_specs(g + "attention/output/LayerNorm",
                              f + "attention.output.LayerNorm", h),
            *dense_specs(g + "intermediate/dense", f + "intermediate.dense", h, i),
            *dense_specs(g + "output/dense", f + "output.dense", i, h),
            *layer_norm_specs(g + "output/LayerNorm", f + "output.LayerNorm", h),
        ]
    if pooler:
        specs += dense_specs(POOLER_PREFIX + "dense", "pooler.dense", h, h)
    return specs


# Variables of Google's training scripts that are not the encoder, by group. The checks run
# in order; names no rule claims are grouped by their top scope (see `left_out_group`).
_LEFT_OUT_GROUPS = (
    (lambda n: n.endswith(("/adam_m", "/adam_v")), "Adam slots */adam_m, */adam_v"),
    (lambda n: n == "global_step", "global_step"),
    (lambda n: n in ("output_weights", "output_bias"),
     "classifier head output_weights, output_bias"),
    (lambda n: n.startswith("cls/"), None),  # Heads: cls/predictions, cls/seq_relationship, ...
)


def left_out_group(name: str, scope: str = MODEL_SCOPE) -> str | None:
    """The group a checkpoint variable outside the encoder belongs to; None for `scope`
    (`bert/*`; ELECTRA's discriminator: `electra/*`).

    Export keeps only BERT's encoder and pooler; everything else in a checkpoint (the
    pre-training heads of Google's releases, a `run_classifier.py` head, optimizer state)
    is left out and reported by group. A variable under `bert/` is never left out: if it
    is not in `variable_specs`, the checkpoint is not the model its config describes.
    """
    for matches, label in _LEFT_OUT_GROUPS:
        if matches(name):
            return label or "/".join(name.split("/")[:2]) + "/*"
    if name.startswith(scope):
        return None
    return name.split("/")[0] + ("/*" if "/" in name else "")


def hf_weights(specs: list[VariableSpec], tensors: dict[str, np.ndarray],
               source: str) -> dict[str, np.ndarray]:
    """Hugging Face tensors renamed and transposed to Google's names, checked against `specs`."""
    weights = {}
    for spec in specs:
        if spec.hf_name not in tensors:
            raise ValueError(f"{source}: tensor {spec.hf_name} (for {spec.name}) is missing.")
        value = tensors[spec.hf_name].astype(np.float32)
        value = value.T if spec.transpose else value
        if tuple(value.shape) != spec.shape:
            raise ValueError(
                f"{source}: tensor {spec.hf_name} has shape {list(value.shape)} after "
                f"conversion but {spec.name} needs {list(spec.shape)} for this config.")
        weights[spec.name] = np.ascontiguousarray(value)
    return weights
