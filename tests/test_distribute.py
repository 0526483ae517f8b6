"""BertLayer under tf.distribute: the same training as one process, per-replica weights."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY_CONFIG, TINY_VOCAB, random_weights

SCRIPT = os.path.join(os.path.dirname(__file__), "mirrored_fit_script.py")


@pytest.fixture(scope="module")
def no_dropout_module_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny module without dropout, so that training steps are deterministic."""
    from bert_layer.export.checkpoint import write_checkpoint_folder
    from bert_layer.export.writer import export_module

    config = dataclasses.replace(TINY_CONFIG, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0)
    root = tmp_path_factory.mktemp("no_dropout")
    write_checkpoint_folder(str(root / "checkpoint"), config, TINY_VOCAB,
                            random_weights(config, 0))
    return export_module(str(root / "checkpoint"), str(root / "module"), max_seq_length=32)


def _run_script(module_dir: str, out: str, job: str) -> str:
    # A fresh process: logical CPUs can be set only before TensorFlow initialises devices.
    result = subprocess.run([sys.executable, SCRIPT, module_dir, out, job],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def mirrored_run(no_dropout_module_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    return _run_script(no_dropout_module_dir, str(tmp_path_factory.mktemp("sgd")), "sgd")


def _weights(run_dir: str, kind: str) -> dict[str, np.ndarray]:
    return dict(np.load(os.path.join(run_dir, f"{kind}.npz")))


def test_mirrored_fit_on_two_cpus_matches_one_process(mirrored_run):
    one, two = _weights(mirrored_run, "none"), _weights(mirrored_run, "mirrored")
    assert int(one["replicas"]) == 1 and int(two["replicas"]) == 2
    assert list(one["names"]) == list(two["names"])
    for i, name in enumerate(one["names"]):
        np.testing.assert_array_equal(one[f"before_{i}"], two[f"before_{i}"], err_msg=name)
        np.testing.assert_allclose(two[f"after_{i}"], one[f"after_{i}"], rtol=0, atol=1e-5,
                                   err_msg=name)


def test_mirrored_fit_moves_every_trainable_weight(mirrored_run):
    run = _weights(mirrored_run, "mirrored")
    moved = {name: float(np.abs(run[f"after_{i}"] - run[f"before_{i}"]).max())
             for i, name in enumerate(run["names"])}
    assert any("layer_2" in name for name in moved) and any("pooler" in name for name in moved)
    # A key bias adds the same q·b to every score of a query: softmax cancels it, its
    # gradient is 0 in exact arithmetic, in one process as under the strategy.
    key_bias = {name for name in moved if name.endswith("attention.self.key.bias")}
    assert key_bias and all(moved[name] < 1e-6 for name in key_bias)
    still = [name for name, delta in moved.items() if name not in key_bias and delta < 1e-6]
    assert not still


def test_train_classifier_mirrored_reports_the_global_batch(no_dropout_module_dir, tmp_path):
    run = _run_script(no_dropout_module_dir, str(tmp_path), "train")
    with open(os.path.join(run, "train", "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["distribution"] == {"strategy": "mirrored", "workers": 1, "chief": True,
                                      "replicas": 2,
                                      "per_replica_batch_size": 4, "global_batch_size": 8}
    assert report["train_config"]["distribute"] == "mirrored"
    assert sorted(os.listdir(os.path.join(run, "train"))) == ["model.keras", "report.json"]
