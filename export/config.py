"""`BertConfig`: the hyper-parameters in Google's `bert_config.json`, checked.

Config files carry more keys than BERT's sizes: Google's multilingual and Chinese releases
add unused pooler fields, Hugging Face adds its wrapper's settings. `KEY_RULES` below is THE
table of those keys: each is either harmless (accepted silently), or changes the architecture
and is accepted only with the value the exported graph computes. Any other key is a
`ConfigKeyWarning`: it is unknown, so it cannot be proven to change the maths.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import warnings

_ACTIVATIONS = ("gelu", "relu", "tanh", "gelu_new")
# 0 (no relative position bias), or MPNet's bucket count (bert_layer.export.families.mpnet).
_RELATIVE_ATTENTION_BUCKETS = (0, 32)


def _is_number(value) -> bool:
    """An int or float (not a bool, not a string of digits), finite."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# THE table of BertConfig's own fields: what each value must be, and the test. Every reader of
# a config (export, convert, a module's bert_config.json) goes through `check_fields`.
FIELD_RULES = {
    **dict.fromkeys(("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"),
                    ("a positive integer", _is_positive_int)),
    # ELECTRA's and ALBERT's narrow embeddings (None: as wide as the hidden size).
    "embedding_size": ("a positive integer", lambda v: v is None or _is_positive_int(v)),
    # MPNet's relative position bias: 0 (none) or the 32 buckets transformers computes.
    "relative_attention_num_buckets": (f"one of {_RELATIVE_ATTENTION_BUCKETS} (0: none; "
                                       f"transformers' MPNet buckets relative positions into "
                                       f"32 whatever its config says)",
                                       lambda v: isinstance(v, int) and not isinstance(v, bool)
                                       and v in _RELATIVE_ATTENTION_BUCKETS),
    "hidden_act": (f"one of {_ACTIVATIONS}", lambda v: isinstance(v, str) and v in _ACTIVATIONS),
    **dict.fromkeys(("hidden_dropout_prob", "attention_probs_dropout_prob"),
                    ("in [0, 1)", lambda v: _is_number(v) and 0.0 <= v < 1.0)),
    "initializer_range": ("a number >= 0", lambda v: _is_number(v) and v >= 0.0),
    # LayerNorm divides by sqrt(variance + eps): it must be a positive number.
    "layer_norm_eps": ("a number > 0 (e.g. 1e-12)", lambda v: _is_number(v) and v > 0.0),
}


def check_fields(values: dict, source: str = "bert_config") -> None:
    """Applies FIELD_RULES to the fields present in `values`.

    Raises:
      ValueError: naming `source`, the key, what it must be and the value found.
    """
    for key, (expected, test) in FIELD_RULES.items():
        if key in values and not test(values[key]):
            raise ValueError(f"{source}: `{key}` must be {expected}. Received: {values[key]!r}")

# Keys that do not change the encoder's maths, with why. Accepted silently.
_HARMLESS = {
    # Google's multilingual and Chinese releases: no code of Google's modeling.py reads them.
    **dict.fromkeys(("directionality", "pooler_fc_size", "pooler_num_attention_heads",
                     "pooler_num_fc_layers", "pooler_size_per_head", "pooler_type"),
                    "written by Google's releases, read by no code of Google's modeling.py"),
    # Hugging Face: the wrapper, generation, heads, training and storage, not the encoder.
    **dict.fromkeys(("_name_or_path", "architectures", "transformers_version",
                     "torch_dtype", "dtype", "use_cache", "tie_word_embeddings",
                     "classifier_dropout", "gradient_checkpointing", "pad_token_id",
                     "bos_token_id", "eos_token_id", "id2label", "label2id", "problem_type",
                     "chunk_size_feed_forward", "output_hidden_states", "output_attentions",
                     "return_dict", "finetuning_task", "num_labels"),
                    "a setting of the Hugging Face wrapper, not of the encoder"),
    # DistilBERT (renamed to BERT's keys by bert_layer.export.distilbert): heads and init.
    **dict.fromkeys(("qa_dropout", "seq_classif_dropout", "tie_weights_",
                     "sinusoidal_pos_embds"),
                    "a DistilBERT head or initialisation setting; the weights are stored"),
    # Written by `convert` beside the sizes: the vocabulary's casing (read_do_lower_case).
    "do_lower_case": "the tokenizer's casing, read by the exporter",
    "keep_accents": "a SentencePiece tokenizer's accent stripping, read by the exporter",
    # ELECTRA's and ALBERT's Hugging Face configs: the task heads, not the encoder.
    **dict.fromkeys(("summary_type", "summary_use_proj", "summary_activation",
                     "summary_last_dropout", "classifier_dropout_prob"),
                    "a Hugging Face task head setting, not the encoder"),
    # Hugging Face's, and the family a converted folder records when its special tokens are
    # not BERT's (MPNet: `bert_layer.export.families.model_type_entry`); the graph switches
    # are BertConfig fields (e.g. `relative_attention_num_buckets`) and variable names.
    "model_type": "the model family, read by bert_layer.export.families",
    # Written by the exporter into a module's assets/bert_config.json; a checkpoint's pooler
    # is known from its variables (`bert/pooler/*`), never from this key.
    "has_pooler": "describes a module: whether pooled_output is the tanh pooler",
}

# Keys that change the architecture: the one value the exported graph computes, and why.
_REQUIRED_VALUES = {
    "position_embedding_type": (
        "absolute", "the exported graph adds absolute position embeddings; relative ones "
        "change every attention score"),
    "is_decoder": (False, "a decoder masks attention causally; the exported encoder attends "
                          "in both directions"),
    "add_cross_attention": (False, "cross-attention layers need an encoder input the module "
                                   "does not have"),
}

KEY_RULES = {**{key: ("harmless", why) for key, why in _HARMLESS.items()},
             **{key: ("required", rule) for key, rule in _REQUIRED_VALUES.items()}}


class ConfigKeyWarning(UserWarning):
    """A config key this project does not know; it was ignored."""


def check_extra_keys(values: dict, known: set[str], source: str) -> None:
    """Applies `KEY_RULES` to the keys of `values` that are not in `known`.

    Raises:
      ValueError: a key that changes the architecture has a value the graph cannot compute.
    Warns:
      ConfigKeyWarning: one line per unknown key, naming `source` and the key.
    """
    for key in sorted(set(values) - known):
        kind, rule = KEY_RULES.get(key, ("unknown", None))
        if kind == "required" and values[key] != rule[0]:
            raise ValueError(f"{source}: `{key}` must be {rule[0]!r} ({rule[1]}). "
                             f"Received: {values[key]!r}")
        if kind == "unknown":
            # BertConfig's own fields first: a typo there silently leaves a default in place.
            close = (difflib.get_close_matches(key, sorted(known), n=1)
                     or difflib.get_close_matches(key, sorted(KEY_RULES), n=1))
            hint = f"; did you mean `{close[0]}`?" if close else ""
            warnings.warn(f"{source}: unknown key `{key}` ignored (expected BertConfig's fields "
                          f"or a key of KEY_RULES{hint})", ConfigKeyWarning, stacklevel=3)


def read_do_lower_case(values: dict, source: str) -> bool | None:
    """The `do_lower_case` a converted folder records beside the sizes (None: not recorded)."""
    value = values.get("do_lower_case")
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{source}: `do_lower_case` must be true or false. Received: {value!r}")
    return value


def read_keep_accents(values: dict, source: str) -> bool | None:
    """The `keep_accents` a converted SentencePiece folder records (None: not recorded)."""
    value = values.get("keep_accents")
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{source}: `keep_accents` must be true or false. Received: {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """BERT sizes as Google's `bert_config.json` spells them.

    Sizes are range-checked, so a bad config fails here rather than deep in the graph;
    other keys follow `KEY_RULES`.
    """

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    # Hugging Face configs carry the epsilon; Google's code hard-codes 1e-12.
    layer_norm_eps: float = 1e-12
    # ELECTRA and ALBERT: embeddings narrower than the hidden size, projected to it by a
    # dense layer (bert_layer.export.families). None: as wide as the hidden size (BERT).
    embedding_size: int | None = None
    # MPNet's relative position bias (bert_layer.export.families.mpnet): 32 buckets of one
    # bias per head, shared by all layers, added to the attention logits. 0: none (BERT).
    # Written to bert_config.json only when set.
    relative_attention_num_buckets: int = 0

    def __post_init__(self) -> None:
        check_fields(self.to_dict())
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"bert_config: `hidden_size` ({self.hidden_size}) must be divisible by "
                f"`num_attention_heads` ({self.num_attention_heads}).")

    @property
    def size_per_head(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def embedding_width(self) -> int:
        """E: the embeddings' width (the hidden size unless `embedding_size` says otherwise)."""
        return self.embedding_size or self.hidden_size

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "bert_config") -> "BertConfig":
        """Builds a config from its fields; other keys follow `KEY_RULES`."""
        known = {f.name for f in dataclasses.fields(cls)}
        check_extra_keys(values, known, source)
        if "vocab_size" not in values:
            raise ValueError(f"{source}: the required key `vocab_size` is missing.")
        check_fields(values, source)
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        return cls.from_dict(read_json_object(path, "BERT config"), source=str(path))

    def to_dict(self) -> dict:
        """The fields; the family switches (`embedding_size`, `relative_attention_num_buckets`)
        only where set (BERT's files never had them)."""
        values = dataclasses.asdict(self)
        if values["embedding_size"] is None:
            del values["embedding_size"]
        if not values["relative_attention_num_buckets"]:
            del values["relative_attention_num_buckets"]
        return values

    def to_json_file(self, path: str | os.PathLike, **extra) -> None:
        """Writes the fields, plus `extra` keys (e.g. `do_lower_case`) that `KEY_RULES` knows."""
        unknown = sorted(set(extra) - set(KEY_RULES))
        if unknown:
            raise ValueError(f"extra keys {unknown} for {path} are not in KEY_RULES.")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({**self.to_dict(), **extra}, f, indent=2, sort_keys=True)
            f.write("\n")


def read_json_object(path: str | os.PathLike, what: str) -> dict:
    """The JSON object in `path`; errors name the file and what it should have been."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(values).__name__}.")
    return values
