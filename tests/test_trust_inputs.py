"""Issue 17: never silently wrong, second pass. Each bad input goes through the CLI (or the one
function every reader shares), and must give exit 2 and one line, with the files untouched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import time
import zipfile

import numpy as np
import pytest
from harness import CLI, assert_one_line_error, run_cli, tree_hashes
from tiny import TINY_VOCAB

from bert_layer.outputs import MARKER_FILE, OutputError, atomic_output

ROWS = [("the movie was good .", "pos"), ("so boring", "neg")] * 4


def write_tsv(path, rows, header=("sentence", "label")) -> str:
    path.write_text("".join("\t".join(row) + "\n" for row in [header, *rows]), encoding="utf-8")
    return str(path)


def fake_keras(path, layers) -> str:
    """A .keras archive whose config.json names `layers` as (class_name, registered_name)."""
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": c, "registered_name": r, "config": {}} for c, r in layers]}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    return str(path)


BERT_CLASSIFIER = [("BertLayer", "bert_layer>BertLayer"),
                   ("ClassifierHead", "bert_layer>ClassifierHead")]


# === 1. --overwrite replaces only what the command wrote ===

def test_overwrite_refuses_a_run_folder_holding_files_others_put_there(tiny_module_dir,
                                                                       tmp_path):
    run = tmp_path / "runs" / "mrpc"
    with atomic_output(run, kind="run") as tmp:
        open(os.path.join(tmp, "model.keras"), "w").write("model")
    (run / "frozen.pb").write_text("graph")
    (run / "notes.txt").write_text("mine")
    train = write_tsv(tmp_path / "train.tsv", ROWS)
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", train,
                            "--out", str(run), "--overwrite"])
    assert code == 2
    assert_one_line_error(err, "train", "2 entries", "frozen.pb, notes.txt", "move them out")
    assert tree_hashes(tmp_path) == before


def test_overwrite_still_replaces_what_the_command_wrote(tmp_path):
    out = tmp_path / "run"
    with atomic_output(out, kind="run") as tmp:
        open(os.path.join(tmp, "model.keras"), "w").write("old")
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["contents"] == ["model.keras"]
    with atomic_output(out, kind="run", overwrite=True) as tmp:
        open(os.path.join(tmp, "model.keras"), "w").write("new")
    assert (out / "model.keras").read_text() == "new"


def test_a_folder_marked_before_the_contents_were_listed_keeps_its_foreign_files(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / MARKER_FILE).write_text(json.dumps({"kind": "run", "marker_version": 1}))
    (out / "model.keras").write_text("old")
    (out / "predictions.csv").write_text("mine")
    before = tree_hashes(tmp_path)
    with pytest.raises(OutputError, match=r"1 entries .*\(predictions.csv\)"):
        with atomic_output(out, kind="run", overwrite=True):
            pass
    assert tree_hashes(tmp_path) == before


# === freeze --out NAME without .pb ===

def test_freeze_out_without_pb_is_refused_before_the_work(tmp_path):
    model = fake_keras(tmp_path / "model.keras", BERT_CLASSIFIER)
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["freeze", "--model", model, "--out", str(tmp_path / "frozen")])
    assert code == 2
    assert_one_line_error(err, "freeze", "must end in .pb", "frozen.pb")
    assert tree_hashes(tmp_path) == before


# === 5. predict refuses models that are not bert-layer classifiers ===

def test_predict_refuses_a_keras_model_bert_layer_did_not_train(tmp_path):
    model = fake_keras(tmp_path / "o.keras",
                       [("InputLayer", None), ("StringLookup", None), ("Dense", None)])
    before = tree_hashes(tmp_path)
    code, out, err = run_cli(["predict", "--model", model], stdin="a fine film\n")
    assert code == 2 and out == ""
    assert_one_line_error(err, "predict", "is not a model written by `bert-layer train`: it "
                          "has no BertLayer (its layers: Dense, InputLayer, StringLookup)")
    assert "\x1b[" not in err
    assert tree_hashes(tmp_path) == before


def test_predict_names_a_hub_module_as_one(tiny_module_dir):
    before = tree_hashes(tiny_module_dir)
    code, _, err = run_cli(["predict", "--model", tiny_module_dir], stdin="hi\n")
    assert code == 2
    assert_one_line_error(err, "predict", "is a hub module", "bert-layer train --module")
    assert tree_hashes(tiny_module_dir) == before


# === 6. labels and columns ===

def test_labels_that_are_the_same_number_are_warned(tmp_path):
    from bert_layer.data.checks import warnings_for
    from bert_layer.data.examples import read_examples

    path = write_tsv(tmp_path / "l.tsv", [("good", "1"), ("fine", "1.0"), ("ok", "01"),
                                          ("bad", "0"), ("awful", "0")])
    examples = read_examples(path, text_column="sentence", label_column="label")
    assert examples.classes == ["0", "01", "1", "1.0"]
    (warning,) = warnings_for(examples)
    assert "labels that are the same number written differently are separate classes: " \
           "'01' / '1' / '1.0'." in warning


@pytest.mark.parametrize("flags,named", [
    (["--text-column", "label"], "text_column and label_column both name column 1"),
    (["--pair-column", "sentence"], "text_column and pair_column both name column 0"),
], ids=["text_is_label", "pair_is_text"])
def test_column_flags_naming_one_column_are_refused(tiny_module_dir, tmp_path, flags, named):
    train = write_tsv(tmp_path / "train.tsv", ROWS)
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", train,
                            "--out", str(tmp_path / "run"), *flags])
    assert code == 2
    flag_words = named.replace("text_column", "--text-column").replace(
        "label_column", "--label-column").replace("pair_column", "--pair-column")
    assert_one_line_error(err, "train", flag_words)
    assert tree_hashes(tmp_path) == before


def test_digit_headers_that_clash_with_indices_are_refused(tiny_module_dir, tmp_path):
    train = write_tsv(tmp_path / "d.tsv", [("0", "a fine film"), ("1", "bad film")],
                      header=("1", "0"))
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", train,
                            "--text-column", "1", "--label-column", "0",
                            "--out", str(tmp_path / "run")])
    assert code == 2
    assert_one_line_error(err, "train", "'1' is both the name of column 0 and the 0-based "
                          "index of column 1")
    assert tree_hashes(tmp_path) == before


# === predict's input: invalid UTF-8 on stdin, a lone CR in a .txt ===

def test_invalid_utf8_on_stdin_names_the_line_before_tensorflow(tmp_path):
    model = fake_keras(tmp_path / "model.keras", BERT_CLASSIFIER)
    start = time.perf_counter()
    result = subprocess.run([*CLI, "predict", "--model", model], input=b"good film\n\xff bad\n",
                            capture_output=True, timeout=120)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert_one_line_error(err, "predict", "<stdin>: expected UTF-8 text, found byte 0xff",
                          "(line 2)")
    assert "tensorflow" not in err.lower()
    assert time.perf_counter() - start < 60


def test_a_lone_carriage_return_stays_inside_its_line():
    from bert_layer.data.examples import split_text_lines

    assert split_text_lines(b"good\rfilm\nbad\r\n") == ["good\rfilm", "bad"]
    assert split_text_lines(b"old\rmac\r") == ["old", "mac"]  # No newline at all: CR ends lines.


# === Configs: every field's type in one table ===

@pytest.mark.parametrize("key,value,expected", [
    ("hidden_dropout_prob", "0.1", "in [0, 1)"),
    ("layer_norm_eps", "tiny", "a number > 0"),
    ("layer_norm_eps", -1.0, "a number > 0"),
    ("initializer_range", None, "a number >= 0"),
    ("hidden_act", 3, "one of"),
])
def test_export_refuses_a_config_field_of_the_wrong_type(tiny_checkpoint_dir, tmp_path, key,
                                                         value, expected):
    checkpoint = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint_dir, checkpoint)
    config = json.loads((checkpoint / "bert_config.json").read_text())
    config[key] = value
    (checkpoint / "bert_config.json").write_text(json.dumps(config))
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["export", "--checkpoint", str(checkpoint),
                            "--out", str(tmp_path / "m")])
    assert code == 2
    assert_one_line_error(err, "export", "bert_config.json: `" + key + "` must be " + expected,
                          f"Received: {value!r}")
    assert tree_hashes(tmp_path) == before


def test_convert_refuses_a_string_layer_norm_eps():
    from bert_layer.export.config import BertConfig

    with pytest.raises(ValueError, match=r"config.json: `layer_norm_eps` must be a number > 0"):
        BertConfig.from_dict({"vocab_size": 99, "layer_norm_eps": "small"}, source="config.json")


# === 2. The checkpoint the checkpoint file names wins ===

def test_export_takes_the_checkpoint_the_checkpoint_file_names(tiny_checkpoint_dir, tmp_path):
    from bert_layer.export.checkpoint import (
        load_checkpoint,
        read_checkpoint_values,
        write_checkpoint,
    )

    folder = tmp_path / "two"
    shutil.copytree(tiny_checkpoint_dir, folder)
    weights, _ = read_checkpoint_values(str(folder / "bert_model.ckpt"))
    tuned = {name: value + 0.5 for name, value in weights.items()}
    write_checkpoint(tuned, str(folder / "model.ckpt-100"))
    (folder / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-100"\n')
    checkpoint = load_checkpoint(folder)
    name = "bert/embeddings/word_embeddings"
    np.testing.assert_array_equal(checkpoint.weights[name], tuned[name])
    assert checkpoint.choice == ("took model.ckpt-100 (named in the checkpoint file), not "
                                 "bert_model.ckpt")


def test_several_checkpoints_and_no_checkpoint_file_are_refused(tiny_checkpoint_dir, tmp_path):
    from bert_layer.export.checkpoint import read_checkpoint_values, write_checkpoint

    folder = tmp_path / "two"
    shutil.copytree(tiny_checkpoint_dir, folder)
    weights, _ = read_checkpoint_values(str(folder / "bert_model.ckpt"))
    for name in os.listdir(folder):
        if name.startswith("bert_model.ckpt"):
            os.rename(folder / name, folder / name.replace("bert_model.ckpt", "model.ckpt-1"))
    write_checkpoint(weights, str(folder / "model.ckpt-2"))
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["export", "--checkpoint", str(folder), "--out", str(tmp_path / "m")])
    assert code == 2
    assert_one_line_error(err, "export", "holds 2 checkpoints (model.ckpt-1, model.ckpt-2)")
    assert tree_hashes(tmp_path) == before


# === 3. A repeated vocab line ===

def test_export_refuses_a_repeated_vocab_token(tiny_checkpoint_dir, tmp_path):
    checkpoint = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint_dir, checkpoint)
    vocab = list(TINY_VOCAB)
    vocab[vocab.index("film")] = "movie"  # As `sed s/^film$/movie/`: same size, one repeat.
    (checkpoint / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["export", "--checkpoint", str(checkpoint),
                            "--out", str(tmp_path / "m")])
    assert code == 2
    line = TINY_VOCAB.index("film") + 1
    assert_one_line_error(err, "export", f"line {line} repeats the token 'movie' of line "
                          f"{TINY_VOCAB.index('movie') + 1}", "shift")
    assert tree_hashes(tmp_path) == before


# === 4. A module's vocab asset changed after export ===

def _module_with_vocab(tiny_module_dir, tmp_path, tokens) -> str:
    module = tmp_path / "module"
    shutil.copytree(tiny_module_dir, module)
    (module / "assets" / "vocab.txt").write_text("".join(t + "\n" for t in tokens),
                                                 encoding="utf-8")
    return str(module)


def test_the_unchanged_asset_passes(tiny_module_dir):
    from bert_layer.layers.hub_module import HubModule

    info = HubModule(tiny_module_dir).tokenization_info()
    assert info.vocab_file.endswith(os.path.join("assets", "vocab.txt"))


@pytest.mark.parametrize("change,words", [
    ("swap", "its sha256 is not"),
    ("cut", "its sha256 is not"),
], ids=["swapped_lines", "cut_short"])
def test_embed_refuses_a_module_whose_vocab_asset_changed(tiny_module_dir, tmp_path, change,
                                                          words):
    tokens = list(TINY_VOCAB)
    if change == "swap":
        i, j = tokens.index("good"), tokens.index("bad")
        tokens[i], tokens[j] = tokens[j], tokens[i]
    else:
        tokens = tokens[:60]
    module = _module_with_vocab(tiny_module_dir, tmp_path, tokens)
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["embed", "--module", module, "--pooling", "mean",
                            "--max-seq-length", "16", "--output", str(tmp_path / "e.npy")],
                           stdin="good\nbad\n")
    assert code == 2
    assert_one_line_error(err, "embed", "was changed after export", words, "export the module")
    assert tree_hashes(tmp_path) == before


def test_a_cut_asset_of_a_module_without_a_hash_is_caught_by_the_rows(tiny_module_dir,
                                                                      tmp_path):
    """Modules exported before the hash (or Google's): the line count against the rows."""
    from tensorflow.core.protobuf import saved_model_pb2

    from bert_layer.contract import VOCAB_HASH_OUTPUT
    from bert_layer.layers.hub_module import HubModule

    module = _module_with_vocab(tiny_module_dir, tmp_path, TINY_VOCAB[:60])
    pb = os.path.join(module, "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(open(pb, "rb").read())
    for meta_graph in saved.meta_graphs:
        del meta_graph.signature_def["tokenization_info"].outputs[VOCAB_HASH_OUTPUT]
    open(pb, "wb").write(saved.SerializeToString())
    with pytest.raises(ValueError, match=r"60 lines for the 99 rows of the word embeddings"):
        HubModule(module).tokenization_info()


# === Truncated modules ===

def test_a_truncated_saved_model_pb_is_one_line(tiny_module_dir, tmp_path):
    module = tmp_path / "module"
    shutil.copytree(tiny_module_dir, module)
    pb = module / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:100_000])
    code, _, err = run_cli(["embed", "--module", str(module), "--pooling", "mean",
                            "--max-seq-length", "16", "--output", str(tmp_path / "e.npy")],
                           stdin="hi\n")
    assert code == 2
    assert_one_line_error(err, "embed", "is not a readable SavedModel", "export the module")


def test_truncated_module_variables_are_one_line(tiny_module_dir, tmp_path):
    from bert_layer.layers.hub_module import HubModule

    module = tmp_path / "module"
    shutil.copytree(tiny_module_dir, module)
    (data,) = [p for p in (module / "variables").iterdir() if ".data-" in p.name]
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cannot read the module's variables"):
        HubModule(str(module)).variable_values()


# === Two trains into one --out ===

def test_a_second_run_into_the_same_output_refuses(tmp_path):
    from bert_layer.training.backup import run_lock

    out = tmp_path / "run"
    with run_lock(out) as path:
        assert open(path).read().strip() == str(os.getpid())
        with pytest.raises(FileExistsError, match=rf"process {os.getpid()}\) is writing"):
            with run_lock(out):
                pass
    assert os.listdir(tmp_path) == []  # Released: the lock file is gone.
    with run_lock(out):
        pass


# === Full disk, file-size limits ===

@pytest.mark.parametrize("number,words", [(errno.ENOSPC, "No space left on device"),
                                          (errno.EFBIG, "File too large")])
def test_a_full_disk_is_named_with_the_path(number, words):
    import argparse

    from bert_layer.cli.main import _disk_full

    args = argparse.Namespace(out="modules/m")
    error = OSError(number, os.strerror(number), "modules/.m.tmp-1/variables/x")
    assert _disk_full(error, args) == (f"{words} while writing modules/.m.tmp-1/variables/x; "
                                       f"free space (or raise the limit) and run the command "
                                       f"again. Nothing was written.")
    wrapped = ValueError(f"Graph execution error:\n\nDetected at node SaveV2\n{words} [Op:SaveV2]")
    assert "while writing modules/m;" in _disk_full(wrapped, args)


@pytest.mark.large
def test_export_under_a_file_size_limit_is_one_line(tiny_checkpoint_dir, tmp_path):
    result = subprocess.run(
        f"ulimit -f 200; exec {' '.join(CLI)} export --checkpoint {tiny_checkpoint_dir} "
        f"--max-seq-length 32 --out {tmp_path / 'm'}", shell=True, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, "export", "File too large while writing")
    assert os.listdir(tmp_path) == []


# === Signals: SIGHUP and SIGQUIT clean up like SIGTERM ===

def test_a_terminating_signal_whose_exit_was_swallowed_still_ends_the_output(tmp_path):
    """A signal can land where Python only prints the exception (a `__del__`, a callback):
    the output is still not written, and the exit status still says which signal."""
    from bert_layer.outputs import atomic_output

    with pytest.raises(SystemExit) as ended:
        with atomic_output(tmp_path / "out") as tmp:
            try:
                os.kill(os.getpid(), signal.SIGHUP)
                time.sleep(1)  # The handler runs at the next bytecode; never sleeps long.
            except SystemExit:
                pass  # Swallowed, as a __del__ would.
            with open(os.path.join(tmp, "file.txt"), "w", encoding="utf-8") as f:
                f.write("half")
    assert ended.value.code == 128 + signal.SIGHUP
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


def test_an_error_after_a_swallowed_signal_still_exits_with_the_signals_status(tmp_path):
    """What a swallowed exit leaves half done can fail later with another error (a graph
    stack out of order): the process still ends as the signal asked, not as a crash (1)."""
    from bert_layer.outputs import atomic_output

    with pytest.raises(SystemExit) as ended:
        with atomic_output(tmp_path / "out") as tmp:
            try:
                os.kill(os.getpid(), signal.SIGHUP)
                time.sleep(1)
            except SystemExit:
                pass  # Swallowed, as a __del__ would.
            with open(os.path.join(tmp, "file.txt"), "w", encoding="utf-8") as f:
                f.write("half")
            raise AssertionError("Nesting violated for default stack")
    assert ended.value.code == 128 + signal.SIGHUP
    assert isinstance(ended.value.__cause__, AssertionError)
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


@pytest.mark.large
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT], ids=["SIGHUP", "SIGQUIT"])
def test_export_killed_by_a_terminal_signal_leaves_nothing(tiny_checkpoint_dir, tmp_path, sig):
    process = subprocess.Popen([*CLI, "export", "--checkpoint", tiny_checkpoint_dir,
                                "--max-seq-length", "32", "--out", str(tmp_path / "m")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not [n for n in os.listdir(tmp_path) if ".tmp-" in n]:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(sig)
    assert process.wait(timeout=60) == 128 + sig, process.stderr.read().decode()[-3000:]
    assert os.listdir(tmp_path) == []


# === Multi-worker: the cluster never forms ===

@pytest.mark.large
def test_a_lonely_worker_gives_up_with_one_line(tiny_module_dir, tmp_path):
    train = write_tsv(tmp_path / "train.tsv", ROWS)
    env = {**os.environ, "BERT_LAYER_CLUSTER_TIMEOUT": "5", "TF_CONFIG": json.dumps({
        "cluster": {"worker": ["127.0.0.1:23471", "127.0.0.1:23472"]},
        "task": {"type": "worker", "index": 0}})}
    result = subprocess.run([*CLI, "train", "--module", tiny_module_dir, "--train", train,
                             "--distribute", "multi-worker", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "not every worker of TF_CONFIG (127.0.0.1:23471, 127.0.0.1:23472) connected " \
           "within 5 s" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "run")


# === BertLayer on an empty batch ===

def test_bert_layer_on_an_empty_batch_returns_no_rows(tiny_module_dir):
    import tensorflow as tf

    from bert_layer import BertLayer

    layer = BertLayer(tiny_module_dir, pooling="mean", max_seq_length=16)
    output = layer(tf.constant([], tf.string))
    assert tuple(output.shape) == (0, layer.hidden_size)
    one = layer(tf.constant([""], tf.string))
    assert tuple(one.shape) == (1, layer.hidden_size)


# === ulimit -v: TensorFlow crashes under it; say the limit is set ===

def test_an_address_space_limit_is_noted_up_front(tmp_path):
    result = subprocess.run(
        f"ulimit -v 8000000; exec {' '.join(CLI)} predict --model {tmp_path / 'none.pb'}",
        shell=True, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    note, error = result.stderr.splitlines()
    assert note == ("bert-layer predict: note: an address-space limit (ulimit -v) of 7.6 GiB is "
                    "set; TensorFlow crashes (segmentation fault) when a model needs more: "
                    "raise it if this command crashes.")
    assert error.startswith("bert-layer predict: error: Model file not found")
