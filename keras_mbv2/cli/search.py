"""`keras-mbv2 search`: the most accurate model of a grid that fits a board (see `keras_mbv2.search`)."""

from __future__ import annotations

import argparse
import os

from ..search.space import default_text
from .contract import UsageError, say
from .flags import boards, name_list, number_list, positive_float, positive_int
from .inputs import check_data

HELP = "the most accurate model of a grid that fits a board: measured, trained, emitted"
EXAMPLE = "keras-mbv2 search --board arduino-nano-33-ble --data digits --quick --out s"
DESCRIPTION = ("Find the most accurate network that fits a board. Stage 1 (no training): every candidate of a grid of "
               "widths, input sizes and expansions that decides is converted to int8 and measured on the TFLite Micro "
               "host runtime, with channel splits and patch-based inference allowed. Stage 2: the fitting candidates "
               "with the most multiply-adds train for a few equal epochs and the best on held-out validation data "
               "trains on, is quantized (QAT), checked on TFLM and emitted as a firmware project, with report.md and "
               "front.png. Rerun the same command to continue an interrupted search.")
ALIASES = {"budget_minutes": "--budget", "memory_techniques": "--no-memory-techniques", "segments": "--segments"}


def add_flags(p: argparse.ArgumentParser) -> None:
    """The command's flags."""
    p.add_argument("--board", default=None, help="the board to fit: " + ", ".join(boards()))
    p.add_argument("--flash", type=positive_int, default=None, metavar="BYTES",
                   help="instead of --board: the chip's flash (code reserve taken off, as for the boards)")
    p.add_argument("--ram", type=positive_int, default=None, metavar="BYTES",
                   help="instead of --board: the chip's RAM (application reserve taken off, as for the boards)")
    p.add_argument("--data", default="digits", help="'digits' or an image folder (one sub-folder per class)")
    p.add_argument("--out", default="keras-mbv2-search", help="the run folder")
    p.add_argument("--networks", type=name_list, default="mobilenet_v2",
                   help="comma-separated: mobilenet_v2, mobilenet_v1, shufflenet_v1")
    p.add_argument("--widths", type=number_list(float), default=None,
                   help="comma-separated width multipliers; " + default_text("widths"))
    p.add_argument("--sizes", type=number_list(int), default=None,
                   help="comma-separated input sizes; " + default_text("sizes"))
    p.add_argument("--expansions", type=number_list(int), default=None,
                   help="mobilenet_v2's expansion factors t; " + default_text("expansions"))
    p.add_argument("--max-macs", type=positive_int, default=None, metavar="N",
                   help="leave out candidates with more multiply-adds (a latency proxy)")
    p.add_argument("--budget", type=positive_float, default=None, metavar="MINUTES",
                   help="minutes for training (trials, final, QAT); " + default_text("budget_minutes"))
    p.add_argument("--finalists", type=positive_int, default=None,
                   help="candidates trained; " + default_text("finalists"))
    p.add_argument("--trial-epochs", type=positive_int, default=None,
                   help="epochs each finalist trains at first; " + default_text("trial_epochs"))
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="the winner's float epochs in all; " + default_text("epochs"))
    p.add_argument("--qat-epochs", type=positive_int, default=None, help="QAT epochs; " + default_text("qat_epochs"))
    p.add_argument("--no-memory-techniques", action="store_true",
                   help="no channel splits or patches: only models that fit as built")
    p.add_argument("--segments", action="store_true",
                   help="also run a candidate in segments where no split or patch plan fits (one TFLM interpreter "
                   "at a time, below TFLM's persistent data); emitted segmented")
    p.add_argument("--quick", action="store_true",
                   help="a small grid and short training (about 10 minutes on 2 cores); flags given still apply")
    p.add_argument("--seed", type=int, default=0, help="random seed (data split, weights, kernels)")


def check(args: argparse.Namespace) -> None:
    """Usage checks before Keras loads: the board or limits, --data, --out not a file."""
    if args.board is None and (args.flash is None or args.ram is None):
        raise UsageError(f"give --board NAME, or --flash BYTES and --ram BYTES. Received: --flash {args.flash} "
                         f"--ram {args.ram}")
    if args.segments and args.no_memory_techniques:
        raise UsageError("--segments is one of the memory techniques --no-memory-techniques turns off: give one of "
                         "the two. Received: --segments --no-memory-techniques")
    check_data(args.data)


def run(args: argparse.Namespace) -> int:
    """Run (or continue) the search in --out and print its table."""
    from ..search import search

    args.interrupted = (f"what finished (stage 1's measurements, each finished trial and epoch) is kept in "
                        f"{args.out}; run the same command again to continue")
    result = search(args.out, data=args.data, board=args.board, flash=args.flash, ram=args.ram,
                    networks=args.networks, widths=args.widths, sizes=args.sizes, expansions=args.expansions,
                    max_macs=args.max_macs, budget_minutes=args.budget, finalists=args.finalists,
                    trial_epochs=args.trial_epochs, epochs=args.epochs, qat_epochs=args.qat_epochs,
                    memory_techniques=not args.no_memory_techniques, segments=args.segments, quick=args.quick,
                    seed=args.seed, log=say)
    print()
    print(result.table())
    print(f"report  {os.path.join(result.out_dir, 'report.md')}")
    return 0
