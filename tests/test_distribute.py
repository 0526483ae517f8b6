"""BertLayer under tf.distribute: the same training as one process, per-replica weights."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from tiny import TINY_CONFIG, TINY_VOCAB, random_weights

from bert_layer.outputs import MARKER_FILE

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


@pytest.mark.large  # A tf.distribute fit: ~40 s on 2 cores.
def test_mirrored_fit_on_two_cpus_matches_one_process(mirrored_run):
    one, two = _weights(mirrored_run, "none"), _weights(mirrored_run, "mirrored")
    assert int(one["replicas"]) == 1 and int(two["replicas"]) == 2
    assert list(one["names"]) == list(two["names"])
    for i, name in enumerate(one["names"]):
        np.testing.assert_array_equal(one[f"before_{i}"], two[f"before_{i}"], err_msg=name)
        np.testing.assert_allclose(two[f"after_{i}"], one[f"after_{i}"], rtol=0, atol=1e-5,
                                   err_msg=name)


@pytest.mark.large  # A tf.distribute fit: ~40 s on 2 cores.
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


@pytest.mark.large  # A tf.distribute fit: ~40 s on 2 cores.
def test_train_classifier_mirrored_reports_the_global_batch(no_dropout_module_dir, tmp_path):
    run = _run_script(no_dropout_module_dir, str(tmp_path), "train")
    with open(os.path.join(run, "train", "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["distribution"] == {"strategy": "mirrored", "workers": 1, "chief": True,
                                      "replicas": 2,
                                      "per_replica_batch_size": 4, "global_batch_size": 8}
    assert report["train_config"]["distribute"] == "mirrored"
    assert sorted(os.listdir(os.path.join(run, "train"))) == [
        MARKER_FILE, "model.keras", "report.json"]


# === The cluster from TF_CONFIG ===

class _Resolver:
    def __init__(self, task_type, task_id, cluster):
        self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

    def cluster_spec(self):
        return types.SimpleNamespace(as_dict=lambda: self._cluster)


@pytest.mark.parametrize("task_type, task_id, cluster, chief", [
    ("worker", 0, {"worker": ["a:1", "b:1"]}, True),
    ("worker", 1, {"worker": ["a:1", "b:1"]}, False),
    ("chief", 0, {"chief": ["a:1"], "worker": ["b:1"]}, True),
    ("worker", 0, {"chief": ["a:1"], "worker": ["b:1"]}, False),
    (None, None, {}, True),
])
def test_the_chief_is_the_chief_task_else_worker_0(task_type, task_id, cluster, chief):
    from bert_layer.training.distribute import is_chief

    strategy = types.SimpleNamespace(cluster_resolver=_Resolver(task_type, task_id, cluster))
    assert is_chief(strategy) is chief


@pytest.mark.parametrize("tf_config, expected", [
    (None, "reads the cluster from the TF_CONFIG environment variable, which is not set"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
     "TF_CONFIG is not a valid cluster description (IndexError: 1)"),
    ("{not json", "TF_CONFIG is not a valid cluster description (JSONDecodeError"),
])
def test_multi_worker_without_a_valid_tf_config_is_one_clear_error(
        tf_config, expected, tiny_module_dir, tmp_path, monkeypatch, capsys):
    from bert_layer.cli.main import main

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    data = tmp_path / "train.tsv"
    data.write_text("sentence\tlabel\nthe movie was great .\t1\nbad\t0\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(["train", "--module", tiny_module_dir, "--train", str(data), "--out", str(out),
                 "--max-seq-length", "32", "--distribute", "multi-worker"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0]
    assert err[0].startswith("bert-layer train: error: ")
    assert sorted(os.listdir(tmp_path)) == ["train.tsv"]
