"""Run by test_distribute.py in a fresh process: TensorFlow must see 2 logical CPUs before
it initialises its devices.

Usage: python mirrored_fit_script.py MODULE_DIR OUT_DIR {sgd,train}
  sgd: writes OUT_DIR/{none,mirrored}.npz: weights before (`before_i`) and after (`after_i`) a
    few SGD steps, by trainable weight.
  train: writes OUT_DIR/train/, a `train_classifier` run under MirroredStrategy.
One strategy with collectives per process: a second MirroredStrategy in the same process
can pair its all-reduces with the first one's (TensorFlow reuses collective keys).
"""

import os
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bert_layer.data.examples import Examples  # noqa: E402
from bert_layer.training.classifier import ClassifierSpec, build_classifier  # noqa: E402
from bert_layer.training.distribute import make_strategy, prepare_for_distributed_fit  # noqa: E402
from bert_layer.training.train import TrainConfig, train_classifier  # noqa: E402

TEXTS = ["the movie was great .", "bad plot", "i love this film", "boring and bad .",
         "a funny story", "not good at all", "the best film", "the worst movie !",
         "it was fun", "i hate it", "very very good", "so boring", "well played", "no fun",
         "great acting", "the plot was bad"]
LABELS = np.array([1, 0] * 8, dtype=np.int32)


def sgd_steps(module_dir: str, kind: str) -> dict[str, np.ndarray]:
    """Two epochs of two batches of 8 with SGD; head dropout off, the module has none."""
    spec = ClassifierSpec(module_dir, ("neg", "pos"), fine_tune_layers=1, max_seq_length=32,
                          head_dropout=0.0)
    keras.utils.set_random_seed(0)
    strategy = make_strategy(kind)
    one_hot = np.eye(2, dtype=np.float32)[LABELS]
    with strategy.scope():
        model = build_classifier(spec)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
        prepare_for_distributed_fit(model, TEXTS[0], one_hot[0])
    before = [w.numpy() for w in model.trainable_weights]
    ds = tf.data.Dataset.from_tensor_slices((np.array(TEXTS, dtype=object), one_hot)).batch(8)
    model.fit(ds, epochs=2, verbose=0)
    arrays = {f"before_{i}": b for i, b in enumerate(before)}
    arrays.update({f"after_{i}": w.numpy() for i, w in enumerate(model.trainable_weights)})
    arrays["names"] = np.array([w.path for w in model.trainable_weights])
    arrays["replicas"] = np.array(strategy.num_replicas_in_sync)
    return arrays


def main(module_dir: str, out_dir: str, job: str) -> None:
    if job == "sgd":
        for kind in ("none", "mirrored"):
            np.savez(os.path.join(out_dir, f"{kind}.npz"), **sgd_steps(module_dir, kind))
        return
    examples = Examples(texts=TEXTS, labels=LABELS, classes=["neg", "pos"], source="inline")
    spec = ClassifierSpec(module_dir, ("neg", "pos"), max_seq_length=32)
    train_classifier(spec, examples, examples, os.path.join(out_dir, "train"),
                     TrainConfig(epochs=1, batch_size=4, distribute="mirrored"), verbose=0)


if __name__ == "__main__":
    main(*sys.argv[1:])
