"""`keras-mbv2 micro`: TFLite Micro C files (or a whole firmware project) for an int8 model, or fit a .keras model
into a RAM budget first (channel splits, paper Section 5.1, then patches)."""

from __future__ import annotations

import argparse
from typing import Any

from ..files import atomic_write, check_receiving_folder, check_replaceable
from .contract import UsageError, say
from .flags import add_force, boards, positive_int
from .inputs import check_data, check_input_file, check_keras_file, load_data, load_keras, output_file

HELP = "TFLite Micro C files, measured arena and board check"
EXAMPLE = ("keras-mbv2 micro --tflite m_int8.tflite --out micro_out --board nucleo-f746zg (or --project app for a "
           "whole firmware project; to fit a RAM budget: --model m.keras --fit-ram 160000 --data digits instead of "
           "--tflite)")
DESCRIPTION = ("Emit TFLite Micro C arrays, settings and op resolver for an int8 .tflite. With --model and --fit-ram, "
               "first split the inverted residual blocks (paper Section 5.1) just enough for the arena to fit the RAM "
               "budget, and report the arena before and after.")
ALIASES = {"out_dir": "--out", "ram_bytes": "--fit-ram", "representative_data": "--data"}


def add_flags(p: argparse.ArgumentParser) -> None:
    """The command's flags."""
    p.add_argument("--tflite", default=None, help="an int8 .tflite model")
    p.add_argument("--model", default=None, help="a .keras model to split for --fit-ram and convert (int8 PTQ)")
    p.add_argument("--fit-ram", type=positive_int, default=None, metavar="BYTES",
                   help="RAM for inference: split blocks until kTensorArenaSize fits; below the split floor, run the "
                   "early stage in patches (arena + stage buffer + input band must fit)")
    p.add_argument("--segments", action="store_true",
                   help="with --fit-ram: where splits and patches do not fit, also run the model (the patched rest) in "
                   "segments, one TFLM interpreter at a time in one arena, below TFLM's persistent data")
    p.add_argument("--data", default="digits", help="calibration data for --model: 'digits' or an image folder")
    p.add_argument("--save-model", default=None, help="also save the split .keras model (for QAT)")
    p.add_argument("--out", default=None, help="output folder for the model's C files")
    p.add_argument("--project", default=None, metavar="DIR",
                   help="instead of --out: a self-contained firmware project (the app, Makefile, self-test, the "
                   "model's files in DIR/model, and a README naming the board, core, arena and how to build and run)")
    add_force(p, "the files of the same name in --out, or the --project folder")
    p.add_argument("--name", default="model", help="C identifier used in file and symbol names")
    p.add_argument("--board", default=None, help="check flash/RAM: " + ", ".join(boards()))
    p.add_argument("--labels", default=None, help="comma-separated class names")
    p.add_argument("--no-offline-plan", action="store_true",
                   help="keep TFLM's own activation placement even where an offline plan needs less")
    p.add_argument("--test-images", type=positive_int, default=None, metavar="N",
                   help="embed the first N test images of --data (quantized) for the app and `make run-app`")


def check(args: argparse.Namespace) -> None:
    """Usage checks before TensorFlow loads: the flags' combinations, the inputs and the outputs."""
    if (args.tflite is None) == (args.model is None):
        raise UsageError("give exactly one of --tflite (an int8 model) and --model (a .keras model, with --fit-ram). "
                         f"Received: --tflite {args.tflite!r} --model {args.model!r}")
    if args.tflite is not None and args.fit_ram is not None:
        raise UsageError("--fit-ram splits the blocks of a Keras model before quantization: pass --model "
                         f"m.keras instead of --tflite. Received: --tflite {args.tflite!r} --fit-ram {args.fit_ram}")
    if args.segments and args.fit_ram is None:
        raise UsageError("--segments is a way --fit-ram fits a budget: pass --model m.keras --fit-ram BYTES with it. "
                         "Received: --segments without --fit-ram")
    if args.model is not None and args.fit_ram is None:
        raise UsageError(f"--model needs --fit-ram BYTES (or convert with `keras-mbv2 export` and pass --tflite). "
                         f"Received: --model {args.model!r}")
    if (args.out is None) == (args.project is None):
        raise UsageError("give exactly one of --out (the model's C files) and --project (a whole firmware project). "
                         f"Received: --out {args.out!r} --project {args.project!r}")
    if args.tflite is not None:
        check_input_file(args.tflite, "--tflite")
    else:
        check_keras_file(args.model)
    if args.model is not None or args.test_images:
        check_data(args.data)
    if args.save_model is not None:
        output_file("--save-model", args.save_model, ".keras", args.force)
    if args.project is not None:
        check_replaceable(args.project, "--project", args.force)
    else:
        from ..micro.emitter import emitted_names

        check_receiving_folder(args.out, "--out", emitted_names(args.name), args.force)


def run(args: argparse.Namespace) -> int:
    """Emit --tflite's files, or fit --model into --fit-ram and emit the result."""
    from ..micro import emit, fit_ram

    labels = args.labels.split(",") if args.labels else None
    emit_args = dict(name=args.name, board=args.board, labels=labels, memory_plan=not args.no_offline_plan)

    def write(model: Any, segments: Any = None) -> None:
        if segments is not None:
            emit_args["segments"] = segments
        if args.project is None:
            print(emit(model, args.out, **emit_args))
            return
        from ..micro import write_project

        report = write_project(model, args.project, force=args.force, flag="--project", **emit_args)
        print(report)
        print(f"project {args.project}: firmware sources, project.mk and README.md (build: make -C {args.project} "
              "model-objects)")

    if args.tflite is not None:
        if args.test_images:
            from ..tflite import io_details, read_tflite

            data = load_data(args.data, io_details(read_tflite(args.tflite))["input_shape"][1:])
            emit_args.update(test_images=data.x_test[:args.test_images], test_labels=data.y_test[:args.test_images])
        write(args.tflite)
        return 0
    model = load_keras(args.model)
    data = load_data(args.data, tuple(model.input_shape[1:]))
    result = fit_ram(model, args.fit_ram, data.x_train[:200], log=say, segments=args.segments)
    print(result)
    if args.test_images:
        emit_args.update(test_images=data.x_test[:args.test_images], test_labels=data.y_test[:args.test_images])
    write(result.patched or result.tflite, result.segmented)
    if args.save_model:
        atomic_write(args.save_model, result.model.save, ".keras")
        print(f"split model saved to {args.save_model} (quantization-aware training: keras-mbv2 qat --model ...)")
    return 0
