"""Figures 3(d) and 4(d): the MobileNetV2 inverted residual with linear bottleneck."""

from __future__ import annotations

from typing import Any

import keras

from ._base import (
    BN_EPSILON,
    BN_MOMENTUM,
    Apply,
    Block,
    apply_seq,
    channels_of,
    check_bn,
    check_choice,
    check_positive_int,
    make_activation,
    make_bn,
)


def skip_rule(strides: int, in_channels: int, out_channels: int, residual: bool) -> bool:
    """The one stride-aware residual rule (paper Figure 4d; timm's `has_skip`).

    A shortcut is added only when the block keeps the resolution and the channel count, because only
    then can input and output be summed; the stride-2 block of Figure 4(d) has none.
    """
    return bool(residual) and strides == 1 and in_channels == out_channels


@keras.saving.register_keras_serializable(package="keras_mbv2")
class InvertedResidual(Block):
    """1x1 expand -> ReLU6 -> 3x3 depthwise (stride) -> ReLU6 -> 1x1 linear projection (+ shortcut).

    Paper Figure 3(d) / 4(d) and Table 1: a narrow input (k channels) is expanded to t*k channels, filtered
    by a depthwise conv in that wide space, and projected back to a narrow output (k' channels) with no
    non-linearity, the *linear bottleneck* (Section 3.2). The shortcut connects the narrow bottlenecks
    (Section 3.3), only when stride is 1 and k == k' (`has_skip`).

    Args:
        filters: output channels k'.
        expansion: t; 1 omits the expand conv, as in MobileNetV2's first block (Table 2).
        strides: 1 or 2, on the depthwise conv.
        linear_bottleneck: True keeps the projection linear; False adds ReLU6 after it (Figure 6a ablation).
        residual: False removes the shortcut even where it would fit (Figure 6b ablation).
        kernel_size: depthwise kernel size.

    Sub-layers are named as in keras.applications' MobileNetV2 (`block_i_expand`, ...): `expand`,
    `expand_BN`, `expand_relu`, `depthwise`, `depthwise_BN`, `depthwise_relu`, `project`, `project_BN`,
    `project_relu` (only when not linear), `add` (only when `has_skip`).
    """

    _config_keys = (
        "filters", "expansion", "strides", "linear_bottleneck", "residual", "kernel_size", "bn_momentum", "bn_epsilon",
    )

    def __init__(
        self,
        filters: int,
        expansion: int = 6,
        strides: int = 1,
        linear_bottleneck: bool = True,
        residual: bool = True,
        kernel_size: int = 3,
        bn_momentum: float = BN_MOMENTUM,
        bn_epsilon: float = BN_EPSILON,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.expansion = check_positive_int("expansion", expansion)
        self.strides = check_choice("strides", strides, (1, 2))
        self.linear_bottleneck = check_choice("linear_bottleneck", linear_bottleneck, (True, False))
        self.residual = check_choice("residual", residual, (True, False))
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        check_bn(bn_momentum, bn_epsilon)
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon

    def _create(self, input_shape: Any) -> None:
        in_channels = channels_of(input_shape)
        self.has_skip = skip_rule(self.strides, in_channels, self.filters, self.residual)
        bn = lambda name: make_bn(name, self.bn_momentum, self.bn_epsilon)  # noqa: E731
        if self.expansion == 1:
            self.expand = self.expand_BN = self.expand_relu = None
        else:
            self.expand = keras.layers.Conv2D(in_channels * self.expansion, 1, use_bias=False, name="expand")
            self.expand_BN = bn("expand_BN")
            self.expand_relu = make_activation("relu6", "expand_relu")
        self.depthwise = keras.layers.DepthwiseConv2D(
            self.kernel_size, strides=self.strides, padding="same", use_bias=False, name="depthwise"
        )
        self.depthwise_BN = bn("depthwise_BN")
        self.depthwise_relu = make_activation("relu6", "depthwise_relu")
        self.project = keras.layers.Conv2D(self.filters, 1, use_bias=False, name="project")
        self.project_BN = bn("project_BN")
        self.project_relu = make_activation(None if self.linear_bottleneck else "relu6", "project_relu")
        self.add = keras.layers.Add(name="add") if self.has_skip else None

    def forward(self, inputs: Any, apply: Apply) -> Any:
        x = apply_seq(
            apply, inputs,
            self.expand, self.expand_BN, self.expand_relu,
            self.depthwise, self.depthwise_BN, self.depthwise_relu,
            self.project, self.project_BN, self.project_relu,
        )
        return apply(self.add, [inputs, x]) if self.has_skip else x
