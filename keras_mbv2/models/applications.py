"""keras.applications -> keras_mbv2: rebuild an application model from keras_mbv2 blocks, weights included.

Above the builders (it reads an application's hyper-parameters and calls the matching builder); the weight
copy itself and its output check live in `keras_mbv2.models.weights`, below them.
"""

from __future__ import annotations

import re
from typing import Any

import keras

from ..layers import make_divisible
from . import mobilenet_v1, mobilenet_v2, nasnet
from .weights import family_of, transfer_weights


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
    family = family_of(app_model)
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
