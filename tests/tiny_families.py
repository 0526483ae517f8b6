"""Tiny ELECTRA and ALBERT models: Hugging Face's (save_pretrained) and Google's layouts.

No real ELECTRA or ALBERT weights can be installed here, so the tests build random ones:
transformers' ElectraModel / AlbertModel with their weights spread (so every layer changes the
output), saved by `save_pretrained`, and the same weights written under Google's variable
names beside the variables Google's checkpoints also hold (generator, heads, global_step).
The SentencePiece model is trained in the test from the shared data, with ALBERT's options.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
from real_data import DATA_DIR
from tiny import TINY_VOCAB

from bert_layer.export import families
from bert_layer.export.checkpoint import write_checkpoint
from bert_layer.export.config import BertConfig
from bert_layer.export.names import hf_weights

ELECTRA_CONFIG = BertConfig(  # hidden / 64 heads, as the inference from shapes assumes.
    vocab_size=len(TINY_VOCAB), hidden_size=64, num_hidden_layers=2, num_attention_heads=1,
    intermediate_size=37, max_position_embeddings=64, type_vocab_size=2, embedding_size=24)


def albert_config(vocab_size: int) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=3,
                      num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
                      type_vocab_size=2, embedding_size=16, hidden_act="gelu_new")


def training_lines(count: int = 3000) -> list[str]:
    """Sentences of SST-2 train and MRPC train (the dev sets stay unseen)."""
    lines = []
    for parts, columns in ((("sst2", "train.tsv"), (0,)), (("mrpc", "train.tsv"), (3, 4))):
        with open(os.path.join(DATA_DIR, *parts), encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        lines += [row[c] for row in rows[:count] for c in columns if len(row) > c]
    return lines


def train_sp_model(directory: str, name: str = "spiece", vocab_size: int = 1000,
                   lines: list[str] | None = None, **options) -> str:
    """A unigram SentencePiece model with ALBERT's special pieces and ids (pad 0, unk 1,
    [CLS] 2, [SEP] 3, [MASK] 4), trained on `lines` (by default `training_lines()`)."""
    import sentencepiece as spm
    os.makedirs(directory, exist_ok=True)
    options = {"user_defined_symbols": "(,),\",-,.,–,£,€",
               "control_symbols": "[CLS],[SEP],[MASK]", **options}
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_lines() if lines is None else lines),
        model_prefix=os.path.join(directory, name),
        vocab_size=vocab_size, pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
        model_type="unigram", minloglevel=2, character_coverage=0.99995, **options)
    return os.path.join(directory, name + ".model")


def hf_model(model_type: str, config: BertConfig, seed: int):
    """transformers' ElectraModel or AlbertModel with `config`, weights spread randomly."""
    import torch
    import transformers
    values = dict(config.to_dict(), layer_norm_eps=config.layer_norm_eps,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if model_type == "electra":
        model_class, hf_config = transformers.ElectraModel, transformers.ElectraConfig(**values)
    else:
        model_class, hf_config = transformers.AlbertModel, transformers.AlbertConfig(
            **values, num_hidden_groups=1, inner_group_num=1)
    torch.manual_seed(seed)
    model = model_class(hf_config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    return model


def save_hf_folder(directory: str, model, *, vocab: list[str] | None = None,
                   sp_model_file: str | None = None, do_lower_case: bool = True,
                   keep_accents: bool = False) -> str:
    """`save_pretrained`, plus the vocabulary (vocab.txt or spiece.model) and casing."""
    import shutil
    model.save_pretrained(directory)
    if vocab is not None:
        with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token in vocab)
    if sp_model_file is not None:
        shutil.copyfile(sp_model_file, os.path.join(directory, "spiece.model"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"do_lower_case": do_lower_case, "keep_accents": keep_accents}, f)
    return directory


def google_weights(model_type: str, model, config: BertConfig) -> dict[str, np.ndarray]:
    """The HF model's weights under Google's names (the family's table)."""
    family = families.family(model_type)
    tensors = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return hf_weights(family.variable_specs(config, family.pooler_scope is not None),
                               tensors, "the test's model")


def write_google_checkpoint(directory: str, weights: dict[str, np.ndarray], *,
                            extra: dict[str, np.ndarray], prefix: str = "model.ckpt-100",
                            files: dict[str, str] | None = None) -> str:
    """A Google-layout folder: the weights and `extra` variables at `prefix`, and `files`
    (name -> content path) copied beside it."""
    import shutil
    os.makedirs(directory, exist_ok=True)
    write_checkpoint({**weights, **extra}, os.path.join(directory, prefix))
    for name, source in (files or {}).items():
        shutil.copyfile(source, os.path.join(directory, name))
    return directory
