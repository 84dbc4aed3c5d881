"""`keras-mbv2 export`: convert a .keras model to TFLite (int8 post-training quantization, or float)."""

from __future__ import annotations

import argparse

from ..files import write_file
from .flags import add_force
from .inputs import check_data, check_keras_file, load_data, load_keras, output_file

HELP = "convert a .keras model to TFLite (int8 PTQ or float)"
EXAMPLE = "keras-mbv2 export --model m.keras --quantize int8 --data digits --out m_ptq.tflite"
DESCRIPTION = "Convert a .keras model to TFLite: full-int8 post-training quantization or float."
ALIASES = {"representative_data": "--data"}


def add_flags(p: argparse.ArgumentParser) -> None:
    """The command's flags."""
    p.add_argument("--model", required=True, help="a .keras model")
    p.add_argument("--quantize", choices=("int8", "float"), default="int8",
                   help="full int8 (post-training, calibrated on --data) or float")
    p.add_argument("--data", default="digits", help="calibration data for int8: 'digits' or an image folder")
    p.add_argument("--out", required=True, help="output .tflite file")
    add_force(p, "--out")


def check(args: argparse.Namespace) -> None:
    """Usage checks before TensorFlow loads: --out, --model, --data."""
    output_file("--out", args.out, ".tflite", args.force)
    check_keras_file(args.model)
    if args.quantize == "int8":
        check_data(args.data)


def run(args: argparse.Namespace) -> int:
    """Convert --model (`keras_mbv2.quantization.to_tflite`) and write --out."""
    from ..quantization import to_tflite

    model = load_keras(args.model)
    calibration = load_data(args.data, tuple(model.input_shape[1:])).x_train[:200] if args.quantize == "int8" else None
    data = to_tflite(model, calibration, quantize=args.quantize)
    write_file(args.out, data)
    print(f"saved {args.out} ({len(data):,} bytes, {args.quantize})")
    return 0
