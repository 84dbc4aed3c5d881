"""Data the package can train on without a download: scikit-learn's digits, and the user's image folders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .checks import check_choice, check_positive_int


@dataclass
class Split:
    """Train and test images (float32 in [0, 1], channels last) with integer labels and the class names."""

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


def hold_out(x: np.ndarray, y: np.ndarray, fraction: float = 0.2, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val): a stratified, seeded validation split of `fraction` of the training
    images, for choosing (epochs, candidates) without looking at the test split. At least one image per class is
    held out, and one per class kept."""
    from sklearn.model_selection import train_test_split

    classes = len(np.unique(y))
    size = max(classes, int(np.ceil(fraction * len(y))))  # as scikit-learn rounds a fraction
    if len(y) - size < classes:
        raise ValueError(f"{len(y)} training images are too few to hold out a validation split of {classes} "
                         f"classes. Received: fraction={fraction}")
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=size, random_state=seed, stratify=y)
    return x_tr, y_tr, x_val, y_val


def epoch_batches(x: np.ndarray, y: np.ndarray, batch_size: int, epochs: int, first_epoch: int = 0,
                  seed: int = 0) -> tuple[Any, int]:
    """(a tf.data.Dataset of the training batches of epochs `first_epoch` .. `epochs` - 1, the steps per epoch),
    for `fit(dataset, steps_per_epoch=steps, initial_epoch=first_epoch, epochs=epochs)` in Keras 3 or tf_keras.

    Each epoch's order is a permutation drawn from (`seed`, epoch) alone, so a run stopped after epoch k and
    resumed from its saved weights and optimizer sees exactly the batches of a run never stopped, and ends with the
    same model. (`fit(..., shuffle=True)` draws each epoch's order from a stream that starts again in the resumed
    process.) The batches are global batches: under a tf.distribute strategy they are split over its replicas
    (sharded by data)."""
    check_positive_int("batch_size", batch_size)
    if not 0 <= first_epoch < epochs:
        raise ValueError(f"`first_epoch` must be in [0, epochs). Received: first_epoch={first_epoch}, epochs={epochs}")
    import tensorflow as tf

    n = len(y)
    orders = np.stack([np.random.default_rng([seed, epoch]).permutation(n) for epoch in range(first_epoch, epochs)])
    images, labels = tf.constant(x), tf.constant(y)
    batches = tf.data.Dataset.from_tensor_slices(orders).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
    batches = batches.map(lambda i: (tf.gather(images, i), tf.gather(labels, i))).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return batches.with_options(options), -(-n // batch_size)


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def write_digits_folder(directory: str, classes: int = 3, per_class: int = 60, size: int = 64, seed: int = 0) -> str:
    """A small folder of colour images in the layout `load_image_folder` reads (`class_0/000.png`, ...): the
    bundled digits 0 .. classes-1, `per_class` of each, upscaled to `size` x `size` RGB PNGs with a random colour
    cast per image (seeded). It stands in for a user's few dozen photos per class in examples, tests and
    benchmarks, with no download. Returns `directory`."""
    import os

    from PIL import Image
    from sklearn.datasets import load_digits as sk_digits

    check_positive_int("classes", classes)
    check_positive_int("per_class", per_class)
    check_positive_int("size", size)
    digits = sk_digits()
    if not 2 <= classes <= 10 or per_class > int(np.bincount(digits.target).min()):
        raise ValueError(f"`classes` must be 2 to 10 and `per_class` at most {int(np.bincount(digits.target).min())}. "
                         f"Received: classes={classes}, per_class={per_class}")
    rng = np.random.default_rng(seed)
    for label in range(classes):
        os.makedirs(os.path.join(directory, f"class_{label}"), exist_ok=True)
        for k, i in enumerate(np.flatnonzero(digits.target == label)[:per_class]):
            gray = Image.fromarray((digits.images[i] / 16 * 255).astype("uint8")).resize((size, size),
                                                                                            Image.BILINEAR)
            rgb = np.asarray(gray.convert("RGB"), dtype="float32") * rng.uniform(0.7, 1.0, 3)
            Image.fromarray(rgb.clip(0, 255).astype("uint8")).save(os.path.join(directory, f"class_{label}",
                                                                                f"{k:03d}.png"))
    return directory


def image_folder_channels(directory: str, sample: int = 16) -> int:
    """3 when any of the first `sample` images of each class is in colour (RGB, RGBA or a palette), else 1 (all
    grayscale): the channels a model of the folder's images takes unless the user says otherwise."""
    import os

    from PIL import Image

    if not os.path.isdir(directory):
        raise ValueError(f"`directory` must be an existing folder. Received: directory={directory!r}")
    for name in sorted(os.listdir(directory)):
        folder = os.path.join(directory, name)
        if not os.path.isdir(folder) or name.startswith("."):
            continue
        for fname in sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))[:sample]:
            try:
                with Image.open(os.path.join(folder, fname)) as image:
                    if image.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                        return 3
            except OSError:
                continue  # load_image_folder names the unreadable file
    return 1


def load_image_folder(directory: str, image_size: int = 96, channels: int = 3, test_fraction: float = 0.2,
                      seed: int = 0) -> Split:
    """A user's own images, one sub-folder per class (the layout of `keras.utils.image_dataset_from_directory`),
    as float32 arrays in [0, 1] of shape (N, image_size, image_size, channels), resized as needed, split into a
    stratified train/test pair (same for the same `seed`). Classes are the sub-folder names, sorted.

    Raises ValueError naming the folder or the file when the data cannot train a classifier: no such folder,
    fewer than two classes, a class without images, too few images to hold some of each class out for testing,
    or a file that is not a readable image (PNG, JPEG, BMP, GIF).
    """
    import os

    import tensorflow as tf
    from sklearn.model_selection import train_test_split

    check_positive_int("image_size", image_size)
    check_choice("channels", channels, (1, 3))
    if not isinstance(test_fraction, float) or not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be a float in (0, 1). Received: test_fraction={test_fraction!r}")
    if not os.path.isdir(directory):
        raise ValueError(f"`directory` must be an existing folder. Received: directory={directory!r}")
    classes = sorted(d for d in os.listdir(directory)
                     if os.path.isdir(os.path.join(directory, d)) and not d.startswith("."))
    if len(classes) < 2:
        raise ValueError(
            f"`directory` must hold one sub-folder per class, at least two: found {len(classes)} "
            f"({', '.join(classes) or 'none'}). Received: directory={directory!r}"
        )
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(directory, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise ValueError(f"class folder {name!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}). "
                             f"Received: directory={directory!r}")
        for fname in files:
            path = os.path.join(folder, fname)
            try:
                with open(path, "rb") as f:
                    image = tf.io.decode_image(f.read(), channels=channels, expand_animations=False)
            except (tf.errors.OpError, ValueError) as exc:
                message = str(getattr(exc, "message", exc)).strip().splitlines()[0]
                raise ValueError(f"{path!r} is not a readable image ({message}).") from None
            image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (image_size, image_size), antialias=True)
            images.append(np.clip(image.numpy(), 0.0, 1.0))
            labels.append(label)
    x, y = np.stack(images).astype("float32"), np.array(labels, dtype="int32")
    counts = np.bincount(y, minlength=len(classes))
    if int(counts.min()) < 2:
        raise ValueError(
            f"every class needs at least 2 images (one to train on, one to test): class "
            f"{classes[int(counts.argmin())]!r} has {int(counts.min())}. Received: directory={directory!r}"
        )
    test_size = max(len(classes), int(round(test_fraction * len(y))))
    if len(y) - test_size < len(classes):
        raise ValueError(f"{len(y)} images are too few to train and test {len(classes)} classes. "
                         f"Received: directory={directory!r}")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return Split(x_train, y_train, x_test, y_test, tuple(classes))
