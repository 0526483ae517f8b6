"""NER benchmark: our tagger against Hugging Face BertForTokenClassification (PyTorch).

Both fine-tune the same all-MiniLM-L6-v2 weights on WNUT-16 with the same recipe: every layer
trained, first-wordpiece labels, AdamW lr 5e-5 (weight decay 0.01, none on LayerNorm and
biases), 10% linear warm-up then linear decay, gradient norm clipped at 1.0, batch 16,
`--epochs` epochs (3), the last epoch kept, max_seq_length 128, and the same batches in the same
order: ours shuffles with tf.data and records, step by step, which tweets each batch held
(`--batch-order ours`, the default); PyTorch then trains on exactly those batches, so that
a seed gives both engines the same data and the difference is the engines' own
(`--batch-order own`: PyTorch shuffles with numpy, as an earlier version did). PyTorch also
starts from the head (tag layer) our tagger drew (`--head ours`, the default): on this short
recipe the first head alone moves the test F1 by several points (README, NER), so a seed draws
it once for both; `--head own` keeps PyTorch's own draw. Then:
  - entity F1 (seqeval, micro over entities) on the test split, per seed;
  - training examples (tweets) per second, the fit loop alone;
  - tagging raw text: the test tweets joined by spaces, to entity spans with character
    offsets. Ours: the frozen graph (`bert-layer freeze`) through `bert_layer.inference.tagging`
    (words split in Python, alignment and model in the graph, spans). PyTorch: the fast
    tokenizer (offsets), the model, word labels from each word's first piece, seqeval's
    entities, character spans. Batches of 32 texts grouped by length, default threads.
`--precision bf16`: ours trains and tags in mixed bfloat16, PyTorch under CPU autocast.

The split of ../shared/data/wnut16/train.conll (2,394 tweets, file order): tweets 1-1,915
train, 1,916-2,155 dev (unused: both keep the last epoch), 2,156-2,394 test (239 tweets).

Each engine and seed runs in a process of its own, one after the other. On a shared machine
run it under the heavy-job lock:
  python scripts/bench_ner.py --seeds 0 1 2
A seed takes 6-7 minutes on 2 cores of an AVX512 EPYC, ~15 on an AVX2 one, so seeds may run on
different days: `--keep` keeps the
other seeds' rows of the results file (same split, epochs, recipe and CPU, or it refuses) and
prints the table over all of them:
  python scripts/bench_ner.py --seeds 1 2 --keep
and `--table` prints the table of the results file again, running nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

WNUT = benchlib.DATA_DIR / "wnut16" / "train.conll"
SPLIT = {"train": (0, 1915), "dev": (1915, 2155), "test": (2155, 2394)}
RECIPE = dict(learning_rate=5e-5, batch_size=16, warmup_fraction=0.1, weight_decay=0.01,
              max_seq_length=128)
MAX_LENGTH = RECIPE["max_seq_length"]  # Wordpieces, both engines.
TAG_BATCH = 32
RESULT = benchlib.RESULT_PREFIX


def _split(name: str):
    from bert_layer.data.conll import read_conll

    sentences = read_conll(os.fspath(WNUT))
    start, end = SPLIT[name]
    limit = int(os.environ.get("BENCH_NER_LIMIT", 0))  # Smoke runs only: the first N of each.
    return sentences.take(range(start, min(end, start + limit) if limit else end))


def _tag_set():
    from bert_layer.data.conll import tag_names

    return tag_names(_split("train").entity_types())


def _scores(gold, predicted) -> dict:
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {"f1": f1_score(gold, predicted), "precision": precision_score(gold, predicted),
            "recall": recall_score(gold, predicted)}


def _rate(run, texts, passes: int = 2) -> float:
    """Texts per second of `run(texts)`: the best of `passes` after one warm-up."""
    run(texts[:TAG_BATCH])
    best = 0.0
    for _ in range(passes):
        start = time.perf_counter()
        run(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


# === Ours ===

def _order_file(work: str, seed: int) -> str:
    return os.path.join(work, f"batch-order-{seed}.json")


def _record_batch_order(record: dict[str, list]) -> None:
    """Makes our tagger's training data note, for every batch it hands to Keras, the indices
    of its tweets in the training split (appended to `record["batches"]`). Read where the
    batches leave tf.data because it cannot be recomputed from the seed: Keras makes dataset
    iterators that it never reads between epochs, and each one advances
    `reshuffle_each_iteration`. A tweet that occurs twice, tags and all, is noted by its first
    index (`record["each_row"]`: that index for every training row)."""
    import tensorflow as tf

    from bert_layer.training import tagger

    product = tagger.tagging_dataset

    def recording(words, labels, *, batch_size, shuffle, seed):
        dataset = product(words, labels, batch_size=batch_size, shuffle=shuffle, seed=seed)
        if not shuffle:
            return dataset
        keys = list(zip(map(tuple, words), map(tuple, labels)))
        where: dict[tuple, int] = {}
        for i, key in enumerate(keys):
            where.setdefault(key, i)
        record["each_row"] = [where[key] for key in keys]

        def note(batch_words, batch_labels):
            record["batches"].append([
                where[tuple(w.decode() for w in row if w), tuple(int(y) for y in tags[:n])]
                for row, tags in zip(batch_words.numpy(), batch_labels.numpy())
                for n in [sum(1 for w in row if w)]])
            return batch_words

        def passing(batch_words, batch_labels):
            same = tf.py_function(note, [batch_words, batch_labels], tf.string)
            same.set_shape(batch_words.shape)
            return same, batch_labels

        return dataset.map(passing)

    tagger.tagging_dataset = recording


def _head_file(work: str, seed: int) -> str:
    return os.path.join(work, f"head-{seed}.npz")


def _record_first_head(path: str) -> None:
    """Makes our tagger's builder save the tag layer's first kernel and bias to `path`
    (numpy, kernel [H, K]), for PyTorch to start from."""
    import numpy as np

    from bert_layer.training import tagger

    build = tagger.build_tagger

    def building(spec):
        model = build(spec)
        head = model.get_layer("tags")
        np.savez(path, kernel=np.asarray(head.kernel), bias=np.asarray(head.bias))
        return model

    tagger.build_tagger = building


def _check_batch_order(record: dict[str, list], epochs: int) -> None:
    """Every epoch's batches hold each training row once, or the record is not the order."""
    every = sorted(record["each_row"])
    steps = -(-len(every) // RECIPE["batch_size"])
    if len(record["batches"]) != epochs * steps:
        sys.exit(f"recorded {len(record['batches'])} batches, expected {epochs} x {steps}")
    for epoch in range(epochs):
        seen = sorted(i for batch in record["batches"][epoch * steps:(epoch + 1) * steps]
                      for i in batch)
        if seen != every:
            sys.exit(f"epoch {epoch + 1}'s recorded batches are not each training row once")


def run_ours(seed: int, settings: argparse.Namespace) -> dict:
    from bert_layer.inference.formats import read_graph_def
    from bert_layer.inference.tagger_graphs import freeze_tagger
    from bert_layer.inference.tagging import (
        FrozenTagger,
        KerasTagger,
        tag_probabilities,
        tag_texts,
        tags_of,
    )
    from bert_layer.training.specs import TaggerSpec, TrainConfig
    from bert_layer.training.tagger import train_tagger

    train, test = _split("train"), _split("test")
    with benchlib.module_folder(None, benchlib.DEFAULT_CHECKPOINT, MAX_LENGTH) as module:
        spec = TaggerSpec(module, tuple(_tag_set()), fine_tune_layers=-1,
                          max_seq_length=MAX_LENGTH, precision=settings.precision)
        config = TrainConfig(epochs=settings.epochs, seed=seed, **{
            k: RECIPE[k] for k in ("batch_size", "learning_rate", "warmup_fraction",
                                   "weight_decay")})
        out = os.path.join(settings.work, f"ours-{seed}")
        record: dict[str, list] = {"batches": [], "each_row": []}
        if settings.batch_order == "ours":
            _record_batch_order(record)
        if settings.head == "ours":
            _record_first_head(_head_file(settings.work, seed))
        report = train_tagger(spec, train, None, out, config, verbose=2)
        if settings.batch_order == "ours":
            if len(record["each_row"]) != len(train):
                sys.exit("a training tweet became several windows: the batches name rows, "
                         "not tweets, and PyTorch could not be fed the same ones")
            _check_batch_order(record, settings.epochs)
            with open(_order_file(settings.work, seed), "w", encoding="utf-8") as f:
                json.dump(record["batches"], f)
        tagger = KerasTagger(os.path.join(out, "model.keras"))
        predicted = [tags_of(p, tagger.tag_names)
                     for p in tag_probabilities(tagger, test.words, batch_size=TAG_BATCH)]
        result = {"engine": "ours", "seed": seed, **_scores(test.tags, predicted),
                  "train_examples_per_second": statistics.median(
                      e["examples_per_second"] for e in report["epochs"]),
                  "batch_order": "tf.data", "head": "ours"}
        frozen = os.path.join(settings.work, f"ours-{seed}.pb")
        freeze_tagger(tagger.model, frozen)
        runner = FrozenTagger(read_graph_def(frozen), frozen)
        texts = [" ".join(words) for words in test.words]
        result["tag_texts_per_second"] = _rate(
            lambda t: tag_texts(runner, t, batch_size=TAG_BATCH), texts)
    return result


# === PyTorch ===

def _torch_epochs(n: int, epochs: int, seed: int, order_file: str | None) -> tuple[list, str]:
    """The batches of each epoch (lists of tweet indices) and where they come from: the ones
    our tagger consumed for this seed (`order_file`, written by its worker), else a numpy
    shuffle."""
    import numpy as np

    if order_file is not None:
        if not os.path.exists(order_file):
            sys.exit(f"{order_file} not found: with --batch-order ours, run ours first.")
        with open(order_file, encoding="utf-8") as f:
            consumed = json.load(f)
        steps = len(consumed) // epochs
        return [consumed[e * steps:(e + 1) * steps] for e in range(epochs)], "ours"
    rng = np.random.default_rng(seed)
    size = RECIPE["batch_size"]
    return [[list(order[s:s + size]) for s in range(0, n, size)]
            for order in (rng.permutation(n) for _ in range(epochs))], "numpy"


def _encode_labels(encoded, labels):
    """First-wordpiece labels, -100 elsewhere (transformers' token-classification recipe)."""
    import torch

    rows = []
    for b, word_labels in enumerate(labels):
        previous, row = None, []
        for word in encoded.word_ids(b):
            row.append(-100 if word is None or word == previous else word_labels[word])
            previous = word
        rows.append(row)
    return torch.tensor(rows)


def _autocast(precision: str):
    """PyTorch's mixed bfloat16 on CPU for "bf16" (weights and updates stay float32)."""
    import contextlib

    import torch

    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_pytorch(seed: int, settings: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from seqeval.metrics.sequence_labeling import get_entities
    from transformers import (
        BertForTokenClassification,
        BertTokenizerFast,
        get_linear_schedule_with_warmup,
    )

    from bert_layer.export.convert import default_model_dir

    torch.manual_seed(seed)
    tags = _tag_set()
    index = {t: i for i, t in enumerate(tags)}
    train, test = _split("train"), _split("test")
    folder = default_model_dir()
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    model = BertForTokenClassification.from_pretrained(
        folder, num_labels=len(tags), id2label=dict(enumerate(tags)), label2id=index)
    if settings.head == "ours":
        path = _head_file(settings.work, seed)
        if not os.path.exists(path):
            sys.exit(f"{path} not found: with --head ours, run ours first.")
        head = np.load(path)
        with torch.no_grad():
            model.classifier.weight.copy_(torch.from_numpy(head["kernel"].T.copy()))  # [K, H]
            model.classifier.bias.copy_(torch.from_numpy(head["bias"]))
    no_decay = ("bias", "LayerNorm.weight")
    groups = [{"params": [p for n, p in model.named_parameters()
                          if not any(k in n for k in no_decay)],
               "weight_decay": RECIPE["weight_decay"]},
              {"params": [p for n, p in model.named_parameters()
                          if any(k in n for k in no_decay)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=RECIPE["learning_rate"], eps=1e-6)
    epochs = settings.epochs
    steps = epochs * -(-len(train) // RECIPE["batch_size"])
    schedule = get_linear_schedule_with_warmup(
        optimizer, int(RECIPE["warmup_fraction"] * steps), steps)
    labels = [[index[t] for t in tags_] for tags_ in train.tags]
    batches, source = _torch_epochs(
        len(train), epochs, seed,
        _order_file(settings.work, seed) if settings.batch_order == "ours" else None)
    rates = []
    model.train()
    for epoch_batches in batches:
        start = time.perf_counter()
        for picked in epoch_batches:
            words, word_labels = [train.words[i] for i in picked], [labels[i] for i in picked]
            encoded = tokenizer(words, is_split_into_words=True, truncation=True,
                                max_length=MAX_LENGTH, padding=True, return_tensors="pt")
            with _autocast(settings.precision):
                loss = model(**encoded, labels=_encode_labels(encoded, word_labels)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        rates.append(len(train) / (time.perf_counter() - start))
    model.eval()

    def word_tags(words_batch):
        encoded = tokenizer(words_batch, is_split_into_words=True, truncation=True,
                            max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        with torch.inference_mode(), _autocast(settings.precision):
            logits = model(**encoded).logits.float().argmax(-1).numpy()
        out = []
        for b, words in enumerate(words_batch):
            found = {}
            for position, word in enumerate(encoded.word_ids(b)):
                if word is not None and word not in found:
                    found[word] = tags[logits[b, position]]
            out.append([found.get(i, "O") for i in range(len(words))])
        return out

    predicted = []
    for start in range(0, len(test), TAG_BATCH):
        predicted += word_tags(test.words[start:start + TAG_BATCH])
    result = {"engine": "pytorch", "seed": seed, **_scores(test.tags, predicted),
              "train_examples_per_second": statistics.median(rates), "batch_order": source,
              "head": settings.head}

    def pipeline(texts):
        """Raw texts -> entity spans: fast tokenizer, model, first-piece word labels."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results = [None] * len(texts)
        for start in range(0, len(order), TAG_BATCH):
            batch = [texts[i] for i in order[start:start + TAG_BATCH]]
            encoded = tokenizer(batch, truncation=True, max_length=MAX_LENGTH, padding=True,
                                return_offsets_mapping=True, return_tensors="pt")
            offsets = encoded.pop("offset_mapping").numpy()
            with torch.inference_mode(), _autocast(settings.precision):
                probabilities = model(**encoded).logits.float().softmax(-1).numpy()
            for b, text in enumerate(batch):
                first, spans = {}, {}
                for position, word in enumerate(encoded.word_ids(b)):
                    if word is None:
                        continue
                    first.setdefault(word, position)
                    begin = spans.get(word, (offsets[b, position, 0], 0))[0]
                    spans[word] = (begin, offsets[b, position, 1])
                words = sorted(first)
                chosen = [probabilities[b, first[w]] for w in words]
                word_tags_ = [tags[int(p.argmax())] for p in chosen]
                entities = []
                for kind, a, z in get_entities(word_tags_):
                    s, e = int(spans[words[a]][0]), int(spans[words[z]][1])
                    score = float(np.mean([chosen[k].max() for k in range(a, z + 1)]))
                    entities.append({"start": s, "end": e, "text": text[s:e], "label": kind,
                                     "score": score})
                results[order[start + b]] = entities
        return results

    texts = [" ".join(words) for words in test.words]
    result["tag_texts_per_second"] = _rate(pipeline, texts)
    return result


ENGINES = {"ours": run_ours, "pytorch": run_pytorch}


def write_split(folder: Path) -> None:
    """The fixed split as CoNLL files (token, tag), for `bert-layer train --task tag`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SPLIT:
        sentences = _split(name)
        with open(folder / f"{name}.conll", "w", encoding="utf-8") as f:
            for words, tags in zip(sentences.words, sentences.tags):
                f.writelines(f"{w}\t{t}\n" for w, t in zip(words, tags))
                f.write("\n")
        print(f"{folder / name}.conll: {len(sentences)} tweets")


def worker(engine: str, seed: int, settings: argparse.Namespace) -> None:
    result = {**ENGINES[engine](seed, settings), "precision": settings.precision}
    print(RESULT + json.dumps(result), flush=True)


def _spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{100 * mean:6.2f} ± {100 * spread:4.2f}"


def print_table(results: list[dict], engines: list[str]) -> None:
    """F1 per engine (mean ± sd over seeds), then, seed by seed, ours against PyTorch: speed
    is compared within a seed only (both engines ran back to back; kept seeds may come from
    another day, when the machine ran at another speed)."""
    print(f"\n{'engine':10}{'test entity F1 (mean ± sd)':>30}")
    for engine in engines:
        print(f"{engine:10}{_spread([r['f1'] for r in results if r['engine'] == engine]):>30}")
    by_seed = {(r["seed"], r["engine"]): r for r in results}
    seeds = sorted({seed for seed, engine in by_seed if (seed, "pytorch") in by_seed
                    and (seed, "ours") in by_seed})
    if not seeds:
        return
    print(f"\n{'seed':>4}{'F1 ours':>9}{'F1 pytorch':>12}{'train ours/pytorch':>20}"
          f"{'tagging ours/pytorch':>22}")
    for seed in seeds:
        ours, torch = by_seed[seed, "ours"], by_seed[seed, "pytorch"]
        train = ours["train_examples_per_second"] / torch["train_examples_per_second"]
        tag = ours["tag_texts_per_second"] / torch["tag_texts_per_second"]
        print(f"{seed:>4}{100 * ours['f1']:>9.2f}{100 * torch['f1']:>12.2f}{train:>19.2f}x"
              f"{tag:>21.2f}x")


def _kept_results(path: Path, epochs: int, machine: dict, seeds: list[int],
                  batch_order: str, precision: str, head: str) -> list[dict]:
    """The rows of an earlier run in `path` for the seeds not run now; they must come from the
    same split, epochs, recipe and CPU model, since the table compares them as one run."""
    earlier = json.loads(path.read_text(encoding="utf-8"))
    same = {"split": {k: list(v) for k, v in SPLIT.items()}, "epochs": epochs, "recipe": RECIPE,
            "batch_order": batch_order, "precision": precision, "head": head}
    earlier.setdefault("batch_order", "own")  # Runs before --batch-order shuffled apart.
    earlier.setdefault("precision", "fp32")  # Runs before --precision were float32.
    earlier.setdefault("head", "own")  # Runs before --head drew PyTorch's head apart.
    differs = [k for k, v in same.items() if earlier.get(k) != v]
    if earlier["machine"]["cpu"] != machine["cpu"]:
        differs.append(f"cpu ({earlier['machine']['cpu']})")
    if differs:
        sys.exit(f"{path}: its {', '.join(differs)} differ from this run's; --keep adds seeds "
                 f"only to a run of the same benchmark on the same CPU.")
    return [r for r in earlier["results"] if r["seed"] not in seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--out", type=Path,
                        default=benchlib.PROJECT_ROOT / "scripts" / "results" / "bench_ner.json")
    parser.add_argument("--batch-order", choices=["ours", "own"], default="ours",
                        help="ours: PyTorch trains on the batches our tagger consumed, in its "
                             "order (the default); own: each engine shuffles its own way")
    parser.add_argument("--head", choices=["ours", "own"], default="ours",
                        help="ours: PyTorch starts from the tag layer our tagger drew (the "
                             "default); own: from its own draw")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: ours in mixed bfloat16 (training and the frozen graph), "
                             "PyTorch under CPU autocast to bfloat16")
    parser.add_argument("--keep", action="store_true",
                        help="keep the other seeds' rows of --out (see the module docstring)")
    parser.add_argument("--table", action="store_true",
                        help="only print the table of the results in --out")
    parser.add_argument("--write-split", metavar="DIR", type=Path,
                        help="only write the split as DIR/{train,dev,test}.conll and exit")
    parser.add_argument("--worker", choices=list(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.seed, args)
        return
    if args.write_split:
        write_split(args.write_split)
        return
    if args.table:
        earlier = json.loads(args.out.read_text(encoding="utf-8"))
        print(benchlib.format_machine(earlier["machine"]))
        print_table(earlier["results"], args.engines)
        return
    machine = benchlib.machine_info()
    if "ours" in (args.batch_order, args.head) and args.engines[0] != "ours":
        sys.exit("--batch-order ours and --head ours need --engines ours pytorch (ours "
                 "first: PyTorch trains on the batches ours consumed, from the head it drew).")
    kept = (_kept_results(args.out, args.epochs, machine, args.seeds, args.batch_order,
                          args.precision, args.head)
            if args.keep else [])
    print(benchlib.format_machine(machine), flush=True)
    print(f"WNUT-16 split (file order): {SPLIT}; {args.epochs} epochs, seeds {args.seeds}, "
          f"batch order: {args.batch_order}, head: {args.head}, precision: {args.precision}"
          + (f"; kept from {args.out}: seeds {sorted({r['seed'] for r in kept})}"
             if kept else ""), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_ner_") as work:
        for seed in args.seeds:
            for engine in args.engines:
                start = time.perf_counter()
                process = subprocess.run(
                    [sys.executable, __file__, "--worker", engine, "--seed", str(seed),
                     "--epochs", str(args.epochs), "--work", work,
                     "--batch-order", args.batch_order, "--head", args.head,
                     "--precision", args.precision],
                    stdout=subprocess.PIPE, text=True, check=True)
                line = next(x for x in process.stdout.splitlines() if x.startswith(RESULT))
                result = json.loads(line[len(RESULT):])
                result["wall_seconds"] = time.perf_counter() - start
                results.append(result)
                print(f"{engine} seed {seed}: test entity F1 {100 * result['f1']:.2f}, "
                      f"train {result['train_examples_per_second']:.1f} tweets/s, tagging "
                      f"{result['tag_texts_per_second']:.1f} texts/s "
                      f"({result['wall_seconds']:.0f}s)", flush=True)
                # After every run, so that a stopped benchmark keeps what it finished.
                benchlib.write_json(args.out, {
                    "machine": machine, "split": SPLIT, "epochs": args.epochs,
                    "seeds": sorted({r["seed"] for r in kept + results}), "recipe": RECIPE,
                    "batch_order": args.batch_order, "head": args.head,
                    "precision": args.precision,
                    "results": kept + results,
                    **({"kept_from_earlier_runs": sorted({r["seed"] for r in kept})}
                       if kept else {})})
    print_table(kept + results, args.engines)
    print(f"Results in {args.out}")


if __name__ == "__main__":
    main()
