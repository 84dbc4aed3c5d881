"""Keeping TensorFlow's native log lines off the terminal unless asked for.

TensorFlow, its converter and XLA write from C++ straight to file descriptor 2: on a machine without a GPU
`failed call to cuInit`, `Could not find cuda drivers`, the converter's `fully_quantize: 0, inference_type: 6`.
`TF_CPP_MIN_LOG_LEVEL` does not silence all of them (absl logs before its initialisation). `native_stderr_to`
sends file descriptor 2 to a file for a while, and keeps Python's own `sys.stderr` (warnings, errors) on the
terminal. Set `KERAS_MBV2_VERBOSE=1` (the command line's `--verbose` and `--debug` do) to see everything.

`quiet_tensorflow_import()` is the one rule for the start-up lines: `import keras_mbv2` calls it, and the first
import of TensorFlow after that, wherever it happens (Keras' own `import keras`, the user's `import tensorflow`,
the converter), runs with file descriptor 2 captured into `STARTUP` and initialises the devices there, so the
CUDA probe's `E0000 ... failed call to cuInit` is captured too. Importing keras_mbv2 itself stays cheap (the
command line answers `--help` without TensorFlow). Import keras_mbv2 before Keras or TensorFlow:

    import keras_mbv2  # first: TensorFlow's native start-up lines stay off the terminal
    # isort: split
    import keras
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
from typing import Any, Iterator, Sequence

#: What was captured while the package imported TensorFlow (shown by `keras-mbv2 --verbose`).
STARTUP: list[str] = []


def verbose() -> bool:
    """True when the user asked for TensorFlow's own log lines (KERAS_MBV2_VERBOSE=1)."""
    return os.environ.get("KERAS_MBV2_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def native_stderr_to(captured: list[str]) -> Iterator[None]:
    """Redirect file descriptor 2 to a temporary file; on exit append its text to `captured`.

    When Python's `sys.stderr` writes to descriptor 2, it is pointed at a duplicate of the original meanwhile, so
    Python-level messages still reach the terminal; a `sys.stderr` that writes elsewhere (pytest's capture, a
    pytest-xdist worker, a notebook) is left alone, and descriptor 2 is captured all the same. Does nothing when
    `verbose()` or when the process has no descriptor 2.
    """
    try:
        os.fstat(2)
    except OSError:
        fd2 = False
    else:
        fd2 = True
    if verbose() or not fd2:
        yield
        return
    try:
        swap = sys.stderr is not None and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # pytest's capture, notebooks: no real descriptor
        swap = False
    if sys.stderr is not None:
        sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    if swap:
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=python_stderr.encoding, errors="replace")
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if swap:
                sys.stderr.close()
                sys.stderr = python_stderr
            log.seek(0)
            captured.append(log.read().decode(errors="replace"))


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader with file descriptor 2 captured, then initialises its devices there."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with native_stderr_to(STARTUP):
            self.loader.exec_module(module)
            try:  # the CUDA probe (`failed call to cuInit`) runs when the devices are first listed
                module.config.list_physical_devices()
            except Exception:  # a TensorFlow without `config` or devices: nothing more to capture
                pass


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, through the normal finders, and hands its loader to `_QuietLoader`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders do the work, and later imports are untouched
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None and not verbose():
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_import() -> None:
    """Make the first import of TensorFlow in this process capture its native start-up lines (into `STARTUP`).

    Does nothing once TensorFlow is imported, or twice. `KERAS_MBV2_VERBOSE=1` lets the lines through.
    """
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())
