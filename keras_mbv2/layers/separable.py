"""Figures 3(b), 3(c) and 4(b): the MobileNetV1 depthwise-separable block, optionally linear."""

from __future__ import annotations

from typing import Any

import keras

from ._base import BN_EPSILON, BN_MOMENTUM, Apply, Block, apply_seq, check_bool, check_choice, check_positive_int


@keras.saving.register_keras_serializable(package="keras_mbv2")
class DepthwiseSeparable(Block):
    """3x3 depthwise -> BN -> ReLU6 -> 1x1 pointwise -> BN -> ReLU6 (paper Figure 3b / 4b).

    The MobileNetV1 block: the depthwise conv filters each channel alone, the pointwise conv mixes
    channels, for H*W*C_in*(k*k + C_out) multiply-adds instead of H*W*C_in*C_out*k*k (Section 3.1).
    With `linear_bottleneck=True` the last ReLU6 is dropped, which is Figure 3(c): the output is a linear
    bottleneck. The block has no shortcut (`has_skip` is always False).

    Sub-layers follow keras.applications' MobileNet (`conv_dw_i`, `conv_pw_i`): `depthwise`,
    `depthwise_bn`, `depthwise_relu`, `pointwise`, `pointwise_bn`, `pointwise_relu`.

    Padding is 'same'. For stride 2 on an even input this equals keras.applications' MobileNet padding
    ((0, 1), (0, 1)); on an odd input keras pads (0, 1) and 'same' pads (1, 1).
    """

    _config_keys = ("filters", "strides", "linear_bottleneck", "depth_multiplier", "kernel_size")

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        linear_bottleneck: bool = False,
        depth_multiplier: int = 1,
        kernel_size: int = 3,
        bn_momentum: float = BN_MOMENTUM,
        bn_epsilon: float = BN_EPSILON,
        **kwargs: Any,
    ) -> None:
        super().__init__(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, **kwargs)
        self.filters = check_positive_int("filters", filters)
        self.strides = check_choice("strides", strides, (1, 2))
        self.linear_bottleneck = check_bool("linear_bottleneck", linear_bottleneck)
        self.depth_multiplier = check_positive_int("depth_multiplier", depth_multiplier)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)

    def _create(self, input_shape: Any) -> None:
        self.depthwise = keras.layers.DepthwiseConv2D(
            self.kernel_size,
            strides=self.strides,
            padding="same",
            depth_multiplier=self.depth_multiplier,
            use_bias=False,
            name="depthwise",
            **self.sublayer_kwargs,
        )
        self.depthwise_bn = self.make_bn("depthwise_bn")
        self.depthwise_relu = self.make_activation("relu6", "depthwise_relu")
        self.pointwise = keras.layers.Conv2D(self.filters, 1, use_bias=False, name="pointwise", **self.sublayer_kwargs)
        self.pointwise_bn = self.make_bn("pointwise_bn")
        self.pointwise_relu = self.make_activation(None if self.linear_bottleneck else "relu6", "pointwise_relu")

    def compose(self, inputs: Any, apply: Apply) -> Any:
        """depthwise -> BN -> ReLU6 -> pointwise -> BN (-> ReLU6 unless linear)."""
        return apply_seq(
            apply, inputs,
            self.depthwise, self.depthwise_bn, self.depthwise_relu,
            self.pointwise, self.pointwise_bn, self.pointwise_relu,
        )
