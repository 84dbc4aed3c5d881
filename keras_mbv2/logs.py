"""Keeping TensorFlow's native log lines off the terminal unless asked for.

TensorFlow, its converter and XLA write from C++ straight to file descriptor 2: on a machine without a GPU
`failed call to cuInit`, `Could not find cuda drivers`, the converter's `fully_quantize: 0, inference_type: 6`.
`TF_CPP_MIN_LOG_LEVEL` does not silence all of them (absl logs before its initialisation). `native_stderr_to`
sends file descriptor 2 to a file for a while, and keeps Python's own `sys.stderr` (warnings, errors) on the
terminal. Set `KERAS_MBV2_VERBOSE=1` (the command line's `--verbose` and `--debug` do) to see everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator

#: What was captured while the package imported TensorFlow (shown by `keras-mbv2 --verbose`).
STARTUP: list[str] = []


def verbose() -> bool:
    """True when the user asked for TensorFlow's own log lines (KERAS_MBV2_VERBOSE=1)."""
    return os.environ.get("KERAS_MBV2_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def native_stderr_to(captured: list[str]) -> Iterator[None]:
    """Redirect file descriptor 2 to a temporary file; on exit append its text to `captured`.

    Python's `sys.stderr` is pointed at a duplicate of the original descriptor meanwhile, so Python-level
    messages still reach the terminal. Does nothing when `verbose()` or when stderr has no file descriptor.
    """
    try:
        fd = sys.stderr.fileno() if sys.stderr is not None else -1
    except (AttributeError, OSError, ValueError):  # pytest's capture, notebooks: no real descriptor
        fd = -1
    if verbose() or fd != 2:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=python_stderr.encoding, errors="replace")
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sys.stderr.close()
            sys.stderr = python_stderr
            log.seek(0)
            captured.append(log.read().decode(errors="replace"))
