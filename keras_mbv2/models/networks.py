"""The four networks by name: one table read by the command line, the demo and the paper comparison.

Each row says which builder makes the network, what its width argument is called, the width the demo trains,
which optional arguments it takes, and which rows of the paper's Table 4 it reproduces. Errors raised here
name the library's arguments (`width`, `groups`, `memory_splits`); the command line translates them to its
flags.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Network:
    """One network family as the tools see it (the table holds names only: the command line reads it without
    loading Keras)."""

    name: str  # the command line's --network value
    builder_name: str  # the builder's name in keras_mbv2.models
    width_arg: str | None  # the builder's width multiplier ("alpha", "scale"), None when it has none
    demo_width: float | None  # the width `keras-mbv2 demo` trains (small enough for the bundled digits)
    groups: int | None = None  # default groups when the network takes `groups` (ShuffleNet), else None
    memory_splits: bool = False  # takes `memory_splits` (paper Section 5.1)
    paper_rows: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=tuple)  # Table 4: (label, kwargs)

    @property
    def builder(self) -> Callable[..., keras.Model]:
        """The builder function (imports Keras on first use)."""
        return getattr(importlib.import_module("keras_mbv2.models"), self.builder_name)


NETWORKS: dict[str, Network] = {
    n.name: n
    for n in (
        Network("mobilenet_v2", "MobileNetV2", "alpha", 0.35, memory_splits=True,
                paper_rows=(("MobileNetV2", {}), ("MobileNetV2 (1.4)", {"alpha": 1.4}))),
        Network("mobilenet_v1", "MobileNetV1", "alpha", 0.25, paper_rows=(("MobileNetV1", {}),)),
        Network("shufflenet_v1", "ShuffleNetV1", "scale", 0.5, groups=3,
                paper_rows=(("ShuffleNet (1.5)", {"groups": 3, "scale": 1.5}),
                            ("ShuffleNet (x2)", {"groups": 3, "scale": 2.0}))),
        Network("nasnet", "NASNetMobile", None, None, paper_rows=(("NASNet-A", {}),)),
    )
}


def network(name: str) -> Network:
    """The table row of `name`; raises naming `network` and the choices."""
    if name not in NETWORKS:
        raise ValueError(f"`network` must be one of {tuple(NETWORKS)}. Received: network={name!r}")
    return NETWORKS[name]


def build_network(name: str, input_shape: tuple[int, int, int], width: float | None = None,
                  groups: int | None = None, classes: int = 1000, memory_splits: Any = None,
                  **kwargs: Any) -> keras.Model:
    """Build network `name` with the knobs every family shares; `kwargs` go to its builder.

    `width` is the family's width multiplier (MobileNets' `alpha`, ShuffleNet's `scale`; 1.0 when None).
    """
    spec = network(name)
    if width is not None:
        if spec.width_arg is None:
            raise ValueError(
                f"`width` does not apply to {name} (it has no width multiplier). Received: width={width!r}")
        kwargs[spec.width_arg] = width
    if groups is not None:
        if spec.groups is None:
            raise ValueError(
                f"`groups` applies to shufflenet_v1 only. Received: groups={groups!r} with network={name!r}")
        kwargs["groups"] = groups
    if memory_splits is not None:
        if not spec.memory_splits:
            raise ValueError(f"`memory_splits` applies to mobilenet_v2 only. Received: memory_splits={memory_splits!r} "
                             f"with network={name!r}")
        kwargs["memory_splits"] = memory_splits
    return spec.builder(input_shape=input_shape, classes=classes, **kwargs)
