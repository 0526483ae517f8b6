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
    TASKS,
    VECTOR_POOLINGS,
    WINDOW_POOLINGS,
)
from bert_layer.text.strides import check_stride

# The tasks a ClassifierSpec builds (training/classifier.py, training/regressor.py).
HEAD_TASKS = ("classify", "regress")


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
    """What the classifier (or, with task="regress", the regressor) is made of; saved in the
    training report. For a regressor, `class_names` names its outputs (the score columns)."""

    module: str  # The hub module folder.
    class_names: tuple[str, ...]
    multi_label: bool = False
    pooling: str = "cls"
    fine_tune_layers: int = 3
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    tokenizer: str = "graph"
    head_dropout: float = 0.1
    precision: str = "fp32"  # "bf16": the encoder computes in mixed bfloat16.
    task: str = "classify"  # One of HEAD_TASKS.
    # None: texts cut at max_seq_length; else long texts are windows sharing `stride`
    # wordpieces, the document's probabilities the `window_pooling` of its windows'.
    stride: int | None = None
    window_pooling: str = WINDOW_POOLINGS[0]

    def __post_init__(self) -> None:
        if self.task not in HEAD_TASKS:
            raise ValueError(f"task must be one of {list(HEAD_TASKS)} (of {list(TASKS)}); "
                             f"received {self.task!r}.")
        if self.task == "regress":
            if not self.class_names or self.multi_label:
                raise ValueError(f"a regressor needs one output name per score and no "
                                 f"multi_label; received class_names={list(self.class_names)}, "
                                 f"multi_label={self.multi_label}.")
        elif len(self.class_names) < MIN_CLASSES and not self.multi_label:
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
    # None, "balanced" or "name=weight,..." (training/class_weights.py).
    class_weight: str | None = None
    # Stop when the dev metric that picks the best epoch has not improved for this many
    # epochs (None: never stop early).
    early_stopping_patience: int | None = None
    # Batches whose gradients are averaged into one update (1: every batch updates).
    gradient_accumulation: int = 1

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
        if self.early_stopping_patience is not None and self.early_stopping_patience < 0:
            raise ValueError(f"early_stopping_patience must be >= 0 (epochs without "
                             f"improvement); received {self.early_stopping_patience}.")
        if self.gradient_accumulation < 1:
            raise ValueError(f"gradient_accumulation must be >= 1 (batches per update); "
                             f"received {self.gradient_accumulation}.")
        if self.class_weight is not None:
            from bert_layer.training.class_weights import parse_class_weight
            parse_class_weight(self.class_weight)  # The syntax; the classes come with data.

    @property
    def effective_batch_size(self) -> int:
        """Examples per optimizer update on one replica."""
        return self.batch_size * self.gradient_accumulation


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
