"""`bert-layer train --distribute multi-worker`: two worker processes on 127.0.0.1.

The mechanics (only the chief writes, the workers end with identical weights) on the tiny
module. The comparison of accuracy with the same training in one process (the default model on
SST-2: three real fine-tunes, ~7 minutes) is a benchmark, `scripts/bench_multi_worker.py`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from real_data import DATA_DIR

from bert_layer.outputs import MARKER_FILE
from bert_layer.training.train import DUMP_WEIGHTS_ENV

pytestmark = pytest.mark.integration

TIMEOUT_SECONDS = 1200
PER_REPLICA_BATCH = 8  # 16 a step


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# The tiny mechanics run (no dev data, one epoch).
TINY = ["--max-train-rows", "64", "--epochs", "1", "--max-seq-length", "32"]


def _train_command(module_dir: str, out: str, distribute: str, batch_size: int,
                   options: list[str]) -> list[str]:
    train = os.path.join(DATA_DIR, "sst2", "train.tsv")
    if not os.path.isfile(train):
        pytest.skip(f"SST-2 not found under {DATA_DIR}/sst2")
    return [sys.executable, "-m", "bert_layer.cli.main", "train", "--module", module_dir,
            "--train", train, "--out", out, *options,
            "--batch-size", str(batch_size), "--pooling", "mean", "--fine-tune-layers", "-1",
            "--distribute", distribute]


def _wait_all(processes: list[subprocess.Popen], logs: list[str]) -> None:
    """Waits for every process, bounded in time; kills all of them on a failure or timeout."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    try:
        for p in processes:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(processes, logs):
        with open(log, encoding="utf-8") as f:
            assert p.returncode == 0, f.read()[-4000:]


def _start(command: list[str], log: str, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "w", encoding="utf-8") as f:
        return subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, **env})


def _multi_worker_run(module_dir: str, root, options: list[str]) -> list[str]:
    """Two workers training into root/multi/out; returns their scratch folders."""
    ports = _free_ports(2)
    workers = [f"127.0.0.1:{port}" for port in ports]
    processes, logs, scratch = [], [], []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        scratch.append(str(root / f"tmp{index}"))
        os.makedirs(scratch[-1])
        logs.append(str(root / f"worker{index}.log"))
        processes.append(_start(
            _train_command(module_dir, str(root / "multi" / "out"), "multi-worker",
                           PER_REPLICA_BATCH, options), logs[-1],
            {"TF_CONFIG": json.dumps(config), "TMPDIR": scratch[-1],
             DUMP_WEIGHTS_ENV: str(root / f"weights{index}.npz")}))
    _wait_all(processes, logs)
    return scratch


@pytest.fixture(scope="module")
def mechanics(tiny_module_dir: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("multi_worker_tiny")
    scratch = _multi_worker_run(tiny_module_dir, root, TINY)
    return {"root": root, "scratch": scratch}


def _report(path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_only_the_chief_writes_outputs(mechanics):
    root = mechanics["root"]
    assert sorted(os.listdir(root / "multi")) == ["out"]
    assert sorted(os.listdir(root / "multi" / "out")) == [MARKER_FILE, "model.keras",
                                                          "report.json"]
    for scratch in mechanics["scratch"]:  # The non-chief's temporary output folder is gone.
        assert os.listdir(scratch) == []
    distribution = _report(root / "multi" / "out" / "report.json")["distribution"]
    assert distribution == {"strategy": "multi-worker", "workers": 2, "chief": True,
                            "replicas": 2, "per_replica_batch_size": PER_REPLICA_BATCH,
                            "global_batch_size": 2 * PER_REPLICA_BATCH}


def test_the_workers_end_with_identical_weights(mechanics):
    root = mechanics["root"]
    first, second = np.load(root / "weights0.npz"), np.load(root / "weights1.npz")
    assert len(first.files) == len(second.files) > 0
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
