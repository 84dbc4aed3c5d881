"""Figure 4(a): the NASNet-A normal and reduction cells (Zoph et al. 2018, Figure 4), as data.

Each cell is a table in the manner of TF-slim's `nasnet_utils` (`operations`, `hiddenstate_indices`):
five combinations, each adding two operations applied to a hidden state, then a concatenation. The
hidden states are "h" (the current input after ReLU -> 1x1 conv -> BN), "p" (the previous cell's
output, adjusted to this cell's resolution and width) and the outputs of earlier combinations (0-4).
Operation and sub-layer names follow keras.applications' `nasnet.py`, so its weights map one to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import keras

from ._base import Apply, Block, check_positive_int

Source = Union[str, int]


@dataclass(frozen=True)
class Op:
    """One operation of a combination: kind in {"sep", "avg", "max", "id"}, kernel, stride, input."""

    kind: str
    kernel: int
    strides: int
    source: Source
    name: str | None = None  # keras.applications' block id stem; weighted ops need one


@dataclass(frozen=True)
class CellSpec:
    """One NASNet-A cell as data (paper Figure 4(a); TF-slim's `operations` / `hiddenstate_indices`): its name
    prefix, five combinations of two operations each (summed), and the sources concatenated into its output."""

    prefix: str  # "normal" or "reduction"
    combinations: tuple[tuple[Op, Op], ...]
    concat: tuple[Source, ...]


NORMAL_A = CellSpec(
    prefix="normal",
    combinations=(
        (Op("sep", 5, 1, "h", "normal_left1"), Op("sep", 3, 1, "p", "normal_right1")),
        (Op("sep", 5, 1, "p", "normal_left2"), Op("sep", 3, 1, "p", "normal_right2")),
        (Op("avg", 3, 1, "h", "normal_left3"), Op("id", 1, 1, "p")),
        (Op("avg", 3, 1, "p", "normal_left4"), Op("avg", 3, 1, "p", "normal_right4")),
        (Op("sep", 3, 1, "h", "normal_left5"), Op("id", 1, 1, "h")),
    ),
    concat=("p", 0, 1, 2, 3, 4),
)

REDUCTION_A = CellSpec(
    prefix="reduction",
    combinations=(
        (Op("sep", 5, 2, "h", "reduction_left1"), Op("sep", 7, 2, "p", "reduction_right1")),
        (Op("max", 3, 2, "h", "reduction_left2"), Op("sep", 7, 2, "p", "reduction_right2")),
        (Op("avg", 3, 2, "h", "reduction_left3"), Op("sep", 5, 2, "p", "reduction_right3")),
        (Op("avg", 3, 1, 0, "reduction_left4"), Op("id", 1, 1, 1)),
        (Op("sep", 3, 1, 0, "reduction_left4"), Op("max", 3, 2, "h", "reduction_right5")),
    ),
    concat=(1, 2, 3, 4),
)

NASNET_BN_MOMENTUM = 0.9997  # keras.applications' NASNet


def _correct_pad(size: int | None, kernel: int) -> tuple[int, int]:
    """keras.applications' `correct_pad` for one axis: zero padding before a 'valid' stride-2 op."""
    adjust = 1 if size is None else 1 - size % 2
    return (kernel // 2 - adjust, kernel // 2)


class _NASNetCell(Block):
    """Shared machinery of the NASNet-A cells: called on `[x, previous]` (or `x` alone for the first
    stem cell, where previous is x itself and is not adjusted), returns `(output, x)` like
    keras.applications' `_normal_a_cell` / `_reduction_a_cell`."""

    spec: CellSpec
    _config_keys = ("filters",)

    def __init__(
        self,
        filters: int,
        bn_momentum: float = NASNET_BN_MOMENTUM,
        bn_epsilon: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, **kwargs)
        self.filters = check_positive_int("filters", filters)

    # -- construction ------------------------------------------------------------------------------
    @staticmethod
    def _split_shapes(input_shape: Any) -> tuple[Any, Any]:
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            if len(input_shape) != 2:
                raise ValueError(f"A NASNet cell takes [x, previous]. Received {len(input_shape)} inputs")
            return tuple(input_shape[0]), (None if input_shape[1] is None else tuple(input_shape[1]))
        return tuple(input_shape), None

    def _conv1x1(self, filters: int, name: str) -> keras.layers.Conv2D:
        return keras.layers.Conv2D(
            filters, 1, use_bias=False, kernel_initializer="he_normal", name=name, **self.sublayer_kwargs
        )

    def _create(self, input_shape: Any) -> None:
        x_shape, p_shape = self._split_shapes(input_shape)
        f = self.filters
        kw = self.sublayer_kwargs
        layers: dict[str, keras.layers.Layer] = {}

        def add(layer: keras.layers.Layer) -> keras.layers.Layer:
            layers[layer.name] = layer
            return layer

        # _adjust_block: bring `previous` to this cell's resolution and width. Called on x alone, a reduction cell
        # uses x as it is (keras.applications' first stem cell); a normal cell adjusts x like any previous.
        if p_shape is None and self.spec is NORMAL_A:
            p_shape = x_shape
        if p_shape is None:
            self.adjust_mode = "none"
        elif p_shape[2] != x_shape[2]:
            self.adjust_mode = "reduce"  # factorized reduction: two shifted stride-2 1x1 paths
            add(keras.layers.ReLU(name="adjust_relu_1", **kw))
            add(keras.layers.AveragePooling2D(1, strides=2, padding="valid", name="adjust_avg_pool_1", **kw))
            add(self._conv1x1(f // 2, "adjust_conv_1"))
            add(keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="adjust_pad_2", **kw))
            add(keras.layers.Cropping2D(((1, 0), (1, 0)), name="adjust_crop_2", **kw))
            add(keras.layers.AveragePooling2D(1, strides=2, padding="valid", name="adjust_avg_pool_2", **kw))
            add(self._conv1x1(f // 2, "adjust_conv_2"))
            add(keras.layers.Concatenate(name="adjust_concat", **kw))
            add(self.make_bn("adjust_bn"))
        elif p_shape[-1] != f:
            self.adjust_mode = "project"
            add(keras.layers.ReLU(name="adjust_relu_1", **kw))
            add(self._conv1x1(f, "adjust_conv_projection"))
            add(self.make_bn("adjust_bn"))
        else:
            self.adjust_mode = "identity"

        prefix = self.spec.prefix
        add(keras.layers.ReLU(name=f"{prefix}_relu_1", **kw))
        add(self._conv1x1(f, f"{prefix}_conv_1"))
        add(self.make_bn(f"{prefix}_bn_1"))
        needs_pad = any(op.kind in ("avg", "max") and op.strides == 2 for c in self.spec.combinations for op in c)
        if needs_pad:
            add(keras.layers.ZeroPadding2D(
                (_correct_pad(x_shape[1], 3), _correct_pad(x_shape[2], 3)), name=f"{prefix}_pad_1", **kw
            ))
        for i, combination in enumerate(self.spec.combinations):
            for side, op in zip(("left", "right"), combination):
                key = self._op_key(i, side)
                if op.kind == "sep":
                    for j in (1, 2):
                        add(keras.layers.ReLU(name=f"{key}_relu_{j}", **kw))
                        add(keras.layers.SeparableConv2D(
                            f, op.kernel, strides=op.strides if j == 1 else 1, padding="same",
                            use_bias=False, name=f"separable_conv_{j}_{op.name}", **kw,
                        ))
                        add(self.make_bn(f"separable_conv_{j}_bn_{op.name}"))
                elif op.kind in ("avg", "max"):
                    pool = keras.layers.AveragePooling2D if op.kind == "avg" else keras.layers.MaxPooling2D
                    # keras.applications zero-pads before a stride-2 pool ('valid'); 'same' pooling would
                    # ignore the border instead, so the padding is kept explicit for equal outputs.
                    add(pool(op.kernel, strides=op.strides, padding="same" if op.strides == 1 else "valid",
                             name=f"{key}_pool", **kw))
            add(keras.layers.Add(name=f"{prefix}_add_{i + 1}", **kw))
        add(keras.layers.Concatenate(name=f"{prefix}_concat", **kw))
        self.cell_layers = layers  # one tracked dict: saving and loading find every sub-layer through it

    @staticmethod
    def _op_key(index: int, side: str) -> str:
        return f"comb{index + 1}_{side}"

    # -- computation -------------------------------------------------------------------------------
    def compose(self, inputs: Any, apply: Apply) -> Any:
        """Adjust `previous`, squeeze `x`, run the five combinations of the cell table, concatenate."""
        L = self.cell_layers
        if isinstance(inputs, (list, tuple)) and len(inputs) == 2 and not isinstance(inputs[0], (int, type(None))):
            x, p = inputs
        else:
            x, p = inputs, None
        p = x if p is None else p
        if self.adjust_mode == "none":
            p = x
        elif self.adjust_mode == "reduce":
            p = apply(L["adjust_relu_1"], p)
            p1 = apply(L["adjust_conv_1"], apply(L["adjust_avg_pool_1"], p))
            p2 = apply(L["adjust_crop_2"], apply(L["adjust_pad_2"], p))
            p2 = apply(L["adjust_conv_2"], apply(L["adjust_avg_pool_2"], p2))
            p = apply(L["adjust_bn"], apply(L["adjust_concat"], [p1, p2]))
        elif self.adjust_mode == "project":
            p = apply(L["adjust_relu_1"], p)
            p = apply(L["adjust_bn"], apply(L["adjust_conv_projection"], p))

        prefix = self.spec.prefix
        h = apply(L[f"{prefix}_relu_1"], x)
        h = apply(L[f"{prefix}_bn_1"], apply(L[f"{prefix}_conv_1"], h))
        h_padded = apply(L[f"{prefix}_pad_1"], h) if f"{prefix}_pad_1" in L else None
        states: dict[Source, Any] = {"h": h, "p": p}
        for i, combination in enumerate(self.spec.combinations):
            outs = []
            for side, op in zip(("left", "right"), combination):
                key = self._op_key(i, side)
                t = states[op.source]
                if op.kind == "sep":
                    for j in (1, 2):
                        t = apply(L[f"{key}_relu_{j}"], t)
                        t = apply(L[f"separable_conv_{j}_{op.name}"], t)
                        t = apply(L[f"separable_conv_{j}_bn_{op.name}"], t)
                elif op.kind in ("avg", "max"):
                    if op.strides == 2:
                        t = h_padded if op.source == "h" else t
                    t = apply(L[f"{key}_pool"], t)
                outs.append(t)
            states[i] = apply(L[f"{prefix}_add_{i + 1}"], outs)
        out = apply(L[f"{prefix}_concat"], [states[s] for s in self.spec.concat])
        return out, x


@keras.saving.register_keras_serializable(package="keras_mbv2")
class NASNetNormalCell(_NASNetCell):
    """NASNet-A normal cell (paper Figure 4a; NASNet Figure 4 left): keeps resolution, outputs 6*filters.

    Called on `[x, previous]` (or on `x` alone, which is then also the previous), returns `(output, x)`.
    `previous` is first adjusted to x's resolution (factorized reduction) or width (ReLU -> 1x1 conv -> BN), as
    in keras.applications.
    """

    spec = NORMAL_A


@keras.saving.register_keras_serializable(package="keras_mbv2")
class NASNetReductionCell(_NASNetCell):
    """NASNet-A reduction cell (paper Figure 4a; NASNet Figure 4 right): halves resolution, outputs
    4*filters. Called on `[x, previous]` or on `x` alone (first stem cell), returns `(output, x)`."""

    spec = REDUCTION_A
