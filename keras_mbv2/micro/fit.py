"""Fit a model into a RAM budget on TensorFlow Lite Micro by splitting its inverted residual blocks.

Paper Section 5.1: an inverted residual block computed in t channel slices of its expansion never holds the
expanded tensor whole. `fit_ram` picks, per block, the smallest split whose operators fit the budget, and
checks the result on the TFLM host runtime:

1. convert the model as it is (int8) and measure TFLM's arena: activations ("head") + persistent data;
2. budget for activations = RAM - persistent data - `ARENA_MARGIN`;
3. `plan_memory_splits` picks the splits from the profiler's operator-level liveness;
4. convert the split model, measure again; if more slices added persistent data beyond the budget,
   lower the activation budget by the excess and repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras

from ..checks import check_positive_int
from ..models.memory_split import memory_splits_of, plan_memory_splits, split_floor, split_model
from ..quantization import to_tflite
from ..tflite import ArenaUse, arena_use, tflite_macs
from .emitter import tensor_arena_size

MAX_ROUNDS = 4


@dataclass
class FitResult:
    model: keras.Model  # the split model (the input model when it already fits)
    tflite: bytes  # its int8 conversion
    memory_splits: dict[str, int]  # per block; 1 = unsplit
    before: ArenaUse
    after: ArenaUse
    macs_before: int
    macs_after: int
    ram_bytes: int

    def __str__(self) -> str:
        split = {name: s for name, s in self.memory_splits.items() if s > 1}
        rows = [
            f"fit-ram {self.ram_bytes:,} B (kTensorArenaSize = measured arena + margin, rounded to 16 B)",
            f"{'':<8}{'arena':>12}{'activations':>14}{'persistent':>13}{'MACs':>15}",
            f"{'before':<8}{self.before.total:>12,}{self.before.head:>14,}{self.before.tail:>13,}{self.macs_before:>15,}",
            f"{'after':<8}{self.after.total:>12,}{self.after.head:>14,}{self.after.tail:>13,}{self.macs_after:>15,}",
            "splits  " + (", ".join(f"{name}={s}" for name, s in split.items()) if split else "none needed"),
        ]
        return "\n".join(rows)


def fit_ram(model: keras.Model, ram_bytes: int, representative_data: Any,
            log: Callable[[str], None] | None = None) -> FitResult:
    """Split `model`'s inverted residual blocks just enough that its int8 TFLM arena fits `ram_bytes`.

    Args:
        model: a functional Keras 3 model with `InvertedResidual` blocks (e.g. `keras_mbv2.MobileNetV2`),
            float, unsplit or already split.
        ram_bytes: RAM for the tensor arena (the `kTensorArenaSize` the emitted settings will hold).
        representative_data: calibration images for the int8 conversion (post-training quantization; for
            QAT, run `quantize_aware` on the returned `model`).

    Raises ValueError naming `ram_bytes` when no split fits: the layer that cannot be split needs more.
    """
    check_positive_int("ram_bytes", ram_bytes)
    log = log or (lambda message: None)
    data = to_tflite(model, representative_data)
    before = arena_use(data)
    macs_before = tflite_macs(data)
    log(f"as built: arena {before.total:,} B ({before.head:,} B activations)")
    current, splits = model, memory_splits_of(model)
    after = before
    budget = ram_bytes - tensor_arena_size(before.tail)  # what the activations may take
    for _ in range(MAX_ROUNDS):
        if tensor_arena_size(after.total) <= ram_bytes:
            break
        try:
            plan = plan_memory_splits(model, budget)
        except ValueError as exc:
            floor = split_floor(model)[0]
            raise ValueError(
                f"`ram_bytes` is below what the model needs on TFLM: {exc} With TFLM's persistent data "
                f"({before.tail:,} B unsplit, more with more operators) and the margin, the arena needs at least "
                f"{tensor_arena_size(floor + before.tail):,} B. Received: ram_bytes={ram_bytes!r}"
            ) from None
        if plan == splits and current is not model:
            break  # the estimate cannot improve: the planner's placement needs more than the estimate
        current, splits = split_model(model, plan), plan
        data = to_tflite(current, representative_data)
        after = arena_use(data)
        log(f"splits {_describe(plan)}: arena {after.total:,} B ({after.head:,} B activations)")
        budget -= max(0, tensor_arena_size(after.total) - ram_bytes)
    if tensor_arena_size(after.total) > ram_bytes:
        raise ValueError(
            f"`ram_bytes` could not be met: the closest split ({_describe(splits)}) needs a "
            f"{tensor_arena_size(after.total):,} B arena. Received: ram_bytes={ram_bytes!r}"
        )
    return FitResult(current, data, splits, before, after, macs_before, tflite_macs(data), ram_bytes)


def _describe(plan: dict[str, int]) -> str:
    split = {name: s for name, s in plan.items() if s > 1}
    return ", ".join(f"{name}={s}" for name, s in split.items()) or "none"
