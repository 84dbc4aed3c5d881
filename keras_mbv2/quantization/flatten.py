"""Keras 3 model -> the same computation as a flat tf_keras functional graph of built-in layers.

tensorflow-model-optimization quantizes only tf_keras (Keras 2) functional graphs of built-in layers and
folds batch norm only in the patterns `Conv(no bias) -> BN [-> ReLU(6)]`. Every keras_mbv2 block describes
its wiring once in `compose(inputs, apply)`; here `apply` re-creates each Keras 3 sub-layer as its
tf_keras twin with the same weights, so the flat graph is the block's graph, not a re-implementation.

Three rewrites keep the graph in patterns tfmot can quantize, all exact in float:
- `ChannelShuffle` becomes Reshape -> Permute -> Reshape;
- a BatchNormalization that follows a Concatenate of convolutions (NASNet's factorized reduction, which
  tfmot rejects) is split per input, so each half folds into the conv that feeds it;
- a BatchNormalization that follows a sum of bias-free convolutions (the partial projections of an
  `InvertedResidual` with `memory_splits`, paper Section 5.1) folds into those convolutions: each kernel
  takes the BN scale, the first also takes the BN shift as its bias, and the sum is rebuilt on them.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ..layers import Block, ChannelShuffle

# Float32 rounding through some sixty layers: an untrained MobileNetV2 0.35 @ 32 with batch norms recalibrated on
# the digits (variances near zero, so 1/sqrt(var + eps) amplifies rounding) measured 1.06e-05 between the twins;
# a wiring or weight error shows as 1e-2 and more.
TOLERANCE = 1e-4
_DROP_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
_DROP_KEYS = {"dtype", "lora_rank", "lora_alpha", "quantization_config", "gamma_initializer"}


#: Keras 3 activation names -> the tf_keras built-in computing the same function (tf_keras has no `silu` name,
#: and no `relu6` activation: a ReLU6 becomes `ReLU(max_value=6)`, which tfmot folds into the operator before it).
#: Keras 3's `hard_silu` / `hard_swish` and `hard_sigmoid` have no tf_keras twin (tf_keras' hard_sigmoid is another
#: function): a model with them converts by post-training quantization (`to_tflite`, whose converter fuses
#: HARD_SWISH) but not through tfmot.
TF_KERAS_ACTIVATIONS = {"silu": "swish", "swish": "swish", "relu": "relu", "linear": "linear", "gelu": "gelu",
                        "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax", "elu": "elu", "selu": "selu",
                        "softplus": "softplus", "softsign": "softsign", "exponential": "exponential", "mish": "mish"}
#: What a user can do about a layer that has no tf_keras twin.
ADVICE = ("post-training quantization converts it (`keras-mbv2 export --quantize int8`, `to_tflite`); for "
          "quantization-aware training replace it with built-in layers tfmot quantizes (Conv2D, DepthwiseConv2D, "
          "Dense, BatchNormalization, ReLU / ReLU6, Add, Concatenate, pooling)")


class NotQuantizable(ValueError):
    """A layer of the model has no tf_keras built-in twin, so tfmot cannot quantize the model: the message names
    the layer, its class and what to do (`ADVICE`)."""

    def __init__(self, layer: Any, reason: str) -> None:
        self.layer = layer
        super().__init__(f"layer {layer.name!r} ({type(layer).__name__}) {reason}, so tfmot cannot quantize the model: "
                         f"{ADVICE}.")


def tf_keras():
    """The tf_keras module (Keras 2), which tfmot quantizes."""
    import tf_keras as tfk  # tfmot picks tf_keras itself when it is installed

    return tfk


def _twin_config(layer: keras.layers.Layer, name: str) -> dict[str, Any]:
    config = {k: v for k, v in layer.get_config().items() if k not in _DROP_KEYS and not k.endswith(_DROP_SUFFIXES)}
    config["name"] = name
    return config


def make_twin(layer: keras.layers.Layer, name: str) -> Any:
    """A tf_keras layer of the same class and configuration (weights are copied once it is built)."""
    tfk = tf_keras()
    if not isinstance(layer, keras.layers.Layer):  # a Keras op in the graph (`x + 3.0`, `x * y`): no layer to copy
        raise NotQuantizable(layer, "is a Keras operation (`keras.ops`, or Python arithmetic on a tensor), not a layer")
    cls = getattr(tfk.layers, type(layer).__name__, None)
    if cls is None or not type(layer).__module__.startswith("keras.src.layers"):
        raise NotQuantizable(layer, "has no tf_keras built-in equivalent")
    config = _twin_config(layer, name)
    if isinstance(config.get("activation"), str):
        activation = config["activation"]
        if activation == "relu6" and type(layer) is keras.layers.Activation:
            return tfk.layers.ReLU(max_value=6.0, name=name)
        if activation not in TF_KERAS_ACTIVATIONS:
            raise NotQuantizable(layer, f"uses the activation {activation!r}, which tf_keras does not have")
        config["activation"] = TF_KERAS_ACTIVATIONS[activation]
    while True:
        try:
            return cls(**config)
        except TypeError as exc:  # a Keras 3-only argument: drop it when its default is what the layer uses
            bad = next((a for a in exc.args[1:] if isinstance(a, str) and a in config), None)
            bad = bad or next((k for k in config if f"'{k}'" in str(exc)), None)
            if bad is None or config[bad] not in (False, None, 0):
                raise NotQuantizable(layer, f"cannot be rebuilt in tf_keras ({' '.join(str(exc).split())})") from None
            config.pop(bad)
        except ValueError as exc:
            raise NotQuantizable(layer, f"cannot be rebuilt in tf_keras ({' '.join(str(exc).split())})") from None


class Flattener:
    """Walks a Keras 3 functional model and emits the tf_keras graph."""

    def __init__(self, model: keras.Model, batch_size: int | None = None) -> None:
        self.model = model
        self.batch_size = batch_size
        self.produced_by: dict[int, tuple[Any, list[Any]]] = {}  # id(tf tensor) -> (keras layer, tf inputs)
        self.names: set[str] = set()

    def _unique(self, name: str) -> str:
        base, i = name, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def apply(self, layer: keras.layers.Layer, x: Any, prefix: str = "") -> Any:
        """Emit the tf_keras twin of one Keras 3 built-in layer applied to tf_keras tensor(s) `x` (the `apply`
        a block's wiring is run with), with the rewrites that keep tfmot's folding patterns."""
        tfk = tf_keras()
        name = self._unique(f"{prefix}{layer.name}")
        if isinstance(layer, ChannelShuffle):
            _, h, w, c = x.shape
            g = layer.groups
            x = tfk.layers.Reshape((h, w, g, c // g), name=f"{name}_split")(x)
            x = tfk.layers.Permute((1, 2, 4, 3), name=f"{name}_transpose")(x)
            return tfk.layers.Reshape((h, w, c), name=f"{name}_merge")(x)
        if isinstance(layer, keras.layers.BatchNormalization) and not isinstance(x, list):
            source = self.produced_by.get(id(x))
            if source is not None and isinstance(source[0], keras.layers.Concatenate):
                return self._split_batch_norm(layer, source[1], name)
            terms = self._conv_terms(x)
            if terms is not None:
                return self._fold_batch_norm_into_sum(layer, terms, prefix)
        twin = make_twin(layer, name)
        y = twin(x)
        if layer.weights:
            twin.set_weights(layer.get_weights())
        self.produced_by[id(y)] = (layer, x if isinstance(x, list) else [x])
        return y

    def _split_batch_norm(self, bn: keras.layers.BatchNormalization, inputs: list[Any], name: str) -> Any:
        """BN(concat(a, b)) == concat(BN_a(a), BN_b(b)) with each BN taking its channels' statistics."""
        tfk = tf_keras()
        weights = bn.get_weights()
        outs, start = [], 0
        for i, t in enumerate(inputs):
            width = t.shape[-1]
            part = make_twin(bn, f"{name}_part{i + 1}")
            y = part(t)
            part.set_weights([w[start:start + width] for w in weights])
            outs.append(y)
            start += width
        return tfk.layers.Concatenate(name=f"{name}_concat")(outs)

    def _conv_terms(self, x: Any) -> list[tuple[Any, Any, Any]] | None:
        """If `x` is a sum (tree of Add layers) of bias-free Conv2D outputs: [(keras conv, its tf input,
        its tf output)] in summation order; else None."""
        source = self.produced_by.get(id(x))
        if source is None or not isinstance(source[0], keras.layers.Add):
            return None
        terms = []
        for t in source[1]:
            inner = self.produced_by.get(id(t))
            if inner is not None and isinstance(inner[0], keras.layers.Add):
                sub = self._conv_terms(t)
                if sub is None:
                    return None
                terms += sub
            elif (inner is not None and type(inner[0]) is keras.layers.Conv2D and not inner[0].use_bias
                  and len(inner[1]) == 1):
                terms.append((inner[0], inner[1][0], t))
            else:
                return None
        return terms

    def _fold_batch_norm_into_sum(self, bn: keras.layers.BatchNormalization, terms: list[tuple[Any, Any, Any]],
                                  prefix: str) -> Any:
        """BN(sum_i conv_i(x_i)) == sum_i conv'_i(x_i): conv'_i = scale * conv_i, plus the shift in conv'_0."""
        tfk = tf_keras()
        gamma = np.asarray(bn.gamma) if bn.scale else 1.0
        beta = np.asarray(bn.beta) if bn.center else 0.0
        scale = gamma / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
        shift = beta - np.asarray(bn.moving_mean) * scale
        total = None
        for i, (conv, x, _) in enumerate(terms):
            config = _twin_config(conv, self._unique(f"{prefix}{conv.name}_folded"))
            config["use_bias"] = i == 0
            twin = tfk.layers.Conv2D(**config)
            y = twin(x)
            kernel = np.asarray(conv.kernel) * scale
            twin.set_weights([kernel, shift.astype(kernel.dtype)] if i == 0 else [kernel])
            total = y if total is None else tfk.layers.Add(name=self._unique(f"{prefix}{bn.name}_sum_{i}"))([total, y])
        return total

    def build(self) -> Any:
        """Walk the functional model node by node and return the flat tf_keras model."""
        tfk = tf_keras()
        model = self.model
        if not hasattr(model, "_nodes_by_depth"):
            raise ValueError(f"`model` must be a functional Keras model. Received: model={model!r}")
        tensors: dict[int, Any] = {}
        inputs = []
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                op = node.operation
                if isinstance(op, keras.layers.InputLayer):
                    t = node.output_tensors[0]
                    tf_in = tfk.Input(shape=tuple(t.shape[1:]), batch_size=self.batch_size, name=op.name)
                    self.names.add(op.name)
                    tensors[id(t)] = tf_in
                    inputs.append(tf_in)
                    continue
                args = [tensors[id(t)] for t in node.input_tensors]
                x = args[0] if len(args) == 1 else args
                if isinstance(op, Block):
                    out = op.compose(x, lambda layer, v, _p=f"{op.name}_": self.apply(layer, v, _p))
                elif isinstance(op, keras.Model):
                    raise NotQuantizable(op, "is a nested model (pass input_tensor= to the inner builder instead of "
                                         "nesting models)")
                else:
                    out = self.apply(op, x)
                outs = out if isinstance(out, (list, tuple)) else [out]
                for kt, tt in zip(node.output_tensors, outs):
                    tensors[id(kt)] = tt
        outputs = [tensors[id(t)] for t in keras.tree.flatten(model.outputs)]
        by_name = {t.name: t for t in inputs}
        ordered_inputs = [by_name[t._keras_history.operation.name] for t in keras.tree.flatten(model.inputs)]
        return tfk.Model(
            ordered_inputs if len(ordered_inputs) > 1 else ordered_inputs[0],
            outputs if len(outputs) > 1 else outputs[0],
            name=model.name,
        )


def to_tf_keras(model: keras.Model, batch_size: int | None = None, check: bool = True) -> Any:
    """The flat tf_keras twin of `model`, checked equal in float (inference mode) within `TOLERANCE`."""
    flat = Flattener(model, batch_size).build()
    if check:
        check_equal(model, flat)
    return flat


def check_equal(model: keras.Model, flat: Any, x: np.ndarray | None = None, tolerance: float = TOLERANCE) -> float:
    """Largest |difference| of the two models' inference outputs on `x` (random in [0, 1] by default); raises
    when it exceeds `tolerance`."""
    if x is None:
        shape = tuple(model.input_shape[1:])
        x = np.random.default_rng(0).uniform(0, 1, (2,) + shape).astype("float32")
    expected = np.asarray(model(x, training=False))
    got = np.asarray(flat(x, training=False))
    diff = float(np.max(np.abs(expected - got)))
    if not diff <= tolerance:
        raise ValueError(f"The flat tf_keras graph differs from the Keras 3 model by {diff:.3g} (> {tolerance}).")
    return diff
