"""keras.applications models the package did not build, through the package's tools: profile -> int8 -> TFLM.

Run: python benchmarks/applications.py  (writes benchmarks/APPLICATIONS.md; about 10 minutes on 2 cores)

Each model (weights=None, 64x64x3, 10 classes) trains 3 epochs on the bundled digits (RGB, 64x64, Adam 1e-3,
batch norms re-estimated at the end: `RecalibrateBatchNorms`), then: the profiler's parameters, multiply-adds and
operator-level activation peak; `to_tflite` int8 (post-training, 200 calibration images: the tf_keras twin where
every layer has one, else Keras' SavedModel export); TFLM's arena on the host runtime (activations = its head,
persistent = the rest); the float and int8 (LiteRT reference kernels) test accuracies, the share of test images on
which the int8 model's class equals the float model's, and whether TFLM's outputs equal LiteRT's on 20 images.
"""

from __future__ import annotations

import os
import sys
import time

import keras
import numpy as np

import keras_mbv2  # noqa: F401  (first: TensorFlow's native start-up lines stay off the terminal)
from keras_mbv2.datasets import load_digits
from keras_mbv2.profiler import profile
from keras_mbv2.quantization import evaluate_tflite, to_tflite
from keras_mbv2.tflite import (
    arena_use,
    compare_outputs,
    io_details,
    operator_names,
    quantize_input,
    run_litert,
    run_tflm,
)
from keras_mbv2.training import RecalibrateBatchNorms, compile_classifier

SIZE, EPOCHS = 64, 3
MODELS = {
    "MobileNetV3Small": lambda: keras.applications.MobileNetV3Small(input_shape=(SIZE, SIZE, 3), weights=None,
                                                                     classes=10, include_preprocessing=False),
    "MobileNetV3Large": lambda: keras.applications.MobileNetV3Large(input_shape=(SIZE, SIZE, 3), weights=None,
                                                                     classes=10, include_preprocessing=False),
    "EfficientNetB0": lambda: keras.applications.EfficientNetB0(input_shape=(SIZE, SIZE, 3), weights=None, classes=10),
    "ResNet50": lambda: keras.applications.ResNet50(input_shape=(SIZE, SIZE, 3), weights=None, classes=10),
}


def row(name: str, data) -> str:
    keras.utils.set_random_seed(0)
    start = time.monotonic()
    model = compile_classifier(MODELS[name](), 1e-3)
    model.fit(data.x_train, data.y_train, epochs=EPOCHS, batch_size=32, verbose=0,
              callbacks=[RecalibrateBatchNorms(data.x_train)])
    report = profile(model)
    float_pred = np.argmax(model.predict(data.x_test, verbose=0), axis=1)
    float_acc = float(np.mean(float_pred == data.y_test))
    int8 = to_tflite(model, data.x_train[:200])
    use = arena_use(int8)
    lite = evaluate_tflite(int8, data.x_test, data.y_test)
    agree = float(np.mean(lite.predictions == float_pred))
    x = quantize_input(data.x_test[:20], io_details(int8))
    same = compare_outputs(run_tflm(int8, x)[0], run_litert(int8, x))
    ops = ", ".join(sorted(set(operator_names(int8)) - {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RESHAPE",
                                                          "QUANTIZE", "DEQUANTIZE"}))
    return (f"| {name} | {report.params:,} | {report.macs:,} | {report.peak_operator_bytes:,} | {use.head:,} | "
            f"{use.total - use.head:,} | {len(int8):,} | {float_acc:.1%} | {lite.accuracy:.1%} | {agree:.1%} | "
            f"{same} | {ops} | {time.monotonic() - start:.0f} s |")


def main() -> None:
    data = load_digits(image_size=SIZE, channels=3)
    lines = ["# keras.applications models through profile -> int8 -> TFLite Micro", "",
             "`python benchmarks/applications.py` (this machine, 2 cores). " + __doc__.split("\n\n")[2].replace(
                 "\n", " "), "",
             "| model | params | MACs | profiler peak (B) | TFLM activations (B) | TFLM persistent (B) | int8 .tflite "
             "(B) | float | int8 | int8 = float class | TFLM vs LiteRT | other operators | time |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
    for name in MODELS:
        lines.append(row(name, data))
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "APPLICATIONS.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
