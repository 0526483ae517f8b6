"""BERT (and DistilBERT, read as BERT): Google's `bert_config.json`, `vocab.txt`, `bert/*`."""

from __future__ import annotations

from bert_layer.export.config import BertConfig
from bert_layer.export.families import WORDPIECE, Family
from bert_layer.export.module_fn import BERT
from bert_layer.export.names import POOLER_PREFIX, variable_specs


def read_config(path: str | None, values: dict | None,
                shapes: dict) -> tuple[BertConfig, tuple[str, ...]]:
    if values is None:
        raise FileNotFoundError("BERT config not found: expected bert_config.json beside the "
                                "checkpoint.")
    return BertConfig.from_dict(values, source=path), ()


FAMILY = Family(
    name="bert", architecture=BERT, vocabulary=WORDPIECE, vocab_files=("vocab.txt",),
    config_files=("bert_config.json",), variable_specs=variable_specs, read_config=read_config,
    hf_prefix="bert.", hf_pooler_tensors=("pooler.dense.weight", "pooler.dense.bias"),
    hf_config_values=lambda values, source: values, pooler_scope=POOLER_PREFIX)
