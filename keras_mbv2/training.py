"""How the package compiles a classifier for float training: one rule for the demo, `keras-mbv2 train` and the
figures' ablation.

Without a distribution strategy, Keras 3 on TensorFlow creates the optimizer's variables while tracing the first
training step and then traces the step again; building the optimizer before `fit` traces it once (MobileNetV2
0.35 at 32x32: 37 s -> 23 s before the first epoch ends, measured on 2 cores). XLA is left to Keras' "auto",
which turns it off on a machine with only CPUs, where XLA-compiled training steps of these depthwise networks
are slower.
"""

from __future__ import annotations

import keras


def reproducible(seed: int) -> None:
    """Seed Python, NumPy and the backend (`keras.utils.set_random_seed`) and, on TensorFlow, make its kernels
    deterministic (`tf.config.experimental.enable_op_determinism`: without it, multi-threaded kernels may sum in a
    varying order, so two runs with one seed can differ). Process-wide; the demo calls it before it builds
    anything."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def compile_classifier(model: keras.Model, learning_rate: float) -> keras.Model:
    """Compile `model` for integer labels (Adam, sparse categorical cross-entropy, accuracy) and build its
    optimizer, so the first training step is traced once. Returns the model."""
    model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.optimizer.build(model.trainable_variables)
    return model
