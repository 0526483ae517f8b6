"""The benchmark harness shared by `bench.py` and `bench_padding.py`.

What lives here, once: timed passes (`Pass`, `Series`, `time_batches`), typed labels
(`Label`), engines run each in its own process and measured in alternating rounds
(`EngineProcess`, `measure_in_processes`), machine facts (`machine_info`), token counts and
fixed padding for BertLayer, the module folder a run measures, and atomic JSON output.

Why processes: engines that share a process share its CPU. PyTorch's OpenMP threads spin
while they wait, and slow TensorFlow beside them; setting OMP_WAIT_POLICY=PASSIVE to stop
that slows PyTorch instead. So each engine gets a process of its own with its default
threading, and while one is timed every other is stopped (SIGSTOP): nothing spins beside it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
DEFAULT_CHECKPOINT = PROJECT_ROOT / "checkpoints" / "all-minilm-l6-v2"
RESULT_PREFIX = "BENCH-RESULT "  # Marks a worker's JSON line on stdout (logs go elsewhere).


@dataclasses.dataclass(frozen=True, order=True)
class Label:
    """What one series measures: `engine` ("ours-frozen", "pytorch", ...) at `precision`
    ("fp32", "bf16") on `task` ("inference", "train")."""

    task: str
    engine: str
    precision: str = "fp32"

    def __str__(self) -> str:
        return f"{self.engine} {self.precision}"


@dataclasses.dataclass(frozen=True)
class Pass:
    """One timed pass: `items` sentences (or training examples) in `seconds`."""

    seconds: float
    items: int
    batch_seconds: tuple[float, ...] = ()  # Per batch (or step), in order, when timed so.

    @property
    def rate(self) -> float:
        return self.items / self.seconds


@dataclasses.dataclass
class Series:
    """The timed passes of one label, grouped by round."""

    label: Label
    rounds: list[list[Pass]] = dataclasses.field(default_factory=list)

    @property
    def passes(self) -> list[Pass]:
        return [p for passes in self.rounds for p in passes]

    def rate(self) -> float:
        """Items/s: the median over rounds of each round's median pass."""
        return statistics.median(statistics.median(p.rate for p in passes)
                                 for passes in self.rounds)

    def best_rate(self) -> float:
        return max(p.rate for p in self.passes)

    def as_json(self) -> dict[str, object]:
        return {**dataclasses.asdict(self.label), "rate": self.rate(),
                "best_rate": self.best_rate(),
                "rounds": [[{"seconds": p.seconds, "items": p.items} for p in passes]
                           for passes in self.rounds]}


def time_batches(run: Callable[[object], object], batches: Sequence[object],
                 count: Callable[[object], int] = len) -> Pass:
    """Runs `run` on every batch, timing each (the caller's `run` fetches its result)."""
    seconds = []
    for batch in batches:
        start = time.perf_counter()
        run(batch)
        seconds.append(time.perf_counter() - start)
    return Pass(sum(seconds), sum(count(b) for b in batches), tuple(seconds))


# === Engines in their own processes ===


class EngineProcess:
    """A worker process holding one engine, stopped (SIGSTOP) whenever it is not timed.

    The worker (see `serve`) loads its engine, warms it up and answers one JSON line; then
    each `run()` asks it for one timed pass. `command` starts the worker.
    """

    def __init__(self, label: Label, command: list[str], log: str):
        self.label, self.log = label, log
        with open(log, "w", encoding="utf-8") as stderr:  # The worker's logs and errors.
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.ready: dict | None = None

    def _answer(self) -> dict:
        for line in self._process.stdout:
            if line.startswith(RESULT_PREFIX):
                return json.loads(line[len(RESULT_PREFIX):])
        with open(self.log, encoding="utf-8", errors="replace") as f:
            tail = "".join(f.readlines()[-15:])
        raise RuntimeError(f"The {self.label} worker exited (code {self._process.wait()}) "
                           f"before answering; the end of its log {self.log}:\n{tail}")

    def wait_ready(self) -> dict:
        """The worker's first answer (after loading and warm-up); then it is stopped."""
        self.ready = self._answer()
        self._process.send_signal(signal.SIGSTOP)
        return self.ready

    def run(self, passes: int) -> list[Pass]:
        self._process.send_signal(signal.SIGCONT)
        self._process.stdin.write(json.dumps({"passes": passes}) + "\n")
        self._process.stdin.flush()
        answer = self._answer()
        self._process.send_signal(signal.SIGSTOP)
        return [Pass(p["seconds"], p["items"], tuple(p.get("batch_seconds", ())))
                for p in answer["passes"]]

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()


def serve(load: Callable[[], tuple[Callable[[], Pass], dict]]) -> None:
    """A worker's main loop: `load()` returns (one timed pass, the ready answer); then each
    request line `{"passes": n}` is answered with n passes."""
    run, ready = load()
    _answer(ready)
    for line in sys.stdin:
        passes = [run() for _ in range(json.loads(line)["passes"])]
        _answer({"passes": [dataclasses.asdict(p) for p in passes]})


def _answer(obj: dict) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def measure_in_processes(workers: Sequence[EngineProcess], rounds: int,
                         passes_per_round: int, what: str,
                         units: dict[str, tuple[float, str]] | None = None) -> list[Series]:
    """Alternates the workers: each round times `passes_per_round` passes of each, one
    worker at a time, in an order rotated every round (slow drifts of load spread evenly).
    `units`: task -> (divisor, unit) for the progress lines (default: items/s)."""
    units = units or {}
    series = [Series(w.label) for w in workers]
    for index in range(rounds):
        shift = index % len(workers)
        for w, s in list(zip(workers, series))[shift:] + list(zip(workers, series))[:shift]:
            s.rounds.append(w.run(passes_per_round))
            scale, unit = units.get(w.label.task, (1.0, "/s"))
            rates = ", ".join(f"{p.rate / scale:.1f}" for p in s.rounds[-1])
            print(f"  {what} round {index + 1}/{rounds}  {str(w.label):<24} {rates} {unit}",
                  flush=True)
    return series


@contextmanager
def started(workers: Sequence[EngineProcess]) -> Iterator[Sequence[EngineProcess]]:
    """Waits until every worker is ready; closes them all afterwards, whatever happens."""
    try:
        for w in workers:
            w.wait_ready()
        yield workers
    finally:
        for w in workers:
            w.close()


# === Machine, files ===


def machine_info(threads: int | None = None) -> dict[str, object]:
    """What the numbers depend on: CPU model and flags of note, load, library versions."""
    import importlib.metadata

    flags, model = set(), platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    versions = {}
    for package in ("tensorflow", "keras", "torch", "transformers", "onnxruntime",
                    "ai-edge-litert"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": model, "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)), "threads": threads,
            "bf16_instructions": sorted(flags & {"avx512_bf16", "amx_bf16"}),
            # The int8 dot-product instructions (bert_layer.inference.cpu); AVX2 has none.
            "int8_instructions": sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}),
            "avx512": "avx512f" in flags,
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), **versions}


def format_machine(info: dict[str, object]) -> str:
    versions = ", ".join(f"{k} {info[k]}" for k in
                         ("tensorflow", "torch", "transformers", "onnxruntime", "ai-edge-litert")
                         if info.get(k))
    return (f"Machine: {info['cpu']}, {info['usable_cpus']} usable CPUs of {info['cpu_count']} "
            f"({'/'.join(info['bf16_instructions']) or 'no bf16 instructions'}; "
            f"{'/'.join(info.get('int8_instructions', [])) or 'no int8 dot-product instructions'}"
            f"{'' if info.get('avx512', True) else ', AVX2, no AVX512'}), load "
            f"{info['load_average_1m']} at start; Python {info['python']}, {versions}")


def write_json(path: Path, report: dict[str, object]) -> None:
    """Writes `report` to `path` atomically (a reader never sees half a file)."""
    from bert_layer.outputs import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(os.fspath(path), overwrite=True, is_dir=False) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def add_model_arguments(parser, results: Path) -> None:
    """--checkpoint, --module (a hub module; default: exported from --checkpoint by
    `module_folder`) and --json (where the results go)."""
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--module", type=Path, help="hub module folder (default: exported "
                        "from --checkpoint)")
    parser.add_argument("--json", type=Path, default=results)


@contextmanager
def module_folder(module: Path | None, checkpoint: Path, max_seq_length: int) -> Iterator[str]:
    """Yields `module`, or a module exported from `checkpoint` into a temporary folder."""
    if module is not None:
        yield os.fspath(module)
        return
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"Checkpoint folder not found: {checkpoint}. Create it with "
                                f"`bert-layer convert --default`, or pass --module.")
    from bert_layer.export.writer import export_module  # The TF1 exporter: only when needed.

    with tempfile.TemporaryDirectory(prefix="bench_module_") as tmp:
        start = time.perf_counter()
        path = export_module(checkpoint, os.path.join(tmp, "module"),
                             max_seq_length=max_seq_length)
        print(f"Exported {checkpoint} -> {path} in {time.perf_counter() - start:.1f}s",
              flush=True)
        yield path


# === BertLayer helpers both scripts use ===


def token_counts(layer, texts: Sequence[str], chunk: int = 256):
    """int [n]: packed length ([CLS], word pieces, [SEP]) of each text, by `layer`'s own
    tokenizer (truncated at its max_seq_length)."""
    import numpy as np
    import tensorflow as tf

    count = tf.function(lambda t: tf.reduce_sum(layer.preprocess(t)["input_mask"], axis=1),
                        input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    return np.concatenate([count(tf.constant(list(texts[i:i + chunk]))).numpy()
                           for i in range(0, len(texts), chunk)])


def pad_to_length(features: dict, length: int) -> dict:
    """Zero-pads int32 [B, T] features to [B, length]; T <= length (the layer truncates)."""
    import tensorflow as tf

    return {name: tf.pad(t, [[0, 0], [0, length - tf.shape(t)[1]]])
            for name, t in features.items()}
