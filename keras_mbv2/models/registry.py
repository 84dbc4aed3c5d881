"""Networks by name: the one mapping from command-line style knobs to a builder call."""

from __future__ import annotations

from typing import Any

from .mobilenet_v1 import MobileNetV1
from .mobilenet_v2 import MobileNetV2
from .nasnet import NASNetMobile
from .shufflenet_v1 import ShuffleNetV1

NETWORKS = ("mobilenet_v2", "mobilenet_v1", "shufflenet_v1", "nasnet")


def build_network(network: str, input_shape: tuple[int, int, int], width: float | None, groups: int | None,
                  classes: int, **kwargs: Any) -> Any:
    """Build `network` from the command line's knobs (--width is alpha or scale); kwargs go to the builder."""
    if groups is not None and network != "shufflenet_v1":
        raise ValueError(f"--groups applies to shufflenet_v1 only. Received: --groups {groups} with --network {network}")
    if network == "mobilenet_v2":
        return MobileNetV2(input_shape=input_shape, alpha=1.0 if width is None else width, classes=classes, **kwargs)
    if network == "mobilenet_v1":
        return MobileNetV1(input_shape=input_shape, alpha=1.0 if width is None else width, classes=classes, **kwargs)
    if network == "shufflenet_v1":
        return ShuffleNetV1(input_shape=input_shape, groups=3 if groups is None else groups,
                            scale=1.0 if width is None else width, classes=classes, **kwargs)
    if network == "nasnet":
        if width not in (None, 1.0):
            raise ValueError(f"--width applies to mobilenet_v1/v2 and shufflenet_v1, not nasnet. Received: --width {width}")
        return NASNetMobile(input_shape=input_shape, classes=classes, **kwargs)
    raise ValueError(f"--network must be one of {NETWORKS}. Received: --network {network!r}")
