"""Errors in the folders and files a command is given answer before TensorFlow loads: each bad
input below gets its one line and exit 2 from a process that never imported TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest
from harness import PYTHON, assert_one_line_error, tree_hashes

# Runs each case's argv through main() in one fresh process; reports exit codes, stderr and
# whether TensorFlow (or numpy's heavier neighbours) was ever imported.
_RUNNER = textwrap.dedent("""
    import contextlib, io, json, sys, time
    from bert_layer.cli.main import main
    results = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stderr(err):
            code = main(argv)
        results.append([code, err.getvalue(), time.perf_counter() - start])
    print(json.dumps({"results": results, "tensorflow": "tensorflow" in sys.modules}))
""")


def _run_without_tensorflow(cases: list[list[str]], cwd: str) -> list[tuple[int, str, float]]:
    done = subprocess.run([PYTHON, "-c", _RUNNER, json.dumps(cases)], cwd=cwd, timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["tensorflow"] is False
    return report["results"]


@pytest.fixture
def bad_inputs(tmp_path):
    """Folders and files that look like inputs but are not what the commands read."""
    (tmp_path / "empty").mkdir()
    bad_config = tmp_path / "bad_config"
    bad_config.mkdir()
    (bad_config / "bert_config.json").write_text('{"hidden_size": 8,')
    (bad_config / "vocab.txt").write_text("[PAD]\n")
    (bad_config / "bert_model.ckpt.index").write_bytes(b"")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    looks_like_module = tmp_path / "module"  # The files a module has (empty: not read here).
    (looks_like_module / "variables").mkdir(parents=True)
    (looks_like_module / "saved_model.pb").write_bytes(b"")
    (looks_like_module / "variables" / "variables.index").write_bytes(b"")
    (tmp_path / "garbage.pb").write_bytes(b"PK\x03\x04 not a graph")
    (tmp_path / "empty.pb").write_bytes(b"")
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na\t0\nb\t1\n")
    return tmp_path


CASES = {
    "export-no-config": (
        ["export", "--checkpoint", "empty", "--out", "m"],
        ["--checkpoint empty is not a BERT checkpoint folder",
         "vocab.txt (or a SentencePiece .model), bert_model.ckpt.index"]),
    "export-bad-json": (
        ["export", "--checkpoint", "bad_config", "--out", "m"],
        ["bad_config/bert_config.json: not valid JSON"]),
    "convert-no-weights": (
        ["convert", "hf", "--out", "c"],
        ["hf is not a Hugging Face model folder", "model.safetensors", "vocab.txt or "
         "tokenizer.json or spiece.model missing"]),
    "train-not-a-module": (
        ["train", "--module", "empty", "--train", "train.tsv", "--out", "run"],
        ["--module empty is not a hub module: saved_model.pb and variables/variables.index "
         "missing", "bert-layer export"]),
    "embed-no-module": (
        ["embed", "--module", "nowhere", "--input", "train.tsv", "--output", "e.npy",
         "--pooling", "mean"],
        ["--module nowhere: not found; expected a hub module folder"]),
    "embed-bad-output": (
        ["embed", "--module", "module", "--input", "train.tsv", "--output", "e.txt",
         "--pooling", "mean"],
        ["--output e.txt: expected a file ending in .npy or .jsonl, found .txt"]),
    "inspect-missing": (["inspect", "nowhere.pb"], ["Nothing to inspect at nowhere.pb"]),
    "inspect-folder": (["inspect", "empty"], ["empty: no saved_model.pb in this folder"]),
    "inspect-garbage": (["inspect", "garbage.pb"],
                        ["garbage.pb is not a frozen graph", "starts with byte 0x50"]),
    "predict-garbage": (["predict", "--model", "garbage.pb", "--input", "train.tsv"],
                        ["garbage.pb is not a frozen graph"]),
    "predict-empty": (["predict", "--model", "empty.pb", "--input", "train.tsv"],
                      ["empty.pb is not a frozen graph", "it is empty"]),
}


def test_bad_folders_and_files_answer_before_tensorflow_loads(bad_inputs):
    before = tree_hashes(bad_inputs)
    names = list(CASES)
    results = _run_without_tensorflow([CASES[n][0] for n in names], cwd=str(bad_inputs))
    for name, (code, err, seconds) in zip(names, results):
        argv, fragments = CASES[name]
        assert code == 2, (name, err)
        assert_one_line_error(err, argv[0], *fragments)
        print(f"{name}: {seconds:.3f}s")
    assert tree_hashes(bad_inputs) == before


def test_the_checks_accept_what_the_commands_write(tiny_checkpoint_dir, tiny_module_dir,
                                                   tmp_path):
    """No false alarm: the tiny checkpoint and module pass, and so does a real GraphDef."""
    from tensorflow.core.framework import graph_pb2

    from bert_layer.cli.preflight import (
        check_checkpoint_folder,
        check_frozen_graph_file,
        check_inspect_path,
        check_module_folder,
    )

    check_checkpoint_folder(tiny_checkpoint_dir)
    check_module_folder(tiny_module_dir)
    check_inspect_path(tiny_module_dir)
    check_inspect_path(os.path.join(tiny_module_dir, "saved_model.pb"))
    graph = graph_pb2.GraphDef()
    graph.node.add(name="x", op="Const")
    graph.versions.producer = 1  # A later field: the nodes still come first.
    path = tmp_path / "graph.pb"
    path.write_bytes(graph.SerializeToString())
    check_frozen_graph_file(str(path))
