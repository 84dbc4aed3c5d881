"""`keras-mbv2 profile`: params, MAdds and activation memory per layer of a built or saved model."""

from __future__ import annotations

import argparse

from .flags import add_network_args, network
from .inputs import check_keras_file, load_keras

HELP = "params, MAdds and peak activation memory per layer"
EXAMPLE = "keras-mbv2 profile --network shufflenet_v1 --groups 3 --width 0.5"


def add_flags(p: argparse.ArgumentParser) -> None:
    """The command's flags."""
    add_network_args(p)
    p.add_argument("--model", help="profile a saved .keras model instead of building one")
    p.add_argument("--bytes-per-activation", type=int, choices=(1, 2, 4), default=1,
                   help="1 int8 (default), 2 the paper's 16-bit, 4 float")


def check(args: argparse.Namespace) -> None:
    """Usage checks before Keras loads: --model."""
    if args.model:
        check_keras_file(args.model)


def run(args: argparse.Namespace) -> int:
    """Print the profiler's table (`keras_mbv2.profiler.profile`)."""
    from ..profiler import profile

    model = load_keras(args.model) if args.model else network(args, args.classes)
    print(profile(model, args.bytes_per_activation).table())
    return 0
