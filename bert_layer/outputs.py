"""Writing outputs all at once: a temporary sibling first, renamed at the end.

A failed export, conversion or freeze must never leave a half-written result at
the path the user named, and an existing result is replaced only on request.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

# Files a training run writes into its output folder.
MODEL_FILE = "model.keras"
REPORT_FILE = "report.json"


def check_output_free(path: str | os.PathLike, overwrite: bool) -> None:
    """Raises FileExistsError if `path` exists and `overwrite` is not set."""
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"Output path already exists: {path}. Pass --overwrite (overwrite=True) to replace it.")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False,
                  is_dir: bool = True) -> Iterator[str]:
    """Yields a temporary path beside `path`; moves it to `path` on success.

    On any exception the temporary path is removed and `path` is untouched.
    """
    path = os.path.abspath(os.fspath(path))
    check_output_free(path, overwrite)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    tmp_root = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    # mkdtemp makes the folder private (0700); give it the permissions a new folder gets.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_root, 0o777 & ~umask)
    tmp = tmp_root if is_dir else os.path.join(tmp_root, base)
    try:
        yield tmp
        if os.path.lexists(path):
            _remove(path)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp_root):
            shutil.rmtree(tmp_root, ignore_errors=True)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)
