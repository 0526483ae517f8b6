"""Helpers for tests of the `bert-layer` command: run it, and prove what it did not touch.

  run_cli(argv, stdin=None)  -> (exit code, stdout, stderr), in this process.
  run_cli_process(argv, ...) -> subprocess.CompletedProcess, in a fresh Python (real stderr,
                                 signals, pipes, start-up time).
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
