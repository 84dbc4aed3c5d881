"""Train on your own images: a folder with one sub-folder per class.

Shows: a small image folder (PNG files of the bundled digits 0-4, written to a temporary folder, standing in for
your photos), `keras_mbv2.datasets.load_image_folder` (decodes PNG/JPEG/BMP/GIF, resizes, scales to [0, 1],
holds out a stratified test split, and names any file it cannot read), and a MobileNetV1 0.25 trained on it.
The command line does the same with `keras-mbv2 train --data FOLDER --input-shape 32x32x3 --out m.keras`. Prints
the classes, each epoch, the split sizes and the test accuracy. 19 s on 2 cores (measured), no download.

    python examples/image_folder.py
"""

import keras_mbv2 as K  # first: TensorFlow's native start-up lines stay off the terminal

# isort: split
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_mbv2.datasets import load_digits, load_image_folder
from keras_mbv2.training import compile_classifier

digits = load_digits(image_size=32, channels=3)
keras.utils.set_random_seed(0)
with tempfile.TemporaryDirectory() as folder:
    for i, (image, label) in enumerate(zip(digits.x_train, digits.y_train)):
        if label < 5:  # five classes, about 140 images each
            os.makedirs(os.path.join(folder, f"digit_{label}"), exist_ok=True)
            png = tf.io.encode_png(np.uint8(np.round(image * 255))).numpy()
            with open(os.path.join(folder, f"digit_{label}", f"{i:04d}.png"), "wb") as f:
                f.write(png)
    data = load_image_folder(folder, image_size=32, channels=3)

print(f"classes {data.class_names}: {len(data.y_train)} training and {len(data.y_test)} test images")
model = K.MobileNetV1(input_shape=(32, 32, 3), alpha=0.25, classes=len(data.class_names), bn_momentum=0.9)
compile_classifier(model, 2e-3)  # Adam, sparse cross-entropy, accuracy; its first step traced once, not twice
model.fit(data.x_train, data.y_train, epochs=10, batch_size=32, verbose=2)  # one line per epoch
print(f"test accuracy {model.evaluate(data.x_test, data.y_test, verbose=0)[1]:.1%}")
