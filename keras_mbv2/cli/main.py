"""`keras-mbv2`: the parser built from the command modules, and `main`, which keeps the contract
(`cli.contract`): one line per error, exit codes 0 / 1 / 2 / 130."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
import warnings
from types import ModuleType
from typing import Any, Sequence

from .._version import __version__
from ..interrupts import INTERRUPTED, SIGNALLED, stop_within_seconds
from . import build, check_app, compare, demo, export, figures, micro, profile, qat, search, train
from .contract import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    QUIET,
    Parser,
    ProcessLost,
    StepFailed,
    command_flags,
    flag_message,
    whole_sentences,
)

#: The commands in `--help`'s order: name -> its module (HELP, EXAMPLE, optional DESCRIPTION and ALIASES,
#: add_flags(parser), check(args): the usage checks that need no Keras or TensorFlow (files, folders, flag
#: combinations), run before anything loads so that a usage error answers at once, and run(args)).
COMMANDS: dict[str, ModuleType] = {
    "demo": demo, "build": build, "profile": profile, "train": train, "qat": qat, "export": export,
    "micro": micro, "check-app": check_app, "figures": figures, "search": search, "compare": compare,
}


def make_parser() -> argparse.ArgumentParser:
    """The `keras-mbv2` argument parser with one sub-command per job (`COMMANDS`)."""
    parser = Parser(prog="keras-mbv2",
                    description="MobileNetV2-paper networks for Keras 3, on the way to microcontrollers.")
    parser.add_argument("--version", action="version", version=f"keras-mbv2 {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    for p in (parser, common):  # before or after the command; on the command, only when typed
        default = False if p is parser else argparse.SUPPRESS
        p.add_argument("--debug", action="store_true", default=default, help="show tracebacks and TensorFlow's logs")
        p.add_argument("--verbose", action="store_true", default=default, help="show TensorFlow's own log lines")
        p.add_argument("--quiet", action="store_true", default=default,
                       help="no progress lines (phases, epochs, steps): only results, warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    parser.commands = sub.choices  # command -> its parser, for flag_message
    for name, module in COMMANDS.items():
        description = getattr(module, "DESCRIPTION", None) or module.HELP[0].upper() + module.HELP[1:] + "."
        p = sub.add_parser(name, help=module.HELP, description=description, epilog=f"example: {module.EXAMPLE}",
                           parents=[common])
        module.add_flags(p)
        p.set_defaults(func=module.run, check=module.check, flag_aliases=getattr(module, "ALIASES", {}))
    return parser


def _quiet_python_logs() -> None:
    """TensorFlow's and absl's Python loggers to errors only (their native lines are captured separately)."""
    import logging

    for name in ("tensorflow", "absl", "tf_keras"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*HDF5 file via `model.save\(\)`.*")
    warnings.filterwarnings("ignore", message=r".*does not have any trainable weights.*")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `keras-mbv2 ARGV`; returns the exit code (0 done, 1 a step failed, 2 bad usage, 130 interrupted)."""
    from ..logs import STARTUP, native_stderr_to

    parser = make_parser()
    args = parser.parse_args(argv)  # argparse exits 2 with a one-line message on bad usage
    args.argv = list(sys.argv[1:] if argv is None else argv)  # a command that starts itself again passes them on
    loud = args.debug or args.verbose
    if loud:
        os.environ["KERAS_MBV2_VERBOSE"] = "1"
        sys.stderr.write("".join(STARTUP))
    else:
        _quiet_python_logs()
    captured: list[str] = []
    name = f"keras-mbv2 {args.command}"

    def one_line_warning(message: Any, category: Any, *rest: Any, **kwargs: Any) -> None:
        print(f"{name}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    warnings.showwarning = one_line_warning
    INTERRUPTED.clear()
    QUIET.clear()
    if args.quiet:
        QUIET.set()

    def interrupted(signum: int = signal.SIGINT) -> str:
        kept = getattr(args, "interrupted", "nothing was written")
        kept = kept() if callable(kept) else kept  # said as it is at the signal: only what exists
        by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        return f"\n{name}: interrupted{by}: {kept}"

    try:
        # Ctrl-C and SIGTERM stop within seconds, even inside TensorFlow (`interrupts.stop_within_seconds`)
        with stop_within_seconds(interrupted):
            args.check(args)  # the usage errors that need no TensorFlow: before it loads
            with native_stderr_to(captured):
                return args.func(args)
    except KeyboardInterrupt:
        signum = SIGNALLED[0] or signal.SIGINT
        print(interrupted(signum), file=sys.stderr)
        return EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + signum
    except ValueError as exc:  # UsageError and our validation errors, which name the argument and value
        if args.debug:
            traceback.print_exc()
        message = flag_message(str(exc), command_flags(parser.commands[args.command], args.command))
        print(f"{name}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a step that failed
        if args.debug:
            traceback.print_exc()
            sys.stderr.write("".join(captured))
        reason = " ".join(str(exc).split()) if isinstance(exc, StepFailed) else \
            f"{type(exc).__name__}: {whole_sentences(str(exc))}"
        print(f"{name}: failed: {reason}", file=sys.stderr)
        if isinstance(exc, ProcessLost):  # JAX's shutdown would abort on the lost process: end here, said
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_FAILED)
        return EXIT_FAILED
