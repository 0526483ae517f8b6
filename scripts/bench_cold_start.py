"""Cold start: time to the first prediction and peak memory, for each trained-model artifact.

Each measurement is a fresh Python process that imports bert_layer's runtimes, loads one
artifact (`bert_layer.inference.runtimes.load_classifier`, as `bert-layer predict` does) and
predicts one sentence pair (`predict_probabilities`, as predict batches). It reports the
seconds to import, to load and to predict, and its peak resident memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`). Artifacts alternate round by round; the table
gives each one's median over the rounds.

    python scripts/bench_cold_start.py --keras runs/mrpc/model.keras \\
        --frozen runs/mrpc-frozen.pb --serving runs/mrpc-serving/1

`--baseline-tree DIR` measures the frozen graph again with the bert_layer of another checkout
(e.g. main before this loader), in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchlib import PROJECT_ROOT, format_machine, machine_info, write_json

SENTENCE = ("The company said it expects earnings to rise . ||| Earnings will rise , the "
            "company said .")

# The worker: its clock starts before TensorFlow is imported.
_WORKER = """
import time
start = time.perf_counter()
import json, resource, sys
from bert_layer.inference.predict import predict_probabilities
from bert_layer.inference.runtimes import load_classifier
imported = time.perf_counter()
classifier = load_classifier(sys.argv[1])
loaded = time.perf_counter()
probabilities = predict_probabilities(classifier, [sys.argv[2]], batch_size=32)
done = time.perf_counter()
print("COLD-START " + json.dumps({
    "import_s": imported - start, "load_s": loaded - imported, "predict_s": done - loaded,
    "first_prediction_s": done - start,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "probabilities": probabilities[0].tolist()}))
"""


def measure(path: str, tree: Path) -> dict:
    """One cold start of `path` in a fresh process importing bert_layer from `tree`."""
    env = {**os.environ, "PYTHONPATH": os.fspath(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", _WORKER, os.path.abspath(path), SENTENCE],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    line = next((x for x in done.stdout.splitlines() if x.startswith("COLD-START ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{path}: the worker failed:\n{done.stderr[-3000:]}")
    return json.loads(line.removeprefix("COLD-START "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras", help="model.keras from bert-layer train")
    parser.add_argument("--frozen", help="frozen graph .pb from bert-layer freeze")
    parser.add_argument("--serving", help="serving SavedModel folder (freeze --format "
                        "saved_model)")
    parser.add_argument("--baseline-tree", type=Path,
                        help="another checkout whose FrozenClassifier to measure too")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path,
                        default=PROJECT_ROOT / "scripts" / "results" / "cold_start.json")
    args = parser.parse_args()
    engines = {name: (path, PROJECT_ROOT) for name, path in
               (("frozen graph (.pb)", args.frozen), ("serving SavedModel", args.serving),
                ("Keras model (.keras)", args.keras)) if path}
    if args.baseline_tree and args.frozen:
        engines["frozen graph (.pb), baseline tree"] = (args.frozen, args.baseline_tree)
    if not engines:
        parser.error("give at least one of --keras, --frozen, --serving")
    info = machine_info()
    print(format_machine(info), flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in engines}
    for round_index in range(args.rounds):
        for name, (path, tree) in engines.items():
            runs[name].append(measure(path, tree))
            print(f"round {round_index + 1} {name}: "
                  f"{runs[name][-1]['first_prediction_s']:.2f}s", file=sys.stderr, flush=True)
    rows = {name: {key: statistics.median(r[key] for r in results)
                   for key in ("import_s", "load_s", "predict_s", "first_prediction_s",
                               "peak_rss_mb")}
            for name, results in runs.items()}
    print(f"\nMedian of {args.rounds} fresh processes each; one sentence pair.\n")
    print("| artifact | to first prediction | import | load | predict | peak RSS | file |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        path = engines[name][0]
        print(f"| {name} | {row['first_prediction_s']:.1f} s | {row['import_s']:.1f} s | "
              f"{row['load_s']:.1f} s | {row['predict_s']:.1f} s | "
              f"{row['peak_rss_mb'] / 1024:.2f} GB | {_size_mb(path):.0f} MB |")
    write_json(args.json, {"machine": info, "rounds": args.rounds, "sentence": SENTENCE,
                           "artifacts": {n: {"path": p, "tree": os.fspath(t),
                                             "size_mb": _size_mb(p)}
                                         for n, (p, t) in engines.items()},
                           "median": rows, "runs": runs})
    print(f"\nJSON: {args.json}")


def _size_mb(path: str) -> float:
    if os.path.isfile(path):
        return os.path.getsize(path) / 2**20
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


if __name__ == "__main__":
    main()
