"""Starting TensorFlow without its start-up noise (the CLI's default; --verbose keeps it).

TensorFlow's C++ code logs through absl before `absl::InitializeLog()` is called, which
TF_CPP_MIN_LOG_LEVEL does not reach (oneDNN notes, "Could not find cuda drivers", a
`failed call to cuInit` error on machines without a GPU). So the import and the device set-up
run with file descriptor 2 pointed at a temporary file; what they wrote is shown only if the
import fails. The Python side (TF1 deprecation notes, Keras UserWarnings) is silenced through
logging levels and warning filters. No TensorFlow import at module level here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


def silence_environment() -> None:
    """Environment settings TensorFlow reads when it loads; call before importing it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def stderr_captured() -> Iterator[None]:
    """Points file descriptor 2 (C++ logging) at a temporary file; replays it on error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def load_tensorflow_quietly(set_up_devices: bool = True) -> None:
    """Imports TensorFlow, Keras and tensorflow-text and sets up devices, without noise.

    `set_up_devices=False` leaves TensorFlow's context uninitialised: a tf.distribute
    strategy (MultiWorkerMirroredStrategy) must configure it first, so its device logs are
    not captured here."""
    silence_environment()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning)
    with stderr_captured():
        import keras  # noqa: F401
        import tensorflow as tf
        try:  # Its log noise here; core-tokenizer models run without it.
            import tensorflow_text  # noqa: F401
        except ImportError:
            pass
        if set_up_devices:
            tf.config.list_logical_devices()  # Device set-up logs (cuInit) happen here.
    tf.get_logger().setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    from tensorflow.python.util import deprecation
    deprecation._PRINT_DEPRECATION_WARNINGS = False  # TF1 notes (build_tensor_info, ...)


@contextlib.contextmanager
def warnings_as_lines(command: str) -> Iterator[None]:
    """Prints each warning raised inside as one stderr line, `bert-layer CMD: warning: ...`
    (Python's default format adds the warning's source line, a second line)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                print(f"bert-layer {command}: warning: {warning.message}", file=sys.stderr)
