"""ShuffleNet V1 (Zhang et al. 2017, Table 1), the MobileNetV2 paper's Figure 4(c) network."""

from __future__ import annotations

import math
from typing import Any

import keras

from ..checks import check_choice
from ..layers import ConvBNAct, ShuffleUnit
from ..layers._base import BN_EPSILON
from ._common import check_common_args, classifier_head, expand_rows, load_weights, make_input

# ShuffleNet Table 1: output channels of stages 2, 3, 4 at 1x for each number of groups g.
SHUFFLENET_V1_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
STAGE_REPEATS = (4, 8, 4)  # Table 1: 1 + 3, 1 + 7, 1 + 3 units; the first of each stage has stride 2
STEM_FILTERS = 24  # Table 1: conv1 3x3 stride 2, 24 channels, then max pool 3x3 stride 2
SCALES = (0.25, 0.5, 1.0, 1.5, 2.0)  # ShuffleNet Table 2 "ShuffleNet s x"
BN_MOMENTUM_SHUFFLE = 0.99


def _round_up(value: float, multiple: int) -> int:
    return max(multiple, int(math.ceil(value / multiple - 1e-9)) * multiple)


def stage_channels(groups: int, scale: float) -> tuple[int, int, int, int]:
    """(stem, stage2, stage3, stage4) channels at `scale`.

    Table 1's 1x widths are multiples of 4*g, so the bottleneck (1/4 of the output) splits into g groups.
    Scaled widths keep that: each is `scale * c` rounded up to a multiple of 4*g, and the stem is
    `scale * 24` rounded up to a multiple of lcm(4, g) so the first stride-2 unit's branch (output minus
    the concatenated input) also splits into g groups. At 1x this reproduces Table 1 exactly.
    """
    stem = _round_up(STEM_FILTERS * scale, math.lcm(4, groups))
    return (stem, *(_round_up(c * scale, 4 * groups) for c in SHUFFLENET_V1_CHANNELS[groups]))


def ShuffleNetV1(
    input_shape: tuple[int, int, int] | None = None,
    groups: int = 3,
    scale: float = 1.0,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    *,
    bn_momentum: float = BN_MOMENTUM_SHUFFLE,
    bn_epsilon: float = BN_EPSILON,
    dtype: Any = None,
) -> keras.Model:
    """ShuffleNet V1 (Table 1) from `ShuffleUnit` blocks: stem conv + max pool, three stages, pool + FC.

    Args:
        groups: g in {1, 2, 3, 4, 8}, selecting Table 1's widths.
        scale: the "ShuffleNet s x" width multiplier, one of (0.25, 0.5, 1.0, 1.5, 2.0).
        weights: None or a keras_mbv2 weights file (no official Keras weights exist).
        include_top, input_tensor, pooling, classes, classifier_activation, name: as keras.applications.
        bn_momentum, bn_epsilon: batch-norm settings.
        dtype: a dtype policy for every layer ("mixed_float16", ...); the classifier computes in float32.
    """
    check_common_args(include_top, weights, pooling, classes, classifier_activation)
    check_choice("groups", groups, tuple(SHUFFLENET_V1_CHANNELS))
    check_choice("scale", scale, SCALES)
    if weights == "imagenet":
        raise ValueError("ShuffleNetV1 has no ImageNet weights in keras.applications. Received: weights='imagenet'")
    image, inputs, (rows, _, _) = make_input(input_shape, input_tensor)
    bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, dtype=dtype)
    stem, *channels = stage_channels(groups, scale)

    x = ConvBNAct(stem, 3, strides=2, activation="relu", name="stem", **bn)(image)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool", dtype=dtype)(x)
    rows_table = [(stage, c, n, 2) for stage, (c, n) in enumerate(zip(channels, STAGE_REPEATS), start=2)]
    unit = {}
    for stage, c, s in expand_rows(rows_table):
        unit[stage] = unit.get(stage, 0) + 1
        x = ShuffleUnit(
            c,
            groups=groups,
            strides=s,
            group_first_conv=not (stage == 2 and unit[stage] == 1),  # Table 1 note: stage 2's first is not grouped
            name=f"stage{stage}_unit{unit[stage]}",
            **bn,
        )(x)
    x = classifier_head(x, include_top, pooling, classes, classifier_activation, dtype)
    model = keras.Model(inputs, x, name=name or f"shufflenet_v1_g{groups}_{scale}x_{rows}")
    return load_weights(model, weights, None, {})
