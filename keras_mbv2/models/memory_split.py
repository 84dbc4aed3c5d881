"""Memory-efficient inference (paper Section 5.1): inverted residual blocks computed in channel slices.

`InvertedResidual(memory_splits=s)` computes its expansion in s slices, so the wide expanded tensor never
exists whole. This module applies that to whole models:

- `resolve_memory_splits`: one rule turning the user's `memory_splits` (an int for every expanding block,
  a sequence with one entry per block, or a mapping of block names) into a number per block;
- `split_model`: rewrites a trained model into its split form, weights included (same function, same
  multiply-adds; outputs equal within float rounding);
- `plan_memory_splits`: the smallest split per block whose operator-level peak activation memory (the
  profiler's TFLM-style estimate) fits a budget; `split_floor` is the least any split can reach.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import numpy as np

from ..layers import InvertedResidual
from ..layers.inverted_residual import slice_sizes

MemorySplits = int | Sequence[int] | Mapping[str, int] | None


def resolve_memory_splits(memory_splits: MemorySplits, blocks: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Split count per block name for `blocks` = [(name, expansion), ...] in network order.

    - None or 1: every block unsplit;
    - int s: every block with an expansion (t > 1) computed in s slices, the others unsplit;
    - sequence: one entry per block, in order;
    - mapping: block name -> s; blocks not named stay unsplit.
    """
    names = [name for name, _ in blocks]
    if memory_splits is None:
        return {name: 1 for name in names}
    if isinstance(memory_splits, Mapping):
        unknown = sorted(set(memory_splits) - set(names))
        if unknown:
            raise ValueError(
                f"`memory_splits` names blocks the model does not have: {unknown} (blocks: {names[0]} ... "
                f"{names[-1]}). Received: memory_splits={dict(memory_splits)!r}"
            )
        resolved = {name: memory_splits.get(name, 1) for name in names}
    elif isinstance(memory_splits, Sequence) and not isinstance(memory_splits, str):
        if len(memory_splits) != len(names):
            raise ValueError(
                f"`memory_splits` must have one entry per inverted residual block ({len(names)}). "
                f"Received: memory_splits={list(memory_splits)!r}"
            )
        resolved = dict(zip(names, memory_splits))
    else:
        resolved = {name: (memory_splits if t > 1 else 1) for name, t in blocks}
    for (name, t), s in zip(blocks, resolved.values()):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ValueError(f"`memory_splits` must be positive integers. Received: memory_splits={memory_splits!r}")
        if t == 1 and s != 1:
            raise ValueError(
                f"`memory_splits` slices the expansion, and block {name!r} has expansion 1. "
                f"Received: memory_splits={memory_splits!r}"
            )
    return {name: int(s) for name, s in resolved.items()}


def inverted_residual_blocks(model: keras.Model) -> list[InvertedResidual]:
    """The model's top-level `InvertedResidual` blocks, in layer order."""
    return [layer for layer in model.layers if isinstance(layer, InvertedResidual)]


def memory_splits_of(model: keras.Model) -> dict[str, int]:
    """The current split count of every inverted residual block."""
    return {block.name: block.memory_splits for block in inverted_residual_blocks(model)}


def split_model(model: keras.Model, memory_splits: MemorySplits) -> keras.Model:
    """`model` with its inverted residual blocks computed in `memory_splits` slices, weights carried over.

    Works in any direction (unsplit -> split, split -> other split, split -> unsplit with 1) on a functional
    model whose blocks are `InvertedResidual` layers (ours, or a user's model built from them). Every other
    layer keeps its weights. The result computes the same function as `model` in inference and training.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise ValueError(f"`model` must be a functional Keras model. Received: model={model!r}")
    blocks = inverted_residual_blocks(model)
    if not blocks:
        raise ValueError(f"`model` has no InvertedResidual blocks to split. Received: model={model.name!r}")
    resolved = resolve_memory_splits(memory_splits, [(b.name, b.expansion) for b in blocks])
    for block in blocks:
        slice_sizes(sum(block.slice_channels), resolved[block.name])  # raises when s > expanded channels
    config = model.get_config()
    for layer_config in config["layers"]:
        if layer_config["config"].get("name") in resolved:
            layer_config["config"]["memory_splits"] = resolved[layer_config["config"]["name"]]
    new = type(model).from_config(config)
    for layer in model.layers:
        target = new.get_layer(layer.name)
        if isinstance(layer, InvertedResidual):
            target.set_full_weights(layer.full_weights())
        elif layer.weights:
            target.set_weights(layer.get_weights())
    return new


def split_floor(model: keras.Model, bytes_per_activation: int = 1) -> tuple[int, str]:
    """(bytes, layer): the operator-level peak no split can lower, set by the largest operator outside the
    splittable (expanding) blocks, e.g. MobileNetV2's first block, whose depthwise runs on the stem output."""
    from ..profiler import profile

    return _floor(model, profile(model, bytes_per_activation).layers)


def _floor(model: keras.Model, layers: list[Any]) -> tuple[int, str]:
    splittable = {b.name for b in inverted_residual_blocks(model) if b.expansion > 1}
    fixed = [layer for layer in layers if layer.name not in splittable]
    if not fixed:
        return 0, ""
    worst = max(fixed, key=lambda layer: layer.operator_bytes)
    return worst.operator_bytes, worst.name


BEST_EFFORT_SPLITS = 16


def plan_memory_splits(model: keras.Model, activation_budget: int, bytes_per_activation: int = 1,
                       max_splits: int | None = None, best_effort: bool = False) -> dict[str, int]:
    """The smallest split per block such that the block's operator-level peak fits `activation_budget`.

    With `best_effort`, a block that cannot fit gets the split with its smallest peak (among up to
    `BEST_EFFORT_SPLITS` slices unless `max_splits`) instead of an error, and the floor is not checked
    (patch-based inference runs the floor's layer one patch at a time).

    A block's peak with s slices is estimated with the profiler's operator-level liveness (BN and
    activations fused into the operator before them, as the TFLite converter does; this equals the head
    TFLM's planner reports for MobileNetV2). Blocks that fit unsplit get 1, whatever `model` has now.
    Raises ValueError naming the layer and the bytes it needs when the budget is below the floor
    (`split_floor`) or a block cannot fit even with one channel per slice (or `max_splits`).
    """
    from ..profiler import profile

    blocks = inverted_residual_blocks(model)
    if not blocks:
        raise ValueError(f"`model` has no InvertedResidual blocks to split. Received: model={model.name!r}")
    layers = profile(model, bytes_per_activation).layers
    floor, where = _floor(model, layers)
    if floor > activation_budget and not best_effort:
        raise ValueError(
            f"Layer {where!r} needs {floor:,} B of activations and cannot be split, so no split fits an "
            f"activation budget of {activation_budget:,} B."
        )
    by_name = {block.name: block for block in blocks}
    plan = {}
    for layer in layers:
        block = by_name.get(layer.name)
        if block is None or block.expansion == 1:
            if block is not None:
                plan[block.name] = 1
            continue
        outer = layer.operator_bytes - layer.inner_operator_bytes  # other tensors alive meanwhile
        limit = min(sum(block.slice_channels), max_splits or sum(block.slice_channels))
        if best_effort:  # each split is a profiled probe model; past 16 slices the gain is small, the cost is not
            limit = min(limit, max_splits or BEST_EFFORT_SPLITS)
        best = None
        for s in range(1, limit + 1):
            inner = (layer.inner_operator_bytes if s == block.memory_splits
                     else _inner_operator_bytes(block, s, bytes_per_activation))
            if best is None or outer + inner < best[0]:
                best = (outer + inner, s)
            if outer + inner <= activation_budget:
                plan[block.name] = s
                break
        else:
            if best_effort:
                plan[block.name] = best[1]
                continue
            raise ValueError(
                f"Block {block.name!r} needs {outer + inner:,} B of activations even in {limit} slices, more "
                f"than the activation budget of {activation_budget:,} B."
            )
    return plan


def _inner_operator_bytes(block: InvertedResidual, splits: int, bytes_per_activation: int) -> int:
    """Operator-level peak of `block` alone (its input and output included) computed in `splits` slices."""
    from ..profiler import profile

    inputs = keras.Input(batch_shape=block.input.shape)
    probe = InvertedResidual.from_config({**block.get_config(), "memory_splits": splits})
    return profile(keras.Model(inputs, probe(inputs)), bytes_per_activation).layers[0].inner_operator_bytes
