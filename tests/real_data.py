"""The real data sets in ../shared/data, read as the tests need them (skip when absent)."""

from __future__ import annotations

import csv
import os

import pytest

PROJECT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# BERT_LAYER_DATA_DIR: for checkouts elsewhere (e.g. git worktrees beside the main one).
DATA_DIR = os.environ.get("BERT_LAYER_DATA_DIR",
                          os.path.join(PROJECT_DIR, "..", "shared", "data"))
DEFAULT_CHECKPOINT_DIR = os.path.join(PROJECT_DIR, "checkpoints", "all-minilm-l6-v2")


def _data_file(*parts: str) -> str:
    path = os.path.join(DATA_DIR, *parts)
    if not os.path.isfile(path):
        pytest.skip(f"Data file not found: {os.path.normpath(path)} (expected ../shared/data "
                    f"relative to the project root).")
    return path


def read_sst2_dev() -> list[str]:
    """The 872 sentences of GLUE SST-2 dev, as written in the file (skips if missing)."""
    with open(_data_file("sst2", "glue_dev.tsv"), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if rows[0] != ["sentence", "label"]:
        raise ValueError(f"sst2/glue_dev.tsv: expected header ['sentence', 'label'], "
                         f"found {rows[0]}.")
    return [row[0] for row in rows[1:]]


def read_mrpc_dev() -> list[tuple[str, str, int]]:
    """The 408 (sentence 1, sentence 2, label) pairs of GLUE MRPC dev (skips if missing)."""
    # The file starts with a byte-order mark and has unbalanced quotes inside strings.
    with open(_data_file("mrpc", "dev.tsv"), encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    if rows[0] != header:
        raise ValueError(f"mrpc/dev.tsv: expected header {header}, found {rows[0]}.")
    return [(row[3], row[4], int(row[0])) for row in rows[1:]]
