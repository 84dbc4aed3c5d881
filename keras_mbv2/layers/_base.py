"""What every block shares: argument checks, the activation rule and the `Block` base class.

A block describes its computation exactly once, in `Block.compose(inputs, apply)`, as a composition of
built-in Keras sub-layers. `apply(layer, x)` decides what "applying a sub-layer" means:

- `call()` applies the Keras 3 sub-layer to a tensor;
- `build()` and `compute_output_shape()` propagate shapes (building each sub-layer on the way);
- the profiler records each sub-layer's shapes to count multiply-adds;
- the QAT bridge re-creates each sub-layer as its tf_keras twin, giving a flat graph that tfmot folds.

So the wiring of a block lives in one place, and every consumer sees the same graph. (The method is not called
`forward`: on Keras' PyTorch backend every layer is a `torch.nn.Module`, and `forward` is the name torch calls.)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras

from ..checks import check_bool, check_choice, check_fraction, check_positive_int

Apply = Callable[[keras.layers.Layer, Any], Any]

# keras.applications' MobileNetV2 batch-norm settings (epsilon=1e-3, momentum=0.999); matching them is
# what lets our models carry the official weights. On small data sets momentum 0.999 barely moves the
# moving statistics (see shared/DESIGN.md section 2), so every block lets the caller choose.
BN_MOMENTUM = 0.999
BN_EPSILON = 1e-3

_ACTIVATIONS = ("relu6", "relu", "linear", None)
__all__ = [  # the checks are re-exported for the blocks, which import them from here
    "Apply", "BN_EPSILON", "BN_MOMENTUM", "Block", "apply_seq", "bottleneck_width", "call_apply", "channels_of",
    "check_activation", "check_bn", "check_bool", "check_choice", "check_fraction", "check_positive_int",
    "make_activation", "make_divisible", "shape_apply", "skip_rule",
]


def check_bn(momentum: Any, epsilon: Any) -> None:
    """Batch-norm momentum in (0, 1] and a positive epsilon."""
    check_fraction("bn_momentum", momentum, 0.0, 1.0)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0:
        raise ValueError(f"`bn_epsilon` must be a positive number. Received: bn_epsilon={epsilon!r}")


def check_activation(value: Any) -> Any:
    """Activations a block may end with: the paper's ReLU6, plain ReLU, or none (linear)."""
    return check_choice("activation", value, _ACTIVATIONS)


def make_activation(name: str | None, layer_name: str, dtype: Any = None) -> keras.layers.Layer | None:
    """The one rule mapping an activation name to a built-in layer tfmot can fold.

    ReLU6 is `ReLU(max_value=6)`, as in keras.applications, so the QAT graph keeps the
    `Conv -> BatchNormalization -> ReLU(6)` pattern that tfmot folds. `None`/"linear" means no layer:
    the paper's linear bottleneck (Section 3.2).
    """
    if name in (None, "linear"):
        return None
    if name == "relu6":
        return keras.layers.ReLU(6.0, name=layer_name, dtype=dtype)
    if name == "relu":
        return keras.layers.ReLU(name=layer_name, dtype=dtype)
    raise ValueError(f"`activation` must be one of {_ACTIVATIONS}. Received: activation={name!r}")


def skip_rule(strides: int, in_channels: int, out_channels: int, residual: bool) -> bool:
    """The one stride-aware residual rule (paper Figure 4d; timm's `has_skip`).

    A shortcut is added only when the block keeps the resolution and the channel count, because only
    then can input and output be summed; the stride-2 block of Figure 4(d) has none.
    """
    return bool(residual) and strides == 1 and in_channels == out_channels


def bottleneck_width(filters: int, ratio: float) -> int:
    """The narrow width of a classic (wide -> narrow -> wide) bottleneck: `filters * ratio`, at least 1
    (ShuffleNet: a quarter of the output channels)."""
    return max(1, round(filters * ratio))


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `value` to the nearest multiple of `divisor`, never going more than 10% below it.

    The channel-rounding rule of the MobileNet reference code (and keras.applications), used wherever a
    width multiplier scales channels.
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def apply_seq(apply: Apply, x: Any, *layers: keras.layers.Layer | None) -> Any:
    """Apply sub-layers in order, skipping the ones a configuration leaves out (None)."""
    for layer in layers:
        if layer is not None:
            x = apply(layer, x)
    return x


def call_apply(layer: keras.layers.Layer, x: Any) -> Any:
    """`apply` for `call()`: run the sub-layer on a tensor."""
    return layer(x)


def shape_apply(layer: keras.layers.Layer, shape: Any) -> Any:
    """Build `layer` for `shape` (if needed) and return its output shape."""
    if not layer.built:
        layer.build(shape)
    return layer.compute_output_shape(shape)


def channels_of(shape: Sequence[Any], name: str = "inputs") -> int:
    """The (known) channel count of a channels-last shape."""
    channels = shape[-1]
    if channels is None:
        raise ValueError(f"The channel dimension of `{name}` must be known. Received shape: {tuple(shape)}")
    return int(channels)


class Block(keras.layers.Layer):
    """Base class of the paper's blocks (channels-last).

    Subclasses implement `_create(input_shape)` (make sub-layers; decide `has_skip`) and
    `compose(inputs, apply)` (wire them). Everything else is derived here once: the batch-norm knobs every
    block shares (`bn_momentum`, `bn_epsilon`), `get_config`, build, call and shape inference.

    Sub-layers are made with the block's dtype policy (`self.sublayer_kwargs`), so a block in a
    mixed-precision model computes in float16/bfloat16 like Keras' own layers, with float32 variables.
    """

    #: True when the block adds an identity shortcut (stride 1, equal channels, residual enabled).
    has_skip: bool = False
    #: Constructor arguments, stored as attributes of the same names; `get_config` returns exactly these
    #: (plus the shared `bn_momentum` and `bn_epsilon`).
    _config_keys: tuple[str, ...] = ()

    def __init__(self, bn_momentum: float = BN_MOMENTUM, bn_epsilon: float = BN_EPSILON, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_bn(bn_momentum, bn_epsilon)
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({key: getattr(self, key) for key in (*self._config_keys, "bn_momentum", "bn_epsilon")})
        return config

    @property
    def sublayer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every sub-layer is made with: the block's dtype policy."""
        return {"dtype": self.dtype_policy}

    def make_bn(self, name: str) -> keras.layers.BatchNormalization:
        """A batch norm with the block's momentum, epsilon and dtype policy."""
        return keras.layers.BatchNormalization(
            momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name, **self.sublayer_kwargs
        )

    def make_activation(self, activation: str | None, name: str) -> keras.layers.Layer | None:
        """`make_activation` with the block's dtype policy (None for a linear output)."""
        return make_activation(activation, name, **self.sublayer_kwargs)

    def build(self, input_shape: Any) -> None:
        if keras.config.image_data_format() != "channels_last":
            raise ValueError(
                "keras_mbv2 blocks support image_data_format='channels_last' only. "
                f"Received: image_data_format={keras.config.image_data_format()!r}"
            )
        self._create(input_shape)
        self.compose(input_shape, shape_apply)

    def call(self, inputs: Any) -> Any:
        return self.compose(inputs, call_apply)

    def compute_output_shape(self, input_shape: Any) -> Any:
        if not self.built:
            self.build(input_shape)
        return self.compose(input_shape, shape_apply)

    def sublayers(self) -> list[keras.layers.Layer]:
        """The built sub-layers in the order `compose` applies them (duplicates removed)."""
        seen: list[keras.layers.Layer] = []

        def record(layer: keras.layers.Layer, shape: Any) -> Any:
            if all(layer is not s for s in seen):
                seen.append(layer)
            return layer.compute_output_shape(shape)

        self.compose(self._build_shapes_dict_input(), record)
        return seen

    def _build_shapes_dict_input(self) -> Any:
        shapes = getattr(self, "_build_shapes_dict", None) or {}
        if len(shapes) != 1:
            raise ValueError(f"Layer {self.name!r} has not been built yet.")
        return next(iter(shapes.values()))
