"""Hugging Face model folders as transformers 4 and 5 write them: vocabulary, casing, weights.

A folder holds `config.json`, the weights (`model.safetensors`, sharded safetensors with
`model.safetensors.index.json`, or the older `pytorch_model.bin`) and the tokenizer:
`vocab.txt` (transformers 4) or only `tokenizer.json` + `tokenizer_config.json`
(transformers 5). Names and shapes are mapped to Google's by `bert_weights`.
"""

from __future__ import annotations

import json
import os

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from bert_layer.export.config import BertConfig, read_json_object
from bert_layer.export.names import hf_weights, variable_specs
from bert_layer.text.vocab import SUFFIX_INDICATOR, UNK_TOKEN, read_vocab_lines

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
VOCAB_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
POOLER_TENSORS = ("pooler.dense.weight", "pooler.dense.bias")


def read_vocab(hf_dir: str) -> tuple[list[str], str]:
    """The WordPiece tokens by id, and the file they came from (vocab.txt or tokenizer.json)."""
    vocab_file = os.path.join(hf_dir, VOCAB_FILE)
    if os.path.isfile(vocab_file):
        return read_vocab_lines(vocab_file), vocab_file
    tokenizer_file = os.path.join(hf_dir, TOKENIZER_FILE)
    if os.path.isfile(tokenizer_file):
        return vocab_from_tokenizer_json(tokenizer_file), tokenizer_file
    raise FileNotFoundError(f"Vocabulary file not found: {vocab_file} (nor {TOKENIZER_FILE} "
                            f"beside it; found {sorted(os.listdir(hf_dir))}).")


def _wordpiece_model(path: str) -> dict:
    model = read_json_object(path, "Hugging Face tokenizer").get("model")
    if not isinstance(model, dict) or model.get("type") != "WordPiece":
        found = model.get("type") if isinstance(model, dict) else model
        raise ValueError(f"{path}: expected a WordPiece tokenizer model (BERT's), "
                         f"found {found!r}.")
    for key, expected in (("continuing_subword_prefix", SUFFIX_INDICATOR),
                          ("unk_token", UNK_TOKEN)):
        if model.get(key, expected) != expected:
            raise ValueError(f"{path}: model.{key} must be {expected!r} (BERT's WordPiece). "
                             f"Received: {model[key]!r}")
    if not isinstance(model.get("vocab"), dict):
        raise ValueError(f"{path}: model.vocab must map tokens to ids.")
    return model


def vocab_from_tokenizer_json(path: str) -> list[str]:
    """The tokens of a `tokenizer.json` WordPiece model in id order (vocab.txt's lines).

    Added tokens with ids past the model's vocabulary (`tokenizer.add_tokens`) follow it,
    as their embedding rows do. The ids must be exactly 0..n-1: a gap or a shared id has
    no vocab.txt line order.
    """
    by_id: dict[int, list[str]] = {}
    for token, index in _wordpiece_model(path)["vocab"].items():
        by_id.setdefault(index, []).append(token)
    with open(path, encoding="utf-8") as f:
        added = json.load(f).get("added_tokens") or []
    for entry in added:
        if entry.get("id") not in by_id:
            by_id[entry.get("id")] = [entry.get("content")]
    shared = {index: tokens for index, tokens in by_id.items() if len(tokens) > 1}
    if shared:
        index, tokens = min(shared.items())
        raise ValueError(f"{path}: each WordPiece id must have one token; id {index} has "
                         f"{tokens}.")
    not_ints = [i for i in by_id if not isinstance(i, int) or isinstance(i, bool)]
    if not_ints:
        raise ValueError(f"{path}: WordPiece ids must be integers; found {not_ints[:3]}.")
    ids = sorted(by_id)
    if ids != list(range(len(ids))):
        gaps = sorted(set(range(len(ids))) - set(ids))[:5]
        raise ValueError(f"{path}: WordPiece ids must be 0..{len(ids) - 1} without gaps "
                         f"(vocab.txt lines are ids); missing ids {gaps}, found "
                         f"{len(ids)} ids up to {ids[-1]}.")
    tokens = [by_id[i][0] for i in ids]
    for index, token in enumerate(tokens):
        if not isinstance(token, str) or not token or token != token.strip():
            raise ValueError(f"{path}: token {token!r} (id {index}) cannot be a vocab.txt "
                             f"line: expected a non-empty string without surrounding space.")
    return tokens


def read_do_lower_case(hf_dir: str) -> bool | None:
    """The tokenizer's lower-casing, as transformers would apply it; None if not stated.

    `tokenizer_config.json`'s `do_lower_case` wins (transformers' BertTokenizer rebuilds
    the normalizer from it); else the `lowercase` of `tokenizer.json`'s BertNormalizer or
    a `Lowercase` normalizer in a sequence.
    """
    config_path = os.path.join(hf_dir, TOKENIZER_CONFIG_FILE)
    if os.path.isfile(config_path):
        value = read_json_object(config_path, "Hugging Face tokenizer config").get(
            "do_lower_case")
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{config_path}: `do_lower_case` must be true or false. "
                             f"Received: {value!r}")
        if value is not None:
            return value
    tokenizer_path = os.path.join(hf_dir, TOKENIZER_FILE)
    if not os.path.isfile(tokenizer_path):
        return None
    normalizer = read_json_object(tokenizer_path, "Hugging Face tokenizer").get("normalizer")
    parts = normalizer.get("normalizers", [normalizer]) if isinstance(normalizer, dict) else []
    for part in parts:
        if part.get("type") == "BertNormalizer":
            return bool(part.get("lowercase", True))
        if part.get("type") == "Lowercase":
            return True
    return None if normalizer is None else False


def _load_safetensors(path: str) -> dict[str, np.ndarray]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, TypeError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}).") from None


def _load_sharded_safetensors(index_path: str) -> dict[str, np.ndarray]:
    weight_map = read_json_object(index_path, "safetensors index").get("weight_map")
    if not isinstance(weight_map, dict):
        raise ValueError(f"{index_path}: expected a `weight_map` of tensor -> shard file.")
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = os.path.join(os.path.dirname(index_path), shard)
        if not os.path.isfile(shard_path):
            raise FileNotFoundError(f"Hugging Face weights not found: {shard_path} "
                                    f"(listed in {index_path}).")
        tensors.update(_load_safetensors(shard_path))
    return tensors


def _load_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ValueError(
            f"{path}: reading pytorch_model.bin needs PyTorch (pip install torch); or save "
            f"the model as safetensors first (transformers' save_pretrained writes "
            f"model.safetensors).") from None
    try:
        # weights_only: a .bin file is a pickle; never run code from it.
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises many kinds (UnpicklingError, RuntimeError, ...).
        raise ValueError(f"{path}: not a readable PyTorch state dict ({e}).") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors, found "
                         f"{type(state).__name__}.")
    return {name: value.detach().float().numpy() if value.is_floating_point()
            else value.numpy() for name, value in state.items() if torch.is_tensor(value)}


def read_tensors(hf_dir: str) -> tuple[dict[str, np.ndarray], str]:
    """Every tensor of the folder's weights, and the file read (safetensors first)."""
    for name, load in ((SAFETENSORS_FILE, _load_safetensors),
                       (SAFETENSORS_INDEX_FILE, _load_sharded_safetensors),
                       (TORCH_FILE, _load_torch)):
        path = os.path.join(hf_dir, name)
        if os.path.isfile(path):
            return load(path), path
    raise FileNotFoundError(
        f"Hugging Face weights not found in {hf_dir}: expected {SAFETENSORS_FILE}, "
        f"{SAFETENSORS_INDEX_FILE} or {TORCH_FILE} (found {sorted(os.listdir(hf_dir))}).")


def strip_prefix(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Task models (`BertFor*`) store the body under `prefix` ("bert."); base models do not."""
    return {name.removeprefix(prefix): value for name, value in tensors.items()}


def bert_weights(tensors: dict[str, np.ndarray], config: BertConfig,
                 source: str) -> dict[str, np.ndarray]:
    """Hugging Face `BertModel` tensors renamed and transposed to Google's layout.

    The pooler is optional as a whole (task models such as BertForTokenClassification
    have none); other tensors beyond the encoder (heads, buffers) are ignored.
    """
    pooler = any(name in tensors for name in POOLER_TENSORS)
    return hf_weights(variable_specs(config, pooler=pooler), tensors, source)
