"""What a classifier is made of and how it trains: plain settings, no TensorFlow here.

The command line takes its defaults and choices from these, so that `bert-layer --help` and
argument errors answer without loading TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math

from bert_layer.choices import (
    DEFAULT_MAX_SEQ_LENGTH,
    DISTRIBUTE_CHOICES,
    MIN_CLASSES,
    VECTOR_POOLINGS,
    WINDOW_POOLINGS,
)
from bert_layer.text.strides import check_stride


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
    # None: texts cut at max_seq_length; else long texts are windows sharing `stride`
    # wordpieces, the document's probabilities the `window_pooling` of its windows'.
    stride: int | None = None
    window_pooling: str = WINDOW_POOLINGS[0]

    def __post_init__(self) -> None:
        if len(self.class_names) < MIN_CLASSES and not self.multi_label:
            raise ValueError(f"a classifier needs at least {MIN_CLASSES} classes; found "
                             f"{list(self.class_names)}. "
                             f"Declare the classes (--labels in the CLI) if the data lacks "
                             f"examples of some.")
        if self.pooling not in VECTOR_POOLINGS:
            raise ValueError(f"a classifier pools to one vector: pooling must be one of "
                             f"{list(VECTOR_POOLINGS)}. Received: {self.pooling!r}")
        check_stride(self.stride, self.max_seq_length)
        if self.window_pooling not in WINDOW_POOLINGS:
            raise ValueError(f"window_pooling must be one of {list(WINDOW_POOLINGS)}. "
                             f"Received: {self.window_pooling!r}")


def check_windowed_training(stride: int | None, distribute: str) -> None:
    """Windows multiply a batch's rows by a count known only after tokenizing, which a
    strategy's split of texts and labels between replicas cannot follow."""
    if stride is not None and distribute != "none":
        raise ValueError(f"stride (long texts as windows) trains on one replica; "
                         f"distribute={distribute!r} is not supported with it.")


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
