"""The classic (wide -> narrow -> wide) bottleneck that Figure 3(c) and ShuffleNet start from."""

from __future__ import annotations

from typing import Any

import keras

from ._base import (
    BN_EPSILON,
    BN_MOMENTUM,
    Apply,
    Block,
    apply_seq,
    bottleneck_width,
    channels_of,
    check_bool,
    check_choice,
    check_fraction,
    check_positive_int,
    skip_rule,
)


@keras.saving.register_keras_serializable(package="keras_mbv2")
class Bottleneck(Block):
    """1x1 reduce -> 3x3 depthwise on the narrow tensor -> 1x1 expand (+ shortcut) -> ReLU6.

    The residual bottleneck of ResNet with its 3x3 conv made depthwise: the opposite of the inverted
    residual (paper Section 3.3 and Figure 3c): the shortcut joins the *wide* tensors and the depthwise
    conv works in the narrow one. With `linear_bottleneck=True` the narrow tensor (the reduce output) has
    no activation, the "separable with linear bottleneck" of Figure 3(c).

    Args:
        filters: output channels (the wide width).
        bottleneck_ratio: narrow width = max(1, round(filters * bottleneck_ratio)).
        strides: 1 or 2, on the depthwise conv.
        linear_bottleneck: no activation after the reduce conv.
        residual: add the shortcut where `skip_rule` allows (stride 1, equal channels).

    The final ReLU6 follows the add, as in ResNet and ShuffleNet. Sub-layers: `reduce`, `reduce_bn`,
    `reduce_relu` (only when not linear), `depthwise`, `depthwise_bn`, `depthwise_relu`, `expand`,
    `expand_bn`, `add` (only when `has_skip`), `out_relu`.
    """

    _config_keys = ("filters", "bottleneck_ratio", "strides", "linear_bottleneck", "residual", "kernel_size")

    def __init__(
        self,
        filters: int,
        bottleneck_ratio: float = 0.25,
        strides: int = 1,
        linear_bottleneck: bool = True,
        residual: bool = True,
        kernel_size: int = 3,
        bn_momentum: float = BN_MOMENTUM,
        bn_epsilon: float = BN_EPSILON,
        **kwargs: Any,
    ) -> None:
        super().__init__(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, **kwargs)
        self.filters = check_positive_int("filters", filters)
        self.bottleneck_ratio = check_fraction("bottleneck_ratio", bottleneck_ratio)
        self.strides = check_choice("strides", strides, (1, 2))
        self.linear_bottleneck = check_bool("linear_bottleneck", linear_bottleneck)
        self.residual = check_bool("residual", residual)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)

    @property
    def bottleneck_filters(self) -> int:
        """The narrow width (`bottleneck_width` of `filters` and `bottleneck_ratio`)."""
        return bottleneck_width(self.filters, self.bottleneck_ratio)

    def _create(self, input_shape: Any) -> None:
        self.has_skip = skip_rule(self.strides, channels_of(input_shape), self.filters, self.residual)
        kw = self.sublayer_kwargs
        self.reduce = keras.layers.Conv2D(self.bottleneck_filters, 1, use_bias=False, name="reduce", **kw)
        self.reduce_bn = self.make_bn("reduce_bn")
        self.reduce_relu = self.make_activation(None if self.linear_bottleneck else "relu6", "reduce_relu")
        self.depthwise = keras.layers.DepthwiseConv2D(
            self.kernel_size, strides=self.strides, padding="same", use_bias=False, name="depthwise", **kw
        )
        self.depthwise_bn = self.make_bn("depthwise_bn")
        self.depthwise_relu = self.make_activation("relu6", "depthwise_relu")
        self.expand = keras.layers.Conv2D(self.filters, 1, use_bias=False, name="expand", **kw)
        self.expand_bn = self.make_bn("expand_bn")
        self.add = keras.layers.Add(name="add", **kw) if self.has_skip else None
        self.out_relu = self.make_activation("relu6", "out_relu")

    def compose(self, inputs: Any, apply: Apply) -> Any:
        """reduce -> depthwise -> expand, the shortcut between the wide tensors, then ReLU6."""
        x = apply_seq(
            apply, inputs,
            self.reduce, self.reduce_bn, self.reduce_relu,
            self.depthwise, self.depthwise_bn, self.depthwise_relu,
            self.expand, self.expand_bn,
        )
        if self.has_skip:
            x = apply(self.add, [inputs, x])
        return apply(self.out_relu, x)
