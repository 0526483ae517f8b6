"""Training under `tf.distribute`: the strategy a `--distribute` choice names, which worker is
the chief, and making a Keras model with string inputs ready for a distributed `fit`.

`multi-worker` reads the cluster from the `TF_CONFIG` environment variable, as every
TensorFlow program does (https://www.tensorflow.org/guide/distributed_training).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from bert_layer.choices import DISTRIBUTE_CHOICES

if TYPE_CHECKING:  # TensorFlow is imported where it is used: the CLI reads DISTRIBUTE_CHOICES.
    import keras
    import tensorflow as tf

# How long a multi-worker run waits for every worker of TF_CONFIG to connect before it gives
# up with one line; the environment variable overrides it (seconds).
CLUSTER_TIMEOUT_S = 300
CLUSTER_TIMEOUT_VARIABLE = "BERT_LAYER_CLUSTER_TIMEOUT"


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
        return _multi_worker_strategy()
    raise ValueError(f"Unknown distribute strategy {kind!r}; expected one of "
                     f"{', '.join(DISTRIBUTE_CHOICES)}.")


def cluster_timeout() -> int:
    """Seconds to wait for the cluster: CLUSTER_TIMEOUT_VARIABLE, else CLUSTER_TIMEOUT_S."""
    raw = os.environ.get(CLUSTER_TIMEOUT_VARIABLE, "")
    if not raw:
        return CLUSTER_TIMEOUT_S
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{CLUSTER_TIMEOUT_VARIABLE} must be a whole number of seconds >= 1; "
                         f"found {raw!r}.")
    return int(raw)


def _multi_worker_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy, waiting at most `cluster_timeout()` for the other workers.

    TensorFlow waits for every worker without limit, in C++ where Python's signal handlers
    never run (its own `cluster_register_timeout_in_ms` did not end the wait in TF 2.21). So a
    watchdog process ends this one with one line when the wait passes the timeout, and
    SIGINT and SIGTERM keep their default action (end the process) meanwhile: nothing is
    written before the strategy exists, so there is nothing to clean up.
    """
    import tensorflow as tf

    timeout = cluster_timeout()
    cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]
    hosts = [host for job in ("chief", "worker") for host in cluster.get(job, [])]
    print(f"bert-layer: waiting up to {timeout} s for the {len(hosts)} workers of TF_CONFIG "
          f"({', '.join(hosts)}) to connect ...", file=sys.stderr, flush=True)
    message = (f"bert-layer train: error: --distribute multi-worker: not every worker of "
               f"TF_CONFIG ({', '.join(hosts)}) connected within {timeout} s; start all of "
               f"them (or raise {CLUSTER_TIMEOUT_VARIABLE}).")
    with _watchdog(timeout, message):
        return tf.distribute.MultiWorkerMirroredStrategy()


# The watchdog: a process of its own (TensorFlow holds the GIL while it waits, so no thread of
# this one could run). It ends this process with the message unless its stdin closes first.
_WATCHDOG = """
import os, select, signal, sys
ready, _, _ = select.select([sys.stdin], [], [], float(sys.argv[2]))
if not ready:
    sys.stderr.write(sys.argv[3] + "\\n")
    sys.stderr.flush()
    os.kill(int(sys.argv[1]), signal.SIGINT)
"""


@contextlib.contextmanager
def _watchdog(timeout: float, message: str) -> Iterator[None]:
    """Within the block: after `timeout` seconds, `message` on stderr and the process ends
    with exit status 2, as for any bad input; SIGTERM takes its default action (end the
    process) instead of a Python handler that could not run.

    TensorFlow's wait runs no Python code, so no Python signal handler can end it: SIGINT's
    handler is libc's `_exit` itself (async-signal-safe; a handler receives the signal's
    number, and SIGINT's is 2), and the watchdog sends SIGINT. Ctrl-C ends the wait the same
    way. By hand: no library bounds a blocking C++ call that holds the GIL.
    """
    import subprocess
    import threading

    main = threading.current_thread() is threading.main_thread()
    saved = ({number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
             if main else {})
    if main:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _exit_on_sigint()
    watcher = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout),
                                message], stdin=subprocess.PIPE)
    try:
        yield
    finally:
        watcher.stdin.close()  # Done: the watchdog exits without a word.
        watcher.wait()
        for number, handler in saved.items():
            signal.signal(number, handler)


def _exit_on_sigint() -> None:
    """SIGINT's C handler becomes `_exit(2)` (signal.signal restores Python's handler)."""
    import ctypes

    libc = ctypes.CDLL(None)
    handler = ctypes.cast(libc._exit, ctypes.c_void_p)
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.signal.restype = ctypes.c_void_p
    assert signal.SIGINT == 2  # The handler's argument is its exit status.
    libc.signal(signal.SIGINT, handler)


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
