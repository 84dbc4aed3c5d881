"""Transfer learning: keras.applications weights in keras_mbv2's MobileNetV2, fine-tuned on new classes.

Shows: a `keras.applications.MobileNetV2` pre-trained on the digits 0-4 (it stands in for ImageNet pre-training:
nothing is downloaded), its batch-norm statistics re-estimated (`recalibrate_batch_norms`: keras.applications'
momentum 0.999 barely moves in a short training) and its weights saved in the format of the official files;
`keras_mbv2.MobileNetV2(weights=PATH)` loading them and computing the same features (within 1e-5); then a new head
for the digits 5-9, which the base never saw, fine-tuned from those weights, against the same network trained from
scratch with the same steps. Prints each epoch, the largest feature difference, and both accuracies on the test
images of 5-9: the pre-trained network learns the new classes faster. With an official file (for example
`mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5`, or `weights="imagenet"`, which
keras.applications downloads once) the same code fine-tunes ImageNet features. 70 s on 2 cores (measured).

    python examples/pretrained_weights.py
"""

import keras_mbv2 as K  # first: TensorFlow's native start-up lines stay off the terminal

# isort: split
import os
import tempfile

import keras
import numpy as np

from keras_mbv2.datasets import load_digits
from keras_mbv2.models import recalibrate_batch_norms
from keras_mbv2.training import compile_classifier

SHAPE = (32, 32, 3)
keras.utils.set_random_seed(0)
d = load_digits(image_size=32, channels=3)
old, new = d.y_train < 5, d.y_train >= 5  # pre-train on 0-4; the new task is 5-9
x_new, y_new = d.x_train[new], d.y_train[new] - 5
x_test, y_test = d.x_test[d.y_test >= 5], d.y_test[d.y_test >= 5] - 5


def train(model, x, y, epochs, learning_rate=2e-3):
    compile_classifier(model, learning_rate)  # Adam, sparse cross-entropy, accuracy; traced once
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=2)  # one line per epoch
    return model


print("pre-training keras.applications' MobileNetV2 0.35 on the digits 0-4 (stands in for ImageNet)")
app = keras.applications.MobileNetV2(input_shape=SHAPE, alpha=0.35, include_top=False, weights=None, pooling="avg")
train(keras.Sequential([app, keras.layers.Dense(5, activation="softmax")]), d.x_train[old], d.y_train[old], 8)
recalibrate_batch_norms(app, d.x_train[old])  # the moving statistics of the data, as after a long training

with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "mobilenet_v2_0.35_32_no_top.weights.h5")
    app.save_weights(path)  # stands in for the official weights file
    base = K.MobileNetV2(input_shape=SHAPE, alpha=0.35, include_top=False, weights=path, pooling="avg",
                         bn_momentum=0.9)  # momentum is not a weight: fine-tuning on small data follows it faster
difference = np.max(np.abs(np.asarray(app(x_test[:8])) - np.asarray(base(x_test[:8]))))
print(f"largest difference between keras.applications and keras_mbv2 features: {difference:.1e}")


def new_head(features):
    inputs = keras.Input(SHAPE)
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="digits_5_9")(features(inputs)))


EPOCHS = 3  # equal steps for both: 3 epochs of the ~720 training images of 5-9
print(f"\nfine-tuning the pre-trained network on the digits 5-9, {EPOCHS} epochs")
fine_tuned = train(new_head(base), x_new, y_new, EPOCHS, learning_rate=1e-3)
print(f"\nthe same network from scratch (random weights), {EPOCHS} epochs")
scratch = K.MobileNetV2(input_shape=SHAPE, alpha=0.35, include_top=False, weights=None, pooling="avg",
                        bn_momentum=0.9)
scratch = train(new_head(scratch), x_new, y_new, EPOCHS)

fine_accuracy = fine_tuned.evaluate(x_test, y_test, verbose=0)[1]
scratch_accuracy = scratch.evaluate(x_test, y_test, verbose=0)[1]
print(f"\ndigits 5-9, {len(y_test)} test images, after {EPOCHS} epochs:")
print(f"  fine-tuned from the pre-trained weights  test accuracy {fine_accuracy:.1%}")
print(f"  trained from scratch                     test accuracy {scratch_accuracy:.1%}")
