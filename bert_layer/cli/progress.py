"""Progress on stderr for long work: a bar with rate and ETA (tqdm), or elapsed time.

Shown only when stderr is a terminal and not turned off (`bert-layer --quiet`); stdout stays
free for results (keras.utils.Progbar writes to stdout, hence tqdm).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

_enabled: bool | None = None  # None: when stderr is a terminal.


def set_enabled(enabled: bool | None) -> None:
    """True/False forces progress on/off; None shows it when stderr is a terminal."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    return sys.stderr.isatty() if _enabled is None else _enabled


def bar(total: int, desc: str, unit: str = "it"):
    """A tqdm bar over `total` units (use .update(n), .close()); a no-op one when disabled."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled(),
                dynamic_ncols=True, leave=False)


@contextlib.contextmanager
def working(desc: str) -> Iterator[None]:
    """Shows `desc` and the elapsed time, refreshed twice a second, while the block runs.

    For work that has no count of steps (export, freeze): it shows the program is alive.
    """
    if not enabled():
        yield
        return
    from tqdm import tqdm
    status = tqdm(total=None, desc=desc, file=sys.stderr, bar_format="{desc}: {elapsed}",
                  leave=False)
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(0.5):
            status.refresh()

    thread = threading.Thread(target=refresh, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        status.close()
