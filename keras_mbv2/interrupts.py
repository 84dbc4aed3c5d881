"""Ctrl-C that stops training, even where a library swallows it.

Python raises KeyboardInterrupt wherever the main thread happens to be, and TensorFlow sometimes swallows it there
(seen in CI: `keras-mbv2 train` went on for its 200 epochs; a search stopped by Ctrl-C finished its run). While
`ctrl_c_stops_training()` is active, Ctrl-C also sets `INTERRUPTED`, and the callback `stop_on_ctrl_c` raises
KeyboardInterrupt again at the next training batch. No Keras import here: the command line reads it at start-up.

Where the main thread is stuck inside native code (TensorFlow waiting for a worker of a cluster), no Python handler
runs at all: `stop_within_seconds` watches for the signal from a thread of its own and, after a grace period, ends
the process itself, running the cleanups that `cleanup_on_exit` registered (locks, temporary outputs).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterator

#: Set by Ctrl-C while `ctrl_c_stops_training` is active; cleared when it starts.
INTERRUPTED = threading.Event()


def on_ctrl_c(signum: int, frame: Any) -> None:
    """The SIGINT handler: remember the interrupt, then raise KeyboardInterrupt as Python does."""
    INTERRUPTED.set()
    _HANDLED.set()  # the main thread runs Python: `stop_within_seconds`' watchdog lets it unwind
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


# -- stopping even where the main thread is stuck inside native code ------------------------------------------------
#: Seconds the main thread has, after SIGINT or SIGTERM, to run the Python handler (and so unwind, keeping what
#: finished) before the watchdog ends the process itself: a thread blocked inside TensorFlow (a collective waiting
#: for a worker that never comes) runs no Python handler.
GRACE = 5.0
#: Called, last registered first, before an emergency exit: each removes what its writer would have removed on the
#: way out (a run folder's lock, a temporary output). `files` registers them.
_CLEANUPS: list[Callable[[], None]] = []
_HANDLED = threading.Event()  # the Python-level handler ran: the main thread is unwinding on its own


@contextlib.contextmanager
def cleanup_on_exit(action: Callable[[], None]) -> Iterator[None]:
    """Run `action` if the process is ended by `emergency_exit` while this block is active."""
    _CLEANUPS.append(action)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            _CLEANUPS.remove(action)


def emergency_exit(code: int, message: str) -> None:
    """End the process from any thread: run the registered cleanups, print `message` (one line) to stderr, and exit
    with `code` without unwinding the main thread (which may be stuck in native code)."""
    for action in reversed(list(_CLEANUPS)):
        with contextlib.suppress(Exception):
            action()
    try:  # the terminal's descriptor: while `logs.native_stderr_to` captures descriptor 2, sys.stderr writes to it
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = 2
    with contextlib.suppress(Exception):
        os.write(fd, (message.rstrip("\n") + "\n").encode())
    os._exit(code)


def on_signal(signum: int, frame: Any) -> None:
    """The SIGINT and SIGTERM handler of the command line: remember which, then raise KeyboardInterrupt so that
    every `finally` runs (locks released, temporary outputs removed) and what finished is kept."""
    SIGNALLED[0] = signum
    on_ctrl_c(signum, frame)


#: The signal that stopped the command (0: none): 130 = 128 + SIGINT, 143 = 128 + SIGTERM.
SIGNALLED = [0]
_WATCHING = threading.Event()  # `stop_within_seconds` is active (a command of the command line runs)


def raise_if_signalled() -> None:
    """Raise KeyboardInterrupt when a command of the command line was signalled: called by `files` before an
    output is renamed into place, so that a signal whose KeyboardInterrupt a library swallowed (seen in CI: SIGTERM
    while `keras-mbv2 figures` drew, exit 0) still stops the command before it writes anything more. Outside
    `stop_within_seconds` (the package used from Python) it does nothing."""
    if _WATCHING.is_set() and SIGNALLED[0]:
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_within_seconds(message: Callable[[int], str], grace: float = GRACE) -> Iterator[None]:
    """While active (main thread only), SIGINT and SIGTERM raise KeyboardInterrupt (`on_signal`), and a watchdog
    thread, woken by the signal itself (`signal.set_wakeup_fd`: the C-level handler writes to it even while the
    main thread is blocked in native code), ends the process with 128 + the signal and `message(signum)` when the
    Python handler has not run within `grace` seconds, or at once on a second signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    SIGNALLED[0] = 0
    _HANDLED.clear()
    read, write = os.pipe()
    os.set_blocking(write, False)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    old_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    done = threading.Event()

    def watch() -> None:
        seen = 0
        while not done.is_set():
            try:
                data = os.read(read, 16)
            except OSError:
                return
            if done.is_set() or not data:
                return
            signum = data[-1]
            seen += len(data)
            if seen > 1 or not _HANDLED.wait(grace):
                if not done.is_set():
                    emergency_exit(128 + signum, message(signum))

    watcher = threading.Thread(target=watch, name="keras-mbv2-signal-watchdog", daemon=True)
    watcher.start()
    _WATCHING.set()
    try:
        yield
    finally:
        _WATCHING.clear()
        done.set()
        signal.set_wakeup_fd(old_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(write)  # wakes the watcher: it sees `done` and ends
        watcher.join(timeout=1)
        os.close(read)
