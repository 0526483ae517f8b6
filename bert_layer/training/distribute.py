"""Training under `tf.distribute`: the strategy a `--distribute` choice names, which worker is
the chief, and making a Keras model with string inputs ready for a distributed `fit`.

`multi-worker` reads the cluster from the `TF_CONFIG` environment variable, as every
TensorFlow program does (https://www.tensorflow.org/guide/distributed_training).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np

from bert_layer.choices import DISTRIBUTE_CHOICES

if TYPE_CHECKING:  # TensorFlow is imported where it is used: the CLI reads DISTRIBUTE_CHOICES.
    import keras
    import tensorflow as tf



def make_strategy(kind: str) -> tf.distribute.Strategy:
    """The strategy for `kind`: "none" (the default strategy: one device), "mirrored" (every
    local GPU, else every logical CPU, of this process) or "multi-worker" (the cluster of
    `TF_CONFIG`). Create it before any other TensorFlow work: multi-worker needs that."""
    import tensorflow as tf

    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(_local_devices())
    if kind == "multi-worker":
        check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown distribute strategy {kind!r}; expected one of "
                     f"{', '.join(DISTRIBUTE_CHOICES)}.")


def _local_devices() -> list[str]:
    """MirroredStrategy's default takes GPUs only when there are some; without GPUs it takes
    one CPU, ignoring logical CPUs configured with `tf.config.set_logical_device_configuration`."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def check_tf_config(raw: str | None) -> None:
    """One clear line when TF_CONFIG is missing or malformed (TensorFlow would otherwise train
    alone, or fail deep inside the cluster resolver)."""
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not raw:
        raise ValueError(f"--distribute multi-worker reads the cluster from the TF_CONFIG "
                         f"environment variable, which is not set; expected e.g. {example}")
    try:
        config = json.loads(raw)
        task, cluster = config["task"], config["cluster"]
        hosts = cluster[task["type"]]
        if not 0 <= int(task["index"]) < len(hosts):
            raise IndexError(task["index"])
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise ValueError(f"TF_CONFIG is not a valid cluster description ({type(e).__name__}: "
                         f"{e}); found {raw!r}, expected e.g. {example}") from None


def shard_by_examples(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Each worker reads every example and keeps its share of each batch: the dataset is built
    from memory, so TensorFlow's default (shard by file, then fall back) only adds a warning.
    Every worker must shuffle with the same seed."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one process that writes outputs: the "chief" task if the cluster has one,
    else worker 0; a process without a cluster is its own chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0


def _workers(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together (the chief and the workers of the cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return sum(len(cluster.get(job, [])) for job in ("chief", "worker"))


def describe(strategy: tf.distribute.Strategy, kind: str, batch_size: int) -> dict:
    """The strategy as the training report records it."""
    replicas = strategy.num_replicas_in_sync
    return {"strategy": kind, "workers": _workers(strategy), "chief": is_chief(strategy),
            "replicas": replicas,
            "per_replica_batch_size": batch_size, "global_batch_size": batch_size * replicas}


def prepare_for_distributed_fit(model: keras.Model, text: str, label: np.ndarray) -> None:
    """Works around two Keras 3.15 bugs that stop `fit` under a strategy; a no-op for a model
    built outside any strategy scope. Call it inside `strategy.scope()`, after `compile`."""
    if getattr(model, "_distribute_strategy", None) is None:
        return  # Keras builds in the traced step; neither bug is reached.
    _build_on_one_example(model, text, label)
    if _workers(model.distribute_strategy) > 1:
        _report_metrics_as_vectors(model)


def _build_on_one_example(model: keras.Model, text: str, label: np.ndarray) -> None:
    """Builds the model's loss, metrics and optimizer on one example, and stops `fit`,
    `evaluate` and `predict` from building them from the first batch of the dataset.

    keras-team/keras#20585 (open in Keras 3.15): under a distribution strategy,
    `TensorFlowTrainer._maybe_symbolic_build` averages the first batch across replicas
    (`strategy.reduce("MEAN", ...)`) to get shapes, which fails for string inputs (AddN on
    strings under MirroredStrategy, "Attempt to convert a value (PerReplica...)" under
    MultiWorkerMirroredStrategy). Given one example directly it builds the same state from
    shapes alone (no step runs, no weight changes).
    """
    import tensorflow as tf

    batch = (tf.constant([text]), tf.constant(np.asarray(label)[None]))
    model._maybe_symbolic_build(data_batch=batch)
    unbuilt = [name for name, part in (("optimizer", model.optimizer),
                                       ("loss", model._compile_loss),
                                       ("metrics", model._compile_metrics))
               if part is not None and not part.built]
    if unbuilt:
        raise RuntimeError(f"Could not build the model's {unbuilt} before a distributed fit.")
    # An instance attribute shadows the method for this model only.
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def _report_metrics_as_vectors(model: keras.Model) -> None:
    """Makes the train and test steps return each scalar log (loss, metrics) as shape [1].

    tensorflow/tensorflow#72388 (Keras 3): with several workers, Keras reduces the step's
    logs with `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars ("Invalid
    reduction dimension 0 for input with 0 dimensions"). On [1] vectors the same call
    averages the replicas' values into a scalar, as Keras intends.
    """
    import tensorflow as tf

    def as_vectors(step):
        def vector_step(data):
            return tf.nest.map_structure(
                lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, step(data))
        return vector_step

    model.train_step = as_vectors(model.train_step)
    model.test_step = as_vectors(model.test_step)
