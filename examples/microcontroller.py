"""From a trained network to a microcontroller: C files for a board, the fit check, and fitting less RAM.

Shows: a MobileNetV2 0.35 at 96x96x3 trained briefly on the bundled digits, converted to full int8 (`to_tflite`)
and checked on the TFLite Micro host runtime, `emit` for an Arduino Nano 33 BLE (the TFLite Micro C array,
`model_settings.h` with the arena measured on the TFLite Micro host runtime, an op resolver with exactly the
model's operators, and the flash/RAM check against the board), then `fit_ram`, which computes inverted residual
blocks in channel slices (paper Section 5.1) until the arena fits 160,000 B, and prints the arena before and after.
Prints each epoch, the float and int8 (TFLite Micro) test accuracies, and the emitted files, which it writes into
`nano33/` in the current folder. 67 s on 2 cores (measured), no download.

    python examples/microcontroller.py
"""

import keras_mbv2 as K  # first: TensorFlow's native start-up lines stay off the terminal

# isort: split
import os

import keras

from keras_mbv2.datasets import load_digits
from keras_mbv2.micro import emit, fit_ram
from keras_mbv2.quantization import evaluate_tflite, to_tflite
from keras_mbv2.training import compile_classifier

d = load_digits(image_size=96, channels=3)
keras.utils.set_random_seed(0)
model = K.MobileNetV2((96, 96, 3), alpha=0.35, classes=10, bn_momentum=0.9)
compile_classifier(model, 2e-3)  # Adam, sparse cross-entropy, accuracy; its first step traced once, not twice
model.fit(d.x_train, d.y_train, epochs=2, batch_size=32, verbose=2)  # one line per epoch; 78% after 2 (measured)
print(f"float test accuracy {model.evaluate(d.x_test, d.y_test, verbose=0)[1]:.1%}")

int8 = to_tflite(model, d.x_train[:200])  # full int8, calibrated on 200 training images
print(f"int8 test accuracy on TFLite Micro {evaluate_tflite(int8, d.x_test, d.y_test, runtime='tflm').accuracy:.1%}")
report = emit(int8, "nano33", board="arduino-nano-33-ble", labels=list(d.class_names))
print(report)  # flash, arena (activations + TFLM's persistent data), operators, MACs, the board check, files
print(f"written to {os.path.abspath('nano33')}: {sorted(os.listdir('nano33'))}")

result = fit_ram(model, 160_000, d.x_train[:200])  # split blocks until kTensorArenaSize <= 160,000 B
print(result)  # arena, activations, persistent data and MACs before and after, and the splits chosen
