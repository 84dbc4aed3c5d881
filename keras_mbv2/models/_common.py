"""What the four network builders share: the keras.applications signature, inputs, heads, weights."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

import keras

from ..checks import check_positive_number
from .weights import transfer_weights

MIN_INPUT_SIZE = 32
DEFAULT_SIZE = 224


def expand_rows(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Decode `(..., n, s)` stage rows into one entry per block, the stride on the first block only.

    The convention of the paper's Table 2 ("each line describes a sequence of 1 or more identical layers,
    repeated n times ... the first layer of each sequence has a stride s and all others use stride 1"),
    shared by every table here.
    """
    blocks = []
    for row in rows:
        *head, n, s = row
        for i in range(n):
            blocks.append((*head, s if i == 0 else 1))
    return blocks


def check_common_args(
    include_top: bool, weights: Any, pooling: Any, classes: Any, classifier_activation: Any
) -> None:
    if include_top not in (True, False):
        raise ValueError(f"`include_top` must be True or False. Received: include_top={include_top!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"`classes` must be a positive integer. Received: classes={classes!r}")
    if not (weights is None or weights == "imagenet" or isinstance(weights, (str, os.PathLike))):
        raise ValueError(
            "`weights` must be None, 'imagenet' or the path to a weights file. "
            f"Received: weights={weights!r}"
        )
    if isinstance(weights, (str, os.PathLike)) and weights != "imagenet" and not os.path.exists(weights):
        raise ValueError(f"`weights` file does not exist. Received: weights={str(weights)!r}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "With weights='imagenet' and include_top=True, `classes` must be 1000. "
            f"Received: classes={classes!r}"
        )
    if weights is not None and include_top and classifier_activation not in (None, "softmax"):
        raise ValueError(
            "With pretrained weights, `classifier_activation` must be None or 'softmax'. "
            f"Received: classifier_activation={classifier_activation!r}"
        )


def check_alpha(alpha: Any, weights: Any, imagenet_alphas: tuple[float, ...]) -> None:
    """A positive width multiplier, and one keras.applications has weights for when weights='imagenet'."""
    check_positive_number("alpha", alpha)
    if weights == "imagenet" and alpha not in imagenet_alphas:
        raise ValueError(
            f"With weights='imagenet', `alpha` must be one of {imagenet_alphas}. Received: alpha={alpha!r}")


def make_input(
    input_shape: Any, input_tensor: Any, min_size: int = MIN_INPUT_SIZE
) -> tuple[keras.KerasTensor, Any, tuple[int, int, int]]:
    """Return (image tensor, model inputs, (rows, cols, channels)); channels-last only."""
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "keras_mbv2 networks support image_data_format='channels_last' only. "
            f"Received: image_data_format={keras.config.image_data_format()!r}"
        )
    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise ValueError(f"`input_tensor` must be a Keras tensor. Received: input_tensor={input_tensor!r}")
        shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != shape:
            raise ValueError(
                f"`input_shape` must match `input_tensor`'s shape {shape}. Received: input_shape={input_shape!r}"
            )
        input_shape = shape
    elif input_shape is None:
        input_shape = (DEFAULT_SIZE, DEFAULT_SIZE, 3)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"`input_shape` must be (rows, cols, channels). Received: input_shape={input_shape!r}")
    rows, cols, channels = input_shape
    for value in (rows, cols):
        if value is not None and (not isinstance(value, int) or value < min_size):
            raise ValueError(
                f"`input_shape` must be at least {min_size}x{min_size} for this network's strides. "
                f"Received: input_shape={tuple(input_shape)!r}"
            )
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"`input_shape` needs a known channel count. Received: input_shape={tuple(input_shape)!r}")
    if input_tensor is None:
        image = keras.Input(shape=tuple(input_shape))
        return image, image, tuple(input_shape)
    source = keras.utils.get_source_inputs(input_tensor)
    return input_tensor, source if len(source) > 1 else source[0], tuple(input_shape)


def output_dtype(dtype: Any) -> Any:
    """The dtype of a classifier's output layer: float32 under a mixed-precision policy (Keras' advice: a float16
    softmax loses precision), else the model's own."""
    policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
    return "float32" if policy.name.startswith("mixed") else dtype


def classifier_head(
    x: Any, include_top: bool, pooling: str | None, classes: int, classifier_activation: Any, dtype: Any = None
) -> Any:
    """keras.applications' top: global average pooling + Dense "predictions", or optional pooling."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
        return keras.layers.Dense(classes, activation=classifier_activation, name="predictions",
                                  dtype=output_dtype(dtype))(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool", dtype=dtype)(x)
    return x


def load_weights(
    model: keras.Model,
    weights: Any,
    application: Callable[..., keras.Model] | None,
    application_kwargs: dict[str, Any],
) -> keras.Model:
    """Load `weights` into `model`.

    - None: keep the random initialisation.
    - "imagenet": build the keras.applications twin with the official weights (keras.applications
      downloads them once into ~/.keras/models) and transfer them with `from_keras_application`.
    - a path: a keras_mbv2 `.weights.h5` (`model.save_weights`), else a keras.applications weights file
      (such as the official `.h5`), loaded into the twin and transferred.
    """
    if weights is None:
        return model
    if application is None:
        raise ValueError(f"No keras.applications twin exists for {model.name}. Received: weights={weights!r}")
    if weights == "imagenet":
        try:
            app = application(weights="imagenet", **application_kwargs)
        except Exception as exc:  # network or cache failures surface from keras' get_file
            raise ValueError(
                f"Could not obtain weights='imagenet': keras.applications.{application.__name__}"
                f"(weights='imagenet', ...) failed with {type(exc).__name__}: {exc}. It downloads the official "
                "file into ~/.keras/models/. Without a network, copy that file there, or pass its path as "
                "weights='/path/to/file.h5'."
            ) from exc
        transfer_weights(app, model)
        return model
    path = os.fspath(weights)
    try:
        model.load_weights(path)
        return model
    except Exception as own_error:
        try:
            app = application(weights=path, **application_kwargs)
        except Exception as app_error:
            raise ValueError(
                f"Could not load `weights`={path!r} as a keras_mbv2 weights file ({own_error}) nor as a "
                f"keras.applications.{application.__name__} weights file ({app_error})."
            ) from app_error
    transfer_weights(app, model)
    return model
