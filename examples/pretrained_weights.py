"""keras.applications weights in keras_mbv2's MobileNetV2, then a new head fine-tuned on your classes.

Shows: `keras_mbv2.MobileNetV2(weights=PATH)` loading a keras.applications weights file and checking that both
networks compute the same function (within 1e-5); then a new 10-class head trained on the bundled digits with the
base frozen. No download: the weights file is made here by saving a `keras.applications.MobileNetV2(weights=None)`
model, in the format of the official files. With the official file (for example
`mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5`, or `weights="imagenet"`, which
keras.applications downloads once) the same code fine-tunes ImageNet features. Prints the largest difference
between the two networks' features and the test accuracy of the new head. About a minute on 2 cores.

    python examples/pretrained_weights.py
"""

import os
import tempfile

import keras
import numpy as np

import keras_mbv2 as K
from keras_mbv2.datasets import load_digits

SHAPE = (96, 96, 3)
keras.utils.set_random_seed(0)
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "mobilenet_v2_0.35_96_no_top.weights.h5")
    app = keras.applications.MobileNetV2(input_shape=SHAPE, alpha=0.35, include_top=False, weights=None)
    app.save_weights(path)  # stands in for the official weights file
    base = K.MobileNetV2(input_shape=SHAPE, alpha=0.35, include_top=False, weights=path, pooling="avg")

d = load_digits(image_size=96, channels=3)
features = keras.layers.GlobalAveragePooling2D()(app(d.x_test[:8]))
print(f"largest difference between keras.applications and keras_mbv2 features: "
      f"{np.max(np.abs(np.asarray(features) - np.asarray(base(d.x_test[:8])))):.1e}")

base.trainable = False  # keep the carried features; train only the new head
inputs = keras.Input(SHAPE)
outputs = keras.layers.Dense(10, activation="softmax", name="digits")(base(inputs, training=False))
model = keras.Model(inputs, outputs)
model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(d.x_train, d.y_train, epochs=5, batch_size=64, verbose=0)
print(f"new head on the frozen base: test accuracy {model.evaluate(d.x_test, d.y_test, verbose=0)[1]:.1%} "
      "(random features here; ImageNet weights do better)")
