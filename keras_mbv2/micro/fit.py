"""Fit a model into a RAM budget on TensorFlow Lite Micro by splitting its inverted residual blocks.

Paper Section 5.1: an inverted residual block computed in t channel slices of its expansion never holds the
expanded tensor whole. `fit_ram` picks, per block, the smallest split whose operators fit the budget, and
checks the result on the TFLM host runtime:

1. convert the model as it is (int8) and measure TFLM's arena: activations ("head") + persistent data;
2. budget for activations = RAM - persistent data - `ARENA_MARGIN`;
3. `plan_memory_splits` picks the splits from the profiler's operator-level liveness;
4. convert the split model, measure again; if more slices added persistent data beyond the budget,
   lower the activation budget by the excess and repeat;
5. below the floor no split can lower (the operator on the stem's output), run the early stage in spatial
   patches (`keras_mbv2.tflite.patches`, MCUNetV2): the floor's operator then never sees its whole input. The
   blocks after (or inside) the stage are split to lower the larger model's activations, round by round, and the
   device's whole RAM (the input band + the arena both models share and a stage buffer, or an arena each) is
   measured on the TFLM host runtime each time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np

from ..checks import check_positive_int
from ..model_checks import check_model_and_data
from ..models.memory_split import (
    inverted_residual_blocks,
    memory_splits_of,
    plan_memory_splits,
    split_floor,
    split_model,
)
from ..profiler import profile
from ..quantization import to_tflite
from ..tflite import ArenaUse, arena_use, run_tflm, tflite_macs
from ..tflite.flatbuffer import parse_model
from ..tflite.patches import PatchedModel, faster_plan, patch_model
from ..tflite.segments import SegmentedModel, segment_model, segment_plans
from .emitter import ARENA_MARGIN, emitted_ram, tensor_arena_size

MAX_ROUNDS = 4
PATCH_ROUNDS = 6  # conversions search_patches may try


class RamNotMet(ValueError):
    """`fit_ram` found no plan within `ram_bytes`. Carries what was measured: the model as built (`before`), the
    least RAM a plan needed (`need`, with margins, None when refused before any plan), and whether TFLM's
    persistent data alone is over the budget (`persistent`: then no input size of the same network fits either,
    since persistent data does not shrink with the input)."""

    def __init__(self, message: str, before: ArenaUse, need: int | None = None, persistent: bool = False):
        super().__init__(message)
        self.before, self.need, self.persistent = before, need, persistent


@dataclass
class FitResult:
    """What `fit_ram` found (paper Section 5.1, then patches): the split model and its int8 conversion, each block's
    channel splits, TFLM's arena before and after, the multiply-adds before and after, the RAM budget asked for, and
    the patch plan when splits alone did not fit. `device_ram_bytes` is what the device needs; `invoke` runs the
    plan on the TFLM host runtime as the firmware does."""

    model: keras.Model  # the split model (the input model when it already fits)
    tflite: bytes  # its int8 conversion
    memory_splits: dict[str, int]  # per block; 1 = unsplit
    before: ArenaUse
    after: ArenaUse
    macs_before: int
    macs_after: int
    ram_bytes: int
    patched: PatchedModel | None = None  # the patch plan, when channel splits alone could not fit
    segmented: SegmentedModel | None = None  # `tflite` (or, patched, its rest model) in segments (`segments=True`)

    @property
    def device_ram_bytes(self) -> int:
        """Everything the device needs for inference, measured on the TFLM host runtime: the arena (the input
        frame is its input tensor) or, patched, the input band and the arenas and buffers of the scheme chosen
        (`PatchedModel.shared`); in segments, the largest segment's arena and the boundary buffer
        (`segmented_ram`)."""
        if self.segmented is not None:
            return segmented_ram(self.segmented, self.patched)
        return self.patched.device_ram_bytes if self.patched else self.after.total

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """int8 inputs (N, H, W, C) -> int8 outputs on the TFLM host runtime, exactly as the firmware computes
        them (patch by patch when patched, segment by segment when segmented); equal, bit for bit, to
        `run_tflm(self.tflite, x)`."""
        x = np.asarray(x)
        if self.patched is not None:
            if self.segmented is not None:
                from ..tflite.patches import run_patched

                return run_patched(self.patched.patch, self.patched.rest, self.patched.plan, x,
                                   segments=self.segmented)[0]
            return self.patched.invoke(x)
        return self.segmented.invoke(x) if self.segmented is not None else run_tflm(self.tflite, x)[0]

    def __str__(self) -> str:
        split = {name: s for name, s in self.memory_splits.items() if s > 1}
        rows = [
            f"fit-ram {self.ram_bytes:,} B (kTensorArenaSize = measured arena + margin, rounded to 16 B)",
            f"{'':<8}{'arena':>12}{'activations':>14}{'persistent':>13}{'MACs':>15}",
            f"{'before':<8}{self.before.total:>12,}{self.before.head:>14,}{self.before.tail:>13,}{self.macs_before:>15,}",
            f"{'after':<8}{self.after.total:>12,}{self.after.head:>14,}{self.after.tail:>13,}"
            + ("" if self.patched else f"{self.macs_after:>15,}"),
            "splits  " + (", ".join(f"{name}={s}" for name, s in split.items()) if split else "none needed"),
        ]
        if self.patched is not None:
            p = self.patched
            rows[4:4] = [
                f"{'patch':<8}{p.patch_arena.total:>12,}{p.patch_arena.head:>14,}{p.patch_arena.tail:>13,}"
                f"{'x' + str(p.plan.patches):>15}",
                f"{'rest':<8}{p.rest_arena.total:>12,}{p.rest_arena.head:>14,}{p.rest_arena.tail:>13,}"
                f"{self.macs_after:>15,}",
            ]
            rows += [
                f"patches {p.plan.describe()}",
                f"device  {p.band_bytes:,} B input band ({p.plan.input[0].size} rows) + {p.describe_arenas()} = "
                f"{p.device_ram_bytes:,} B RAM (emitted with margins: {emitted_ram(p):,} B; with the whole "
                f"{p.frame_bytes:,} B frame in RAM: {p.whole_frame_ram_bytes:,} B)",
            ]
        if self.segmented is not None:
            rows += [f"segments {'the rest model in ' if self.patched else ''}{self.segmented.describe()}",
                     f"device  {self.device_ram_bytes:,} B RAM in segments (with margins: "
                     f"{segmented_ram(self.segmented, self.patched, margins=True):,} B)"]
        return "\n".join(rows)


def segmented_ram(segmented: SegmentedModel, patched: PatchedModel | None = None, margins: bool = False) -> int:
    """Device RAM of a plan in segments (`keras_mbv2.tflite.segments`): one arena every model runs in, in turn (the
    largest segment's; patched, the patch model runs in it first), and the boundary buffer (patched, it first holds
    the stage output the patches fill); patched, plus the input band. `margins`: the arena as emitted
    (`tensor_arena_size`)."""
    return _segmented_scheme(segmented.arena_bytes, segmented.boundary_bytes, patched, margins)


def _segmented_scheme(arena: int, boundary: int, patched: PatchedModel | None, margins: bool) -> int:
    """`segmented_ram` from the largest segment's arena and the boundary buffer, measured or estimated."""
    arena = arena if patched is None else max(arena, patched.patch_arena.total)
    arena = tensor_arena_size(arena) if margins else arena
    if patched is None:
        return arena + boundary
    return patched.band_bytes + arena + max(patched.stage_bytes, boundary)


def fit_segments(data: bytes, ram_bytes: int, log: Callable[[str], None],
                 patched: PatchedModel | None = None) -> SegmentedModel | None:
    """The fewest segments of `data` (patched: of its rest model) whose device RAM, with margins, fits `ram_bytes`:
    the planner's estimates ranked by segments, each measured before it is taken. None when none fits. The fewest
    segments are the fastest plan: every operator and channel is allocated in exactly one segment, so each more
    costs about `segments.ALLOCATE_COST[core]["model"]` instructions per inference."""
    source = patched.rest if patched is not None else data
    for plan in segment_plans(source)[1:]:
        estimate = _segmented_scheme(plan.arena_estimate, plan.boundary_bytes, patched, margins=True)
        if estimate > ram_bytes:
            continue
        segmented = segment_model(source, plan.cuts)
        need = segmented_ram(segmented, patched, margins=True)
        log(f"segments {len(segmented.segments)}: device RAM {segmented_ram(segmented, patched):,} B measured "
            f"({need:,} B with margins; estimated {estimate:,} B)")
        if need <= ram_bytes:
            return segmented
    return None


def fit_ram(model: keras.Model, ram_bytes: int, representative_data: Any,
            log: Callable[[str], None] | None = None, converted: bytes | None = None,
            segments: bool = False) -> FitResult:
    """Split `model`'s inverted residual blocks just enough that its int8 TFLM arena fits `ram_bytes`.

    Args:
        model: a functional Keras 3 model with `InvertedResidual` blocks (e.g. `keras_mbv2.MobileNetV2`),
            float, unsplit or already split.
        ram_bytes: RAM for inference: the tensor arena (the `kTensorArenaSize` the emitted settings will hold)
            or, run in patches, the arena(s), the stage buffer if any and the input band
            (`FitResult.device_ram_bytes` plus the emitted margins).
        representative_data: calibration images for the int8 conversion (post-training quantization; for
            QAT, run `quantize_aware` on the returned `model`).
        converted: `model`'s int8 conversion with `representative_data`, when already made (saves one).
        segments: also consider segmented execution (`keras_mbv2.tflite.segments`): where channel splits (then
            patches) do not fit, the model (then the patched model's rest) in the fewest segments that fit;
            `emit(result.patched or result.tflite, ..., segments=result.segmented)` writes them for firmware/app
            (`keras-mbv2 micro --fit-ram BYTES --segments`), `FitResult.invoke` runs the same loop on the host
            runtime. Off by default: each segment costs an `AllocateTensors` on every inference
            (`segments.ALLOCATE_COST`).

    Raises `RamNotMet` (a ValueError naming `ram_bytes`) when no plan fits, with what was measured.
    """
    check_positive_int("ram_bytes", ram_bytes)
    check_model_and_data(model, representative_data, data_arg="`representative_data`")
    log = log or (lambda message: None)
    data = converted if converted is not None else to_tflite(model, representative_data)
    before = arena_use(data)
    macs_before = tflite_macs(data)
    log(f"as built: arena {before.total:,} B ({before.head:,} B activations)")
    if not segments:  # segments lower the persistent data that is otherwise a floor
        _refuse_below_the_floor(model, ram_bytes, before)
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
            why = (f"{exc} With TFLM's persistent data ({before.tail:,} B unsplit, more with more operators) and the "
                   f"margin, one arena needs at least {tensor_arena_size(floor + before.tail):,} B")
            segmented = fit_segments(data, ram_bytes, log) if segments else None
            if segmented is not None:
                return FitResult(current, data, splits, before, after, macs_before, tflite_macs(data), ram_bytes,
                                 segmented=segmented)
            log("below the channel-split floor: patch-based inference")
            # the as-built conversion when no split was tried yet; the search converts its own splits
            return _fit_patches(model, ram_bytes, representative_data, log, before, macs_before,
                                data if current is model else None, why, segments)
        if plan == splits and current is not model:
            break  # the estimate cannot improve: the planner's placement needs more than the estimate
        current, splits = split_model(model, plan), plan
        data = to_tflite(current, representative_data)
        after = arena_use(data)
        log(f"splits {_describe(plan)}: arena {after.total:,} B ({after.head:,} B activations)")
        budget -= max(0, tensor_arena_size(after.total) - ram_bytes)
    segmented = fit_segments(data, ram_bytes, log) if segments and tensor_arena_size(after.total) > ram_bytes \
        else None
    if segmented is not None:
        return FitResult(current, data, splits, before, after, macs_before, tflite_macs(data), ram_bytes,
                         segmented=segmented)
    if tensor_arena_size(after.total) > ram_bytes:
        raise RamNotMet(
            f"`ram_bytes` could not be met: the closest split ({_describe(splits)}) needs a "
            f"{tensor_arena_size(after.total):,} B arena. Received: ram_bytes={ram_bytes!r}",
            before, tensor_arena_size(after.total))
    return FitResult(current, data, splits, before, after, macs_before, tflite_macs(data), ram_bytes)


def _refuse_below_the_floor(model: keras.Model, ram_bytes: int, before: ArenaUse) -> None:
    """Refuse at once, after one conversion, a budget below what no split or patch plan can lower: TFLM's
    persistent data and the arena's margin, before any activation."""
    floor = tensor_arena_size(before.tail)
    if ram_bytes >= floor:
        return
    layer_bytes, layer = split_floor(model) if inverted_residual_blocks(model) else (before.head, "the model")
    raise RamNotMet(
        f"`ram_bytes` is below what the model needs on TFLM, whatever the plan: TFLM's persistent data "
        f"({before.tail:,} B, measured: tensor structs and every operator's per-channel quantization data) and the "
        f"arena's {ARENA_MARGIN:,} B margin take {floor:,} B before any activation, and neither channel splits nor "
        f"patches lower them. With its activations, one arena needs at least "
        f"{tensor_arena_size(before.tail + layer_bytes):,} B ({layer!r} needs {layer_bytes:,} B and cannot be "
        f"split); patch-based inference needs less, the input band (rows of the frame) and the patch and rest "
        f"models' activations on top of {floor:,} B, found by measuring. Received: ram_bytes={ram_bytes!r}",
        before, persistent=True)


def _describe(plan: dict[str, int]) -> str:
    split = {name: s for name, s in plan.items() if s > 1}
    return ", ".join(f"{name}={s}" for name, s in split.items()) or "none"


def _stage_blocks(model: keras.Model, data: bytes, cut: int) -> set[str]:
    """Names of the inverted residual blocks whose operators lie in the patch stage (the first `cut` operators),
    read from the converter's tensor names, which carry the Keras layer names."""
    graph = parse_model(data).subgraphs[0]
    names = " ".join(
        (graph.tensors[t].name or b"").decode(errors="replace") for op in graph.operators[:cut] for t in op.outputs)
    return {b.name for b in inverted_residual_blocks(model) if re.search(rf"\b{re.escape(b.name)}(_|/)", names)}


def _fit_patches(model: keras.Model, ram_bytes: int, representative_data: Any, log: Callable[[str], None],
                 before: ArenaUse, macs_before: int, data: bytes | None, why: str,
                 segments: bool = False) -> FitResult:
    """Patch the early stage; split the blocks after it, halving their activation budget each round, until the
    device's RAM fits `ram_bytes` (or no round improves); then, with `segments`, the rest model in segments."""
    if ram_bytes < before.tail and not segments:  # what no patch plan lowers: the per-channel quantization data
        raise RamNotMet(
            f"`ram_bytes` is below what the model needs on TFLM: {why}; run in patches, it still needs TFLM's "
            f"persistent data ({before.tail:,} B). Received: ram_bytes={ram_bytes!r}", before, persistent=True)
    best = search_patches(model, representative_data, data, ram_bytes, log)
    need, current, splits, data, patched = best
    segmented = fit_segments(data, ram_bytes, log, patched) if segments and need > ram_bytes else None
    if segmented is not None:
        return FitResult(current, data, splits, before, arena_use(data), macs_before, patched.plan.macs, ram_bytes,
                         patched, segmented)
    if need > ram_bytes:
        raise RamNotMet(
            f"`ram_bytes` is below what the model needs on TFLM: {why}; run in patches, the device needs "
            f"{need:,} B with margins (input band {patched.band_bytes:,} B + {patched.describe_arenas()}, with "
            f"splits {_describe(splits)}). Received: ram_bytes={ram_bytes!r}", before, need)
    return FitResult(current, data, splits, before, arena_use(data), macs_before, patched.plan.macs, ram_bytes,
                     patched)


def search_patches(model: keras.Model, representative_data: Any, data: bytes | None = None, ram_bytes: int = 0,
                   log: Callable[[str], None] | None = None) -> tuple[int, keras.Model, dict[str, int], bytes,
                                                                        PatchedModel]:
    """The patch plan and splits that need the least device RAM, searched in up to `PATCH_ROUNDS` conversions:
    (RAM as emitted, split model, splits, its int8 model, the patched model). Stops early once `ram_bytes` fits
    or a round does not improve; within `ram_bytes`, the plan then taken is the one predicted to run fastest
    (`patches.faster_plan`) that still fits. `data`: `model` already converted."""
    log = log or (lambda message: None)
    data = data if data is not None else to_tflite(model, representative_data)
    current, splits = model, memory_splits_of(model)
    best = None
    for _ in range(PATCH_ROUNDS):
        patched = patch_model(data)
        need = emitted_ram(patched)
        best_so_far = need if best is None else min(need, best[0])
        log(f"patches {patched.plan.grid[0]}x{patched.plan.grid[1]} after {patched.plan.cut} operators, splits "
            f"{_describe(splits)}: device RAM {patched.device_ram_bytes:,} B measured ({need:,} B emitted; best so "
            f"far {best_so_far:,} B" + (f", target {ram_bytes:,} B)" if ram_bytes else ")"))
        if best is not None and need >= best[0]:
            break
        best = (need, current, splits, data, patched)
        if need <= ram_bytes or not any(b.expansion > 1 for b in inverted_residual_blocks(model)):
            break
        # halve the larger model's activations (a shared arena holds the larger), not below the smaller's; only
        # that model's blocks change (each split adds persistent data): blocks after the stage at the rest model's
        # budget, or blocks inside it at the patch model's, scaled up by how much larger the stage blocks'
        # whole-frame peaks are than the patch model's (measured, so the border masks' copies are counted)
        patch_head, rest_head = patched.patch_arena.head, patched.rest_arena.head
        target = max(min(patch_head, rest_head), max(patch_head, rest_head) // 2)
        inside = _stage_blocks(model, data, patched.plan.cut)
        if patch_head > rest_head:
            peaks = [layer.operator_bytes for layer in profile(current).layers if layer.name in inside]
            budget = max(1, int(target * max(peaks, default=0) / patch_head))
            plan = plan_memory_splits(model, budget, best_effort=True)
            plan = {name: plan[name] if name in inside else s for name, s in splits.items()}
        else:
            plan = plan_memory_splits(model, max(1, target), best_effort=True)
            plan = {name: s if name in inside else plan[name] for name, s in splits.items()}
        if plan == splits:
            break
        current, splits = split_model(model, plan), plan
        data = to_tflite(current, representative_data)
    need, current, splits, data, patched = best
    if ram_bytes and need <= ram_bytes:  # within the budget: the plan predicted fastest that stays within it
        faster = faster_plan(patched, ram_bytes - (need - patched.device_ram_bytes))
        if faster is not patched and emitted_ram(faster) <= ram_bytes:
            log(f"patches {faster.plan.grid[0]}x{faster.plan.grid[1]} after {faster.plan.cut} operators: device RAM "
                f"{faster.device_ram_bytes:,} B measured ({emitted_ram(faster):,} B emitted), predicted "
                f"{faster.plan.stage_instructions() / patched.plan.stage_instructions():.2f}x the instructions of the "
                f"least-RAM plan's patch stage")
            best = (emitted_ram(faster), current, splits, data, faster)
    return best
