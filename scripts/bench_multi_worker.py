"""Multi-worker training against one process: the same fine-tuning of the default model on
SST-2, as two `bert-layer train --distribute multi-worker` processes on 127.0.0.1 and as one
process with the same global batch; dev accuracy and training rate of both.

The recipe: the first 256 rows of SST-2's train.tsv, 3 epochs, learning rate 2e-4, mean
pooling, every encoder layer fine-tuned, 8 examples a replica (16 a step in both runs), the
best epoch's dev accuracy on the 872 GLUE dev sentences, for each of `--seeds` (the same seed
to both runs). Target: the two runs' mean accuracies within 2 points (one seed of a 256-row
fine-tune is one draw: the runs see the rows in other orders and draw other dropout masks, so
the seeds' spread is printed beside the means). The two workers share the machine's cores, so
their rate says what a second machine would add only on a machine with cores to spare.
JSON in scripts/results/bench_multi_worker.json.

    bert-layer convert --default
    python scripts/bench_multi_worker.py --seeds 0 1 2   # ~7 minutes a seed on 2 shared cores
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (  # noqa: E402
    DATA_DIR,
    PROJECT_ROOT,
    add_model_arguments,
    format_machine,
    machine_info,
    module_folder,
    write_json,
)

RESULTS = PROJECT_ROOT / "scripts" / "results" / "bench_multi_worker.json"
TARGET_POINTS = 2.0  # Multi-worker dev accuracy within this many points of one process.
TIMEOUT_SECONDS = 3600


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def train_command(args: argparse.Namespace, module: str, out: str, distribute: str,
                  batch_size: int, seed: int) -> list[str]:
    return [sys.executable, "-m", "bert_layer.cli.main", "train", "--module", module,
            "--train", os.fspath(DATA_DIR / "sst2" / "train.tsv"),
            "--dev", os.fspath(DATA_DIR / "sst2" / "glue_dev.tsv"), "--out", out,
            "--max-train-rows", str(args.train_rows), "--epochs", str(args.epochs),
            "--learning-rate", str(args.learning_rate), "--batch-size", str(batch_size),
            "--pooling", "mean", "--fine-tune-layers", "-1", "--distribute", distribute,
            "--seed", str(seed), "--quiet"]


def run_all(commands: list[list[str]], envs: list[dict[str, str]], logs: list[str]) -> float:
    """Starts every command at once, waits for all (killing all on a failure); seconds."""
    start = time.perf_counter()
    processes = []
    for command, env, log in zip(commands, envs, logs):
        with open(log, "w", encoding="utf-8") as f:
            processes.append(subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT,
                                              env={**os.environ, **env}))
    try:
        for p in processes:
            p.wait(timeout=TIMEOUT_SECONDS)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(processes, logs):
        if p.returncode != 0:
            with open(log, encoding="utf-8") as f:
                raise SystemExit(f"{log}: exit {p.returncode}\n{f.read()[-4000:]}")
    return time.perf_counter() - start


def summary(report_file: str, seconds: float) -> dict[str, object]:
    with open(report_file, encoding="utf-8") as f:
        report = json.load(f)
    rates = [e["examples_per_second"] for e in report["epochs"]]
    return {"dev_accuracy": report["best"]["val_accuracy"], "best_epoch": report["best_epoch"],
            "train_examples_per_second": rates, "wall_seconds": round(seconds, 1),
            "distribution": report.get("distribution")}


MULTI, SINGLE = "multi-worker (2 processes)", "one process"


def run_seed(args: argparse.Namespace, module: str, root: str, seed: int) -> dict[str, dict]:
    """Both runs of one seed: two workers at once, then one process with their global batch."""
    root = os.path.join(root, f"seed{seed}")
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    commands, envs, logs = [], [], []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        scratch = os.path.join(root, f"tmp{index}")
        os.makedirs(scratch)
        commands.append(train_command(args, module, os.path.join(root, "multi"),
                                      "multi-worker", args.per_replica_batch, seed))
        envs.append({"TF_CONFIG": json.dumps(config), "TMPDIR": scratch})
        logs.append(os.path.join(root, f"worker{index}.log"))
    seconds = run_all(commands, envs, logs)
    results = {MULTI: summary(os.path.join(root, "multi", "report.json"), seconds)}
    seconds = run_all([train_command(args, module, os.path.join(root, "single"), "none",
                                     2 * args.per_replica_batch, seed)], [{}],
                      [os.path.join(root, "single.log")])
    results[SINGLE] = summary(os.path.join(root, "single", "report.json"), seconds)
    return results


def print_table(by_seed: dict[int, dict[str, dict]]) -> float:
    """The runs of every seed, then each run's mean ± sd; returns the means' gap in points."""
    print(f"\n{'seed':<6}{'run':<28}{'dev accuracy':>14}{'best epoch':>12}"
          f"{'train ex/s (epochs)':>26}{'wall s':>9}")
    for seed, results in by_seed.items():
        for name, r in results.items():
            rates = " ".join(f"{x:.1f}" for x in r["train_examples_per_second"])
            print(f"{seed:<6}{name:<28}{r['dev_accuracy']:>14.4f}{r['best_epoch']:>12}"
                  f"{rates:>26}{r['wall_seconds']:>9.0f}")
    means = {}
    for name in (MULTI, SINGLE):
        accuracies = [100 * results[name]["dev_accuracy"] for results in by_seed.values()]
        means[name] = statistics.mean(accuracies)
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        print(f"{name:<28} mean dev accuracy {means[name]:.2f} ± {spread:.2f} "
              f"({len(accuracies)} seed(s))")
    return abs(means[MULTI] - means[SINGLE])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--per-replica-batch", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="each seed trains both ways (default: 0)")
    add_model_arguments(parser, RESULTS)
    args = parser.parse_args()
    info = machine_info()
    print(format_machine(info), flush=True)
    by_seed = {}
    with module_folder(args.module, args.checkpoint, 128) as module, \
            tempfile.TemporaryDirectory(prefix="bench_multi_worker_") as root:
        for seed in args.seeds:
            by_seed[seed] = run_seed(args, module, root, seed)
            print(f"seed {seed}: " + ", ".join(
                f"{name} {r['dev_accuracy']:.4f}" for name, r in by_seed[seed].items()),
                flush=True)
    gap = print_table(by_seed)
    verdict = "met" if gap <= TARGET_POINTS else "NOT met"
    print(f"gap of the mean accuracies {gap:.2f} points (target <= {TARGET_POINTS}: {verdict})")
    write_json(args.json, {"machine": info, "settings": vars(args) | {
        "checkpoint": os.fspath(args.checkpoint), "json": os.fspath(args.json),
        "module": args.module and os.fspath(args.module)},
        "results": {str(seed): results for seed, results in by_seed.items()},
        "gap_points": round(gap, 2), "target_points": TARGET_POINTS})
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
