"""NASNet-A (Zoph et al. 2018), the MobileNetV2 paper's Figure 4(a) network, from the cell blocks."""

from __future__ import annotations

from typing import Any

import keras

from ..checks import check_positive_int
from ..layers import NASNetNormalCell, NASNetReductionCell
from ..layers.nasnet_cells import NASNET_BN_MOMENTUM
from ._common import check_common_args, classifier_head, load_weights, make_input


def nasnet_cells(penultimate_filters: int, num_blocks: int, filter_multiplier: int) -> list[tuple[str, int, str]]:
    """The cell sequence as data: (kind, filters, keras.applications block id).

    Two reduction stem cells, then three stacks of `num_blocks` normal cells separated by reduction
    cells, each reduction multiplying the width by `filter_multiplier` (NASNet Figure 2, ImageNet).
    """
    f, m, n = penultimate_filters // 24, filter_multiplier, num_blocks
    cells = [("reduction", f // m**2, "stem_1"), ("reduction", f // m, "stem_2")]
    for stack in range(3):
        if stack:
            cells.append(("reduction", f * m**stack, f"reduce_{stack * n}"))
        cells += [("normal", f * m**stack, str(stack * n + i + (1 if stack else 0))) for i in range(n)]
    return cells


def cell_name(kind: str, block_id: str) -> str:
    """Our cell's layer name; keras.applications names its sub-layers `<sub-layer>_<block_id>`."""
    return f"{kind}_cell_{block_id}"


def NASNet(
    input_shape: tuple[int, int, int] | None = None,
    penultimate_filters: int = 4032,
    num_blocks: int = 6,
    stem_block_filters: int = 96,
    skip_reduction: bool = True,
    filter_multiplier: int = 2,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    *,
    bn_momentum: float = NASNET_BN_MOMENTUM,
    bn_epsilon: float = 1e-3,
    dtype: Any = None,
) -> keras.Model:
    """NASNet-A built from `NASNetNormalCell` / `NASNetReductionCell`, as `keras.applications.nasnet.NASNet`.

    Defaults are NASNet-A Large (6 @ 4032); `NASNetMobile` is 4 @ 1056 with a 32-filter stem.

    Args:
        penultimate_filters: width before the classifier; a multiple of 24 * filter_multiplier**2.
        num_blocks: normal cells per stack (N in "N @ penultimate").
        stem_block_filters: filters of the first 3x3 stride-2 conv.
        skip_reduction: True feeds the cell after a reduction with the cell before it (NASNet-A Large).
        filter_multiplier: width growth at each reduction.
        include_top, weights, input_tensor, pooling, classes, classifier_activation, name: as
            keras.applications (weights: None, "imagenet" for the Mobile and Large configurations, or a file).
        bn_momentum, bn_epsilon: batch-norm settings (keras.applications: 0.9997, 1e-3).
        dtype: a dtype policy for every layer ("mixed_float16", ...); the classifier computes in float32.
    """
    check_common_args(include_top, weights, pooling, classes, classifier_activation)
    check_positive_int("penultimate_filters", penultimate_filters)
    check_positive_int("num_blocks", num_blocks)
    check_positive_int("stem_block_filters", stem_block_filters)
    check_positive_int("filter_multiplier", filter_multiplier)
    if skip_reduction not in (True, False):
        raise ValueError(f"`skip_reduction` must be True or False. Received: skip_reduction={skip_reduction!r}")
    if penultimate_filters % (24 * filter_multiplier**2):
        raise ValueError(
            f"`penultimate_filters` must be a multiple of 24 * filter_multiplier**2 = {24 * filter_multiplier**2}. "
            f"Received: penultimate_filters={penultimate_filters!r}"
        )
    image, inputs, (rows, _, _) = make_input(input_shape, input_tensor)

    x = keras.layers.Conv2D(
        stem_block_filters, 3, strides=2, padding="valid", use_bias=False, kernel_initializer="he_normal",
        name="stem_conv1", dtype=dtype,
    )(image)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name="stem_bn1", dtype=dtype)(x)
    p = None
    for kind, filters, block_id in nasnet_cells(penultimate_filters, num_blocks, filter_multiplier):
        cls = NASNetNormalCell if kind == "normal" else NASNetReductionCell
        cell = cls(filters, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=cell_name(kind, block_id), dtype=dtype)
        new_x, new_p = cell(x if p is None else [x, p])
        # After a non-stem reduction, NASNet-A Large (skip_reduction) keeps the previous `p`.
        if kind == "reduction" and skip_reduction and not block_id.startswith("stem"):
            x = new_x
        else:
            x, p = new_x, new_p
    x = keras.layers.ReLU(name="final_relu", dtype=dtype)(x)
    x = classifier_head(x, include_top, pooling, classes, classifier_activation, dtype)
    model = keras.Model(inputs, x, name=name or "NASNet")
    # keras.applications publishes two NASNet-A configurations; other sizes have no official twin.
    config = (penultimate_filters, num_blocks, stem_block_filters, skip_reduction, filter_multiplier)
    application = {
        (1056, 4, 32, False, 2): keras.applications.NASNetMobile,
        (4032, 6, 96, True, 2): keras.applications.NASNetLarge,
    }.get(config)
    app_kwargs = dict(
        input_shape=tuple(image.shape[1:]), include_top=include_top, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation,
    )
    return load_weights(model, weights, application, app_kwargs)


def NASNetMobile(
    input_shape: tuple[int, int, int] | None = None,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    name: str | None = "nasnet_mobile",
    **kwargs: Any,
) -> keras.Model:
    """NASNet-A Mobile (4 @ 1056), the network of the MobileNetV2 paper's Table 4."""
    return NASNet(
        input_shape, penultimate_filters=1056, num_blocks=4, stem_block_filters=32, skip_reduction=False,
        filter_multiplier=2, include_top=include_top, weights=weights, input_tensor=input_tensor, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation, name=name, **kwargs,
    )
