"""The `keras-mbv2` command line, one module per command (as pip's `commands/` and git's `builtin/`).

    contract.py   exit codes, UsageError / StepFailed, progress lines, library messages in the flags' words
    flags.py      argument types and the flags several commands share (network, --force)
    inputs.py     shared steps: output checks, loading a .keras model and --data, the chance check
    main.py       the parser (COMMANDS) and main()
    demo.py, build.py, profile.py, train.py, qat.py, export.py, micro.py, check_app.py, figures.py, search.py,
    compare.py    each command's flags (add_flags) and body (run)

Only the standard library and the package's light modules load before a command runs: `--help`, `--version` and
usage errors answer without Keras or TensorFlow.
"""

from ..interrupts import INTERRUPTED
from .contract import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    StepFailed,
    UsageError,
    command_flags,
    flag_message,
    stop_on_ctrl_c_callback,
)
from .main import COMMANDS, main, make_parser

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "INTERRUPTED", "StepFailed", "UsageError",
           "command_flags", "flag_message", "main", "make_parser",
           "stop_on_ctrl_c_callback"]
