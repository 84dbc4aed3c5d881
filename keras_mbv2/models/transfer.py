"""keras.applications <-> keras_mbv2: rebuild an application as our model and carry its weights over.

Each family maps keras.applications' layer names to our (block, sub-layer) pairs by one naming rule;
`transfer_weights` copies every weighted layer, refuses any layer left unmapped on either side, and then
checks on a random batch that both models compute the same function.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import keras
import numpy as np

from ..layers import Block, InvertedResidual, make_divisible
from . import mobilenet_v1, mobilenet_v2, nasnet

TOLERANCE = 1e-5


def _family(app: keras.Model) -> str:
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


def _top_kwargs(app: keras.Model, include_top_layer: str) -> dict[str, Any]:
    names = {layer.name: layer for layer in app.layers}
    include_top = include_top_layer in names
    kwargs: dict[str, Any] = dict(input_shape=tuple(app.input_shape[1:]), include_top=include_top)
    if include_top:
        top = names["predictions"]
        act = top.get_config()["activation"]
        kwargs["classifier_activation"] = None if act == "linear" else act
    else:
        last = app.layers[-1]
        kwargs["pooling"] = (
            "avg" if isinstance(last, keras.layers.GlobalAveragePooling2D)
            else "max" if isinstance(last, keras.layers.GlobalMaxPooling2D) else None
        )
    return kwargs


def _infer_alpha(app: keras.Model, layer: str, channels_of_alpha) -> float:
    """The width multiplier: from the model name keras gives (`mobilenetv2_0.35_224`), checked against a
    layer's width, else the smallest alpha on a 0.05 grid whose widths match."""
    match = re.search(r"_(\d+\.\d+)_", app.name)
    width = app.get_layer(layer).filters
    candidates = ([float(match.group(1))] if match else []) + [round(0.05 * k, 2) for k in range(1, 81)]
    for alpha in candidates:
        if channels_of_alpha(alpha) == width:
            return alpha
    raise ValueError(f"Could not infer `alpha` of {app.name!r} from layer {layer!r} ({width} filters).")


def from_keras_application(app_model: keras.Model) -> keras.Model:
    """Return the keras_mbv2 model equivalent to a keras.applications MobileNet, MobileNetV2 or NASNet
    (Mobile or Large), carrying the same weights; outputs are checked equal within 1e-5."""
    family = _family(app_model)
    if family == "MobileNetV2":
        kwargs = _top_kwargs(app_model, "predictions")
        alpha = _infer_alpha(app_model, "block_16_project", lambda a: make_divisible(int(320 * a), 8))
        if kwargs["include_top"]:
            kwargs["classes"] = app_model.get_layer("predictions").units
        model = mobilenet_v2.MobileNetV2(alpha=alpha, name=app_model.name, **kwargs)
    elif family == "MobileNetV1":
        kwargs = _top_kwargs(app_model, "conv_preds")
        kwargs.pop("classifier_activation", None)
        alpha = _infer_alpha(app_model, "conv_pw_13", lambda a: int(1024 * a))
        if kwargs["include_top"]:
            kwargs["classes"] = app_model.get_layer("conv_preds").filters
            kwargs["dropout"] = app_model.get_layer("dropout").rate
            act = app_model.get_layer("predictions").get_config()["activation"]
            kwargs["classifier_activation"] = None if act == "linear" else act
        depth_multiplier = app_model.get_layer("conv_dw_1").depth_multiplier
        model = mobilenet_v1.MobileNetV1(alpha=alpha, depth_multiplier=depth_multiplier, name=app_model.name, **kwargs)
    else:
        kwargs = _top_kwargs(app_model, "predictions")
        if kwargs["include_top"]:
            kwargs["classes"] = app_model.get_layer("predictions").units
        names = {layer.name for layer in app_model.layers}
        num_blocks = sum(1 for n in names if re.fullmatch(r"normal_conv_1_\d+", n)) // 3
        filters = app_model.get_layer("normal_conv_1_0").filters
        multiplier = app_model.get_layer(f"normal_conv_1_{num_blocks + 1}").filters // filters
        # skip_reduction: the cell after the first reduction adjusts the cell *before* that reduction
        first_after = app_model.get_layer(f"adjust_relu_1_{num_blocks + 1}")
        source = first_after._inbound_nodes[0].parent_nodes[0].operation.name
        skip_reduction = source != f"normal_concat_{num_blocks - 1}"
        model = nasnet.NASNet(
            penultimate_filters=24 * filters, num_blocks=num_blocks,
            stem_block_filters=app_model.get_layer("stem_conv1").filters, skip_reduction=skip_reduction,
            filter_multiplier=multiplier, name=app_model.name, **kwargs,
        )
    transfer_weights(app_model, model)
    return model


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
    for i in range(1, len(mobilenet_v1.expand_rows(mobilenet_v1.MOBILENET_V1_TABLE)) + 1):
        block = model.get_layer(f"conv_block_{i}")
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
    family = _family(app_model)
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
    """Run both models on one random batch in inference mode; raise if they differ by more than tolerance."""
    shape = tuple(8 if d is None else d for d in app_model.input_shape[1:])
    x = np.random.default_rng(0).uniform(-1, 1, (2,) + shape).astype("float32")
    expected = keras.ops.convert_to_numpy(app_model(x, training=False))
    got = keras.ops.convert_to_numpy(model(x, training=False))
    diff = float(np.max(np.abs(expected - got))) if expected.shape == got.shape else float("inf")
    if not diff <= tolerance:
        raise ValueError(
            f"After the weight transfer the outputs differ by {diff:.3g} (> {tolerance}); for MobileNetV1 this "
            "happens when a stride-2 layer sees an odd size (keras pads ((0, 1), (0, 1)), keras_mbv2 pads 'same')."
        )
    return diff
