"""Weights between keras.applications and keras_mbv2 models of the same architecture.

Each family maps keras.applications' layer names to our (block, sub-layer) pairs by one naming rule;
`transfer_weights` copies every weighted layer, refuses any layer left unmapped on either side, and then
checks on a random batch that both models compute the same function. The builders use this to load the
official weights; `keras_mbv2.models.applications.from_keras_application` builds the twin first.
"""

from __future__ import annotations

from typing import Iterator

import keras
import numpy as np

from ..layers import Block, DepthwiseSeparable, InvertedResidual

TOLERANCE = 1e-5


def family_of(app: keras.Model) -> str:
    """"MobileNetV2", "MobileNetV1" or "NASNet" for a keras.applications model, from its layer names."""
    names = {layer.name for layer in app.layers}
    if "expanded_conv_project" in names:
        return "MobileNetV2"
    if "conv_dw_1" in names:
        return "MobileNetV1"
    if "stem_conv1" in names:
        return "NASNet"
    raise ValueError(
        "from_keras_application expects a keras.applications MobileNet, MobileNetV2 or NASNet model. "
        f"Received: app_model={app.name!r}"
    )


# -- name rules: keras.applications layer name -> our layer -------------------------------------------
def _pairs_mobilenet_v2(model: keras.Model) -> Iterator[tuple[str, keras.layers.Layer]]:
    yield "Conv1", model.get_layer("Conv1").conv
    yield "bn_Conv1", model.get_layer("Conv1").bn
    yield "Conv_1", model.get_layer("Conv_1").conv
    yield "Conv_1_bn", model.get_layer("Conv_1").bn
    for block in model.layers:
        if isinstance(block, InvertedResidual):
            for sub in block.sublayers():  # keras: f"{block}_{sublayer}", e.g. block_3_expand_BN
                yield f"{block.name}_{sub.name}", sub


def _pairs_mobilenet_v1(model: keras.Model) -> Iterator[tuple[str, keras.layers.Layer]]:
    yield "conv1", model.get_layer("conv1").conv
    yield "conv1_bn", model.get_layer("conv1").bn
    blocks = [layer for layer in model.layers if isinstance(layer, DepthwiseSeparable)]
    for i, block in enumerate(blocks, start=1):  # keras: conv_dw_1 ... conv_dw_13
        yield f"conv_dw_{i}", block.depthwise
        yield f"conv_dw_{i}_bn", block.depthwise_bn
        yield f"conv_pw_{i}", block.pointwise
        yield f"conv_pw_{i}_bn", block.pointwise_bn


def _pairs_nasnet(model: keras.Model) -> Iterator[tuple[str, keras.layers.Layer]]:
    yield "stem_conv1", model.get_layer("stem_conv1")
    yield "stem_bn1", model.get_layer("stem_bn1")
    for cell in model.layers:
        if isinstance(cell, Block) and "_cell_" in cell.name:
            block_id = cell.name.split("_cell_", 1)[1]
            for sub in cell.sublayers():  # keras: f"{sublayer}_{block_id}", e.g. adjust_bn_stem_2
                yield f"{sub.name}_{block_id}", sub


_PAIRS = {"MobileNetV2": _pairs_mobilenet_v2, "MobileNetV1": _pairs_mobilenet_v1, "NASNet": _pairs_nasnet}
_TOP = ("predictions", "conv_preds")


def transfer_weights(app_model: keras.Model, model: keras.Model, check: bool = True) -> None:
    """Copy every weight of `app_model` (keras.applications) into `model` (keras_mbv2, same family and
    hyper-parameters), then verify both give equal outputs on a random batch."""
    family = family_of(app_model)
    app_layers = {layer.name: layer for layer in app_model.layers}
    pairs = [(n, sub) for n, sub in _PAIRS[family](model) if sub.weights]
    pairs += [(n, model.get_layer(n)) for n in _TOP if n in app_layers]
    mapped = {n for n, _ in pairs}
    missing = [n for n, layer in app_layers.items() if layer.weights and n not in mapped]
    unknown = [n for n in mapped if n not in app_layers]
    if missing or unknown:
        raise ValueError(
            f"{family} weight transfer does not line up: keras.applications layers without a twin {missing[:5]}, "
            f"keras_mbv2 layers without a source {unknown[:5]}. Build the model with the same hyper-parameters."
        )
    ours_total = sum(int(np.prod(w.shape)) for w in model.weights)
    copied = 0
    for name, ours in pairs:
        values = app_layers[name].get_weights()
        shapes = [w.shape for w in ours.weights]
        if [v.shape for v in values] != [tuple(s) for s in shapes]:
            raise ValueError(f"Layer {name!r}: keras.applications shapes {[v.shape for v in values]} vs ours {shapes}")
        ours.set_weights(values)
        copied += sum(v.size for v in values)
    if copied != ours_total:
        raise ValueError(f"Copied {copied} weight values but the keras_mbv2 model has {ours_total}.")
    if check:
        verify_equal_outputs(app_model, model)


def verify_equal_outputs(app_model: keras.Model, model: keras.Model, tolerance: float = TOLERANCE) -> float:
    """Run both models on one random batch in inference mode; raise if they differ by more than `tolerance`
    times the outputs' magnitude (at least 1): float32 summed in another order (XLA on JAX fuses differently)
    differs by a few ulps of the largest values, a wrong weight by far more."""
    shape = tuple(8 if d is None else d for d in app_model.input_shape[1:])
    x = np.random.default_rng(0).uniform(-1, 1, (2,) + shape).astype("float32")
    expected = keras.ops.convert_to_numpy(app_model(x, training=False))
    got = keras.ops.convert_to_numpy(model(x, training=False))
    diff = float(np.max(np.abs(expected - got))) if expected.shape == got.shape else float("inf")
    bound = tolerance * max(1.0, float(np.max(np.abs(expected))))
    if not diff <= bound:
        raise ValueError(
            f"After the weight transfer the outputs differ by {diff:.3g} (> {bound:.3g}); for MobileNetV1 this "
            "happens when a stride-2 layer sees an odd size (keras pads ((0, 1), (0, 1)), keras_mbv2 pads 'same')."
        )
    return diff
