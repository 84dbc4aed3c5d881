"""`keras-mbv2 figures`: the paper's Figures 3 and 4 drawn from the blocks, and evolution.md."""

from __future__ import annotations

import argparse
import os

from ..files import check_replaceable, output_folder
from .contract import say
from .flags import add_force

HELP = "the paper's Figures 3 and 4 drawn from the blocks, and the claims measured"
EXAMPLE = "keras-mbv2 figures --out figs --quick"
DESCRIPTION = ("Draw the paper's Figure 3 (regular conv -> separable -> linear bottleneck -> inverted residual) and "
               "Figure 4 (the four networks' blocks) from the keras_mbv2 blocks themselves, each panel annotated with "
               "the profiler's params, multiply-adds and memory, and write evolution.md with the paper's cost and "
               "memory claims measured.")


def add_flags(p: argparse.ArgumentParser) -> None:
    """The command's flags."""
    p.add_argument("--out", default="keras-mbv2-figures", help="output folder")
    add_force(p, "--out (a non-empty folder)")
    p.add_argument("--quick", action="store_true", help="figures 3 and 4 and the cost and memory sections only")


def check(args: argparse.Namespace) -> None:
    """Usage checks before Keras loads: --out."""
    check_replaceable(args.out, "--out", args.force)


def run(args: argparse.Namespace) -> int:
    """Draw into a temporary folder renamed to --out when complete (`keras_mbv2.figures.make_figures`)."""
    from ..figures import make_figures

    args.interrupted = f"nothing was written to {args.out} (it is written only when complete)"
    with output_folder(args.out, "--out", args.force) as work:
        written = make_figures(work, quick=args.quick, log=say)
    for path in written:
        print(f"wrote {os.path.join(args.out, os.path.basename(path))}")
    return 0
