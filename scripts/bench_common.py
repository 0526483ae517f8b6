"""What the benchmark scripts share: the module they measure."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def module_folder(module: Path | None, checkpoint: Path, max_seq_length: int) -> Iterator[str]:
    """Yields `module`, or a module exported from `checkpoint` into a temporary folder."""
    if module is not None:
        yield os.fspath(module)
        return
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"Checkpoint folder not found: {checkpoint}. Create it with "
                                f"`bert-layer convert --default`, or pass --module.")
    from bert_layer.export.writer import export_module  # Loads the TF1 exporter: only when needed.

    with tempfile.TemporaryDirectory(prefix="bench_module_") as tmp:
        start = time.perf_counter()
        path = export_module(checkpoint, os.path.join(tmp, "module"),
                             max_seq_length=max_seq_length)
        print(f"Exported {checkpoint} -> {path} in {time.perf_counter() - start:.1f}s",
              flush=True)
        yield path
