"""Benchmarks dynamic padding against fixed padding for BertLayer on SST-2 dev.

Measures sentences per second of a BertLayer(pooling="cls", n_fine_tune_layers=0) forward
pass, tokenization included, for every combination of
  padding:   dynamic (each batch padded to its own longest row, what BertLayer does),
             fixed 128 or fixed 512 (the packed inputs padded with zeros to that length);
  tokenizer: graph (tensorflow-text ops) or numpy (FullTokenizer through tf.numpy_function);
  order:     the file's order, or sorted by token count (so batches hold similar lengths).
Each configuration is one `tf.function` (strings in, pooled output out) whose input
signature has a dynamic batch, and the encoder's inputs are `[None, None]`: nothing
retraces per shape. All configurations run in one process: each is warmed up once on every
padded shape it will see; then `--repeats` rounds each time one pass of every configuration,
interleaved batch by batch, and the best (or median) pass of each is reported: the ratios
compare passes that met the same load of a shared machine. (One process holds every
configuration on purpose: they are one engine, TensorFlow, so nothing foreign spins beside
it; `bench.py` compares engines, each in its own process.) The harness pieces, token counts
and fixed padding come from `benchlib`, shared with `bench.py`.

Usage:
  python scripts/bench_padding.py           # full SST-2 dev: 10 CPU-minutes, 14 min at load 5
  python scripts/bench_padding.py --quick   # the first 96 sentences
  python scripts/bench_padding.py --module DIR --json results.json
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow reads it once, when loaded.

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from benchlib import (  # noqa: E402
    DATA_DIR,
    DEFAULT_CHECKPOINT,
    machine_info,
    module_folder,
    pad_to_length,
    token_counts,
    write_json,
)

from bert_layer.data.examples import read_examples  # noqa: E402
from bert_layer.layers.layer import BertLayer  # noqa: E402
from bert_layer.text.tokenizer import TOKENIZER_KINDS  # noqa: E402

DEFAULT_DATA = DATA_DIR / "sst2" / "glue_dev.tsv"
TEXT_COLUMN = "sentence"
MODULE_MAX_SEQ_LENGTH = 512  # Exported modules take up to this, so fixed 512 is possible.
QUICK_LIMIT = 96
STATISTICS = ("best", "median")
ORDERS = ("file", "sorted")
# Speed-up of dynamic over fixed-128 padding that dynamic padding should reach, by order: a
# PyTorch encoder measured on the 2-core reference machine reached 2.7x (file order) and
# 5.2x (sorted).
TARGET_SPEEDUPS = {"file": 2.5, "sorted": 4.0}
# Pooled outputs of one batch must agree across paddings (padding is masked out). Looser
# than bench.py's 1e-4 on probabilities: this compares the pooled output itself, ~50x larger
# in its changes than the probabilities of bench.py's small untrained head.
OUTPUT_ATOL = 1e-3


@dataclasses.dataclass(frozen=True)
class Padding:
    """How a batch is padded: to its longest row (`fixed` False) or to `max_seq_length`."""

    name: str
    max_seq_length: int  # The layer's truncation length; also the fixed width.
    fixed: bool


# Dynamic padding truncates at 128 like fixed-128, so both encode the same tokens.
PADDINGS = (Padding("dynamic", 128, False), Padding("fixed-128", 128, True),
            Padding("fixed-512", 512, True))
BASELINE_PADDING = "fixed-128"


@dataclasses.dataclass(frozen=True)
class Config:
    """One measured configuration."""

    padding: Padding
    tokenizer: str
    order: str

    @property
    def label(self) -> str:
        return f"{self.padding.name}/{self.tokenizer}/{self.order}"


@dataclasses.dataclass
class Measurement:
    """The timed passes of one configuration over all `sentences`."""

    config: Config
    sentences: int
    times_s: list[float] = dataclasses.field(default_factory=list)

    def time_s(self, statistic: str) -> float:
        return min(self.times_s) if statistic == "best" else statistics.median(self.times_s)

    def sentences_per_s(self, statistic: str) -> float:
        return self.sentences / self.time_s(statistic)


Forward = Callable[[tf.Tensor], tf.Tensor]


# === Inputs ===


def load_sentences(path: Path, limit: int | None) -> list[str]:
    """The SST-2 sentences of `path`, in file order; only the first `limit` if given."""
    texts = read_examples(os.fspath(path), text_column=TEXT_COLUMN).texts
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be at least 1 sentence. Received: {limit}")
        texts = texts[:limit]
    return texts


def ordered_indices(counts: np.ndarray, order: str) -> np.ndarray:
    """Text indices in file order, or sorted by token count (stable: ties keep file order)."""
    if order == "file":
        return np.arange(len(counts))
    if order == "sorted":
        return np.argsort(counts, kind="stable")
    raise ValueError(f"Unknown order {order!r}; expected one of {list(ORDERS)}.")


def make_batches(texts: Sequence[str], indices: np.ndarray,
                 batch_size: int) -> list[tf.Tensor]:
    """String tensors [batch] of the texts at `indices`, `batch_size` at a time."""
    return [tf.constant([texts[i] for i in indices[start:start + batch_size]])
            for start in range(0, len(indices), batch_size)]


def padded_shapes(counts: np.ndarray, indices: np.ndarray, batch_size: int,
                  padding: Padding) -> list[tuple[int, int]]:
    """The [batch, seq] shape each batch reaches the encoder with, in batch order."""
    shapes = []
    for start in range(0, len(indices), batch_size):
        rows = counts[indices[start:start + batch_size]]
        width = padding.max_seq_length if padding.fixed else min(
            int(rows.max()), padding.max_seq_length)
        shapes.append((len(rows), width))
    return shapes


# === The measured forward passes ===


def make_layer(module: str, tokenizer: str, max_seq_length: int) -> BertLayer:
    layer = BertLayer(module, max_seq_length=max_seq_length, pooling="cls",
                      n_fine_tune_layers=0, tokenizer=tokenizer)
    layer.build()
    return layer


def make_forward(layer: BertLayer, padding: Padding) -> Forward:
    """Strings [batch] -> pooled output [batch, hidden], as one tf.function traced once."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def forward(texts: tf.Tensor) -> tf.Tensor:
        features = layer.preprocess(texts)
        if padding.fixed:
            features = pad_to_length(features, padding.max_seq_length)
        return layer.encode(features, training=False)

    return forward


def time_batch(forward: Forward, batch: tf.Tensor) -> float:
    """Seconds to run `forward` on `batch`, the result fetched to numpy."""
    start = time.perf_counter()
    forward(batch).numpy()
    return time.perf_counter() - start


def warm_up(forward: Forward, batches: Sequence[tf.Tensor],
            shapes: Sequence[tuple[int, int]]) -> None:
    """Runs one batch of each distinct padded shape, so no timed pass meets a new one."""
    seen = set()
    for batch, shape in zip(batches, shapes):
        if shape not in seen:
            seen.add(shape)
            forward(batch).numpy()


def check_paddings_agree(forwards: dict[tuple[str, str], Forward], batch: tf.Tensor) -> None:
    """Raises ValueError if any padding changes the pooled output of `batch`."""
    for tokenizer in TOKENIZER_KINDS:
        reference = forwards[PADDINGS[0].name, tokenizer](batch).numpy()
        for padding in PADDINGS[1:]:
            diff = float(np.max(np.abs(forwards[padding.name, tokenizer](batch).numpy()
                                       - reference)))
            if diff > OUTPUT_ATOL:
                raise ValueError(f"{padding.name} padding ({tokenizer} tokenizer) changes the "
                                 f"pooled output by up to {diff:.2g}; expected at most "
                                 f"{OUTPUT_ATOL} (padding must be masked out).")


def planned_passes(config: Config, repeats: int, fixed_512_repeats: int) -> int:
    """How many timed passes `config` gets: fixed-512 ones are slow, so fewer."""
    slow = config.padding.fixed and config.padding.max_seq_length == MODULE_MAX_SEQ_LENGTH
    return fixed_512_repeats if slow else repeats


def time_round(timed: Sequence[Measurement], forwards: dict[tuple[str, str], Forward],
               batches: dict[str, Sequence[tf.Tensor]], round_index: int) -> None:
    """Times one pass of each of `timed`, appended to its `times_s`.

    The passes are interleaved batch by batch (batch i of every configuration, then batch
    i + 1), in an order rotated at each batch: a burst of load from other processes then
    slows all configurations alike, instead of whichever pass happened to be running.
    """
    totals = [0.0] * len(timed)
    num_batches = len(batches[ORDERS[0]])  # Every order has the same batches, reordered.
    for batch_index in range(num_batches):
        shift = (round_index * num_batches + batch_index) % len(timed)
        for slot in [*range(shift, len(timed)), *range(shift)]:
            c = timed[slot].config
            totals[slot] += time_batch(forwards[c.padding.name, c.tokenizer],
                                       batches[c.order][batch_index])
    for m, total in zip(timed, totals):
        m.times_s.append(total)


def measure(module: str, texts: Sequence[str], *, batch_size: int, repeats: int,
            fixed_512_repeats: int) -> list[Measurement]:
    """Warms up every configuration, then times interleaved passes over `texts`."""
    layers = {(tokenizer, length): make_layer(module, tokenizer, length)
              for tokenizer in TOKENIZER_KINDS for length in {p.max_seq_length for p in PADDINGS}}
    counts = token_counts(layers["graph", MODULE_MAX_SEQ_LENGTH], texts, batch_size)
    indices = {order: ordered_indices(counts, order) for order in ORDERS}
    batches = {order: make_batches(texts, indices[order], batch_size) for order in ORDERS}
    forwards = {(p.name, tokenizer): make_forward(layers[tokenizer, p.max_seq_length], p)
                for p in PADDINGS for tokenizer in TOKENIZER_KINDS}
    check_paddings_agree(forwards, batches["file"][0])

    configs = [Config(p, tokenizer, order)
               for p in PADDINGS for tokenizer in TOKENIZER_KINDS for order in ORDERS]
    measurements = [Measurement(c, len(texts)) for c in configs]
    start = time.perf_counter()
    for c in configs:
        warm_up(forwards[c.padding.name, c.tokenizer], batches[c.order],
                padded_shapes(counts, indices[c.order], batch_size, c.padding))
    print(f"Warmed up {len(configs)} configurations in {time.perf_counter() - start:.0f}s")

    for round_index in range(repeats):
        timed = [m for m in measurements
                 if round_index < planned_passes(m.config, repeats, fixed_512_repeats)]
        round_start = time.perf_counter()
        time_round(timed, forwards, batches, round_index)
        print(f"Round {round_index + 1}/{repeats} ({time.perf_counter() - round_start:.0f}s): "
              + ", ".join(f"{m.config.label} {m.times_s[-1]:.2f}s" for m in timed), flush=True)
    return measurements


# === Report ===


def speedups(measurements: Sequence[Measurement], statistic: str) -> dict[str, dict[str, float]]:
    """tokenizer -> order -> time with fixed-128 padding / time with dynamic padding."""
    times = {(m.config.padding.name, m.config.tokenizer, m.config.order): m.time_s(statistic)
             for m in measurements}
    return {tokenizer: {order: times[BASELINE_PADDING, tokenizer, order]
                        / times[PADDINGS[0].name, tokenizer, order] for order in ORDERS}
            for tokenizer in TOKENIZER_KINDS}


def round_speedups(measurements: Sequence[Measurement]) -> dict[str, dict[str, list[float]]]:
    """tokenizer -> order -> the speed-up within each round: both passes met the same load."""
    times = {(m.config.padding.name, m.config.tokenizer, m.config.order): m.times_s
             for m in measurements}
    return {tokenizer: {order: [fixed / dynamic for fixed, dynamic in zip(
        times[BASELINE_PADDING, tokenizer, order], times[PADDINGS[0].name, tokenizer, order])]
        for order in ORDERS} for tokenizer in TOKENIZER_KINDS}


def format_report(info: dict[str, object], data: dict[str, object],
                  measurements: Sequence[Measurement], ratios: dict[str, dict[str, float]],
                  per_round: dict[str, dict[str, list[float]]], statistic: str) -> str:
    """The printed table: machine, one row per configuration, then the speed-ups."""
    lines = [
        f"Machine: {info['cpu']}, {info['usable_cpus']} usable CPUs of {info['cpu_count']}, "
        f"load {info['load_average_1m']}, Python {info['python']}, TensorFlow "
        f"{info['tensorflow']}, TensorFlow's default threads",
        f"Data: {data['sentences']} sentences of {data['path']}, batch {data['batch_size']}; "
        f"{statistic} of the timed passes",
        "",
        f"{'padding':<10} {'tokenizer':<9} {'order':<6} {'passes':>6} {'best s':>8} "
        f"{'median s':>8} {'sent/s':>8}",
    ]
    for m in measurements:
        c = m.config
        lines.append(f"{c.padding.name:<10} {c.tokenizer:<9} {c.order:<6} {len(m.times_s):>6} "
                     f"{m.time_s('best'):>8.2f} {m.time_s('median'):>8.2f} "
                     f"{m.sentences_per_s(statistic):>8.1f}")
    lines += ["", f"Speed-up of dynamic over {BASELINE_PADDING} padding ({statistic} times; "
              f"in brackets, within each round):",
              f"{'tokenizer':<9} " + " ".join(
                  f"{order + ' (target >= ' + str(TARGET_SPEEDUPS[order]) + 'x)':<32}"
                  for order in ORDERS)]
    for tokenizer, by_order in ratios.items():
        cells = [f"{by_order[o]:.2f}x {'met' if by_order[o] >= TARGET_SPEEDUPS[o] else 'MISSED'} "
                 f"({', '.join(f'{r:.2f}' for r in per_round[tokenizer][o])})" for o in ORDERS]
        lines.append(f"{tokenizer:<9} " + " ".join(f"{cell:<32}" for cell in cells))
    return "\n".join(line.rstrip() for line in lines)


def report_json(info: dict[str, object], data: dict[str, object],
                measurements: Sequence[Measurement], ratios: dict[str, dict[str, float]],
                per_round: dict[str, dict[str, list[float]]],
                statistic: str) -> dict[str, object]:
    return {
        "machine": info,
        "data": data,
        "statistic": statistic,
        "results": [{"padding": m.config.padding.name, "tokenizer": m.config.tokenizer,
                     "order": m.config.order, "sentences": m.sentences, "times_s": m.times_s,
                     "best_s": m.time_s("best"), "median_s": m.time_s("median"),
                     "sentences_per_s": m.sentences_per_s(statistic)} for m in measurements],
        "speedup_dynamic_vs_fixed_128": ratios,
        "speedup_dynamic_vs_fixed_128_per_round": per_round,
        "targets": TARGET_SPEEDUPS,
        "targets_met": {t: {o: r >= TARGET_SPEEDUPS[o] for o, r in by_order.items()}
                        for t, by_order in ratios.items()},
    }


def run_benchmark(args: argparse.Namespace) -> None:
    """Measures every configuration, prints the table and writes `--json` if asked."""
    for name in ("batch_size", "repeats", "fixed_512_repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1. Received: "
                             f"{getattr(args, name)}")
    if args.fixed_512_repeats > args.repeats:
        raise ValueError(f"--fixed-512-repeats ({args.fixed_512_repeats}) cannot exceed "
                         f"--repeats ({args.repeats}).")
    tf.get_logger().setLevel("ERROR")  # The exporter's TF1 deprecation warnings.
    wall_start = time.perf_counter()
    limit = args.limit if args.limit is not None else (QUICK_LIMIT if args.quick else None)
    texts = load_sentences(args.data, limit)
    info = machine_info()
    with module_folder(args.module, args.checkpoint, MODULE_MAX_SEQ_LENGTH) as module:
        measurements = measure(module, texts, batch_size=args.batch_size,
                               repeats=args.repeats, fixed_512_repeats=args.fixed_512_repeats)
    data = {"path": os.fspath(args.data), "sentences": len(texts), "batch_size": args.batch_size}
    ratios = speedups(measurements, args.statistic)
    per_round = round_speedups(measurements)
    print()
    print(format_report(info, data, measurements, ratios, per_round, args.statistic))
    wall_s = time.perf_counter() - wall_start
    print(f"\nWall time: {wall_s:.0f}s")
    if args.json is not None:
        report = report_json(info, data, measurements, ratios, per_round, args.statistic)
        report["wall_time_s"] = wall_s
        write_json(args.json, report)
        print(f"Wrote {args.json}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="TSV with a 'sentence' column (default: SST-2 dev)")
    parser.add_argument("--module", type=Path,
                        help="hub module exported with --max-seq-length 512 (default: export "
                        "--checkpoint into a temporary folder)")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="Google-format checkpoint to export (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed passes per configuration (default: %(default)s)")
    parser.add_argument("--fixed-512-repeats", type=int, default=1,
                        help="timed passes for fixed-512 padding, about a minute each on 2 "
                        "cores (default: %(default)s)")
    parser.add_argument("--statistic", choices=STATISTICS, default="best",
                        help="time reported per configuration (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help=f"use only the first --limit sentences (default {QUICK_LIMIT})")
    parser.add_argument("--limit", type=int, help="use only the first LIMIT sentences")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    run_benchmark(parser.parse_args(argv))


if __name__ == "__main__":
    main()
