"""Regression benchmark: `bert-layer train --task regress` against Hugging Face's
BertForSequenceClassification(num_labels=1), Pearson on VADER's movie-snippet dev set.

Both engines start from the same weights (all-MiniLM-L6-v2: ours through `bert-layer convert
--default` and `export`, theirs the same safetensors) and follow the same recipe: every encoder
layer, the embeddings and the pooler train (`--fine-tune-layers -1` trains every weight, as
Hugging Face does by default), the pooler's [CLS] vector, dropout 0.1
before a linear head of one output, MSE loss, AdamW (lr 5e-5, weight decay 0.01 except
LayerNorm and biases, epsilon 1e-6), the global gradient norm clipped to 1, linear warm-up
over 10% of the updates then linear decay to 0, batches of 32, 3 epochs, 128 wordpieces at
most; the last epoch's model is scored (no model selection on dev). Each engine and seed
runs in a process of its own, one after the other; Pearson and Spearman are scipy's on the
1,605 dev snippets.

Usage (minutes on 2 shared cores: several per engine and seed at full size):
  python scripts/bench_regression.py                      # seeds 0 1 2, the full data
  python scripts/bench_regression.py --seeds 0 --max-train-rows 3000 --epochs 2
  python scripts/bench_regression.py --engines ours --keep-from OLD.json --json NEW.json
                                 # ours again, Hugging Face's runs taken from OLD.json
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow reads it once, when loaded.

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    DATA_DIR,
    DEFAULT_CHECKPOINT,
    PROJECT_ROOT,
    RESULT_PREFIX,
    format_machine,
    machine_info,
    module_folder,
    write_json,
)

TRAIN = DATA_DIR / "vader" / "movie_snippets_train.tsv"
DEV = DATA_DIR / "vader" / "movie_snippets_dev.tsv"
RESULTS = PROJECT_ROOT / "scripts" / "results" / "bench_regression.json"
ENGINES = ("ours", "huggingface")
TARGET = 0.01  # Ours may be at most this much Pearson below Hugging Face's.


def _read_tsv(path: Path) -> tuple[list[str], list[float]]:
    """VADER's files: `text<TAB>score`, no quoting (texts hold stray double quotes)."""
    import csv
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[0] for r in rows], [float(r[1]) for r in rows]


def _pearson_spearman(truth, predicted) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr
    return {"pearson": float(pearsonr(truth, predicted)[0]),
            "spearman": float(spearmanr(truth, predicted)[0])}


# === Workers: each runs in a process of its own ===


def run_ours(args: argparse.Namespace) -> dict:
    """`bert-layer train --task regress`, then `bert-layer evaluate` on dev."""
    from bert_layer.cli.main import main

    with tempfile.TemporaryDirectory(prefix="bench_regression_") as tmp:
        out, scores = os.path.join(tmp, "run"), os.path.join(tmp, "dev.json")
        train = ["train", "--task", "regress", "--module", args.module, "--train", args.train_file,
                 "--text-column", "text", "--label-column", "score", "--out", out,
                 "--fine-tune-layers", "-1", "--epochs", str(args.epochs), "--batch-size",
                 str(args.batch_size), "--learning-rate", str(args.learning_rate),
                 "--max-seq-length", str(args.max_seq_length), "--seed", str(args.seed),
                 "--quiet"]
        start = time.perf_counter()
        if main(train) != 0:
            raise RuntimeError("bert-layer train failed")
        seconds = time.perf_counter() - start
        if main(["evaluate", "--model", os.path.join(out, "model.keras"), "--input", str(DEV),
                 "--text-column", "text", "--label-column", "score", "--output", scores,
                 "--quiet"]) != 0:
            raise RuntimeError("bert-layer evaluate failed")
        with open(scores, encoding="utf-8") as f:
            result = json.load(f)
    return {"pearson": result["pearson"], "spearman": result["spearman"],
            "mse": result["mse"], "train_seconds": seconds}


def run_huggingface(args: argparse.Namespace) -> dict:
    """BertForSequenceClassification(num_labels=1) with the same recipe, in plain PyTorch."""
    import numpy as np
    import torch
    from transformers import (
        AutoTokenizer,
        BertForSequenceClassification,
        get_linear_schedule_with_warmup,
    )

    from bert_layer.export.convert import default_model_dir

    torch.manual_seed(args.seed)
    folder = default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = BertForSequenceClassification.from_pretrained(folder, num_labels=1)
    texts, labels = _read_tsv(Path(args.train_file))
    dev_texts, dev_labels = _read_tsv(DEV)
    tuned = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in tuned if not any(k in n for k in ("bias", "LayerNorm"))]
    no_decay = [p for n, p in tuned if any(k in n for k in ("bias", "LayerNorm"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.learning_rate, eps=1e-6)
    batches = (len(texts) + args.batch_size - 1) // args.batch_size
    steps = args.epochs * batches
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    generator = np.random.default_rng(args.seed)

    def encode(batch_texts):
        return tokenizer(batch_texts, truncation=True, max_length=args.max_seq_length,
                         padding=True, return_tensors="pt")

    start = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        order = generator.permutation(len(texts))
        for b in range(batches):
            index = order[b * args.batch_size:(b + 1) * args.batch_size]
            features = encode([texts[i] for i in index])
            target = torch.tensor([labels[i] for i in index], dtype=torch.float32)
            loss = model(**features, labels=target).loss  # MSE for num_labels=1.
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    seconds = time.perf_counter() - start
    model.eval()
    predicted = []
    with torch.no_grad():
        for b in range(0, len(dev_texts), 64):
            predicted.append(model(**encode(dev_texts[b:b + 64])).logits[:, 0].numpy())
    predicted = np.concatenate(predicted)
    return {**_pearson_spearman(dev_labels, predicted),
            "mse": float(np.mean((np.asarray(dev_labels) - predicted) ** 2)),
            "train_seconds": seconds}


WORKERS = {"ours": run_ours, "huggingface": run_huggingface}


# === The driver ===


def spread_rows(rows: int, folder: str) -> str:
    """A training file of `rows` rows spread evenly over the whole of TRAIN (its rows come
    sorted by sign: ~5,000 positive, then the negative), header and lines copied byte for
    byte; TRAIN itself when `rows` is 0."""
    if not rows:
        return os.fspath(TRAIN)
    with open(TRAIN, "rb") as f:
        header, *lines = f.readlines()
    picked = [lines[i * len(lines) // rows] for i in range(min(rows, len(lines)))]
    path = os.path.join(folder, f"train_{len(picked)}.tsv")
    with open(path, "wb") as f:
        f.writelines([header, *picked])
    return path


def _run_worker(engine: str, seed: int, args: argparse.Namespace, module: str,
                train_file: str) -> dict:
    argv = [sys.executable, __file__, "--worker", engine, "--seed", str(seed), "--module",
            module, "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--learning-rate", str(args.learning_rate), "--max-seq-length",
            str(args.max_seq_length), "--train-file", train_file]
    done = subprocess.run(argv, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{engine} seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def _table(runs: list[dict]) -> str:
    lines = [f"{'engine':<14}{'seed':>5}{'pearson':>10}{'spearman':>10}{'mse':>8}"
             f"{'train s':>9}"]
    for r in runs:
        lines.append(f"{r['engine']:<14}{r['seed']:>5}{r['pearson']:>10.4f}"
                     f"{r['spearman']:>10.4f}{r['mse']:>8.4f}{r['train_seconds']:>9.0f}")
    return "\n".join(lines)


def summarize(runs: list[dict]) -> dict:
    """Mean and spread of Pearson per engine over the seeds both ran, and the verdict. The
    target compares the means: a seed number does not pair the two engines' random draws
    (their shuffles and dropout come from different generators), so seed-by-seed differences
    are printed for reading, not judged."""
    import statistics

    seeds = sorted({r["seed"] for r in runs if r["engine"] == "ours"}
                   & {r["seed"] for r in runs if r["engine"] == "huggingface"})
    pearson = {e: [next(r["pearson"] for r in runs if r["engine"] == e and r["seed"] == s)
                   for s in seeds] for e in ENGINES}
    mean = {e: statistics.mean(v) for e, v in pearson.items()} if seeds else {}
    spread = {e: statistics.stdev(v) if len(v) > 1 else None for e, v in pearson.items()}
    gap = mean["huggingface"] - mean["ours"] if seeds else None
    return {"seeds_compared": seeds, "mean_pearson": mean, "sd_pearson": spread,
            "gap_of_means": gap,
            "gaps_per_seed": [h - o for h, o in zip(pearson["huggingface"], pearson["ours"])],
            "target": f"mean Pearson over the seeds at most {TARGET} below Hugging Face's",
            "target_met": gap is not None and gap <= TARGET}


def _verdict_line(summary: dict) -> str:
    if not summary["seeds_compared"]:
        return "no seed has run on both engines"
    mean, sd = summary["mean_pearson"], summary["sd_pearson"]
    spread = {e: "" if sd[e] is None else f" ± {sd[e]:.4f}" for e in ENGINES}
    return (f"mean Pearson over seeds {summary['seeds_compared']}: ours {mean['ours']:.4f}"
            f"{spread['ours']}, huggingface {mean['huggingface']:.4f}{spread['huggingface']}; "
            f"Hugging Face minus ours {summary['gap_of_means']:.4f} (per seed "
            f"{[round(g, 4) for g in summary['gaps_per_seed']]}); target ({summary['target']}): "
            f"{'met' if summary['target_met'] else 'NOT met'}")


def _kept_runs(path: Path, settings: dict, engines: list[str]) -> list[dict]:
    """The runs in `path` of the engines not run now, for this run's seeds; the file must
    come from the same settings, or the comparison would not be one benchmark."""
    earlier = json.loads(path.read_text(encoding="utf-8"))
    differs = [k for k, v in settings.items() if earlier["settings"].get(k) != v]
    if differs:
        sys.exit(f"{path}: its settings differ from this run's in {', '.join(differs)}.")
    return [r for r in earlier["runs"]
            if r["engine"] not in engines and r["seed"] in settings["seeds"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--max-train-rows", type=int, default=0, help="train on this many "
                        "rows spread evenly over the file (the file is sorted by sign); "
                        "0: all 9,000")
    parser.add_argument("--module", help="hub module folder (default: exported from "
                        "checkpoints/all-minilm-l6-v2)")
    parser.add_argument("--json", type=Path, default=RESULTS, help="written after every run, "
                        "so a stopped benchmark keeps the seeds it finished")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--keep-from", type=Path, metavar="JSON", help="take the runs of the "
                        "engines not run now from this earlier results file (same settings), "
                        "e.g. Hugging Face's after a change to ours alone")
    parser.add_argument("--table", action="store_true", help="run nothing: print the table "
                        "and verdict of the runs in --json and write its summary anew")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--train-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(RESULT_PREFIX + json.dumps(WORKERS[args.worker](args)), flush=True)
        return
    if args.table:
        earlier = json.loads(args.json.read_text(encoding="utf-8"))
        print(format_machine(earlier["machine"]))
        print(_table(earlier["runs"]))
        earlier.update(summarize(earlier["runs"]))
        for stale in ("gaps",):  # The per-seed rule's field, before summarize() existed.
            earlier.pop(stale, None)
        print(_verdict_line(earlier))
        write_json(args.json, earlier)
        return
    info = machine_info()
    print(format_machine(info), flush=True)
    settings = {k: v for k, v in vars(args).items()
                if k not in ("json", "table", "worker", "seed", "train_file", "engines",
                             "keep_from")}
    runs = _kept_runs(args.keep_from, settings, args.engines) if args.keep_from else []
    with module_folder(Path(args.module) if args.module else None, DEFAULT_CHECKPOINT,
                       args.max_seq_length) as module, \
            tempfile.TemporaryDirectory(prefix="bench_regression_") as folder:
        train_file = spread_rows(args.max_train_rows, folder)
        for seed in args.seeds:
            for engine in args.engines:
                result = _run_worker(engine, seed, args, module, train_file)
                runs.append({"engine": engine, "seed": seed, **result})
                print(f"{engine} seed {seed}: Pearson {result['pearson']:.4f}", flush=True)
                write_json(args.json, {"machine": info, "settings": settings,
                                       "train_rows": args.max_train_rows or 9000, "runs": runs,
                                       "complete": len(runs) == len(args.seeds) * len(ENGINES),
                                       **({"kept_from": str(args.keep_from)}
                                          if args.keep_from else {}),
                                       **summarize(runs)})
    print(_table(runs))
    print(_verdict_line(summarize(runs)))


if __name__ == "__main__":
    main()
