"""Writing outputs all at once, and replacing only what bert-layer wrote. No TensorFlow here.

A failed (or killed) export, conversion, training or freeze never leaves a half-written result
at the path the user named. `overwrite` replaces an existing output only when it is something
this project writes: a folder carrying the MARKER_FILE (or, for folders written before the
marker existed, holding only names the project writes), or a file with an expected extension.
It replaces only what the command wrote: the marker lists the folder's entries as written, and
a folder holding anything else (a frozen graph or notes put there later) is refused, naming
those entries. It never replaces the working folder or a parent of it, a path holding one of
the command's inputs, a folder by a file or a file by a folder.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence

# Files a training run writes into its output folder.
MODEL_FILE = "model.keras"
REPORT_FILE = "report.json"
# Every folder output carries this JSON file: {"kind": ..., "version": ...}.
MARKER_FILE = ".bert_layer"
# 2: the marker lists the folder's entries as written ("contents").
MARKER_VERSION = 2
# What each kind of folder held before the marker existed: such a folder holds only our files.
LEGACY_CONTENTS = {
    "checkpoint": ("bert_config.json", "vocab.txt", "bert_model.ckpt.*", "checkpoint"),
    "module": ("saved_model.pb", "tfhub_module.pb", "fingerprint.pb", "variables", "assets"),
    "run": (MODEL_FILE, REPORT_FILE, "*.pb"),
}
# What each kind of folder is written with, for markers written before they listed the
# contents (MARKER_VERSION 1): anything else in such a folder was put there later.
OWN_CONTENTS = {
    "checkpoint": LEGACY_CONTENTS["checkpoint"],
    "module": LEGACY_CONTENTS["module"],
    "run": (MODEL_FILE, REPORT_FILE),
    "saved_model": ("saved_model.pb", "fingerprint.pb", "variables", "assets"),
}
# Signals that end a run (terminal closed, kill, Ctrl-\\): each raises SystemExit so that
# temporaries are removed. SIGINT raises KeyboardInterrupt already.
TERMINATING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGQUIT")
                            if hasattr(signal, name))
# Files bert-layer writes (predictions, frozen graphs, benchmark tables).
FILE_SUFFIXES = (".csv", ".jsonl", ".json", ".pb", ".npy")

_TMP_INFIX = ".tmp-"  # Temporary siblings are named .NAME.tmp-PID-XXXXXXXX


class OutputError(ValueError):
    """An output path that bert-layer must not write or replace; the message says why."""


def output_format(path: str | None, formats: dict[str, str], *, named: str | None = None,
                  default: str | None = None) -> str:
    """The format of an output file: `named` (a --format flag), else the one `path`'s suffix
    maps to in `formats` (suffix -> format), else `default`. Refuses a flag that contradicts the
    suffix and, without a default, a suffix outside `formats`."""
    suffix = os.path.splitext(path or "")[1].lower()
    by_suffix = formats.get(suffix)
    if named and by_suffix and named != by_suffix:
        raise ValueError(f"--format {named} does not match --output {path}, a {by_suffix} file "
                         f"name: drop --format, or name the output for {named}.")
    found = named or by_suffix or default
    if found is None:
        raise ValueError(f"--output {path}: expected a file ending in "
                         f"{' or '.join(formats)}, found {suffix or 'no extension'}.")
    return found


def check_output_free(path: str | os.PathLike, overwrite: bool, *, is_dir: bool = True,
                      kind: str | None = None, inputs: Sequence[str | os.PathLike] = (),
                      suffixes: Sequence[str] = FILE_SUFFIXES,
                      named: Sequence[str] = ()) -> None:
    """Raises unless `path` may be written now, before any slow work starts.

    Args:
      path: the output (a folder when `is_dir`, else a file).
      overwrite: an existing output may be replaced (only if bert-layer wrote it).
      kind: for a folder, the kind of output it must hold to be replaced ("checkpoint",
        "module", "run"); None accepts any bert-layer folder.
      inputs: the paths the command reads; the output must not be or contain any of them.
      suffixes: for a file output, the extensions of files it may replace.
      named: for a file output, the extensions its readers accept (empty: any name); a name
        without one is refused, so that nothing is written that bert-layer then refuses.

    Raises:
      FileExistsError: `path` exists and `overwrite` is not set.
      OutputError: `path` is the working folder, a parent of it, holds an input, is of the
        other kind (folder/file), or was not written by bert-layer.
      PermissionError: the folder `path` would be created in is not writable.
    """
    shown = os.fspath(path)
    real = os.path.realpath(shown)
    cwd = os.path.realpath(os.getcwd())
    if real == cwd or _is_within(cwd, real):
        where = "the working folder" if real == cwd else f"a parent of the working folder {cwd}"
        raise OutputError(f"Output path {shown} is {where}; expected a new path for the output "
                          f"(replacing it would delete your files).")
    for source in inputs:
        if source and _is_within(os.path.realpath(os.fspath(source)), real):
            raise OutputError(f"Output path {shown} holds the input {os.fspath(source)}; "
                              f"expected an output path apart from the inputs.")
    if os.path.lexists(shown):
        if not overwrite:
            raise FileExistsError(f"Output path already exists: {shown}. Pass --overwrite to "
                                  f"replace it.")
        _check_replaceable(shown, is_dir, kind, suffixes)
    if named and not is_dir and not shown.lower().endswith(tuple(named)):
        raise OutputError(f"Output file {shown} must end in {' or '.join(named)}: that is the "
                          f"name bert-layer reads it back by; expected e.g. {shown}{named[0]}.")
    _check_writable(real)


def _is_within(path: str, folder: str) -> bool:
    """True if real path `path` is `folder` or lies inside it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_replaceable(path: str, is_dir: bool, kind: str | None,
                       suffixes: Sequence[str]) -> None:
    if os.path.islink(path):
        return  # Replacing a link removes the link only, never what it points to.
    if os.path.isdir(path) != is_dir:
        found, wanted = ("a folder", "a file") if os.path.isdir(path) else ("a file", "a folder")
        raise OutputError(f"Output path {path} is {found}, but this command writes {wanted}; "
                          f"expected a path for {wanted}. Nothing was replaced.")
    if is_dir:
        _check_replaceable_folder(path, kind)
    if not is_dir and not path.lower().endswith(tuple(suffixes)):
        raise OutputError(
            f"Output file {path} does not look like a bert-layer output (expected a name "
            f"ending in {', '.join(suffixes)}), so --overwrite will not replace it.")


def _check_replaceable_folder(path: str, kind: str | None) -> None:
    marker = read_marker(path)
    if marker is None and not _holds_only_project_files(path, kind):
        raise OutputError(
            f"Output folder {path} was not written by bert-layer (no {MARKER_FILE} file in it), "
            f"so --overwrite will not replace it; expected a new path or a bert-layer output.")
    if marker is not None and kind is not None and marker["kind"] != kind:
        raise OutputError(
            f"Output folder {path} holds a bert-layer {marker['kind']}, not a {kind}, so "
            f"--overwrite will not replace it; expected a new path or a {kind} folder.")
    foreign = [] if marker is None else foreign_entries(path, marker)
    if foreign:
        shown = ", ".join(foreign[:8]) + (", ..." if len(foreign) > 8 else "")
        raise OutputError(
            f"Output folder {path} holds {len(foreign)} entries its bert-layer "
            f"{marker['kind']} was not written with ({shown}), so --overwrite will not "
            f"replace it: move them out of {path} first (derived files such as frozen graphs "
            f"belong beside the folder), or write to a new path.")


def foreign_entries(folder: str, marker: dict) -> list[str]:
    """The entries of a marked `folder` that the command writing it did not write, sorted."""
    names = set(os.listdir(folder)) - {MARKER_FILE}
    contents = marker.get("contents")
    if isinstance(contents, list):
        return sorted(names - set(contents))
    patterns = OWN_CONTENTS.get(marker["kind"])
    if patterns is None:
        return []  # A kind this version does not know: as before, the marker suffices.
    return sorted(n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in patterns))


def read_marker(folder: str) -> dict | None:
    """The marker of a folder bert-layer wrote, or None."""
    try:
        with open(os.path.join(folder, MARKER_FILE), encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "kind" in marker else None


def _holds_only_project_files(folder: str, kind: str | None) -> bool:
    """Empty, or written before the marker: every entry is a name `kind` of output writes."""
    names = os.listdir(folder)
    kinds = [kind] if kind in LEGACY_CONTENTS else list(LEGACY_CONTENTS)
    return any(all(any(fnmatch.fnmatchcase(n, p) for p in LEGACY_CONTENTS[k]) for n in names)
               for k in kinds)


def _check_writable(real_path: str) -> None:
    ancestor = os.path.dirname(real_path)
    while not os.path.isdir(ancestor):  # The nearest folder that exists gets the new ones.
        if os.path.lexists(ancestor):
            raise OutputError(f"Cannot create {real_path}: {ancestor} is a file, expected a "
                              f"folder.")
        ancestor = os.path.dirname(ancestor)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"Cannot write {real_path}: the folder {ancestor} is not "
                              f"writable.")


def _write_marker(folder: str, kind: str) -> None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        project_version = version("bert_layer")
    except PackageNotFoundError:
        project_version = "unknown"
    contents = sorted(os.listdir(folder))  # What --overwrite may replace later (foreign_entries).
    with open(os.path.join(folder, MARKER_FILE), "w", encoding="utf-8") as f:
        json.dump({"kind": kind, "version": project_version, "marker_version": MARKER_VERSION,
                   "contents": contents}, f)


# ---------------------------------------------------------------------------------------------
# Temporary siblings.


def temporaries(path: str | os.PathLike) -> dict[str, bool | None]:
    """Temporary siblings of `path` (`.NAME.tmp-*`) -> whether the run writing it is alive.

    None: unknown (named before the process id was part of the name, or not ours to probe).
    """
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    if not os.path.isdir(parent):
        return {}
    prefix = f".{base}{_TMP_INFIX}"
    return {os.path.join(parent, name): _owner_alive(name[len(prefix):])
            for name in sorted(os.listdir(parent)) if name.startswith(prefix)}


def _owner_alive(suffix: str) -> bool | None:
    """Whether the process that named a temporary `PID-XXXX` still runs."""
    pid = suffix.split("-", 1)[0]
    if not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return None  # Another user's process: it exists.
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Removes the temporaries of `path` whose run is gone (killed: SIGKILL, power loss) and
    names the ones of unknown origin; both on stderr. Returns the removed paths."""
    removed = []
    for tmp, alive in temporaries(path).items():
        if alive is False:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
            print(f"bert-layer: removed {tmp}, left by an interrupted run.", file=sys.stderr)
        elif alive is None:
            print(f"bert-layer: note: {tmp} looks left by an interrupted run; remove it if no "
                  f"bert-layer command is writing {path}.", file=sys.stderr)
    return removed


@contextlib.contextmanager
def terminate_raises() -> Iterator[Callable[[], None]]:
    """SIGTERM, SIGHUP and SIGQUIT raise SystemExit(128 + signal) in the main thread, so
    `finally` blocks clean up.

    Python's default for these kills the process outright (SIGQUIT dumps core); SIGINT
    already raises. A signal whose handler someone else set is left alone. A SystemExit
    that something swallowed (a signal landing in a `__del__` or a callback whose errors
    are only printed) is raised again by the yielded check, and when the block ends; any
    other error that leaves the block after a signal (what the swallowed exit broke) ends
    it with the signal's status too, not as a crash.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    ours = [s for s in TERMINATING_SIGNALS if signal.getsignal(s) is signal.SIG_DFL]
    received = []

    def terminate(signum, frame):
        received.append(signum)
        raise SystemExit(128 + signum)

    def check() -> None:
        if received:
            raise SystemExit(128 + received[0])

    for number in ours:
        signal.signal(number, terminate)
    try:
        try:
            yield check
        except BaseException as error:
            if received and not isinstance(error, SystemExit):
                raise SystemExit(128 + received[0]) from error
            raise
        check()
    finally:
        for number in ours:
            signal.signal(number, signal.SIG_DFL)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False, is_dir: bool = True,
                  kind: str = "output", inputs: Sequence[str | os.PathLike] = (),
                  suffixes: Sequence[str] = FILE_SUFFIXES,
                  named: Sequence[str] = ()) -> Iterator[str]:
    """Yields a temporary path beside `path`; moves it to `path` on success.

    On any exception (SIGINT, SIGTERM, SIGHUP and SIGQUIT included) the temporary path is
    removed and `path` is untouched. A folder gets the MARKER_FILE of `kind`. An existing
    output is renamed aside, the new one moved in, then the old one deleted. See
    `check_output_free` for what may be replaced.
    """
    shown = os.fspath(path)
    check_output_free(shown, overwrite, is_dir=is_dir, kind=kind if is_dir else None,
                      inputs=inputs, suffixes=suffixes, named=named)
    path = os.path.abspath(shown)
    parent, base = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(path)
    with terminate_raises() as check_signals:
        tmp_root = tempfile.mkdtemp(prefix=f".{base}{_TMP_INFIX}{os.getpid()}-", dir=parent)
        try:
            # mkdtemp makes the folder private (0700); give it the permissions a new folder gets.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_root, 0o777 & ~umask)
            tmp = tmp_root if is_dir else os.path.join(tmp_root, base)
            yield tmp
            check_signals()  # A terminating signal whose SystemExit was swallowed.
            if is_dir:
                _write_marker(tmp, kind)
            _move_in(tmp, path, overwrite, is_dir, kind, suffixes)
        finally:
            if os.path.lexists(tmp_root):
                shutil.rmtree(tmp_root, ignore_errors=True)


def _move_in(tmp: str, path: str, overwrite: bool, is_dir: bool, kind: str,
             suffixes: Sequence[str]) -> None:
    if not os.path.lexists(path):
        try:
            _place_new(tmp, path, is_dir)
            return
        except FileExistsError:
            pass  # Another run created it meanwhile.
    if not overwrite:
        raise FileExistsError(f"Output path already exists: {path}. Pass --overwrite to "
                              f"replace it.")
    _check_replaceable(path, is_dir, kind, suffixes)  # Again: it may have changed meanwhile.
    if not is_dir or os.path.islink(path):
        os.replace(tmp, path)  # Atomic for files: the old one is there until the new one is.
        return
    # A folder cannot be replaced in one rename: the old one goes aside, the new one in.
    aside = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}{_TMP_INFIX}{os.getpid()}-",
                             dir=os.path.dirname(path))
    try:
        try:
            os.rename(path, os.path.join(aside, "old"))
        except FileNotFoundError:
            pass  # Another writer moved it away first.
        os.rename(tmp, path)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _place_new(tmp: str, path: str, is_dir: bool) -> None:
    """Moves `tmp` to `path`; FileExistsError if `path` appeared meanwhile."""
    if is_dir:
        try:
            os.rename(tmp, path)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise FileExistsError(path) from e
            raise
        return
    try:
        os.link(tmp, path)  # Unlike rename, refuses an existing target.
    except FileExistsError:
        raise
    except OSError:
        os.replace(tmp, path)  # A file system without hard links.
