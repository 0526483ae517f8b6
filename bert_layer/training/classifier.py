"""A text classifier: raw strings in, a BertLayer body, a softmax or sigmoid head."""

from __future__ import annotations

import keras

from bert_layer.layers.layer import BertLayer
from bert_layer.layers.precision import policy_name
from bert_layer.layers.window_pooling import WindowPooling
from bert_layer.text.windows import WINDOW_DOCUMENT
from bert_layer.training.specs import ClassifierSpec  # noqa: F401  (also importable from here)


@keras.saving.register_keras_serializable(package="bert_layer")
class ClassifierHead(keras.layers.Dense):
    """The output layer: one unit per class, softmax (sigmoid when multi_label). Its config
    carries the class names, so a saved model predicts with them wherever it is copied.

    Args:
      class_names: the classes, in output order.
      multi_label: independent sigmoids instead of a softmax.
      **kwargs: `keras.layers.Dense` arguments other than units and activation.
    """

    def __init__(self, class_names, multi_label: bool = False, **kwargs):
        kwargs.update(units=len(class_names), activation="sigmoid" if multi_label else "softmax")
        super().__init__(**kwargs)
        self.class_names = [str(c) for c in class_names]
        self.multi_label = bool(multi_label)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(class_names=self.class_names, multi_label=self.multi_label)
        return config


def find_head(model: keras.Model) -> ClassifierHead | None:
    """The model's ClassifierHead (None for models saved before it existed)."""
    heads = [layer for layer in model.layers if isinstance(layer, ClassifierHead)]
    return heads[0] if len(heads) == 1 else None


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


@keras.saving.register_keras_serializable(package="bert_layer")
class PositiveWeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy with each class's positive term scaled: mean over classes c of
    -(w_c y log p + (1 - y) log(1 - p)). Written here because Keras's BinaryCrossentropy has
    no per-class positive weight. From the logits the head's sigmoid keeps on its output
    (`_keras_logits`, as Keras's own losses read them) in the stable form of
    tf.nn.weighted_cross_entropy_with_logits; on probabilities without them (a window-pooled
    mean), p clipped to [eps, 1 - eps] as Keras clips it, which gives no gradient to a class
    whose p is within eps of the wrong end.

    Args:
      positive_weights: one weight per class [C].
    """

    def __init__(self, positive_weights, name: str = "positive_weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.positive_weights = [float(w) for w in positive_weights]

    def call(self, y_true, y_pred):
        ops = keras.ops
        logits = getattr(y_pred, "_keras_logits", None)
        y = ops.cast(y_true, "float32")
        weights = ops.convert_to_tensor(self.positive_weights, dtype="float32")
        if logits is not None:  # (1 - y) z + (1 + (w - 1) y) log(1 + exp(-z)), stably.
            z = ops.cast(logits, "float32")
            softplus_minus_z = ops.log1p(ops.exp(-ops.abs(z))) + ops.relu(-z)
            return ops.mean((1.0 - y) * z + (1.0 + (weights - 1.0) * y) * softplus_minus_z,
                            axis=-1)
        epsilon = keras.config.epsilon()
        p = ops.clip(ops.cast(y_pred, "float32"), epsilon, 1.0 - epsilon)
        terms = weights * y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p)  # [b, C]
        return -ops.mean(terms, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "positive_weights": self.positive_weights}


def build_classifier(spec: ClassifierSpec) -> keras.Model:
    """strings [batch] -> class probabilities [batch, n_classes].

    With `spec.stride` the head classifies each window, and a `WindowPooling` layer gives
    each text the mean (or max) of its windows' probabilities (in training, the windows').
    """
    text = keras.Input(shape=(), dtype="string", name="text")
    windowed = spec.stride is not None
    body = BertLayer(spec.module, max_seq_length=spec.max_seq_length, pooling=spec.pooling,
                     n_fine_tune_layers=spec.fine_tune_layers, tokenizer=spec.tokenizer,
                     dtype=policy_name(spec.precision), name="bert", stride=spec.stride,
                     window_pooling=spec.window_pooling, as_dict=windowed)
    x = body(text)
    if windowed:
        x, document = x["pooled_output"], x[WINDOW_DOCUMENT]
    x = keras.layers.Dropout(spec.head_dropout, name="head_dropout")(x)
    # The head stays float32 under any policy: its softmax is the output.
    probabilities = ClassifierHead(
        spec.class_names, spec.multi_label, name="probabilities", dtype="float32",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))(x)
    if windowed:
        probabilities = WindowPooling(spec.window_pooling, name="window_pooling",
                                      dtype="float32")([probabilities, document])
    return keras.Model(text, probabilities, name="bert_classifier")


def without_training_state(model: keras.Model) -> keras.Model:
    """The same layers (and weights) as a model never compiled: saving it writes no optimizer
    slots (Adam's two per weight, twice the encoder's size), metrics or compile config.

    Keras 3 has no `save(include_optimizer=False)`: `save` walks every attribute of the model,
    its optimizer included. A functional model over the same layers has no optimizer to walk.
    `keras.models.load_model` returns it uncompiled: `compile` it to train it further (`bert-layer
    train --resume` continues from the backup, which keeps the optimizer state).
    """
    return keras.Model(model.input, model.output, name=model.name)
