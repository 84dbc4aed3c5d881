"""Figures 3(d) and 4(d): the MobileNetV2 inverted residual with linear bottleneck."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ._base import (
    BN_EPSILON,
    BN_MOMENTUM,
    Apply,
    Block,
    apply_seq,
    channels_of,
    check_bool,
    check_choice,
    check_positive_int,
    skip_rule,
)


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
        memory_splits: s; 1 (default) is the block as drawn. s > 1 computes the block in s channel slices of
            its expansion (paper Section 5.1, "Memory efficient inference"): slice i runs its share of the
            expand conv, the depthwise conv on those channels and the matching input-channel slice of the
            projection; the partial projections are summed one slice at a time, then batch-normalised. The
            result is the same function with the same multiply-adds, but the expanded tensor never exists
            whole, only 1/s of it, so a runtime's peak memory drops toward the narrow bottleneck tensors.
            Slices differ by at most one channel when s does not divide the expansion.

    Sub-layers are named as in keras.applications' MobileNetV2 (`block_i_expand`, ...): `expand`,
    `expand_BN`, `expand_relu`, `depthwise`, `depthwise_BN`, `depthwise_relu`, `project`, `project_BN`,
    `project_relu` (only when not linear), `add` (only when `has_skip`). With `memory_splits=s > 1` the
    sliced layers carry the slice index (`expand_0`, ..., `project_2`) and `project_sum_i` adds slice i's
    partial projection to the running sum; `full_weights`/`set_full_weights` carry weights between splits.
    """

    _config_keys = (
        "filters", "expansion", "strides", "linear_bottleneck", "residual", "kernel_size", "memory_splits",
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
        memory_splits: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, **kwargs)
        self.filters = check_positive_int("filters", filters)
        self.expansion = check_positive_int("expansion", expansion)
        self.strides = check_choice("strides", strides, (1, 2))
        self.linear_bottleneck = check_bool("linear_bottleneck", linear_bottleneck)
        self.residual = check_bool("residual", residual)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.memory_splits = check_positive_int("memory_splits", memory_splits)
        if memory_splits > 1 and expansion == 1:
            raise ValueError(
                "`memory_splits` slices the expansion, and a block with expansion=1 has none. "
                f"Received: memory_splits={memory_splits!r} with expansion=1"
            )

    def _create(self, input_shape: Any) -> None:
        in_channels = channels_of(input_shape)
        self.has_skip = skip_rule(self.strides, in_channels, self.filters, self.residual)
        self.slice_channels = slice_sizes(in_channels * self.expansion, self.memory_splits)
        # Unsplit: keras.applications' layer names, so the official weights load as they are. Each sub-layer
        # is an attribute of its own name, so .keras files store it under that name.
        self.slice_suffixes = [""] if self.memory_splits == 1 else [f"_{i}" for i in range(self.memory_splits)]
        for suffix, channels in zip(self.slice_suffixes, self.slice_channels):
            for layer in self._slice_layers(channels, suffix):
                if layer is not None:
                    setattr(self, layer.name, layer)
        for i in range(1, self.memory_splits):
            setattr(self, f"project_sum_{i}", keras.layers.Add(name=f"project_sum_{i}", **self.sublayer_kwargs))
        self.project_BN = self.make_bn("project_BN")
        self.project_relu = self.make_activation(None if self.linear_bottleneck else "relu6", "project_relu")
        self.add = keras.layers.Add(name="add", **self.sublayer_kwargs) if self.has_skip else None

    def _slice_layers(self, channels: int, suffix: str) -> list[keras.layers.Layer | None]:
        """expand, BN, ReLU6, depthwise, BN, ReLU6, project (no BN) for `channels` expanded channels."""
        kw = self.sublayer_kwargs
        if self.expansion == 1:
            expand: list[keras.layers.Layer | None] = [None, None, None]
        else:
            expand = [
                keras.layers.Conv2D(channels, 1, use_bias=False, name="expand" + suffix, **kw),
                self.make_bn("expand_BN" + suffix),
                self.make_activation("relu6", "expand_relu" + suffix),
            ]
        return expand + [
            keras.layers.DepthwiseConv2D(
                self.kernel_size, strides=self.strides, padding="same", use_bias=False, name="depthwise" + suffix,
                **kw,
            ),
            self.make_bn("depthwise_BN" + suffix),
            self.make_activation("relu6", "depthwise_relu" + suffix),
            keras.layers.Conv2D(self.filters, 1, use_bias=False, name="project" + suffix, **kw),
        ]

    def slice_layers(self, index: int) -> list[keras.layers.Layer | None]:
        """Slice `index`'s sub-layers in order: expand, expand_BN, expand_relu (None when expansion is 1),
        depthwise, depthwise_BN, depthwise_relu, project."""
        suffix = self.slice_suffixes[index]
        names = ("expand", "expand_BN", "expand_relu", "depthwise", "depthwise_BN", "depthwise_relu", "project")
        return [getattr(self, name + suffix, None) for name in names]

    def full_weights(self) -> dict[str, list[np.ndarray]]:
        """Weights of the sliced sub-layers as the unsplit block holds them (slices concatenated), by
        sub-layer name: `expand`, `expand_BN`, `depthwise`, `depthwise_BN`, `project`, and the unsliced
        `project_BN`."""
        out: dict[str, list[np.ndarray]] = {"project_BN": self.project_BN.get_weights()}
        for name, axis in _SLICED_AXES.items():
            layers = [getattr(self, name + suffix, None) for suffix in self.slice_suffixes]
            if layers[0] is not None:
                out[name] = [np.concatenate(ws, axis=axis) for ws in zip(*[layer.get_weights() for layer in layers])]
        return out

    def set_full_weights(self, weights: dict[str, list[np.ndarray]]) -> None:
        """Load the `full_weights()` of a block of the same configuration and any `memory_splits`."""
        bounds = np.cumsum([0, *self.slice_channels])
        self.project_BN.set_weights(weights["project_BN"])
        for name, axis in _SLICED_AXES.items():
            for i, suffix in enumerate(self.slice_suffixes):
                layer = getattr(self, name + suffix, None)
                if layer is not None:
                    index = np.arange(bounds[i], bounds[i + 1])
                    layer.set_weights([np.take(w, index, axis=axis) for w in weights[name]])

    def compose(self, inputs: Any, apply: Apply) -> Any:
        """Expand -> depthwise -> linear projection, slice by slice when split, then the narrow shortcut."""
        # Slice by slice, so that a runtime executing the operators in this order frees each slice's wide
        # tensors before the next slice's exist (Section 5.1); the running sum stays narrow.
        x = apply_seq(apply, inputs, *self.slice_layers(0))
        for i in range(1, self.memory_splits):
            x = apply(getattr(self, f"project_sum_{i}"), [x, apply_seq(apply, inputs, *self.slice_layers(i))])
        x = apply_seq(apply, x, self.project_BN, self.project_relu)
        return apply(self.add, [inputs, x]) if self.has_skip else x


# The sub-layers that hold expanded channels, and the weight axis the channels run along: 1x1 conv kernels
# are (1, 1, in, out), depthwise kernels (k, k, channels, 1), batch-norm vectors (channels,).
_SLICED_AXES = {"expand": -1, "expand_BN": 0, "depthwise": 2, "depthwise_BN": 0, "project": 2}


def slice_sizes(channels: int, splits: int) -> list[int]:
    """`channels` in `splits` contiguous slices whose sizes differ by at most one (larger ones first)."""
    if splits > channels:
        raise ValueError(
            f"`memory_splits` cannot exceed the {channels} expanded channels. Received: memory_splits={splits!r}"
        )
    return [channels // splits + (1 if i < channels % splits else 0) for i in range(splits)]
