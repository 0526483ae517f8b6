"""Hugging Face BERT, DistilBERT, ELECTRA, ALBERT and MPNet folders to Google-format
checkpoints.

Reading the folder (files, vocabulary, casing, weights) is `bert_layer.export.hf`; the
DistilBERT names are `bert_layer.export.distilbert`, MPNet's `bert_layer.export.families.mpnet`.
This module picks the model type, checks the pieces agree and writes the Google folder
atomically.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from bert_layer.export import distilbert, families, hf
from bert_layer.export.checkpoint import (
    SP_MODEL_FILE,
    check_vocab,
    has_pooler,
    write_checkpoint_folder,
)
from bert_layer.export.config import (
    BertConfig,
    read_do_lower_case,
    read_json_object,
    read_keep_accents,
)
from bert_layer.export.default_model import (  # noqa: F401  (re-exported)
    default_model_dir,
    default_model_folder,
)
from bert_layer.export.families import mpnet
from bert_layer.export.names import hf_weights
from bert_layer.outputs import atomic_output, check_output_free

MODEL_TYPES = ("bert", "distilbert", "electra", "albert", mpnet.MODEL_TYPE)


def read_hf_config(path: str) -> tuple[str, BertConfig]:
    """The model type (`MODEL_TYPES`) and its sizes as a BertConfig."""
    values = read_json_object(path, "Hugging Face config")
    model_type = values.get("model_type", "bert")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"{path}: model_type must be one of {list(MODEL_TYPES)}. "
                         f"Received: {model_type!r}")
    if model_type == "distilbert":
        values = distilbert.bert_config_values(values, source=path)
    elif model_type in ("electra", "albert", mpnet.MODEL_TYPE):
        values = families.family(model_type).hf_config_values(values, path)
    return model_type, BertConfig.from_dict(values, source=path)


def read_hf_weights(hf_dir: str, model_type: str,
                    config: BertConfig) -> dict[str, np.ndarray]:
    """The folder's encoder weights under Google's names (pooler only if it has one)."""
    tensors, source = hf.read_tensors(hf_dir)
    if model_type == "distilbert":
        tensors = distilbert.bert_tensors(hf.strip_prefix(tensors, distilbert.PREFIX),
                                          config.hidden_size)
    elif model_type in ("electra", "albert"):
        family = families.family(model_type)
        tensors = hf.strip_prefix(tensors, family.hf_prefix)
        pooler = any(name in tensors for name in family.hf_pooler_tensors)
        return hf_weights(family.variable_specs(config, pooler), tensors, source)
    elif model_type == mpnet.MODEL_TYPE:  # BERT's names after renaming, plus the bias.
        tensors = mpnet.bert_tensors(hf.strip_prefix(tensors, mpnet.PREFIX), config.hidden_size)
    else:
        tensors = hf.strip_prefix(tensors, "bert.")
    return hf.bert_weights(tensors, config, source)


def _read_sentencepiece(hf_dir: str) -> tuple[str, bool | None, bool | None]:
    """ALBERT's SentencePiece model, `do_lower_case` and `keep_accents` from the folder."""
    path = os.path.join(hf_dir, SP_MODEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SentencePiece model not found: {path} (ALBERT's vocabulary; found "
            f"{sorted(os.listdir(hf_dir))}). A folder with only tokenizer.json has no "
            f"SentencePiece model to tokenize with: copy the model's spiece.model beside it.")
    tokenizer_config = os.path.join(hf_dir, hf.TOKENIZER_CONFIG_FILE)
    values = (read_json_object(tokenizer_config, "Hugging Face tokenizer config")
              if os.path.isfile(tokenizer_config) else {})
    return (path, read_do_lower_case(values, tokenizer_config),
            read_keep_accents(values, tokenizer_config))


@dataclasses.dataclass(frozen=True)
class ConvertResult:
    out_dir: str
    model_type: str
    do_lower_case: bool | None  # As recorded in the output's bert_config.json.
    has_pooler: bool
    vocab_source: str  # vocab.txt or tokenizer.json


def convert_folder(hf_dir: str, out_dir: str, *, overwrite: bool = False,
                   do_lower_case: bool | None = None) -> ConvertResult:
    """Converts a Hugging Face BERT, DistilBERT, ELECTRA, ALBERT or MPNet folder into a
    Google-format folder (ELECTRA's and ALBERT's in their Google variable names, MPNet's in
    BERT's plus its relative position bias; see export.families).

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
    family = "bert" if model_type == "distilbert" else model_type
    vocab, sp_model_file, keep_accents = None, None, None
    if families.family(family).vocabulary == families.SENTENCEPIECE:
        sp_model_file, found_lower_case, keep_accents = _read_sentencepiece(hf_dir)
        vocab_source = sp_model_file
        check_vocab(sp_model_file, config, families.family(family))
        do_lower_case = found_lower_case if do_lower_case is None else do_lower_case
    else:
        vocab, vocab_source = hf.read_vocab(hf_dir)
        if len(vocab) != config.vocab_size:
            raise ValueError(f"{vocab_source} has {len(vocab)} tokens but {config_file} says "
                             f"vocab_size={config.vocab_size}; they must agree.")
    if do_lower_case is None:
        do_lower_case = hf.read_do_lower_case(hf_dir)
    weights = read_hf_weights(hf_dir, model_type, config)
    with atomic_output(out_dir, overwrite=overwrite, kind="checkpoint", inputs=[hf_dir]) as tmp:
        write_checkpoint_folder(tmp, config, vocab, weights, do_lower_case=do_lower_case,
                                family=family, sp_model_file=sp_model_file,
                                keep_accents=keep_accents)
    return ConvertResult(out_dir=out_dir, model_type=model_type, do_lower_case=do_lower_case,
                         has_pooler=has_pooler(weights), vocab_source=vocab_source)


def convert_hf_to_google(hf_dir: str, out_dir: str, *, overwrite: bool = False,
                         do_lower_case: bool | None = None) -> str:
    """`convert_folder`, returning only the output folder."""
    return convert_folder(hf_dir, out_dir, overwrite=overwrite,
                          do_lower_case=do_lower_case).out_dir
