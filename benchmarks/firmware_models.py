"""The models of the recorded firmware runs (benchmarks/firmware/): emitted with their test images, ready for
`make run-app MODEL_DIR=...` against a TFLite Micro checkout (built by hand: benchmarks/firmware/README.md).

Run: python benchmarks/firmware_models.py OUT_DIR

Writes OUT_DIR/<model>/ for:
- readme_whole, readme_patched: the README's patch-based block (MobileNetV2 0.35 @ 96x96x3, 10 classes,
  batch norms calibrated on the digits, `fit_ram(model, 125_000, ...)`), the int8 model with the plan's splits
  unpatched and patched, 3 digits test images with their labels; readme_patched_120k: the same model with
  `fit_ram(model, 120_000, ...)`, for the 128 KiB SRAM of netduinoplus2's STM32F405 (the app's own buffers,
  newlib's and the stack need the rest);
- anchor_mobilenetv2_030_80_whole/_patched and anchor_mobilenetv1_025_96_whole/_patched: the anchors of
  benchmarks/anchors.py (untrained, batch norms recalibrated), unpatched and with `search_patches`' plan, 3
  digits images as test images (their labels are not these networks' classes: the run compares scores, not
  accuracy).
Each folder's `model_report.txt` says what `emit` measured.
"""

from __future__ import annotations

import os
import sys

from anchors import ANCHORS  # benchmarks/anchors.py, beside this file
from patch_inference import calibrated  # benchmarks/patch_inference.py

import keras_mbv2 as K
from keras_mbv2.datasets import load_digits
from keras_mbv2.micro import emit, fit_ram
from keras_mbv2.micro.fit import search_patches
from keras_mbv2.models import recalibrate_batch_norms

TEST_IMAGES = 3


def readme(out: str) -> None:
    """The README's block, as printed there, emitted unpatched and patched."""
    d = load_digits(image_size=96, channels=3)
    model = K.MobileNetV2((96, 96, 3), alpha=0.35, classes=10)
    recalibrate_batch_norms(model, d.x_train[:256])
    result = fit_ram(model, 125_000, d.x_train[:200])
    images, labels = d.x_test[:TEST_IMAGES], d.y_test[:TEST_IMAGES]
    emit(result.patched, os.path.join(out, "readme_patched"), test_images=images, test_labels=labels)
    emit(result.tflite, os.path.join(out, "readme_whole"), test_images=images, test_labels=labels)
    tighter = fit_ram(model, 120_000, d.x_train[:200])
    emit(tighter.patched, os.path.join(out, "readme_patched_120k"), test_images=images, test_labels=labels)


def anchors(out: str) -> None:
    for kind, width, size, classes, stem in ANCHORS.values():
        model, calib, whole = calibrated(kind, width, size, classes)
        images = load_digits(image_size=size, channels=3).x_test[:TEST_IMAGES] * 2 - 1  # the calibration's range
        emit(whole, os.path.join(out, f"{stem}_whole"), test_images=images)
        _, _, _, _, patched = search_patches(model, calib, whole)
        emit(patched, os.path.join(out, f"{stem}_patched"), test_images=images)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    readme(argv[0])
    anchors(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
