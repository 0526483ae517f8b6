"""Where a frozen graph spends its time: run time per op type, over a file's texts.

Runs the graph written by `bert-layer freeze` in a TF1 session configured as
`FrozenClassifier`'s, with full tracing, on length-grouped batches, and prints each op
type's share of the traced op time (after the runtime's rewrites, so fused ops show as such).
With `--keras MODULE`, also a classifier on that hub module in a Keras tf.function (its
weights variables, as fine-tuning and `embed` run it), in the graph's precision, traced with
TensorFlow's profiler on the same batches, side by side: where the module in Keras loses to
the frozen graph. Tracing slows small ops more than large ones: read the shares, not the
absolute times.

Usage:
  python scripts/profile_frozen.py MODEL.pb [--keras MODULE] [--data FILE]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow reads it once, when loaded.

import argparse  # noqa: E402
import collections  # noqa: E402
import glob  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import tensorflow as tf  # noqa: E402

from bert_layer.data.batching import length_grouped_batches  # noqa: E402
from bert_layer.data.examples import read_examples  # noqa: E402
from bert_layer.inference.formats import OUTPUT, TEXT_INPUT, read_graph_def  # noqa: E402
from bert_layer.inference.runtimes import (  # noqa: E402
    FrozenClassifier,
    graph_precision,
    session_config,
)

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared/data/sst2/glue_dev.tsv"


def op_seconds(graph_path: str, batches: list[list[str]], threads: int) -> collections.Counter:
    """op type -> traced seconds over all `batches` (after one untraced warm-up pass)."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(read_graph_def(graph_path), name="")
    names = {op.name for op in graph.get_operations()}
    if TEXT_INPUT not in names:
        raise ValueError(f"{graph_path} takes ids, not text (a numpy-tokenizer graph); this "
                         f"profile feeds raw strings to `{TEXT_INPUT}`.")
    config = session_config()  # What FrozenClassifier runs: its Grappler passes, no more.
    config.intra_op_parallelism_threads = threads
    inputs, output = graph.get_tensor_by_name(f"{TEXT_INPUT}:0"), f"{OUTPUT}:0"
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    seconds: collections.Counter = collections.Counter()
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        for batch in batches:
            session.run(output, {inputs: batch})
        for batch in batches:
            metadata = tf.compat.v1.RunMetadata()
            session.run(output, {inputs: batch}, options=options, run_metadata=metadata)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    op = node.timeline_label.split("(")[0].split("=")[-1].strip() or "?"
                    seconds[op] += node.all_end_rel_micros / 1e6
    return seconds


def keras_op_seconds(module: str, precision: str, batches: list[list[str]],
                     threads: int) -> collections.Counter:
    """op type -> traced seconds of a classifier on `module` in a Keras tf.function over
    `batches` (after one untraced warm-up pass), from TensorFlow's profiler: the time of each
    op event on the executor's threads, after Grappler's rewrites."""
    import keras
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from bert_layer.training.classifier import ClassifierSpec, build_classifier

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    keras.utils.set_random_seed(0)
    model = build_classifier(ClassifierSpec(module=module, class_names=("a", "b"),
                                            fine_tune_layers=0, precision=precision))
    forward = tf.function(lambda texts: model(texts, training=False),
                          input_signature=[tf.TensorSpec([None], tf.string)])
    tensors = [tf.constant(batch) for batch in batches]
    for batch in tensors:
        forward(batch).numpy()
    seconds: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for batch in tensors:
            forward(batch).numpy()
        tf.profiler.experimental.stop()
        for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
            space = xplane_pb2.XSpace.FromString(Path(path).read_bytes())
            for plane in space.planes:
                names = {key: meta.name for key, meta in plane.event_metadata.items()}
                for line in plane.lines:
                    if not line.name.startswith("tf_Compute"):  # The executor's threads.
                        continue
                    for event in line.events:
                        name = names.get(event.metadata_id, "")
                        if "/" in name and ":" in name:  # "<node name>:<op type>"
                            seconds[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graph", help="a .pb written by `bert-layer freeze` (graph tokenizer)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="TSV/CSV of texts (default: %(default)s)")
    parser.add_argument("--text-column", default="sentence", help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="intra-op threads (default: usable CPUs, %(default)s)")
    parser.add_argument("--keras", metavar="MODULE",
                        help="also profile a classifier on this hub module in Keras")
    parser.add_argument("--top", type=int, default=15, help="op types shown (default: 15)")
    args = parser.parse_args(argv)
    texts = read_examples(os.fspath(args.data), text_column=args.text_column).texts
    # Grouped by the graph's own token counts, as `bert-layer predict` groups them.
    counts = FrozenClassifier(args.graph).tokenize(texts)["input_mask"].sum(axis=1)
    batches = [[texts[i] for i in batch] for batch in
               length_grouped_batches(counts, args.batch_size)]
    seconds = op_seconds(args.graph, batches, args.threads)
    total = sum(seconds.values())
    print(f"{len(texts)} texts of {args.data}, {len(batches)} length-grouped batches; "
          f"traced op time {total:.2f}s")
    if not args.keras:
        print(f"{'op type':<40}{'seconds':>9}{'share':>8}")
        for op, s in seconds.most_common(args.top):
            print(f"{op:<40}{s:>9.3f}{s / total:>8.1%}")
        return
    precision = graph_precision(read_graph_def(args.graph))
    keras_seconds = keras_op_seconds(args.keras, precision, batches, args.threads)
    keras_total = sum(keras_seconds.values())
    print(f"{args.keras} in Keras ({precision}): traced op time {keras_total:.2f}s")
    print(f"{'op type':<40}{'frozen s':>9}{'share':>8}{'Keras s':>9}{'share':>8}")
    for op, _ in (seconds + keras_seconds).most_common(args.top):
        print(f"{op:<40}{seconds[op]:>9.3f}{seconds[op] / total:>8.1%}"
              f"{keras_seconds[op]:>9.3f}{keras_seconds[op] / keras_total:>8.1%}")


if __name__ == "__main__":
    main()
