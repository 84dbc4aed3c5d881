"""Data the package can train on without a download: scikit-learn's digits, and the user's image folders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layers._base import check_choice, check_positive_int


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def load_digits(image_size: int = 32, channels: int = 1, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """The UCI handwritten digits shipped with scikit-learn (1,797 8x8 images, 10 classes), resized.

    Returns float32 images in [0, 1] of shape (N, image_size, image_size, channels) and int labels,
    split into a stratified train/test pair that is the same for the same `seed`.
    """
    check_positive_int("image_size", image_size)
    check_choice("channels", channels, (1, 3))
    if not isinstance(test_fraction, float) or not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be a float in (0, 1). Received: test_fraction={test_fraction!r}")
    import tensorflow as tf
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    digits = sk_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    images = tf.image.resize(images, (image_size, image_size), method="bilinear").numpy()
    images = np.clip(images, 0.0, 1.0)
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype("int32"), test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return Split(x_train, y_train, x_test, y_test, tuple(str(i) for i in range(10)))


def load_image_folder(directory: str, image_size: int = 96, channels: int = 3, validation_split: float = 0.2,
                      seed: int = 0, batch_size: int = 32):
    """A user's own images, one sub-folder per class, via `keras.utils.image_dataset_from_directory`.

    Returns (train, validation) `tf.data.Dataset`s of float images in [0, 1] and int labels.
    """
    import os

    import keras

    if not os.path.isdir(directory):
        raise ValueError(f"`directory` must be an existing folder. Received: directory={directory!r}")
    color = {1: "grayscale", 3: "rgb"}[check_choice("channels", channels, (1, 3))]
    common = dict(image_size=(image_size, image_size), color_mode=color, batch_size=batch_size, seed=seed,
                  validation_split=validation_split, label_mode="int")
    train = keras.utils.image_dataset_from_directory(directory, subset="training", **common)
    val = keras.utils.image_dataset_from_directory(directory, subset="validation", **common)
    scale = keras.layers.Rescaling(1.0 / 255)
    return train.map(lambda x, y: (scale(x), y)), val.map(lambda x, y: (scale(x), y))
