"""The `keras-mbv2` command line.

Errors are one line on stderr: exit code 2 for bad usage, 1 for a step that failed; `--debug` shows the
traceback. Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from typing import Any, Callable, Sequence

NETWORKS = ("mobilenet_v2", "mobilenet_v1", "shufflenet_v1", "nasnet")


class UsageError(ValueError):
    """Bad arguments: exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump): `keras-mbv2 build: error: ...`, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _parse_shape(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxWxC such as 96x96x3, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected HxWxC such as 96x96x3, got {text!r}")
    return values  # type: ignore[return-value]


def build_network(network: str, input_shape: tuple[int, int, int], width: float | None, groups: int | None,
                  classes: int) -> Any:
    """The one mapping from CLI knobs to a builder call."""
    import keras_mbv2 as K

    if network == "mobilenet_v2":
        return K.MobileNetV2(input_shape=input_shape, alpha=width or 1.0, classes=classes)
    if network == "mobilenet_v1":
        return K.MobileNetV1(input_shape=input_shape, alpha=width or 1.0, classes=classes)
    if network == "shufflenet_v1":
        return K.ShuffleNetV1(input_shape=input_shape, groups=groups or 3, scale=width or 1.0, classes=classes)
    if network == "nasnet":
        if width not in (None, 1.0):
            raise UsageError(f"--width applies to mobilenet_v1/v2 and shufflenet_v1, not nasnet. Received: --width {width}")
        return K.NASNetMobile(input_shape=input_shape, classes=classes)
    raise UsageError(f"--network must be one of {NETWORKS}. Received: --network {network!r}")


def atomic_write(path: str, write: Callable[[str], None], suffix: str = "") -> None:
    """Call write(tmp) for a temporary file beside `path`, then rename it into place."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory):
        raise UsageError(f"the output folder does not exist. Received: --out {path!r}")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or os.path.splitext(path)[1], dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _add_network_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", default="mobilenet_v2", choices=NETWORKS, help="which of the four networks")
    p.add_argument("--width", type=float, default=None, help="alpha (MobileNets) or scale (ShuffleNet)")
    p.add_argument("--groups", type=int, default=None, help="ShuffleNet groups (1, 2, 3, 4, 8)")
    p.add_argument("--input-shape", type=_parse_shape, default=(224, 224, 3), help="HxWxC, e.g. 96x96x3")
    p.add_argument("--classes", type=int, default=1000)


def cmd_build(args: argparse.Namespace) -> int:
    if not args.out.endswith(".keras"):
        raise UsageError(f"--out must end with .keras. Received: --out {args.out!r}")
    model = build_network(args.network, args.input_shape, args.width, args.groups, args.classes)
    atomic_write(args.out, model.save, ".keras")
    print(f"saved {model.name} ({model.count_params():,} params) to {args.out}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from .profiler import profile

    if args.model:
        import keras

        if not os.path.exists(args.model):
            raise UsageError(f"model file not found. Received: --model {args.model!r}")
        model = keras.models.load_model(args.model)
    else:
        model = build_network(args.network, args.input_shape, args.width, args.groups, args.classes)
    print(profile(model, args.bytes_per_activation).table())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare, format_rows

    print(format_rows(compare(args.size)))
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="keras-mbv2",
        description="MobileNetV2-paper networks for Keras 3, on the way to microcontrollers.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="build a network and save it as .keras", description="Build a network and save it as .keras.",
                       epilog="example: keras-mbv2 build --network mobilenet_v2 --width 0.35 --input-shape 96x96x3 --out m.keras")
    _add_network_args(p)
    p.add_argument("--out", required=True, help="output .keras file")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("profile", help="params, MAdds and peak activation memory per layer", description="Params, MAdds and peak activation memory per layer.",
                       epilog="example: keras-mbv2 profile --network shufflenet_v1 --groups 3 --width 0.5")
    _add_network_args(p)
    p.add_argument("--model", help="profile a saved .keras model instead of building one")
    p.add_argument("--bytes-per-activation", type=int, default=1, help="1 int8 (default), 2 the paper's 16-bit")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("compare", help="the paper's Tables 3 and 4 beside measured values", description="The paper's Tables 3 and 4 beside measured values.",
                       epilog="example: keras-mbv2 compare")
    p.add_argument("--size", type=int, default=224, help="input resolution (default 224, as in the paper)")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)  # argparse exits 2 with a one-line message on bad usage
    try:
        return args.func(args)
    except ValueError as exc:  # UsageError and our validation errors, which name the argument and value
        if args.debug:
            traceback.print_exc()
        print(f"keras-mbv2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a step that failed
        if args.debug:
            traceback.print_exc()
        print(f"keras-mbv2 {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
