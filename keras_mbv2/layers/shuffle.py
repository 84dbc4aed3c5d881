"""Figure 4(c): the ShuffleNet unit (Zhang et al. 2017, Figure 2b/2c) and its channel shuffle."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

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
class ChannelShuffle(keras.layers.Layer):
    """Channel shuffle of ShuffleNet Section 3.1: reshape channels to (g, n), transpose, flatten.

    Order: the paper's and torchvision's. Output channel `j * g + i` is input channel `i * n + j`
    (n = C / g), i.e. `out = x[..., np.arange(C).reshape(g, n).T.ravel()]`: the first output channels
    take one channel from each group in turn. (The ShuffleNet authors' released code reshapes to (n, g)
    instead, which is the inverse permutation; for g groups feeding a g-group conv both mix every group.)

    Exported to TFLite as RESHAPE -> TRANSPOSE (5-D) -> RESHAPE, which TFLite Micro supports.
    """

    def __init__(self, groups: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.groups = check_positive_int("groups", groups)

    def build(self, input_shape: Any) -> None:
        """Check that `groups` divides the input channels (the layer has no weights)."""
        channels = channels_of(input_shape)
        if channels % self.groups:
            raise ValueError(
                f"`groups` must divide the input channels. Received: groups={self.groups!r}, "
                f"input channels={channels}"
            )

    def call(self, inputs: Any) -> Any:
        """reshape (N, H, W, C) -> (N, H, W, g, C/g), swap the last two axes, reshape back."""
        _, height, width, channels = inputs.shape
        height = ops.shape(inputs)[1] if height is None else height
        width = ops.shape(inputs)[2] if width is None else width
        x = ops.reshape(inputs, (-1, height, width, self.groups, channels // self.groups))
        x = ops.transpose(x, (0, 1, 2, 4, 3))
        return ops.reshape(x, (-1, height, width, channels))

    def compute_output_shape(self, input_shape: Any) -> Any:
        """A permutation of channels: the shape is unchanged."""
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["groups"] = self.groups
        return config


@keras.saving.register_keras_serializable(package="keras_mbv2")
class ShuffleUnit(Block):
    """ShuffleNet unit (paper Figure 4c; ShuffleNet Figure 2b/2c).

    1x1 group conv -> BN -> ReLU -> channel shuffle -> 3x3 depthwise (stride) -> BN -> 1x1 group conv
    -> BN, then the shortcut, then ReLU. A classic wide -> narrow -> wide bottleneck whose narrow width
    is `filters * bottleneck_ratio` (ShuffleNet: 1/4 of the output channels); as in ShuffleNet there is
    no ReLU after the depthwise conv.

    - stride 1: the shortcut is added (`has_skip`, only when input channels == `filters`);
    - stride 2: a 3x3 average-pooled shortcut (stride 2) is *concatenated*, so the branch produces
      `filters - input channels` channels and the unit outputs `filters`. With `residual=False` the
      shortcut is dropped and the branch produces all `filters` channels.

    `group_first_conv=False` makes the first 1x1 conv ungrouped, as ShuffleNet does for the first unit
    of stage 2 whose input (24 channels) is too narrow to split.

    Sub-layers: `gconv1`, `gconv1_bn`, `gconv1_relu`, `shuffle`, `depthwise`, `depthwise_bn`, `gconv2`,
    `gconv2_bn`, `shortcut_pool` (stride 2), `add` or `concat`, `out_relu`.
    """

    _config_keys = ("filters", "groups", "strides", "bottleneck_ratio", "group_first_conv", "residual")

    def __init__(
        self,
        filters: int,
        groups: int = 3,
        strides: int = 1,
        bottleneck_ratio: float = 0.25,
        group_first_conv: bool = True,
        residual: bool = True,
        bn_momentum: float = BN_MOMENTUM,
        bn_epsilon: float = BN_EPSILON,
        **kwargs: Any,
    ) -> None:
        super().__init__(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, **kwargs)
        self.filters = check_positive_int("filters", filters)
        self.groups = check_positive_int("groups", groups)
        self.strides = check_choice("strides", strides, (1, 2))
        self.bottleneck_ratio = check_fraction("bottleneck_ratio", bottleneck_ratio)
        self.group_first_conv = check_bool("group_first_conv", group_first_conv)
        self.residual = check_bool("residual", residual)
        if self.bottleneck_filters % groups:
            raise ValueError(
                f"`groups` must divide the bottleneck width filters*bottleneck_ratio="
                f"{self.bottleneck_filters}. Received: groups={groups!r}, filters={filters!r}"
            )

    @property
    def bottleneck_filters(self) -> int:
        """The narrow width (`bottleneck_width` of `filters` and `bottleneck_ratio`)."""
        return bottleneck_width(self.filters, self.bottleneck_ratio)

    def _create(self, input_shape: Any) -> None:
        in_channels = channels_of(input_shape)
        g = self.groups
        self.has_skip = skip_rule(self.strides, in_channels, self.filters, self.residual)
        self.concat_shortcut = self.residual and self.strides == 2
        branch_filters = self.filters - in_channels if self.concat_shortcut else self.filters
        if branch_filters < 1 or branch_filters % g:
            raise ValueError(
                f"A stride-2 ShuffleUnit concatenates its input, so `filters` minus the input channels "
                f"({in_channels}) must be a positive multiple of groups={g}. Received: filters={self.filters!r}"
                if self.concat_shortcut
                else f"`groups` must divide `filters`. Received: groups={g!r}, filters={self.filters!r}"
            )
        first_groups = g if self.group_first_conv else 1
        if in_channels % first_groups:
            raise ValueError(
                f"`groups` must divide the input channels of the first group conv. Received: groups={g!r}, "
                f"input channels={in_channels} (use group_first_conv=False for a narrow input)"
            )
        kw = self.sublayer_kwargs
        self.gconv1 = keras.layers.Conv2D(
            self.bottleneck_filters, 1, groups=first_groups, use_bias=False, name="gconv1", **kw
        )
        self.gconv1_bn = self.make_bn("gconv1_bn")
        self.gconv1_relu = self.make_activation("relu", "gconv1_relu")
        self.shuffle = ChannelShuffle(g, name="shuffle", **kw) if g > 1 else None
        self.depthwise = keras.layers.DepthwiseConv2D(
            3, strides=self.strides, padding="same", use_bias=False, name="depthwise", **kw
        )
        self.depthwise_bn = self.make_bn("depthwise_bn")
        self.gconv2 = keras.layers.Conv2D(branch_filters, 1, groups=g, use_bias=False, name="gconv2", **kw)
        self.gconv2_bn = self.make_bn("gconv2_bn")
        self.shortcut_pool = (
            keras.layers.AveragePooling2D(3, strides=2, padding="same", name="shortcut_pool", **kw)
            if self.concat_shortcut
            else None
        )
        self.merge = (
            keras.layers.Concatenate(name="concat", **kw)
            if self.concat_shortcut
            else keras.layers.Add(name="add", **kw) if self.has_skip else None
        )
        self.out_relu = self.make_activation("relu", "out_relu")

    def compose(self, inputs: Any, apply: Apply) -> Any:
        """GConv -> shuffle -> depthwise -> GConv, then the added or concatenated shortcut, then ReLU."""
        x = apply_seq(
            apply, inputs,
            self.gconv1, self.gconv1_bn, self.gconv1_relu, self.shuffle,
            self.depthwise, self.depthwise_bn, self.gconv2, self.gconv2_bn,
        )
        if self.concat_shortcut:
            x = apply(self.merge, [apply(self.shortcut_pool, inputs), x])
        elif self.has_skip:
            x = apply(self.merge, [inputs, x])
        return apply(self.out_relu, x)
