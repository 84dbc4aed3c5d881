"""Figure 3(a) of the MobileNetV2 paper: the regular convolution."""

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
    check_activation,
    check_choice,
    check_positive_int,
)


@keras.saving.register_keras_serializable(package="keras_mbv2")
class ConvBNAct(Block):
    """Regular k x k convolution -> BatchNormalization -> activation (paper Figure 3a).

    One kernel filters space and mixes channels at once, costing H*W*C_in*C_out*k*k multiply-adds
    (paper Section 3.1). The stems of all four networks are this block.

    Sub-layers: `conv` (no bias: the batch norm's beta is the bias), `bn`, `act` (absent when
    `activation` is None or "linear").

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        strides: 1 or 2; 'same' padding (for stride 2 this equals keras.applications' `correct_pad`).
        activation: "relu6" (default), "relu", or None / "linear".
        groups: grouped convolution (ShuffleNet's pointwise GConv); must divide input and output channels.
        bn_momentum, bn_epsilon: batch-norm settings (keras.applications: 0.999 and 1e-3).
    """

    _config_keys = ("filters", "kernel_size", "strides", "activation", "groups")

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        strides: int = 1,
        activation: str | None = "relu6",
        groups: int = 1,
        bn_momentum: float = BN_MOMENTUM,
        bn_epsilon: float = BN_EPSILON,
        **kwargs: Any,
    ) -> None:
        super().__init__(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, **kwargs)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_choice("strides", strides, (1, 2))
        self.activation = check_activation(activation)
        self.groups = check_positive_int("groups", groups)
        if filters % groups:
            raise ValueError(
                f"`groups` must divide `filters`. Received: groups={groups!r}, filters={filters!r}"
            )

    def _create(self, input_shape: Any) -> None:
        in_channels = channels_of(input_shape)
        if in_channels % self.groups:
            raise ValueError(
                f"`groups` must divide the input channels. Received: groups={self.groups!r}, "
                f"input channels={in_channels}"
            )
        self.conv = keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding="same",
            groups=self.groups,
            use_bias=False,
            name="conv",
            **self.sublayer_kwargs,
        )
        self.bn = self.make_bn("bn")
        self.act = self.make_activation(self.activation, "act")

    def compose(self, inputs: Any, apply: Apply) -> Any:
        """conv -> BN -> activation."""
        return apply_seq(apply, inputs, self.conv, self.bn, self.act)
