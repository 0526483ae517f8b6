"""Helpers for tests of the `bert-layer` command: run it, and prove what it did not touch.

  run_cli(argv, stdin=None)  -> (exit code, stdout, stderr), in this process.
  run_cli_process(argv, ...) -> subprocess.CompletedProcess, in a fresh Python (real stderr,
                                 signals, pipes, start-up time).
  kill_after_first_epoch(argv, out, sig) -> epochs finished: `bert-layer train` in a fresh
                                 process, sent `sig` once its backup records epoch 1.
  tree_hashes(folder)        -> {relative path: sha256} of every file and folder below.
  assert_one_line_error(err, command, *fragments): exit-2 message shape.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import time

from bert_layer.cli.main import main

PYTHON = sys.executable
CLI = [PYTHON, "-m", "bert_layer.cli.main"]


def run_cli(argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    """main(argv) with stdin given (if any) and stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def run_cli_process(argv: list[str], *, cwd: str | None = None, input: str | None = None,
                    timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`bert-layer ARGV` in a new process (text mode), with output captured."""
    return subprocess.run(CLI + argv, cwd=cwd, input=input, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def kill_after_first_epoch(argv: list[str], out: str, sig: int, timeout: float = 900) -> int:
    """Runs `bert-layer ARGV` (a train into `out`), sends `sig` once epoch 1 is backed up;
    returns the epochs the backup records as finished when the process died."""
    from bert_layer.training.backup import STATE_DIR, backup_dir, recorded_epochs

    state = os.path.join(backup_dir(out), STATE_DIR)
    process = subprocess.Popen(CLI + argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while (recorded_epochs(state) or 0) < 1:  # None: Keras is writing its record.
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "epoch 1 never finished"
            time.sleep(0.05)
        process.send_signal(sig)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert process.returncode != 0
    return recorded_epochs(state)


def tree_hashes(folder: str | os.PathLike) -> dict[str, str]:
    """Every entry below `folder` (hidden ones included): files by content, folders as 'dir'."""
    folder = os.fspath(folder)
    hashes = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            hashes[os.path.relpath(os.path.join(root, name), folder)] = "dir"
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                hashes[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return hashes


def assert_one_line_error(err: str, command: str, *fragments: str) -> None:
    """`err` is exactly one line `bert-layer COMMAND: error: ...` holding every fragment."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"bert-layer {command}: error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
