"""Ctrl-C that stops training, even where a library swallows it.

Python raises KeyboardInterrupt wherever the main thread happens to be, and TensorFlow sometimes swallows it there
(seen in CI: `keras-mbv2 train` went on for its 200 epochs; a search stopped by Ctrl-C finished its run). While
`ctrl_c_stops_training()` is active, Ctrl-C also sets `INTERRUPTED`, and the callback `stop_on_ctrl_c` raises
KeyboardInterrupt again at the next training batch. No Keras import here: the command line reads it at start-up.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

#: Set by Ctrl-C while `ctrl_c_stops_training` is active; cleared when it starts.
INTERRUPTED = threading.Event()


def on_ctrl_c(signum: int, frame: Any) -> None:
    """The SIGINT handler: remember the interrupt, then raise KeyboardInterrupt as Python does."""
    INTERRUPTED.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_stops_training() -> Iterator[None]:
    """Install `on_ctrl_c` for SIGINT (in the main thread; elsewhere a no-op) and restore the previous handler after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    if previous is not on_ctrl_c:
        INTERRUPTED.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_on_ctrl_c(base: type) -> Any:
    """A callback (subclass of `base`: `keras.callbacks.Callback`, or tf_keras' for QAT) that raises
    KeyboardInterrupt at the next training batch once Ctrl-C was pressed."""

    class StopOnCtrlC(base):  # type: ignore[misc, valid-type]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if INTERRUPTED.is_set():
                raise KeyboardInterrupt

    return StopOnCtrlC()
