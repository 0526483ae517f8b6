"""ELECTRA: Google's checkpoints (the discriminator under `electra/`) and Hugging Face's.

ELECTRA's discriminator is BERT's encoder under the scope `electra/`, without a pooler
(pooled_output is the first token's state), with embeddings of `embedding_size` projected
to the hidden size by `electra/embeddings_project` when the two differ (ELECTRA-small: 128
and 256). Google's release ships no config file: a `bert_config.json` beside the checkpoint
(BERT's keys plus `embedding_size`, as Hugging Face's conversion takes it) is read when
present; otherwise the sizes are read off the variable shapes, with 64 values per attention
head as ELECTRA-small, -base and -large have, and the inference is reported.
"""

from __future__ import annotations

import re

from bert_layer.export.config import BertConfig
from bert_layer.export.families import WORDPIECE, Family
from bert_layer.export.module_fn import Architecture
from bert_layer.export.names import dense_specs, variable_specs

SCOPE = "electra"
PROJECTION = "embeddings_project"
ARCHITECTURE = Architecture(scope=SCOPE, embedding_projection=PROJECTION)
SIZE_PER_HEAD = 64  # ELECTRA-small (256 / 4), -base (768 / 12), -large (1024 / 16).
# ElectraConfig's keys for its task heads (sequence summary), not the encoder.
_HEAD_KEYS = ("summary_type", "summary_use_proj", "summary_activation",
              "summary_last_dropout")


def electra_specs(config: BertConfig, pooler: bool = False) -> list:
    """BERT's variables under `electra/`, no pooler, plus the embedding projection (E != H)."""
    specs = []
    for spec in variable_specs(config, pooler=False):
        specs.append(type(spec)(SCOPE + spec.name[len("bert"):], spec.shape, spec.hf_name,
                                spec.transpose))
    if config.embedding_width != config.hidden_size:
        specs[5:5] = dense_specs(f"{SCOPE}/{PROJECTION}", PROJECTION, config.embedding_width,
                                 config.hidden_size)  # After the embeddings, as in the graph.
    return specs


def infer_config(shapes: dict) -> tuple[BertConfig, str]:
    """The sizes of Google's released ELECTRA checkpoints, read off their variable shapes."""
    def shape(name: str) -> list:
        if f"{SCOPE}/{name}" not in shapes:
            raise ValueError(f"No config beside the checkpoint and no variable {SCOPE}/{name} "
                             f"to infer sizes from: write a bert_config.json beside it.")
        return list(shapes[f"{SCOPE}/{name}"])
    vocab_size, embedding_size = shape("embeddings/word_embeddings")
    hidden_size = shape("encoder/layer_0/attention/self/query/kernel")[1]
    layers = {int(m.group(1)) for n in shapes
              if (m := re.match(rf"{SCOPE}/encoder/layer_(\d+)/", n))}
    if hidden_size % SIZE_PER_HEAD:
        raise ValueError(f"No config beside the checkpoint, and its hidden size {hidden_size} "
                         f"is not a multiple of {SIZE_PER_HEAD} (ELECTRA's size per head), so "
                         f"the number of attention heads cannot be inferred: write a "
                         f"bert_config.json (BERT's keys plus embedding_size) beside it.")
    values = dict(
        vocab_size=vocab_size, embedding_size=embedding_size, hidden_size=hidden_size,
        num_hidden_layers=max(layers) + 1,
        num_attention_heads=hidden_size // SIZE_PER_HEAD,
        intermediate_size=shape("encoder/layer_0/intermediate/dense/kernel")[1],
        max_position_embeddings=shape("embeddings/position_embeddings")[0],
        type_vocab_size=shape("embeddings/token_type_embeddings")[0])
    sizes = ", ".join(f"{k}={v}" for k, v in values.items() if k != "num_attention_heads")
    note = (f"No config beside the ELECTRA checkpoint: inferred {sizes} from the variable "
            f"shapes, and num_attention_heads={values['num_attention_heads']} as hidden_size/"
            f"{SIZE_PER_HEAD} (ELECTRA's releases); hidden_act gelu, layer_norm_eps 1e-12. "
            f"Write a bert_config.json beside it if these are wrong.")
    return BertConfig(**values), note


def read_config(path: str | None, values: dict | None,
                shapes: dict) -> tuple[BertConfig, tuple[str, ...]]:
    if values is None:
        config, note = infer_config(shapes)
        return config, (note,)
    return BertConfig.from_dict(values, source=path), ()


def hf_config_values(values: dict, source: str) -> dict:
    """ElectraConfig's keys as BertConfig's: the task heads' summary settings dropped."""
    return {k: v for k, v in values.items() if k not in _HEAD_KEYS}


FAMILY = Family(
    name="electra", architecture=ARCHITECTURE, vocabulary=WORDPIECE, vocab_files=("vocab.txt",),
    config_files=("bert_config.json",), variable_specs=electra_specs, read_config=read_config,
    hf_prefix="electra.", hf_pooler_tensors=(), hf_config_values=hf_config_values,
    pooler_scope=None)
