"""`BertConfig`: the hyper-parameters in Google's `bert_config.json`, checked."""

from __future__ import annotations

import dataclasses
import json
import os

_ACTIVATIONS = ("gelu", "relu", "tanh", "gelu_new")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """BERT sizes as Google's `bert_config.json` spells them.

    Unknown keys are rejected (a typo must not pass silently) and sizes are
    range-checked, so a bad config fails here rather than deep in the graph.
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

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"bert_config: `{name}` must be a positive integer. Received: {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"bert_config: `hidden_size` ({self.hidden_size}) must be divisible by "
                f"`num_attention_heads` ({self.num_attention_heads}).")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"bert_config: `{name}` must be in [0, 1). Received: {value!r}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"bert_config: `hidden_act` must be one of {_ACTIVATIONS}. "
                f"Received: {self.hidden_act!r}")

    @property
    def size_per_head(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "bert_config",
                  ignore: tuple[str, ...] = ()) -> "BertConfig":
        """Builds a config, rejecting keys it does not know (except `ignore`)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - set(ignore))
        if unknown:
            raise ValueError(
                f"{source}: unknown keys {unknown}; expected only {sorted(known)}.")
        if "vocab_size" not in values:
            raise ValueError(f"{source}: the required key `vocab_size` is missing.")
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        return cls.from_dict(read_json_object(path, "BERT config"), source=str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json_file(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
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
