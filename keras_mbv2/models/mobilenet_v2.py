"""MobileNetV2 (paper Table 2), decoded from one table into keras_mbv2 blocks."""

from __future__ import annotations

from typing import Any

import keras

from ..checks import check_positive_int
from ..layers import ConvBNAct, InvertedResidual, make_divisible
from ..layers._base import BN_EPSILON, BN_MOMENTUM
from ._common import check_alpha, check_common_args, classifier_head, expand_rows, load_weights, make_input
from .memory_split import MemorySplits, resolve_memory_splits

# Paper Table 2. Each row: expansion t, output channels c, repeats n, stride s of the first repeat.
MOBILENET_V2_TABLE: tuple[tuple[int, int, int, int], ...] = (
    # t,   c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_FILTERS = 32  # Table 2, first row: conv2d 3x3, stride 2
HEAD_FILTERS = 1280  # Table 2: conv2d 1x1 before the pooling
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def block_name(index: int) -> str:
    """keras.applications' block names: `expanded_conv` for the first, `block_{i}` for the others."""
    return "expanded_conv" if index == 0 else f"block_{index}"


def MobileNetV2(
    input_shape: tuple[int, int, int] | None = None,
    alpha: float = 1.0,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    *,
    linear_bottleneck: bool = True,
    residual: bool = True,
    expansion: int = 6,
    bn_momentum: float = BN_MOMENTUM,
    bn_epsilon: float = BN_EPSILON,
    memory_splits: MemorySplits = None,
    dtype: Any = None,
) -> keras.Model:
    """MobileNetV2 (Sandler et al. 2018, Table 2) built from `InvertedResidual` blocks.

    Same signature, layer structure, parameter count and weight layout as
    `keras.applications.MobileNetV2`, plus the paper's ablation switches:

    Args:
        alpha: width multiplier; channels become `make_divisible(c * alpha, 8)`, the last conv widens only
            for alpha > 1 (as keras.applications and the paper's Section 6.1).
        linear_bottleneck: False puts ReLU6 after each projection (Figure 6a).
        residual: False removes every shortcut (Figure 6b).
        expansion: t of every block except the first (Table 2 uses 6; Figure 6 and Section 6.1 vary it).
        bn_momentum: keras.applications uses 0.999; small data sets train better with ~0.9.
        weights: None, "imagenet" (alpha in 0.35/0.5/0.75/1.0/1.3/1.4), or a weights file.
        memory_splits: compute blocks in channel slices of their expansion (Section 5.1, see
            `InvertedResidual`): an int for every block with t > 1, a sequence with one entry per block (17),
            or a mapping of block names (`block_1`, ...) to slices. Same function and multiply-adds, less
            peak memory on TFLite Micro. `keras_mbv2.models.split_model` converts a trained model, and
            `plan_memory_splits` picks splits for a memory budget.
        dtype: a dtype policy for every layer ("mixed_float16", "mixed_bfloat16", ...; default: Keras' global
            policy). Batch norms keep float32 statistics, and the classifier computes in float32.
    """
    check_common_args(include_top, weights, pooling, classes, classifier_activation)
    check_alpha(alpha, weights, IMAGENET_ALPHAS)
    check_positive_int("expansion", expansion)
    image, inputs, (rows, _, _) = make_input(input_shape, input_tensor)
    bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, dtype=dtype)

    x = ConvBNAct(make_divisible(STEM_FILTERS * alpha, 8), 3, strides=2, name="Conv1", **bn)(image)
    table = [(t if t == 1 else expansion, c, n, s) for t, c, n, s in MOBILENET_V2_TABLE]
    blocks = list(expand_rows(table))
    splits = resolve_memory_splits(memory_splits, [(block_name(i), t) for i, (t, _, _) in enumerate(blocks)])
    for i, (t, c, s) in enumerate(blocks):
        x = InvertedResidual(
            make_divisible(int(c * alpha), 8),
            expansion=t,
            strides=s,
            linear_bottleneck=linear_bottleneck,
            residual=residual,
            memory_splits=splits[block_name(i)],
            name=block_name(i),
            **bn,
        )(x)
    head = make_divisible(HEAD_FILTERS * alpha, 8) if alpha > 1.0 else HEAD_FILTERS
    x = ConvBNAct(head, 1, name="Conv_1", **bn)(x)
    x = classifier_head(x, include_top, pooling, classes, classifier_activation, dtype)
    model = keras.Model(inputs, x, name=name or f"mobilenetv2_{alpha:0.2f}_{rows}")
    app_kwargs = dict(
        input_shape=tuple(image.shape[1:]), alpha=alpha, include_top=include_top, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
    )
    return load_weights(model, weights, keras.applications.MobileNetV2, app_kwargs)
