"""What a classifier is made of and how it trains: plain settings, no TensorFlow here.

The command line takes its defaults and choices from these, so that `bert-layer --help` and
argument errors answer without loading TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math

from bert_layer.choices import (
    DEFAULT_MAX_SEQ_LENGTH,
    DEFAULT_STRIDE,
    DISTRIBUTE_CHOICES,
    MIN_CLASSES,
    OUTSIDE_TAG,
    VECTOR_POOLINGS,
)


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
    """What the classifier is made of; saved in the training report."""

    module: str  # The hub module folder.
    class_names: tuple[str, ...]
    multi_label: bool = False
    pooling: str = "cls"
    fine_tune_layers: int = 3
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    tokenizer: str = "graph"
    head_dropout: float = 0.1
    precision: str = "fp32"  # "bf16": the encoder computes in mixed bfloat16.

    def __post_init__(self) -> None:
        if len(self.class_names) < MIN_CLASSES and not self.multi_label:
            raise ValueError(f"a classifier needs at least {MIN_CLASSES} classes; found "
                             f"{list(self.class_names)}. "
                             f"Declare the classes (--labels in the CLI) if the data lacks "
                             f"examples of some.")
        if self.pooling not in VECTOR_POOLINGS:
            raise ValueError(f"a classifier pools to one vector: pooling must be one of "
                             f"{list(VECTOR_POOLINGS)}. Received: {self.pooling!r}")


def default(cls, name: str):
    """The default of field `name` of dataclass `cls` (for the CLI's defaults)."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are BERT's fine-tuning recipe."""

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    bucket: bool = True  # group similar lengths into batches (less padding)
    distribute: str = "none"  # a DISTRIBUTE_CHOICES strategy; batch_size is per replica

    def __post_init__(self) -> None:
        if self.distribute not in DISTRIBUTE_CHOICES:
            raise ValueError(f"distribute must be one of {', '.join(DISTRIBUTE_CHOICES)}; "
                             f"received {self.distribute!r}.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1; received epochs="
                             f"{self.epochs}, batch_size={self.batch_size}.")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a number > 0 (a negative one climbs the "
                             f"loss); received {self.learning_rate}.")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1); received {self.warmup_fraction}.")


@dataclasses.dataclass(frozen=True)
class TaggerSpec:
    """What a token classifier (tagger) is made of; saved in the training report."""

    module: str  # The hub module folder.
    tag_names: tuple[str, ...]  # IOB2 tags, "O" first (bert_layer.data.conll.tag_names).
    fine_tune_layers: int = 3
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    tokenizer: str = "graph"
    head_dropout: float = 0.1
    precision: str = "fp32"
    # Pieces shared by the windows long sentences are split into (None: DEFAULT_STRIDE,
    # at most half a window).
    stride: int | None = None

    def __post_init__(self) -> None:
        if not self.tag_names or self.tag_names[0] != OUTSIDE_TAG:
            raise ValueError(f"a tagger's tags start with {OUTSIDE_TAG!r}; found "
                             f"{list(self.tag_names)}.")
        if self.stride is not None and not 0 <= self.stride < self.max_seq_length - 2:
            raise ValueError(f"stride must be in [0, max_seq_length - 2 = "
                             f"{self.max_seq_length - 2}); received {self.stride}.")


def window_stride(stride: int | None, max_seq_length: int) -> int:
    """The pieces windows share: `stride`, or by default DEFAULT_STRIDE capped at half a
    window; ValueError unless 0 <= stride < max_seq_length - 2."""
    budget = max_seq_length - 2
    if stride is None:
        return min(DEFAULT_STRIDE, budget // 2)
    if not 0 <= stride < budget:
        raise ValueError(f"stride must be in [0, {budget}) for max_seq_length {max_seq_length} "
                         f"(windows of {budget} wordpieces); received {stride}.")
    return stride
