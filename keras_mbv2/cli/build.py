"""`keras-mbv2 build`: build a network (untrained) and save it as .keras."""

from __future__ import annotations

import argparse

from ..files import atomic_write
from .flags import add_force, add_network_args, network
from .inputs import output_file

HELP = "build a network (untrained) and save it as .keras"
EXAMPLE = "keras-mbv2 build --network mobilenet_v2 --width 0.35 --input-shape 96x96x3 --out m96.keras"


def add_flags(p: argparse.ArgumentParser) -> None:
    """The command's flags."""
    add_network_args(p)
    p.add_argument("--out", required=True, help="output .keras file")
    add_force(p, "--out")


def check(args: argparse.Namespace) -> None:
    """Usage checks before Keras loads: --out."""
    output_file("--out", args.out, ".keras", args.force)


def run(args: argparse.Namespace) -> int:
    """Build the network the flags name and save it to --out."""
    output_file("--out", args.out, ".keras", args.force)
    model = network(args, args.classes)
    atomic_write(args.out, model.save, ".keras")
    print(f"saved {model.name} ({model.count_params():,} params, untrained) to {args.out}")
    return 0
