"""Segmented execution on stock TFLM: an int8 model cut in the flatbuffer into consecutive segments, each allocated
and run alone in one arena, gives the whole model's outputs bit for bit, and the device RAM it reports is the
largest segment's measured arena + the boundary buffer (the largest set of tensors crossing a cut).

MobileNetV2 0.35 and MobileNetV1 0.25 at 64x64x3 on the digits, batch norms re-estimated so that every image scores
differently; cuts between blocks, inside an inverted residual (its input crosses the cut beside the branch), and
after a patch stage (the rest model of `patch_model`)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from harness import DIGITS64, digits64_int8

import keras_mbv2 as K
from keras_mbv2.datasets import load_digits
from keras_mbv2.models import recalibrate_batch_norms
from keras_mbv2.quantization import run_tflm
from keras_mbv2.tflite import arena_use, parse_model, quantize_input, require_int8
from keras_mbv2.tflite.flatbuffer import opcode_names
from keras_mbv2.tflite.runtime import _model_up_to
from keras_mbv2.tflite.segments import cut_model, run_segments, segment_arena, segment_model, segment_plans


@pytest.fixture(scope="module")
def digits():
    return load_digits(image_size=64, channels=3)


@pytest.fixture(scope="module")
def models(digits, tmp_path_factory):
    return {network: digits64_int8(tmp_path_factory, network, digits) for network in DIGITS64}


@pytest.fixture(scope="module")
def frames(models, digits):
    frames = quantize_input(digits.x_test[:3], require_int8(models["MobileNetV2"]))
    return frames


def _kinds(data):
    model = parse_model(data)
    names = opcode_names(model)
    return [names[op.opcodeIndex] for op in model.subgraphs[0].operators]


def _inside_a_residual(data):
    """The operator after the first inverted residual's expansion whose block ends in an ADD: cutting there leaves
    the block's input and the expanded tensor both crossing."""
    kinds = _kinds(data)
    add = kinds.index("ADD")
    return add - 2  # ... CONV (expand), DEPTHWISE, | CONV (project), ADD


# (network, how to cut: a function of the model's operator kinds)
CUTS = [
    ("MobileNetV2", "halves", lambda data: [len(_kinds(data)) // 2]),
    ("MobileNetV2", "inside a residual", lambda data: [_inside_a_residual(data)]),
    ("MobileNetV2", "every third operator", lambda data: list(range(3, len(_kinds(data)), 3))),
    ("MobileNetV1", "every fourth operator", lambda data: list(range(4, len(_kinds(data)), 4))),
]


@pytest.mark.parametrize("network,how,cuts", CUTS, ids=[f"{c[0]}-{c[1]}" for c in CUTS])
def test_segments_give_the_whole_models_outputs_bit_for_bit(network, how, cuts, models, frames):
    data = models[network]
    whole = run_tflm(data, frames)[0]
    assert len({row.tobytes() for row in whole}) == len(whole)  # every image scores differently
    segmented = segment_model(data, cuts(data))
    outputs, report = run_segments(segmented, frames)
    np.testing.assert_array_equal(outputs, whole)
    # the device RAM is what the arenas of the loop's own interpreters and the buffer add up to
    arenas = [segment_arena(part).total for part in report.split("[segment ")[1:]]
    assert len(arenas) == len(segmented.segments) and None not in arenas, report[:2000]
    assert segmented.device_ram_bytes == max(arenas) + segmented.boundary_bytes
    # and each segment keeps only its own persistent data
    assert max(s.arena.tail for s in segmented.segments) < arena_use(data).tail


def test_a_cut_inside_a_residual_carries_both_tensors_in_the_boundary_buffer(models):
    data = models["MobileNetV2"]
    cut = _inside_a_residual(data)
    first, second = cut_model(data, [cut])
    graph = parse_model(data).subgraphs[0]
    assert len(second.inputs) == 2 and set(second.inputs) == set(first.outputs)  # the block's input and its branch
    sizes = [int(np.prod(graph.tensors[t].shape)) for t in second.inputs]
    assert segment_model(data, [cut]).boundary_bytes == sum(sizes)


def test_segments_after_a_patch_stage_give_the_whole_models_outputs(models, frames):
    from keras_mbv2.tflite.patches import patch_model, stage_cuts

    data = models["MobileNetV2"]
    cut, stage = stage_cuts(data)[1]
    patched = patch_model(data, cut, (2, 2))
    stage_out = run_tflm(_model_up_to(data, cut - 1), frames)[0]
    np.testing.assert_array_equal(patched.invoke(frames), run_tflm(data, frames)[0])
    segmented = segment_model(patched.rest, segment_plans(patched.rest)[-1].cuts)
    assert len(segmented.segments) > 1
    np.testing.assert_array_equal(segmented.invoke(stage_out), run_tflm(data, frames)[0])


def test_the_planner_finds_cuts_that_need_less_ram_and_estimates_them_within_1_percent(models):
    data = models["MobileNetV2"]
    plans = segment_plans(data)
    assert plans[0].segments == 1 and len(plans) > 1
    assert [p.ram_estimate for p in plans] == sorted((p.ram_estimate for p in plans), reverse=True)
    whole = arena_use(data).total
    for plan in plans:
        measured = segment_model(data, plan.cuts)
        assert abs(plan.ram_estimate - measured.device_ram_bytes) <= 0.01 * measured.device_ram_bytes, plan
    assert segment_model(data, plans[-1].cuts).device_ram_bytes < 0.6 * whole


@pytest.mark.parametrize("cuts", [[0], [5, 3], [10_000], [4, 4]])
def test_cuts_outside_the_model_or_out_of_order_are_one_error_naming_them(cuts, models):
    with pytest.raises(ValueError, match=r"`cuts` must be ascending operator indices"):
        cut_model(models["MobileNetV2"], cuts)


def _arenas(report, part):
    """The arenas TFLM reported for each `[part ...]` section of a run's allocation report (a segment's: the larger of
    its total and the smallest arena it allocates in)."""
    return [segment_arena(section).total for section in report.split(f"[{part}")[1:]]


# (network, RAM budget, what fit_ram needs for it besides segments)
FITS = [
    ("MobileNetV2", 45_000, "patches and splits"),  # 97,024 B patched and split; the rest model in segments
    ("MobileNetV1", 40_000, "nothing else"),  # 62,832 B as built: 32,768 B activations + 30,064 B persistent
]


@pytest.mark.parametrize("network,ram,besides", FITS, ids=[f[0] for f in FITS])
def test_fit_ram_with_segments_fits_below_the_persistent_data_and_its_ram_is_what_the_loop_measures(
        network, ram, besides, digits, frames):
    from keras_mbv2.micro import fit_ram
    from keras_mbv2.micro.fit import segmented_ram
    from keras_mbv2.tflite.patches import run_patched

    model = getattr(K, network)((64, 64, 3), alpha=DIGITS64[network], classes=10, weights=None)
    recalibrate_batch_norms(model, digits.x_train[:256])
    result = fit_ram(model, ram, digits.x_train[:64], segments=True)
    assert result.segmented is not None and len(result.segmented.segments) > 1
    assert (result.patched is not None) == (besides != "nothing else")
    assert segmented_ram(result.segmented, result.patched, margins=True) <= ram < result.before.total
    if result.patched is not None:  # below the persistent data of the whole model alone, which no patch lowers
        assert ram < result.before.tail
    # the firmware's loop on the host: the whole int8 model's outputs, and arenas that add up to the reported RAM
    whole = run_tflm(result.tflite, frames)[0]
    if result.patched is None:
        outputs, report = run_segments(result.segmented, frames)
        assert result.device_ram_bytes == max(_arenas(report, "segment ")) + result.segmented.boundary_bytes
    else:
        p = result.patched
        outputs, report = run_patched(p.patch, p.rest, p.plan, frames, segments=result.segmented)
        arena = max(_arenas(report, "patch model")[0], *_arenas(report, "segment "))
        boundary = max(p.stage_bytes, result.segmented.boundary_bytes)
        assert result.device_ram_bytes == p.band_bytes + arena + boundary
    np.testing.assert_array_equal(outputs, whole)
    np.testing.assert_array_equal(result.invoke(frames), whole)
    assert "segments" in str(result)


HOST_MAIN = r"""
#include <cstdio>
#include <cstring>
#include "model_settings.h"
#include "model_segments.h"
int main() {
  int moves = 0;
  for (int i = 0; i < kSegmentCount; ++i) {
    if (std::memcmp(kSegmentModels[i] + 4, "TFL3", 4) != 0) return 1;
    moves += kSegmentMoveCount[i];
  }
  std::printf("%d %d %d %d\n", kSegmentCount, kBoundaryBytes, kTensorArenaSize, moves);
  return 0;
}
"""


def test_emit_writes_the_segments_the_app_runs_and_they_read_back_to_the_same_outputs(models, frames, digits,
                                                                                      tmp_path):
    """What firmware/app's segment loop reads: the first segment as the model array, the others and the boundary
    buffer's layout as C constants (compiled here on the host: every array a TFLite flatbuffer), the plan as JSON;
    read back from the files, the loop (the host's, over the same layout, moves included: cut inside a residual, the
    block's input passes through a segment) gives the whole model's outputs; one arena for every segment."""
    import subprocess

    from keras_mbv2.micro import emit, parse_c_array, tensor_arena_size
    from keras_mbv2.micro.firmware import read_segments
    from keras_mbv2.tflite import strip_strings

    data = models["MobileNetV2"]
    inside = _inside_a_residual(data)
    segmented = segment_model(data, [inside - 1, inside, inside + 6])
    layout = segmented.buffer_layout()
    assert layout.size == segmented.boundary_bytes
    out = tmp_path / "micro"
    report = emit(data, str(out), segments=segmented, test_images=digits.x_test[:2])
    assert parse_c_array((out / "model_data.cc").read_text()) == strip_strings(segmented.segments[0].model)
    assert report.arena_bytes == tensor_arena_size(segmented.arena_bytes)
    assert report.device_ram_bytes == report.arena_bytes + segmented.boundary_bytes
    assert "4 segment models" in (out / "model_report.txt").read_text()
    back = read_segments(str(out))
    np.testing.assert_array_equal(back.invoke(frames), run_tflm(data, frames)[0])
    (tmp_path / "main.cc").write_text(HOST_MAIN)
    exe = str(tmp_path / "host")
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(out), str(tmp_path / "main.cc"),
                    str(out / "model_segments.cc"), str(out / "model_data.cc"), "-o", exe], check=True)
    printed = subprocess.run([exe], check=True, capture_output=True, text=True).stdout.split()
    assert printed == [str(v) for v in (4, segmented.boundary_bytes, report.arena_bytes,
                                        sum(len(m) for m in layout.moves))]
    with pytest.raises(ValueError, match="holds a segmented model's files"):  # the app would build as segmented
        emit(data, str(out))
    with pytest.raises(ValueError, match="`segments` must be cut from `tflite`"):
        emit(models["MobileNetV1"], str(tmp_path / "other"), segments=segmented)


def test_the_buffer_layout_moves_what_passes_through_to_the_front_and_keeps_every_value():
    """A tensor that passes through a segment while the one before it in the buffer is consumed moves to the front
    (MobileNetV2's chains never need it: a residual's input is always the oldest); followed byte for byte, as
    firmware/app's memmove and memcpy do, every segment reads the values its inputs were written with, and the buffer
    never exceeds the largest set crossing a cut."""
    from keras_mbv2.tflite.segments import Segment, SegmentedModel

    sizes = {0: 64, 1: 100, 2: 50, 3: 30, 4: 10}
    segments = [Segment(b"", 0, 1, (0,), (1, 2)), Segment(b"", 1, 2, (1,), (3,)), Segment(b"", 2, 3, (2, 3), (4,))]
    segmented = SegmentedModel(b"", segments, sizes, (0,), (4,))
    layout = segmented.buffer_layout()
    assert layout.moves == ((), ((100, 0, 50),), ())
    assert layout.size == segmented.boundary_bytes == 150
    rng = np.random.default_rng(0)
    values = {0: rng.integers(-128, 128, 64).astype(np.int8)}
    buffer = np.zeros(layout.size, np.int8)
    for i, s in enumerate(segments):
        for t, (offset, size) in zip(s.inputs, layout.inputs[i]):
            got = values[0] if offset < 0 else buffer[offset:offset + size]
            np.testing.assert_array_equal(got, values[t])
        for start, to, size in layout.moves[i]:
            buffer[to:to + size] = buffer[start:start + size].copy()
        for t, (offset, size) in zip(s.outputs, layout.outputs[i]):
            values[t] = rng.integers(-128, 128, size).astype(np.int8)
            buffer[offset:offset + size] = values[t]
    (offset, size), = layout.model_outputs
    np.testing.assert_array_equal(buffer[offset:offset + size], values[4])


FIRMWARE_RUNS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "firmware")

# (recorded run, the whole model's run on the same core, the RAM target in bytes)
DEVICE_RUNS = [
    ("anchor_mobilenetv2_030_80_segmented_mps2-an386-ram64k", "anchor_mobilenetv2_030_80_whole_mps2-an386", 48 * 1024),
    ("anchor_mobilenetv2_030_80_segmented_mps2-an500", "anchor_mobilenetv2_030_80_whole_mps2-an500", 48 * 1024),
    ("anchor_mobilenetv1_025_96_segmented_mps2-an500", "anchor_mobilenetv1_025_96_whole_mps2-an500", None),
    ("segmented_readme_mobilenetv2_035_96_mps2-an500", None, 64 * 1024),
]


@pytest.mark.parametrize("run, whole, target", DEVICE_RUNS, ids=[r[0] for r in DEVICE_RUNS])
def test_the_recorded_device_runs_of_segments_meet_their_targets(run, whole, target):
    """The QEMU runs of patched + segmented models (benchmarks/firmware, TFLM with CMSIS-NN; their scores equal to the
    host's when recorded, `keras-mbv2 check-app`): device RAM (arena used + boundary buffer + band) within the issue's
    target where it has one, at most 2x the unpatched instructions on the same core, and on the 64 KiB board the
    whole app (.data, .bss, heap, stack's peak) inside the 64 KiB."""
    from keras_mbv2.micro import parse_app_output

    with open(os.path.join(FIRMWARE_RUNS, f"{run}.log")) as f:
        out = parse_app_output(f.read())
    assert out.done and out.segments > 1 and out.allocate_each
    assert out.device_ram_bytes == out.arena_used + out.boundary_bytes + out.band_bytes
    if target is not None:
        assert out.device_ram_bytes <= target
    if whole is not None:
        with open(os.path.join(FIRMWARE_RUNS, f"{whole}.log")) as f:
            assert out.images[0].ticks <= 2.0 * parse_app_output(f.read()).images[0].ticks
    if run.endswith("ram64k"):
        ram, static, heap, stack = out.ram
        assert ram == 65536 and static + heap + stack <= ram and static > out.device_ram_bytes


def test_the_allocation_cost_predicts_every_recorded_runs_allocations():
    """ALLOCATE_COST against the per-model AllocateTensors ticks the app printed (segments_allocate.json): each run's
    total within 5% (Cortex-M4) and 2% (Cortex-M7), instructions = 40 x SysTick ticks."""
    import json

    from keras_mbv2.tflite.segments import ALLOCATE_COST

    with open(os.path.join(FIRMWARE_RUNS, "segments_allocate.json")) as f:
        runs = json.load(f)["runs"]
    assert {r["core"] for r in runs} == {"cortex-m4", "cortex-m7"} and len(runs) == 6
    for r in runs:
        cost = ALLOCATE_COST[r["core"]]
        predicted = sum(cost["model"] + cost["operator"] * m["operators"] + cost["channel"] * m["channels"]
                        for m in r["models"])
        measured = 40 * sum(m["ticks"] for m in r["models"])
        assert abs(predicted / measured - 1) <= (0.05 if r["core"] == "cortex-m4" else 0.02), r["network"]
