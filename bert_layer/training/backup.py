"""Resuming an interrupted `train`: a backup folder kept beside the output.

`OUT.backup/` holds what a killed run needs to continue from its last finished epoch:

  run.json          the settings it belongs to (a resume must use the same)
  state/            Keras `BackupAndRestore`: weights, optimizer state, epochs finished
  history.csv       Keras `CSVLogger`: each finished epoch's metrics, for the report
  best-NNN.keras    Keras `ModelCheckpoint`: the best epoch so far (with dev data; no
                    optimizer state, as the output holds none)

It lives outside the temporary output folder, so it survives SIGTERM and SIGKILL; it is
removed once the output is written. `OUT.lock` (see `run_lock`) is held by the run writing
both, so that a second run into the same output refuses instead of sharing the backup.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import glob
import json
import os
import re
import shutil
from collections.abc import Iterator

import keras

BACKUP_SUFFIX = ".backup"
LOCK_SUFFIX = ".lock"
RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
STATE_DIR = "state"
# BackupAndRestore's record of finished epochs (keras/callbacks/backup_and_restore.py).
STATE_METADATA = "training_metadata.json"
BEST_MODEL = "best-{epoch:03d}.keras"  # ModelCheckpoint fills in the 1-based epoch.
_BEST_NUMBER = re.compile(r"best-(\d+)\.keras$")


def backup_dir(out_dir: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(out_dir)).rstrip(os.sep) + BACKUP_SUFFIX


def recorded_epochs(state_dir: str) -> int | None:
    """Epochs BackupAndRestore's metadata in `state_dir` records as finished: 0 without a
    record, None for a record that is there but unreadable (Keras writes it in place, so a
    run killed in that moment leaves it empty or cut)."""
    try:
        with open(os.path.join(state_dir, STATE_METADATA), encoding="utf-8") as f:
            return int(json.load(f)["epoch"])
    except FileNotFoundError:
        return 0
    except (ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike) -> Iterator[str]:
    """Holds `OUT.lock` (an exclusive flock; the file holds the pid) for the block.

    The kernel drops a flock when its process dies, so a killed run never blocks the next
    one; the file is removed on release.

    Raises:
      FileExistsError: another process holds the lock (it is training into `out_dir`).
    """
    path = os.path.abspath(os.fspath(out_dir)).rstrip(os.sep) + LOCK_SUFFIX
    os.makedirs(os.path.dirname(path), exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise FileExistsError(
                f"Another bert-layer train (process {holder}) is writing {out_dir}: it holds "
                f"{path}. Wait for it to finish, or train into another --out.") from None
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break  # Else the run that held it removed the file meanwhile: lock anew.
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


class TrainingBackup:
    """The backup of one training run.

    Args:
      out_dir: the run's output folder; the backup is `out_dir + ".backup"`.
      settings: what must match for a resume (as JSON: spec, config, data).
    """

    def __init__(self, out_dir: str | os.PathLike, settings: dict):
        self.path = backup_dir(out_dir)
        self.settings = json.loads(json.dumps(settings))
        self.state_dir = os.path.join(self.path, STATE_DIR)
        self.history_file = os.path.join(self.path, HISTORY_FILE)

    # === Starting ===

    def start(self, *, resume: bool, overwrite: bool) -> int:
        """Makes the folder, or reuses it when resuming; returns the epochs already done.

        Raises FileExistsError for an interrupted run that neither --resume nor
        --overwrite names, ValueError for a resume with other settings.
        """
        finished = self._existing(resume=resume, overwrite=overwrite)
        if finished == 0:
            shutil.rmtree(self.path, ignore_errors=True)  # Nothing finished: nothing to keep.
            os.makedirs(self.path)
            with open(os.path.join(self.path, RUN_FILE), "w", encoding="utf-8") as f:
                json.dump(self.settings, f, indent=2)
            return 0
        self._forget_after(finished)
        return finished

    def _existing(self, *, resume: bool, overwrite: bool) -> int:
        if not os.path.lexists(self.path):
            return 0
        run_file = os.path.join(self.path, RUN_FILE)
        if not os.path.isfile(run_file):
            raise FileExistsError(f"{self.path} exists but is not a training backup (it has "
                                  f"no {RUN_FILE}); move it away to train into this output.")
        finished = self.finished_epochs()
        if finished == 0 or (overwrite and not resume):
            return 0
        if finished is None:
            raise FileExistsError(
                f"{self.path} holds an interrupted run whose record of finished epochs "
                f"({STATE_DIR}/{STATE_METADATA}) is incomplete: the run was killed while "
                f"Keras wrote it, so what it finished is unknown. Pass --overwrite to start "
                f"again.")
        epochs = f"{finished} of {self.settings['train_config']['epochs']} epochs finished"
        if not resume:
            raise FileExistsError(
                f"{self.path} holds an interrupted run of this output ({epochs}). Pass "
                f"--resume to continue it, or --overwrite to start again.")
        with open(run_file, encoding="utf-8") as f:
            saved = json.load(f)
        differences = _differences(saved, self.settings)
        if differences:
            raise ValueError(f"Cannot resume {self.path}: it was started with other settings "
                             f"({'; '.join(differences)}). Rerun with the same settings, or "
                             f"pass --overwrite instead of --resume to start again.")
        return finished

    def finished_epochs(self) -> int | None:
        """Epochs BackupAndRestore recorded as finished (see `recorded_epochs`)."""
        return recorded_epochs(self.state_dir)

    def _forget_after(self, finished: int) -> None:
        """Drops what a killed epoch wrote before its state was saved: its history row and
        its best model, so that the rerun epoch replaces them."""
        rows = [row for row in self._rows() if int(row["epoch"]) < finished]
        if not rows:  # CSVLogger writes the header itself into a new file.
            if os.path.exists(self.history_file):
                os.remove(self.history_file)
        else:
            with open(self.history_file, "w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        for number, path in self._best_files():
            if number > finished:
                os.remove(path)

    # === During fit ===

    def callbacks(self, *, keep_best_by: str | None) -> list[keras.callbacks.Callback]:
        """Callbacks for `fit`, in order: history, best model, state, pruning.

        Each epoch's row and best model are written before its state, so a kill in between
        reruns that epoch (and `_forget_after` drops the stale files) instead of losing it.
        """
        callbacks = [keras.callbacks.CSVLogger(self.history_file, append=True)]
        if keep_best_by is not None:
            values = [e[keep_best_by] for e in self.epochs() if keep_best_by in e]
            callbacks.append(_BestModelCheckpoint(
                os.path.join(self.path, BEST_MODEL), monitor=keep_best_by, mode="max",
                save_best_only=True, initial_value_threshold=max(values) if values else None))
        callbacks.append(keras.callbacks.BackupAndRestore(self.state_dir, delete_checkpoint=False))
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: self._keep_newest_best()))
        return callbacks

    def _keep_newest_best(self) -> None:
        """Only the latest best model is needed once its epoch's state is saved."""
        for _, path in self._best_files()[:-1]:
            os.remove(path)

    # === After fit ===

    def epochs(self) -> list[dict[str, float]]:
        """Each finished epoch's logged metrics, in order. (CSVLogger adds `val_` columns
        even without validation data, written "NA".)"""
        return [{k: float(v) for k, v in row.items() if k != "epoch" and v != "NA"}
                for row in self._rows()]

    def best_model(self, epoch: int) -> str:
        """The model ModelCheckpoint saved for the (1-based) best `epoch`."""
        path = os.path.join(self.path, BEST_MODEL.format(epoch=epoch))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{self.path}: the best epoch's model {path} is missing "
                                    f"(found {[p for _, p in self._best_files()]}).")
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _rows(self) -> list[dict[str, str]]:
        if not os.path.isfile(self.history_file):
            return []
        with open(self.history_file, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))

    def _best_files(self) -> list[tuple[int, str]]:
        found = [(int(m.group(1)), path) for path in glob.glob(os.path.join(self.path, "best-*"))
                 if (m := _BEST_NUMBER.search(path))]
        return sorted(found)


class _BestModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that saves the model without its optimizer state: the best model is
    the output's, and resuming reads the optimizer from `state/` (BackupAndRestore)."""

    def set_model(self, model):
        from bert_layer.training.classifier import without_training_state

        super().set_model(without_training_state(model))


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """'key: saved -> current' for each setting that differs, nested keys dotted."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            differences.append(f"{prefix}{key}: {a!r} then, {b!r} now")
    return differences


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's `EarlyStopping` (monitor maximised, best weights restored) that, in a resumed
    run, counts the epochs an interrupted run finished: its best value, best epoch and wait
    come from the backup's history, its best weights from the backup's best model.

    Args:
      backup: the run's TrainingBackup.
      monitor: the dev metric (as ModelCheckpoint keeps the best epoch by it).
      patience: epochs without improvement before stopping.
    """

    def __init__(self, backup: TrainingBackup, *, monitor: str, patience: int):
        super().__init__(monitor=monitor, mode="max", patience=patience,
                         restore_best_weights=True)
        self.backup = backup

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        values = [e[self.monitor] for e in self.backup.epochs() if self.monitor in e]
        if not values:
            return
        best = max(range(len(values)), key=values.__getitem__)  # First of equals, as Keras.
        self.best, self.best_epoch = values[best], best
        self.wait = len(values) - 1 - best
        saved = keras.models.load_model(self.backup.best_model(best + 1), compile=False)
        self.best_weights = saved.get_weights()
