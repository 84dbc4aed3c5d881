"""Flags more than one command shares: the argument types (each names what it expects; argparse adds the flag),
the network flags (`--network`, `--width`, ...) and `--force`."""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable

from ..models.networks import NETWORKS, build_network


def _number(text: str, kind: Callable[[str], Any], what: str, ok: Callable[[Any], bool]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if (isinstance(value, float) and not math.isfinite(value)) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, "a positive integer", lambda v: v >= 1)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (not nan or inf)."""
    return _number(text, float, "a finite positive number", lambda v: v > 0)


def open_fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    return _number(text, float, "a number between 0 and 1 (exclusive)", lambda v: 0 < v < 1)


def number_list(kind: Callable[[str], Any]) -> Callable[[str], tuple]:
    """argparse type: comma-separated numbers (`0.35,0.5`), each positive."""
    what = "integers" if kind is int else "numbers"

    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated positive {what}, got {text!r}") from None
        if not values or any(not (math.isfinite(v) and v > 0) for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated positive {what}, got {text!r}")
        return values

    return parse


def name_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated names."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return values


def image_shape(text: str) -> tuple[int, int, int]:
    """argparse type: HxWxC such as 96x96x3, positive integers."""
    try:
        values = tuple(int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxWxC such as 96x96x3, got {text!r}") from None
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected HxWxC such as 96x96x3, got {text!r}")
    return values  # type: ignore[return-value]


def add_network_args(p: argparse.ArgumentParser, classes: bool = True) -> None:
    """The flags that choose a network of `models.networks.NETWORKS` (the paper's four, Table 4)."""
    p.add_argument("--network", default="mobilenet_v2", choices=list(NETWORKS), help="which of the four networks")
    p.add_argument("--width", type=positive_float, default=None,
                   help="alpha (MobileNets) or scale (ShuffleNet); None: the network's 1.0")
    p.add_argument("--groups", type=positive_int, default=None,
                   help="ShuffleNet groups (1, 2, 3, 4, 8); None: 3")
    p.add_argument("--input-shape", type=image_shape, default=(224, 224, 3), help="HxWxC, e.g. 96x96x3")
    if classes:
        p.add_argument("--classes", type=positive_int, default=1000, help="output classes")
    p.add_argument("--memory-splits", type=positive_int, default=None, metavar="S",
                   help="mobilenet_v2: compute each expanding block in S channel slices (paper Section 5.1); "
                   "None: unsplit")


def network(args: argparse.Namespace, classes: int, **kwargs: Any) -> Any:
    """The network `add_network_args`' flags name, with `classes` outputs."""
    return build_network(args.network, args.input_shape, args.width, args.groups, classes,
                         memory_splits=args.memory_splits, **kwargs)


def add_force(p: argparse.ArgumentParser, what: str) -> None:
    """--force: replace `what` if it exists (without it, nothing the user has is replaced)."""
    p.add_argument("--force", action="store_true", help=f"replace {what} if it exists")


def boards() -> list[str]:
    """The boards table's names (`micro.boards.BOARDS`), for help texts."""
    from ..micro.boards import BOARDS

    return sorted(BOARDS)
