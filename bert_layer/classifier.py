"""A text classifier: raw strings in, a BertLayer body, a softmax or sigmoid head."""

from __future__ import annotations

import dataclasses

import keras

from bert_layer.layer import BertLayer
from bert_layer.precision import policy_name


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
    """What the classifier is made of; saved in the training report."""

    bert_path: str
    classes: tuple[str, ...]
    multi_label: bool = False
    pooling: str = "cls"
    fine_tune_layers: int = 3
    max_seq_length: int = 128
    tokenizer: str = "graph"
    head_dropout: float = 0.1
    precision: str = "fp32"  # "bf16": the encoder computes in mixed bfloat16.


@keras.saving.register_keras_serializable(package="bert_layer")
class F1Score(keras.metrics.F1Score):
    """Keras's F1 as one number: the positive class's F1 for two classes (as GLUE's MRPC
    reports it), else the macro average; so ModelCheckpoint can monitor it."""

    def __init__(self, num_classes: int = 2, threshold: float | None = None,
                 name: str = "f1", dtype=None):
        self.num_classes = num_classes
        average = None if num_classes == 2 and threshold is None else "macro"
        super().__init__(average=average, threshold=threshold, name=name, dtype=dtype)

    def result(self):
        result = super().result()
        return result[1] if self.average is None else result

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("average", None)
        config["num_classes"] = self.num_classes
        return config


def build_classifier(spec: ClassifierSpec) -> keras.Model:
    """strings [batch] -> class probabilities [batch, n_classes]."""
    if len(spec.classes) < 2 and not spec.multi_label:
        raise ValueError(f"A classifier needs at least 2 classes; received {list(spec.classes)}.")
    if spec.pooling not in ("cls", "mean", "max"):
        raise ValueError(f"A classifier pools to one vector: pooling must be 'cls', 'mean' or "
                         f"'max'. Received: {spec.pooling!r}")
    text = keras.Input(shape=(), dtype="string", name="text")
    body = BertLayer(spec.bert_path, max_seq_length=spec.max_seq_length, pooling=spec.pooling,
                     n_fine_tune_layers=spec.fine_tune_layers, tokenizer=spec.tokenizer,
                     dtype=policy_name(spec.precision), name="bert")
    x = keras.layers.Dropout(spec.head_dropout, name="head_dropout")(body(text))
    activation = "sigmoid" if spec.multi_label else "softmax"
    # The head stays float32 under any policy: its softmax is the output.
    probabilities = keras.layers.Dense(
        len(spec.classes), activation=activation, name="probabilities", dtype="float32",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))(x)
    return keras.Model(text, probabilities, name="bert_classifier")
