"""The README's newcomer path runs as written: its step-by-step commands parse with the CLI's
flags, read only what earlier steps wrote (or the shared data), and (large tier) run top to
bottom in a fresh folder on cut-down data; its Python snippets run after them; the names it
gives in the package exist."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys

import pytest
from harness import PYTHON
from real_data import DATA_DIR, PROJECT_DIR

from bert_layer.cli.main import build_parser

README = os.path.join(PROJECT_DIR, "README.md")
STEPS_HEADING = "## Step by step, on your own data"
SHARED_DATA = "../shared/data/"
# The flags (and positionals) through which a command reads a path, and those it writes.
READ_ARGS = ("checkpoint", "module", "model", "input", "train", "dev", "path", "hf_dir")
WRITE_ARGS = ("out", "output")


def _readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def fenced_blocks(text: str, language: str) -> list[str]:
    """The contents of every ```language block, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def steps_block() -> str:
    text = _readme()
    return fenced_blocks(text[text.index(STEPS_HEADING):], "bash")[0]


def bert_layer_commands(block: str) -> list[list[str]]:
    """Each `bert-layer ...` command of a bash block as argv (continuation lines joined,
    comments dropped; a pipeline's bert-layer part)."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        segment: list[str] = []
        for word in words + ["|"]:
            if word != "|":
                segment.append(word)
                continue
            if segment and segment[0] == "bert-layer":
                commands.append(segment[1:])
            segment = []
    return commands


def test_the_steps_parse_with_the_cli_and_read_only_what_earlier_steps_wrote():
    from bert_layer.cli.commands.convert import DEFAULT_CHECKPOINT_DIR

    commands = bert_layer_commands(steps_block())
    assert [c[0] for c in commands] == ["convert", "export", "train", "freeze", "freeze",
                                        "inspect", "freeze", "predict", "predict", "embed"]
    parser = build_parser()
    written: list[str] = []
    for argv in commands:
        args = parser.parse_args(argv)  # Unknown flags or bad choices exit here.
        for name in READ_ARGS:
            path = getattr(args, name, None)
            if path is None:
                continue
            made = any(os.path.normpath(path) == w or os.path.normpath(path).startswith(w + "/")
                       for w in written)
            assert made or path.startswith(SHARED_DATA), (
                f"`bert-layer {' '.join(argv)}` reads {path}, which no earlier step writes")
            if path.startswith(SHARED_DATA) and os.path.isdir(DATA_DIR):
                assert os.path.exists(os.path.join(DATA_DIR, path[len(SHARED_DATA):])), path
        outputs = [getattr(args, n, None) for n in WRITE_ARGS]
        if argv[0] == "convert" and not args.out:
            outputs.append(DEFAULT_CHECKPOINT_DIR)
        written += [os.path.normpath(p) for p in outputs if p]


def test_the_steps_put_derived_artifacts_outside_the_run_folder():
    """`train --out runs/mrpc --overwrite` replaces that folder: nothing else goes in it."""
    parser = build_parser()
    commands = bert_layer_commands(steps_block())
    runs = [parser.parse_args(c).out for c in commands if c[0] == "train"]
    for argv in commands:
        if argv[0] == "train":
            continue
        args = parser.parse_args(argv)
        for path in (getattr(args, n, None) for n in WRITE_ARGS):
            assert not any(path and path.startswith(run + "/") for run in runs), argv


def test_the_python_snippets_parse_and_name_what_exists():
    text = _readme()
    for block in fenced_blocks(text, "python"):
        ast.parse(block)
    for dotted in sorted(set(re.findall(r"\bbert_layer(?:\.\w+)+", text))):
        if dotted.endswith(".json"):  # A file's name (the .tflite's metadata), not a module.
            continue
        assert _resolves(dotted), f"README names {dotted}, which does not exist"


def _resolves(dotted: str) -> bool:
    """`bert_layer.a.b[.Name]` is a module or package of the tree, or a top-level name of
    one (read with ast: no import)."""
    parts = dotted.split(".")[1:]
    roots = {"export": os.path.join(PROJECT_DIR, "export")}
    folder = roots.get(parts[0], os.path.join(PROJECT_DIR, "bert_layer", parts[0]))
    if parts[0] not in roots and not parts[1:] and os.path.isfile(folder + ".py"):
        return True
    for i, part in enumerate(parts[1:], start=1):
        if os.path.isfile(folder + ".py"):
            return _defines(folder + ".py", parts[i:])
        folder = os.path.join(folder, part)
    return os.path.isdir(folder) or os.path.isfile(folder + ".py")


def _defines(path: str, names: list[str]) -> bool:
    if len(names) != 1:
        return False
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names[0] in defined


# === Large: the whole path, as written, on cut-down data ===

# Rows kept of each shared file the steps read (a header line first).
CUT_DOWN_ROWS = {"mrpc/train.tsv": 48, "mrpc/dev.tsv": 16, "sst2/glue_dev.tsv": 16}


def _cut_down_shared_data(shared: str) -> None:
    """The first rows of each file, byte for byte (MRPC's byte-order mark included)."""
    for relative, rows in CUT_DOWN_ROWS.items():
        with open(os.path.join(DATA_DIR, relative), "rb") as f:
            lines = f.readlines()[:rows + 1]
        os.makedirs(os.path.dirname(os.path.join(shared, relative)), exist_ok=True)
        with open(os.path.join(shared, relative), "wb") as f:
            f.writelines(lines)


@pytest.mark.large
@pytest.mark.integration
def test_the_steps_and_snippets_run_as_written(default_model_dir, tmp_path):
    """A fresh folder beside a cut-down `../shared/data`: the step-by-step block runs in bash
    unchanged, then every Python snippet of the README."""
    if not os.path.isdir(DATA_DIR):
        pytest.skip(f"no shared data at {DATA_DIR}")
    _cut_down_shared_data(str(tmp_path / "shared" / "data"))
    project = tmp_path / "project"
    project.mkdir()
    env = {**os.environ, "PATH": os.path.dirname(PYTHON) + os.pathsep + os.environ["PATH"]}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", steps_block()], cwd=project,
                          env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]
    with open(project / "runs" / "mrpc-predictions.csv", encoding="utf-8") as f:
        assert len(f.read().splitlines()) == 1 + CUT_DOWN_ROWS["mrpc/dev.tsv"]
    import numpy as np
    assert np.load(project / "runs" / "sst2_dev.npy").shape == (16, 384)
    stdin_prediction = [line for line in done.stdout.splitlines()
                        if "He said it rained" in line]
    assert len(stdin_prediction) == 1, done.stdout
    for snippet in fenced_blocks(_readme(), "python"):
        ran = subprocess.run([sys.executable, "-c", snippet], cwd=project, env=env,
                             capture_output=True, text=True, timeout=600)
        assert ran.returncode == 0, f"{snippet}\n{ran.stderr[-3000:]}"
