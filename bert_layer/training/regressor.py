"""A text regressor: raw strings in, a BertLayer body, one linear output per score.

Its loss is the mean squared error; its dev metrics (Pearson, Spearman, MSE) are scipy's and
scikit-learn's, computed each epoch by `RegressionMetrics` (Keras has no correlation metric).
"""

from __future__ import annotations

import keras
import numpy as np

from bert_layer.data.examples import Examples
from bert_layer.layers.layer import BertLayer
from bert_layer.layers.precision import policy_name
from bert_layer.training.specs import ClassifierSpec

# The dev metric that picks a regressor's best epoch (mean over outputs), and the others logged.
MONITOR = "val_pearson"


@keras.saving.register_keras_serializable(package="bert_layer")
class RegressionHead(keras.layers.Dense):
    """The output layer: one linear unit per score. Its config carries the score names, so a
    saved model predicts with them wherever it is copied (as `ClassifierHead` its classes).

    Args:
      score_names: the scores, in output order (the training file's label columns).
      **kwargs: `keras.layers.Dense` arguments other than units and activation.
    """

    def __init__(self, score_names, **kwargs):
        kwargs.update(units=len(score_names), activation=None)
        super().__init__(**kwargs)
        self.score_names = [str(c) for c in score_names]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(score_names=self.score_names)
        return config


def find_regression_head(model: keras.Model) -> RegressionHead | None:
    heads = [layer for layer in model.layers if isinstance(layer, RegressionHead)]
    return heads[0] if len(heads) == 1 else None


def build_regressor(spec: ClassifierSpec) -> keras.Model:
    """strings [batch] -> scores float32 [batch, len(spec.class_names)]."""
    text = keras.Input(shape=(), dtype="string", name="text")
    body = BertLayer(spec.module, max_seq_length=spec.max_seq_length, pooling=spec.pooling,
                     n_fine_tune_layers=spec.fine_tune_layers, tokenizer=spec.tokenizer,
                     dtype=policy_name(spec.precision), name="bert")
    x = keras.layers.Dropout(spec.head_dropout, name="head_dropout")(body(text))
    scores = RegressionHead(
        spec.class_names, name="score", dtype="float32",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))(x)
    return keras.Model(text, scores, name="bert_regressor")


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                       names: list[str]) -> dict[str, float]:
    """Pearson, Spearman (scipy) and MSE (scikit-learn) of scores [n, C]: the mean over the
    C outputs as `pearson`, `spearman`, `mse`, and with several outputs each one's as
    `pearson_<name>` etc."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_squared_error

    y_true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    per_output = {}
    for j, name in enumerate(names):
        # A constant column has no correlation: scipy returns nan (and warns); so do we.
        constant = np.ptp(y_pred[:, j]) == 0 or np.ptp(y_true[:, j]) == 0
        per_output[name] = {
            "pearson": float("nan") if constant else float(pearsonr(y_true[:, j],
                                                                    y_pred[:, j])[0]),
            "spearman": float("nan") if constant else float(spearmanr(y_true[:, j],
                                                                      y_pred[:, j])[0]),
            "mse": float(mean_squared_error(y_true[:, j], y_pred[:, j]))}
    result = {k: float(np.mean([m[k] for m in per_output.values()]))
              for k in ("pearson", "spearman", "mse")}
    if len(names) > 1:
        result.update({f"{k}_{name}": v for name, m in per_output.items() for k, v in m.items()})
    return result


class RegressionMetrics(keras.callbacks.Callback):
    """Adds `val_pearson`, `val_spearman` and `val_mse` (see `regression_metrics`) to each
    epoch's logs, from a prediction of the dev examples. Place it before the callbacks that
    read them (CSVLogger, ModelCheckpoint, EarlyStopping)."""

    def __init__(self, dev: Examples, dev_texts_dataset):
        super().__init__()
        self.dev, self.dataset = dev, dev_texts_dataset

    def on_epoch_end(self, epoch, logs=None):
        predicted = self.model.predict(self.dataset, verbose=0)  # [n, C]
        metrics = regression_metrics(self.dev.labels, predicted, list(self.dev.classes))
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in metrics.items()})
