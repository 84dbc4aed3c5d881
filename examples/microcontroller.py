"""From a trained network to a microcontroller: C files for a board, the fit check, and fitting less RAM.

Shows: a MobileNetV2 0.35 at 96x96x3 trained briefly on the bundled digits, converted to full int8 (`to_tflite`),
`emit` for an Arduino Nano 33 BLE (the TFLite Micro C array, `model_settings.h` with the arena measured on the
TFLite Micro host runtime, an op resolver with exactly the model's operators, and the flash/RAM check against the
board), then `fit_ram`, which computes inverted residual blocks in channel slices (paper Section 5.1) until the
arena fits 160,000 B, and prints the arena before and after. Writes into a temporary folder. About two minutes
on 2 cores, no download.

    python examples/microcontroller.py
"""

import os
import tempfile

import keras

import keras_mbv2 as K
from keras_mbv2.datasets import load_digits
from keras_mbv2.micro import emit, fit_ram
from keras_mbv2.quantization import to_tflite

d = load_digits(image_size=96, channels=3)
keras.utils.set_random_seed(0)
model = K.MobileNetV2((96, 96, 3), alpha=0.35, classes=10, bn_momentum=0.9)
model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(d.x_train, d.y_train, epochs=1, batch_size=32, verbose=0)
print(f"float test accuracy {model.evaluate(d.x_test, d.y_test, verbose=0)[1]:.1%}")

with tempfile.TemporaryDirectory() as folder:
    int8 = to_tflite(model, d.x_train[:200])
    report = emit(int8, os.path.join(folder, "nano33"), board="arduino-nano-33-ble", labels=list(d.class_names))
    print(report)  # flash, arena (activations + TFLM's persistent data), operators, MACs, the board check, files
    print(sorted(os.listdir(os.path.join(folder, "nano33"))))

result = fit_ram(model, 160_000, d.x_train[:200])  # split blocks until kTensorArenaSize <= 160,000 B
print(result)  # arena, activations, persistent data and MACs before and after, and the splits chosen
