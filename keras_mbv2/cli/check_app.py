"""`keras-mbv2 check-app`: the firmware's scores against the host runtime's, and its per-operator profile."""

from __future__ import annotations

import argparse
import os

from .contract import StepFailed, UsageError

HELP = "compare the firmware's scores with the TFLite Micro host runtime"
EXAMPLE = "make -C app run-app TFLM_DIR=~/tflite-micro > app.log; keras-mbv2 check-app --log app.log --dir app/model"
DESCRIPTION = ("Read what the firmware's app printed (QEMU or a board's serial log) and compare the int8 scores of its "
               "embedded test images bit for bit with the TFLite Micro host runtime; print the per-operator profile.")


def add_flags(p: argparse.ArgumentParser) -> None:
    """The command's flags."""
    p.add_argument("--log", required=True, help="the app's output")
    p.add_argument("--dir", required=True, help="the folder keras-mbv2 micro --test-images wrote")
    p.add_argument("--name", default="model", help="the --name given to keras-mbv2 micro")


def check(args: argparse.Namespace) -> None:
    """Usage checks before TensorFlow loads: --log and --dir exist."""
    if not os.path.isfile(args.log):
        raise UsageError(f"--log file not found. Received: --log {args.log!r}")
    if not os.path.isdir(args.dir):
        raise UsageError(f"--dir must be the folder keras-mbv2 micro --test-images wrote. Received: --dir {args.dir!r}")


def run(args: argparse.Namespace) -> int:
    """Parse --log, compare with the host runtime on --dir's model, print the profile; fail when they differ."""
    from ..micro import check_app_output, parse_app_output, profile_by_operator

    with open(args.log, errors="replace") as f:
        text = f.read()
    output = parse_app_output(text)
    agreement = check_app_output(text, args.dir, args.name)
    print(f"arena used {output.arena_used:,} of {output.arena_size:,} B; {len(output.images)} images; "
          f"scores vs the TFLite Micro host runtime: {agreement}")
    for kind, count, ticks, share in profile_by_operator(output):
        print(f"{kind:<20}{count:>4} x {ticks:>14,} {output.tick_unit:<14}{share:>7.1%}")
    if not agreement.identical:
        raise StepFailed(f"the firmware's scores differ from the host runtime's: {agreement}")
    return 0
