"""Model families beyond BERT: each a config reader and a name table onto BERT's layout, plus
the few graph switches `bert_layer.export.module_fn` reads from `BertConfig`. No TensorFlow
at import: the command line checks a family's installed files before TensorFlow loads.

A converted (Google-format) folder and a module's `assets/bert_config.json` record the family
as `model_type` when it is not BERT's; `read_model_type` reads it back.
"""

from __future__ import annotations

MODEL_TYPE_KEY = "model_type"
BERT = "bert"


def read_model_type(values: dict, source: str) -> str:
    """The family a Google-format `bert_config.json` records ("bert" when it says none)."""
    from bert_layer.text.vocab import SPECIAL_TOKENS  # Here: the package imports without TF.

    model_type = values.get(MODEL_TYPE_KEY, BERT)
    if model_type not in SPECIAL_TOKENS:
        raise ValueError(f"{source}: `{MODEL_TYPE_KEY}` must be one of "
                         f"{sorted(SPECIAL_TOKENS)}. Received: {model_type!r}")
    return model_type


def model_type_entry(model_type: str) -> dict:
    """The `model_type` key a folder's bert_config.json records (none for BERT)."""
    return {} if model_type == BERT else {MODEL_TYPE_KEY: model_type}
