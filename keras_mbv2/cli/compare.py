"""`keras-mbv2 compare`: the paper's Tables 3 and 4 beside our measurements."""

from __future__ import annotations

import argparse

from .contract import UsageError
from .flags import positive_int

HELP = "the paper's Tables 3 and 4 beside measured values"
EXAMPLE = "keras-mbv2 compare"


def add_flags(p: argparse.ArgumentParser) -> None:
    """The command's flags."""
    p.add_argument("--size", type=positive_int, default=224, help="input resolution (default 224, as in the paper)")


def check(args: argparse.Namespace) -> None:
    """Usage checks before Keras loads: --size."""
    if args.size < 32:
        raise UsageError(f"--size must be at least 32 (the networks' strides). Received: --size {args.size}")


def run(args: argparse.Namespace) -> int:
    """Print `keras_mbv2.compare.compare`'s rows."""
    from ..compare import compare, format_rows

    print(format_rows(compare(args.size)))
    return 0
