"""Float / PTQ / QAT int8 / TFLM accuracy of the four networks on the bundled digits data.

Run: python benchmarks/qat_digits.py [--epochs 15] [--qat-epochs 3] [--out benchmarks/QAT_RESULTS.md]
Writes a markdown table (the README quotes it). Each row: train float (Adam 2e-3, BN momentum 0.9),
post-training quantization of that float model, QAT fine-tuning (Adam --qat-lr, default 3e-5) and int8 conversion, then
the int8 model on LiteRT (reference kernels) and on the TFLite Micro host runtime.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

import keras
import numpy as np

import keras_mbv2 as K
from keras_mbv2.datasets import load_digits
from keras_mbv2.files import write_file
from keras_mbv2.quantization import evaluate_tflite, fit_qat, quantize_aware, run_litert, to_tflite

SIZE = 32
NETWORKS = {
    "MobileNetV2 0.35": lambda: K.MobileNetV2(input_shape=(SIZE, SIZE, 1), alpha=0.35, classes=10, bn_momentum=0.9),
    "MobileNetV1 0.25": lambda: K.MobileNetV1(input_shape=(SIZE, SIZE, 1), alpha=0.25, classes=10, bn_momentum=0.9),
    "ShuffleNetV1 g=3 0.5x": lambda: K.ShuffleNetV1(input_shape=(SIZE, SIZE, 1), groups=3, scale=0.5, classes=10,
                                                    bn_momentum=0.9),
    "NASNet-A 1 @ 192": lambda: K.NASNet(input_shape=(SIZE, SIZE, 1), penultimate_filters=192, num_blocks=1,
                                         stem_block_filters=16, skip_reduction=False, classes=10, bn_momentum=0.9),
}


def train_float(model, data, epochs):
    """Float training as every table here does it (Adam 2e-3, batch 32); returns the test accuracy."""
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    return model.evaluate(data.x_test, data.y_test, verbose=0)[1]


def qat_int8(model, data, qat_epochs, qat_lr):
    """QAT fine-tuning of a float model in a throw-away run folder, then the full-int8 .tflite bytes."""
    qat = quantize_aware(model)
    out = tempfile.mkdtemp(prefix="qat_")
    try:
        fit_qat(qat, data.x_train, data.y_train, out, epochs=qat_epochs, learning_rate=qat_lr, verbose=0)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return to_tflite(qat, data.x_train[:200])


def run(name, build, data, epochs, qat_epochs, qat_lr):
    keras.utils.set_random_seed(0)
    model = build()
    t0 = time.perf_counter()
    float_acc = train_float(model, data, epochs)
    f32 = to_tflite(model, quantize="float")
    f32_diff = float(np.max(np.abs(run_litert(f32, data.x_test) - model.predict(data.x_test, verbose=0))))
    ptq = to_tflite(model, data.x_train[:200])
    ptq_acc = evaluate_tflite(ptq, data.x_test, data.y_test).accuracy
    int8 = qat_int8(model, data, qat_epochs, qat_lr)
    lite = evaluate_tflite(int8, data.x_test, data.y_test)
    micro = evaluate_tflite(int8, data.x_test, data.y_test, runtime="tflm")
    return dict(
        network=name, params=model.count_params(), float=float_acc, ptq=ptq_acc, qat=lite.accuracy, tflm=micro.accuracy,
        identical=bool(np.array_equal(lite.outputs, micro.outputs)), f32_diff=f32_diff, bytes=len(int8),
        arena=micro.arena_bytes, seconds=time.perf_counter() - t0,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--qat-lr", type=float, default=3e-5)
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "QAT_RESULTS.md"))
    args = parser.parse_args(argv)
    data = load_digits(image_size=SIZE)
    rows = []
    for name in args.networks:
        row = run(name, NETWORKS[name], data, args.epochs, args.qat_epochs, args.qat_lr)
        print(row, flush=True)
        rows.append(row)
    lines = [
        f"Digits test split ({len(data.y_test)} images, {SIZE}x{SIZE}x1), float {args.epochs} epochs, QAT "
        f"{args.qat_epochs} epochs (Adam {args.qat_lr:g}); Python {platform.python_version()}, "
        f"keras {keras.__version__}.",
        "",
        "| network | params | float | PTQ int8 | QAT int8 | TFLM int8 | TFLM == LiteRT | float TFLite max diff "
        "| .tflite bytes | TFLM arena bytes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['params']:,} | {r['float']:.1%} | {r['ptq']:.1%} | {r['qat']:.1%} "
            f"| {r['tflm']:.1%} | {'identical' if r['identical'] else 'DIFFERENT'} | {r['f32_diff']:.1e} "
            f"| {r['bytes']:,} | {r['arena']:,} |"
        )
    text = "\n".join(lines) + "\n"
    write_file(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
