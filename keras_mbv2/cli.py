"""The `keras-mbv2` command line.

Errors are one line on stderr: exit code 2 for bad usage, 1 for a step that failed; `--debug` shows the
traceback. Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from typing import Any, Sequence

import numpy as np

from .files import atomic_write, write_file
from .models.networks import NETWORKS, build_network


class UsageError(ValueError):
    """Bad arguments: exit code 2."""


# Library arguments that a differently named flag sets: the library's messages name them, the user typed the flag.
LIBRARY_ALIASES = {"alpha": "width", "scale": "width"}
COMMAND_ALIASES = {"qat": {"out_dir": "--run-dir"}, "micro": {"out_dir": "--out", "ram_bytes": "--fit-ram"}}


def command_flags(subparser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Library argument name -> the flag of `command` that sets it."""
    flags = {a.dest: a.option_strings[-1] for a in subparser._actions if a.option_strings and a.dest != "help"}
    flags.update({alias: flags[dest] for alias, dest in LIBRARY_ALIASES.items() if dest in flags})
    flags.update(COMMAND_ALIASES.get(command, {}))
    return flags


def flag_message(message: str, flags: dict[str, str]) -> str:
    """A library message in the user's words: "`alpha`" -> "--width", "Received: alpha=0.5" -> "--width 0.5"."""
    for name, flag in flags.items():
        message = message.replace(f"`{name}`", flag)
        message = re.sub(rf"(?<![\w-]){re.escape(name)}=", f"{flag} ", message)
    return message


def _boards() -> list[str]:
    from .micro.boards import BOARDS

    return list(BOARDS)


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


def _add_network_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", default="mobilenet_v2", choices=list(NETWORKS), help="which of the four networks")
    p.add_argument("--width", type=float, default=None, help="alpha (MobileNets) or scale (ShuffleNet)")
    p.add_argument("--groups", type=int, default=None, help="ShuffleNet groups (1, 2, 3, 4, 8)")
    p.add_argument("--input-shape", type=_parse_shape, default=(224, 224, 3), help="HxWxC, e.g. 96x96x3")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--memory-splits", type=int, default=None, metavar="S",
                   help="mobilenet_v2: compute each expanding block in S channel slices (paper Section 5.1)")


def _network(args: argparse.Namespace, classes: int, **kwargs: Any) -> Any:
    return build_network(args.network, args.input_shape, args.width, args.groups, classes,
                         memory_splits=args.memory_splits, **kwargs)


def cmd_build(args: argparse.Namespace) -> int:
    """`keras-mbv2 build`: build a network and save it as .keras."""
    if not args.out.endswith(".keras"):
        raise UsageError(f"--out must end with .keras. Received: --out {args.out!r}")
    model = _network(args, args.classes)
    atomic_write(args.out, model.save, ".keras")
    print(f"saved {model.name} ({model.count_params():,} params) to {args.out}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """`keras-mbv2 profile`: params, MAdds and activation memory per layer of a built or saved model."""
    from .profiler import profile

    if args.model:
        import keras

        if not os.path.exists(args.model):
            raise UsageError(f"model file not found. Received: --model {args.model!r}")
        model = keras.models.load_model(args.model)
    else:
        model = _network(args, args.classes)
    print(profile(model, args.bytes_per_activation).table())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """`keras-mbv2 compare`: the paper's Tables 3 and 4 beside our measurements."""
    from .compare import compare, format_rows

    print(format_rows(compare(args.size)))
    return 0


def _load_data(spec: str, image_size: int, channels: int):
    """--data: "digits" (bundled) or an image folder with one sub-folder per class -> numpy arrays."""
    from .datasets import load_digits, load_image_folder

    if spec == "digits":
        d = load_digits(image_size=image_size, channels=channels)
        return d.x_train, d.y_train, d.x_test, d.y_test
    if not os.path.isdir(spec):
        raise UsageError(f"--data must be 'digits' or an image folder. Received: --data {spec!r}")
    train, val = load_image_folder(spec, image_size=image_size, channels=channels)
    arrays = []
    for ds in (train, val):
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
        arrays += [np.concatenate(xs), np.concatenate(ys)]
    return tuple(arrays)


def _load_keras(path: str, flag: str = "--model") -> Any:
    import keras

    if not os.path.isfile(path) or not path.endswith(".keras"):
        raise UsageError(f"{flag} must be an existing .keras file. Received: {flag} {path!r}")
    return keras.models.load_model(path)


def cmd_train(args: argparse.Namespace) -> int:
    """`keras-mbv2 train`: train a network in float on the digits or an image folder and save it."""
    import keras

    if not args.out.endswith(".keras"):
        raise UsageError(f"--out must end with .keras. Received: --out {args.out!r}")
    h, w, c = args.input_shape
    x, y, xt, yt = _load_data(args.data, h, c)
    classes = int(max(y.max(), yt.max())) + 1
    model = _network(args, classes, bn_momentum=args.bn_momentum)
    model.compile(keras.optimizers.Adam(args.learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, validation_data=(xt, yt), verbose=2)
    print(f"test accuracy {model.evaluate(xt, yt, verbose=0)[1]:.4f}")
    atomic_write(args.out, model.save, ".keras")
    print(f"saved {args.out}")
    return 0


def cmd_qat(args: argparse.Namespace) -> int:
    """`keras-mbv2 qat`: quantization-aware training of a .keras model to a full-int8 .tflite (resumable)."""
    from .quantization import evaluate_tflite, fit_qat, quantize_aware, to_tflite

    if not args.tflite.endswith(".tflite"):
        raise UsageError(f"--tflite must end with .tflite. Received: --tflite {args.tflite!r}")
    model = _load_keras(args.model)
    _, h, w, c = model.input_shape
    x, y, xt, yt = _load_data(args.data, h, c)
    qat = quantize_aware(model)
    fit_qat(qat, x, y, args.run_dir, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            validation_data=(xt, yt), verbose=2)
    data = to_tflite(qat, x[:200])
    write_file(args.tflite, data)
    print(f"QAT int8 accuracy {evaluate_tflite(data, xt, yt).accuracy:.4f}; saved {args.tflite} ({len(data):,} bytes)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`keras-mbv2 export`: convert a .keras model to TFLite (int8 post-training quantization, or float)."""
    from .quantization import to_tflite

    if not args.out.endswith(".tflite"):
        raise UsageError(f"--out must end with .tflite. Received: --out {args.out!r}")
    model = _load_keras(args.model)
    _, h, w, c = model.input_shape
    calibration = _load_data(args.data, h, c)[0][:200] if args.quantize == "int8" else None
    data = to_tflite(model, calibration, quantize=args.quantize)
    write_file(args.out, data)
    print(f"saved {args.out} ({len(data):,} bytes, {args.quantize})")
    return 0


def cmd_micro(args: argparse.Namespace) -> int:
    """`keras-mbv2 micro`: TFLite Micro C files for an int8 model, or fit a .keras model into a RAM budget first."""
    from .micro import emit, fit_ram

    labels = args.labels.split(",") if args.labels else None
    if (args.tflite is None) == (args.model is None):
        raise UsageError("give exactly one of --tflite (an int8 model) and --model (a .keras model, with --fit-ram). "
                         f"Received: --tflite {args.tflite!r} --model {args.model!r}")
    if args.tflite is not None:
        if args.fit_ram is not None:
            raise UsageError("--fit-ram splits the blocks of a Keras model before quantization: pass --model "
                             f"m.keras instead of --tflite. Received: --tflite {args.tflite!r} "
                             f"--fit-ram {args.fit_ram}")
        print(emit(args.tflite, args.out, name=args.name, board=args.board, labels=labels,
                   memory_plan=not args.no_offline_plan))
        return 0
    if args.fit_ram is None:
        raise UsageError(f"--model needs --fit-ram BYTES (or convert with `keras-mbv2 export` and pass --tflite). "
                         f"Received: --model {args.model!r}")
    if args.fit_ram < 1:
        raise UsageError(f"--fit-ram must be a positive number of bytes. Received: --fit-ram {args.fit_ram}")
    if args.save_model is not None and not args.save_model.endswith(".keras"):
        raise UsageError(f"--save-model must end with .keras. Received: --save-model {args.save_model!r}")
    model = _load_keras(args.model)
    _, h, w, c = model.input_shape
    calibration = _load_data(args.data, h, c)[0][:200]
    result = fit_ram(model, args.fit_ram, calibration, log=lambda m: print(m, flush=True))
    print(result)
    print(emit(result.tflite, args.out, name=args.name, board=args.board, labels=labels,
               memory_plan=not args.no_offline_plan))
    if args.save_model:
        atomic_write(args.save_model, result.model.save, ".keras")
        print(f"split model saved to {args.save_model} (quantization-aware training: keras-mbv2 qat --model ...)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """`keras-mbv2 demo`: the whole job on the bundled digits (see `keras_mbv2.demo.run_demo`)."""
    from .demo import run_demo

    result = run_demo(args.out, network=args.network, width=args.width, groups=args.groups,
                      image_size=args.image_size, epochs=args.epochs, qat_epochs=args.qat_epochs, force=args.force,
                      log=lambda m: print(m, flush=True))
    print()
    print(result.table())
    print(f"report  {os.path.join(result.out_dir, 'report.md')}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    """The `keras-mbv2` argument parser with one sub-command per job."""
    parser = _Parser(
        prog="keras-mbv2",
        description="MobileNetV2-paper networks for Keras 3, on the way to microcontrollers.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = sub.choices  # command -> its parser, for flag_message

    p = sub.add_parser("demo", help="the whole job on the bundled digits: train, QAT, int8, TFLM, micro files",
                       description="Train a small network on the bundled digits, quantize it (PTQ and QAT), check "
                       "it on TFLite Micro, emit the C files, and write report.md with plots.",
                       epilog="example: keras-mbv2 demo --out my-demo --network mobilenet_v2 --width 0.35")
    p.add_argument("--out", default="keras-mbv2-demo", help="output folder (default ./keras-mbv2-demo)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists and is not empty")
    p.add_argument("--network", default="mobilenet_v2", choices=list(NETWORKS))
    p.add_argument("--width", type=float, default=None, help="alpha / scale (default 0.35, 0.25, 0.5)")
    p.add_argument("--groups", type=int, default=None, help="ShuffleNet groups")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=15, help="float training epochs")
    p.add_argument("--qat-epochs", type=int, default=3)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("build", help="build a network and save it as .keras",
                       description="Build a network and save it as .keras.",
                       epilog="example: keras-mbv2 build --network mobilenet_v2 --width 0.35 --input-shape 96x96x3 "
                       "--out m.keras")
    _add_network_args(p)
    p.add_argument("--out", required=True, help="output .keras file")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("profile", help="params, MAdds and peak activation memory per layer",
                       description="Params, MAdds and peak activation memory per layer.",
                       epilog="example: keras-mbv2 profile --network shufflenet_v1 --groups 3 --width 0.5")
    _add_network_args(p)
    p.add_argument("--model", help="profile a saved .keras model instead of building one")
    p.add_argument("--bytes-per-activation", type=int, default=1, help="1 int8 (default), 2 the paper's 16-bit")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("train", help="train a network in float", description="Train a network in float.",
                       epilog="example: keras-mbv2 train --data digits --input-shape 32x32x1 --width 0.35 "
                       "--out m.keras")
    _add_network_args(p)
    p.add_argument("--data", default="digits", help="'digits' or an image folder (one sub-folder per class)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--bn-momentum", type=float, default=0.9, help="0.9 trains small data sets well")
    p.add_argument("--out", required=True, help="output .keras file")
    p.set_defaults(func=cmd_train, input_shape=(32, 32, 1))

    p = sub.add_parser("qat", help="quantization-aware fine-tuning to a full-int8 .tflite",
                       description="Quantization-aware fine-tuning (tfmot) to a full-int8 .tflite; resumable.",
                       epilog="example: keras-mbv2 qat --model m.keras --data digits --run-dir qat_run "
                       "--tflite m_int8.tflite")
    p.add_argument("--model", required=True, help="float .keras model")
    p.add_argument("--data", default="digits")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--run-dir", required=True, help="checkpoints and history; rerun to resume")
    p.add_argument("--tflite", required=True, help="output int8 .tflite")
    p.set_defaults(func=cmd_qat)

    p = sub.add_parser("export", help="convert a .keras model to TFLite (int8 PTQ or float)",
                       description="Convert a .keras model to TFLite: full-int8 post-training quantization or float.",
                       epilog="example: keras-mbv2 export --model m.keras --quantize int8 --data digits --out m.tflite")
    p.add_argument("--model", required=True)
    p.add_argument("--quantize", choices=("int8", "float"), default="int8")
    p.add_argument("--data", default="digits", help="calibration data for int8")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("micro", help="TFLite Micro C files, measured arena and board check",
                       description="Emit TFLite Micro C arrays, settings and op resolver for an int8 .tflite. With "
                       "--model and --fit-ram, first split the inverted residual blocks (paper Section 5.1) just "
                       "enough for the arena to fit the RAM budget, and report the arena before and after.",
                       epilog="example: keras-mbv2 micro --tflite m_int8.tflite --out micro_out --board nucleo-f746zg "
                       "(or, to fit a RAM budget: --model m.keras --fit-ram 160000 --data digits instead of --tflite)")
    p.add_argument("--tflite", default=None, help="an int8 .tflite model")
    p.add_argument("--model", default=None, help="a .keras model to split for --fit-ram and convert (int8 PTQ)")
    p.add_argument("--fit-ram", type=int, default=None, metavar="BYTES",
                   help="RAM for the tensor arena: split blocks until kTensorArenaSize fits")
    p.add_argument("--data", default="digits", help="calibration data for --model: 'digits' or an image folder")
    p.add_argument("--save-model", default=None, help="also save the split .keras model (for QAT)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default="model", help="C identifier used in file and symbol names")
    p.add_argument("--board", default=None, help="check flash/RAM: " + ", ".join(sorted(_boards())))
    p.add_argument("--labels", default=None, help="comma-separated class names")
    p.add_argument("--no-offline-plan", action="store_true",
                   help="keep TFLM's own activation placement even where an offline plan needs less")
    p.set_defaults(func=cmd_micro)

    p = sub.add_parser("compare", help="the paper's Tables 3 and 4 beside measured values",
                       description="The paper's Tables 3 and 4 beside measured values.",
                       epilog="example: keras-mbv2 compare")
    p.add_argument("--size", type=int, default=224, help="input resolution (default 224, as in the paper)")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `keras-mbv2 ARGV`; returns the exit code (0 done, 1 a step failed, 2 bad usage)."""
    parser = make_parser()
    args = parser.parse_args(argv)  # argparse exits 2 with a one-line message on bad usage
    try:
        return args.func(args)
    except ValueError as exc:  # UsageError and our validation errors, which name the argument and value
        if args.debug:
            traceback.print_exc()
        message = flag_message(str(exc), command_flags(parser.commands[args.command], args.command))
        print(f"keras-mbv2 {args.command}: error: {message}", file=sys.stderr)
        return 2
    except Exception as exc:  # a step that failed
        if args.debug:
            traceback.print_exc()
        print(f"keras-mbv2 {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
