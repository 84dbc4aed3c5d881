"""`keras-mbv2 demo`: the whole job on the bundled digits (see `keras_mbv2.demo.run_demo`)."""

from __future__ import annotations

import argparse
import os

from ..files import check_replaceable
from ..models.networks import NETWORKS
from .contract import say
from .flags import add_force, positive_float, positive_int

HELP = "the whole job on the bundled digits: train, QAT, int8, TFLM, micro files"
EXAMPLE = "keras-mbv2 demo --out my-demo --network mobilenet_v2 --width 0.35"
DESCRIPTION = ("Train a small network on the bundled digits, quantize it (PTQ and QAT), check it on TFLite Micro, "
               "emit the C files, and write report.md with plots.")
ALIASES = {"image_size": "--image-size"}


def add_flags(p: argparse.ArgumentParser) -> None:
    """The command's flags."""
    p.add_argument("--out", default="keras-mbv2-demo", help="output folder (default ./keras-mbv2-demo)")
    add_force(p, "--out (a non-empty folder)")
    p.add_argument("--network", default="mobilenet_v2", choices=list(NETWORKS), help="which of the four networks")
    p.add_argument("--width", type=positive_float, default=None,
                   help="alpha / scale; None: the network's demo width (" + ", ".join(
                       f"{n.name} {n.demo_width}" for n in NETWORKS.values() if n.demo_width) + ")")
    p.add_argument("--groups", type=positive_int, default=None, help="ShuffleNet groups; None: 3")
    p.add_argument("--image-size", type=positive_int, default=32, help="digits resized to SIZExSIZE")
    p.add_argument("--epochs", type=positive_int, default=None, help="float training epochs; None: 15 (quick: 3)")
    p.add_argument("--qat-epochs", type=positive_int, default=None,
                   help="quantization-aware training epochs; None: 3 (quick: 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed prints the same table")
    p.add_argument("--quick", action="store_true",
                   help="a short run that checks an installation: 3 float and 1 QAT epochs (accuracy lower); "
                   "--epochs and --qat-epochs given still apply")


def check(args: argparse.Namespace) -> None:
    """Usage checks before Keras loads: --out."""
    check_replaceable(args.out, "--out", args.force)


def run(args: argparse.Namespace) -> int:
    """Run the demo into --out and print its table."""
    from ..demo import DEFAULTS, QUICK, run_demo

    args.interrupted = f"nothing was written to {args.out} (the demo writes it only when it completes)"
    base = QUICK if args.quick else DEFAULTS  # a flag given applies, with or without --quick
    epochs = args.epochs if args.epochs is not None else base["epochs"]
    qat_epochs = args.qat_epochs if args.qat_epochs is not None else base["qat_epochs"]
    result = run_demo(args.out, network=args.network, width=args.width, groups=args.groups,
                      image_size=args.image_size, epochs=epochs, qat_epochs=qat_epochs, force=args.force,
                      seed=args.seed, log=say)
    print()
    print(result.table())
    print(f"report  {os.path.join(result.out_dir, 'report.md')}")
    return 0
