"""MobileNetV1 (Howard et al. 2017, Table 1), the baseline of the MobileNetV2 paper's Table 4."""

from __future__ import annotations

from typing import Any

import keras

from ..checks import check_positive_int
from ..layers import ConvBNAct, DepthwiseSeparable
from ..layers._base import BN_EPSILON
from ._common import check_alpha, check_common_args, expand_rows, load_weights, make_input, output_dtype

# MobileNetV1 Table 1: depthwise-separable blocks as (output channels c, repeats n, stride s).
MOBILENET_V1_TABLE: tuple[tuple[int, int, int], ...] = (
    # c,  n, s
    (64, 1, 1),
    (128, 2, 2),
    (256, 2, 2),
    (512, 6, 2),
    (1024, 2, 2),
)
STEM_FILTERS = 32
BN_MOMENTUM_V1 = 0.99  # keras.applications.MobileNet uses Keras' default batch norm
IMAGENET_ALPHAS = (0.25, 0.5, 0.75, 1.0)


def MobileNetV1(
    input_shape: tuple[int, int, int] | None = None,
    alpha: float = 1.0,
    depth_multiplier: int = 1,
    dropout: float = 1e-3,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    *,
    bn_momentum: float = BN_MOMENTUM_V1,
    bn_epsilon: float = BN_EPSILON,
    dtype: Any = None,
) -> keras.Model:
    """MobileNetV1 built from `DepthwiseSeparable` blocks (Figure 3b), as `keras.applications.MobileNet`.

    Args:
        alpha: width multiplier; channels become int(c * alpha).
        depth_multiplier: depthwise channel multiplier (resolution multiplier in keras' naming).
        dropout: dropout before the 1x1 conv classifier.
        include_top, weights, input_tensor, pooling, classes, classifier_activation, name: as
            `keras.applications.MobileNet` (weights: None, "imagenet" for alpha 0.25/0.5/0.75/1.0, or a file).
        bn_momentum, bn_epsilon: batch-norm settings (keras.applications: 0.99, 1e-3).
        dtype: a dtype policy for every layer ("mixed_float16", ...); the classifier computes in float32.

    The top is keras.applications' (pooling -> dropout -> 1x1 conv "conv_preds" -> reshape -> activation),
    so the official weights load. Padding is 'same' everywhere: equal to keras' fixed ((0, 1), (0, 1)) for
    every input whose stride-2 layers see even sizes (e.g. 32, 64, 96, 128, 160, 192, 224).
    """
    check_common_args(include_top, weights, pooling, classes, classifier_activation)
    check_alpha(alpha, weights, IMAGENET_ALPHAS)
    check_positive_int("depth_multiplier", depth_multiplier)
    if weights == "imagenet" and depth_multiplier != 1:
        raise ValueError(
            f"With weights='imagenet', `depth_multiplier` must be 1. Received: depth_multiplier={depth_multiplier!r}"
        )
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    image, inputs, (rows, _, _) = make_input(input_shape, input_tensor)
    bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, dtype=dtype)

    x = ConvBNAct(int(STEM_FILTERS * alpha), 3, strides=2, name="conv1", **bn)(image)
    for i, (c, s) in enumerate(expand_rows(MOBILENET_V1_TABLE), start=1):
        x = DepthwiseSeparable(
            int(c * alpha), strides=s, depth_multiplier=depth_multiplier, name=f"conv_block_{i}", **bn
        )(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool", dtype=dtype)(x)
        x = keras.layers.Dropout(dropout, name="dropout", dtype=dtype)(x)
        x = keras.layers.Conv2D(classes, 1, padding="same", name="conv_preds", dtype=output_dtype(dtype))(x)
        x = keras.layers.Reshape((classes,), name="reshape_2", dtype=output_dtype(dtype))(x)
        x = keras.layers.Activation(classifier_activation, name="predictions", dtype=output_dtype(dtype))(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool", dtype=dtype)(x)
    model = keras.Model(inputs, x, name=name or f"mobilenet_{alpha:0.2f}_{rows}")
    app_kwargs = dict(
        input_shape=tuple(image.shape[1:]), alpha=alpha, depth_multiplier=depth_multiplier, dropout=dropout,
        include_top=include_top, pooling=pooling, classes=classes, classifier_activation=classifier_activation,
    )
    return load_weights(model, weights, keras.applications.MobileNet, app_kwargs)
