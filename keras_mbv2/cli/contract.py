"""The command line's contract, in one place: exit codes, the two errors, progress lines, and library messages put
in the words (the flags) the user typed.

- Exit codes: 0 done; 1 a step failed (one line: what and why); 2 bad usage (one line naming the flag the user
  typed and the value); 130 interrupted by Ctrl-C (one line: what was kept, how to resume).
- Nothing is lost: outputs are written under temporary names and renamed into place after success, with the
  user's umask; an existing output is replaced only with --force, and never the current folder, a parent of it,
  the home folder or the root. A step that cannot give a useful result (training that diverged or stayed at
  chance) fails instead of saving it.
- Every number is checked before any work starts; the library's messages are re-worded with the flags.
- Quiet: TensorFlow's native log lines stay off the terminal unless --verbose or --debug; --debug also shows
  tracebacks.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
from typing import Any

from ..interrupts import stop_on_ctrl_c

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

#: Library arguments that a differently named flag sets, for every command: the library's messages name them, the
#: user typed the flag. A command's own (`ALIASES` in its module) are set on its parser as `flag_aliases`.
LIBRARY_ALIASES = {"alpha": "width", "scale": "width", "directory": "data"}


class UsageError(ValueError):
    """Bad arguments: exit code 2."""


class StepFailed(RuntimeError):
    """A step ran but could not give a useful result (exit code 1); nothing was saved."""


class ProcessLost(StepFailed):
    """Another process of a multi-process run was lost (exit code 1): after its one line the process ends at once,
    without the runtime's shutdown, which would wait on the lost process and abort with a stack trace (JAX)."""


QUIET = threading.Event()  # --quiet: no progress lines, only results and errors


def say(message: str) -> None:
    """A progress line (the phases of long steps), flushed at once; nothing under --quiet."""
    if not QUIET.is_set():
        print(message, flush=True)


def stop_on_ctrl_c_callback() -> Any:
    """A Keras callback that raises KeyboardInterrupt at the next batch once Ctrl-C was pressed (`interrupts`)."""
    import keras

    return stop_on_ctrl_c(keras.callbacks.Callback)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show (required, unset, or a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump): `keras-mbv2 build: error: ...`, exit code 2, and every
    flag's default in its help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def whole_sentences(text: str, limit: int = 600) -> str:
    """`text` on one line, at most about `limit` characters, cut only after a whole sentence (never mid-sentence;
    a first sentence longer than `limit` is kept whole)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    ends = [m.end() for m in re.finditer(r"[.!?:;](?=\s)", text)]
    fitting = [e for e in ends if e <= limit]
    return text[:fitting[-1]] if fitting else text[:ends[0]] if ends else text


def command_flags(subparser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Library argument name -> the flag of `command` (whose parser is `subparser`) that sets it."""
    flags = {a.dest: a.option_strings[-1] for a in subparser._actions if a.option_strings and a.dest != "help"}
    flags.update({alias: flags[dest] for alias, dest in LIBRARY_ALIASES.items() if dest in flags})
    flags.update(subparser.get_default("flag_aliases") or {})
    return flags


def flag_message(message: str, flags: dict[str, str]) -> str:
    """A library message in the user's words: "`alpha`" -> "--width", "Received: alpha=0.5" -> "--width 0.5"."""
    for name, flag in flags.items():
        message = message.replace(f"`{name}`", flag)
        message = re.sub(rf"(?<![\w-]){re.escape(name)}=", f"{flag} ", message)
    return " ".join(message.split())  # one line
