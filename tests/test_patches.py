"""Patch-based inference on stock TFLM (MCUNetV2): the patched loop equals the whole int8 model bit for bit.

The digits at 64x64x3 through MobileNetV2 0.35 (stem 32x32, stage outputs 16x16 after block 1 and 8x8 after
block 3). Every grid below has patches at the border, where the whole model reads zero padding, and grids that
do not divide the stage output (the last patch overlaps its neighbour).
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import replace

import numpy as np
import pytest
from harness import digits64_int8, recalibrated_int8

import keras_mbv2 as K
from keras_mbv2.datasets import load_digits
from keras_mbv2.quantization import run_tflm
from keras_mbv2.tflite import quantize_input, require_int8, tflite_macs
from keras_mbv2.tflite.patches import MEASURED_CANDIDATES, candidates, patch_model, run_patched, split_model, stage_cuts


@pytest.fixture(scope="module")
def digits():
    return load_digits(image_size=64, channels=3)


@pytest.fixture(scope="module")
def mbv2(digits, tmp_path_factory):
    return digits64_int8(tmp_path_factory, "MobileNetV2", digits)


@pytest.fixture(scope="module")
def frames(mbv2, digits):
    frames = quantize_input(digits.x_test[:3], require_int8(mbv2))
    scores = run_tflm(mbv2, frames)[0]
    assert len({row.tobytes() for row in scores}) == len(scores)  # every image scores differently
    return frames


def _cut_after(data, shape):
    """The last cut whose stage output has `shape` (H, W, C)."""
    from keras_mbv2.tflite import parse_model

    graph = parse_model(data).subgraphs[0]
    return max(cut for cut, t in stage_cuts(data) if tuple(graph.tensors[t].shape[1:]) == shape)


@pytest.mark.parametrize("stage, grid", [
    ((16, 16, 8), (2, 2)),  # after block 2's ADD: a residual inside the stage
    ((16, 16, 8), (3, 3)),  # 16 = 6 + 6 + 4: the last patch overlaps
    ((16, 16, 8), (4, 1)),  # strips
    ((8, 8, 16), (2, 2)),  # after block 5: halos through two stride-2 layers
    ((8, 8, 16), (8, 8)),  # one output pixel per patch
])
def test_patched_outputs_equal_the_whole_model_bit_for_bit(mbv2, frames, stage, grid):
    whole, _ = run_tflm(mbv2, frames)
    patch, rest, plan = split_model(mbv2, _cut_after(mbv2, stage), grid)
    got, report = run_patched(patch, rest, plan, frames)
    np.testing.assert_array_equal(got, whole)
    assert plan.masks and plan.input[0].size > 64 // stage[0] * plan.patch[0]  # halos and border masks were needed
    assert "[patch model]" in report and "[rest model]" in report


def test_without_its_masks_the_border_is_wrong(mbv2, frames):
    """The masks are what reproduces the whole model's zero padding: all ones (no padding) changes the output."""
    whole, _ = run_tflm(mbv2, frames)
    patch, rest, plan = split_model(mbv2, _cut_after(mbv2, (8, 8, 16)), (2, 2))
    ones = [tuple(replace(axis, offset=0, full=10 ** 6) for axis in mask) for mask in plan.masks]
    unmasked = replace(plan, masks=ones)
    got, _ = run_patched(patch, rest, unmasked, frames)
    assert not np.array_equal(got, whole)


def test_patches_combine_with_channel_splits_and_work_on_mobilenet_v1(digits, tmp_path_factory):
    split = recalibrated_int8(K.MobileNetV2((64, 64, 3), alpha=0.35, classes=10, weights=None,
                                            memory_splits={"block_1": 3, "block_3": 2}), digits)
    v1 = digits64_int8(tmp_path_factory, "MobileNetV1", digits)
    for data in (split, v1):
        frames = quantize_input(digits.x_test[:2], require_int8(data))
        ranked = candidates(data)[:MEASURED_CANDIDATES]
        patched = patch_model(data)  # the measured best of the best-estimated plans
        assert (patched.plan.cut, patched.plan.grid) in [(c.cut, c.grid) for c in ranked]
        first = patch_model(data, ranked[0].cut, ranked[0].grid)
        assert patched.device_ram_bytes <= first.device_ram_bytes
        np.testing.assert_array_equal(patched.invoke(frames), run_tflm(data, frames)[0])
        assert 0 <= patched.plan.mac_overhead <= 0.2 and patched.plan.macs_whole == tflite_macs(data)
        # one arena for both models (the larger activation area, both persistent tails) + the stage buffer, or an
        # arena each, whichever is smaller; + the band
        p, r = patched.patch_arena, patched.rest_arena
        assert patched.arena.total == max(p.head, r.head) + p.tail + r.tail < p.total + r.total
        assert patched.stage_bytes == int(np.prod(patched.plan.stage_shape))
        shared, separate = patched.stage_bytes + patched.arena.total, p.total + r.total
        assert patched.shared == (shared < separate)
        assert patched.device_ram_bytes == patched.band_bytes + min(shared, separate)
        assert patched.band_bytes == min(patched.plan.input[0].size, 64) * 64 * 3


def test_plan_arguments_are_checked(mbv2):
    with pytest.raises(ValueError, match="`cut` must end a patchable stage.*cut=7"):
        split_model(mbv2, 7, (2, 2))
    cut = _cut_after(mbv2, (8, 8, 16))
    with pytest.raises(ValueError, match=r"`grid` must be .*8x8.*grid=\(9, 2\)"):
        split_model(mbv2, cut, (9, 2))
    with pytest.raises(ValueError, match="max_mac_overhead=-0.1"):
        patch_model(mbv2, max_mac_overhead=-0.1)


HOST_MAIN = r"""
#include <cstdio>
#include "model_settings.h"
#include "model_patches.h"
int main() {
  int mask_values = 0;
  for (int m = 0; m < kPatchMaskCount; ++m) mask_values += kPatchMasks[m][0].size * kPatchMasks[m][1].size;
#if KERAS_MBV2_SHARED_ARENA
  const int patch_arena = 0, stage_buffer = kStageRows * kStageCols * kStageChannels;
#else
  const int patch_arena = kPatchArenaSize, stage_buffer = 0;
#endif
  std::printf("%d %d %d %d %d %d %d %u\n", kPatchRowCount, kPatchColCount, kPatchInput[0].size, kPatchMaskCount,
              mask_values, patch_arena, stage_buffer, g_model_patch_data_size);
  return MODEL_PATCH_DATA[4] == 'T' ? 0 : 1;
}
"""


@pytest.mark.parametrize("stage, shared", [((8, 8, 16), True), ((32, 32, 16), False)])
def test_emit_writes_both_models_and_the_plan_for_the_app(mbv2, digits, tmp_path, stage, shared):
    """What the firmware app's patch loop reads: the rest model as the model array, the scheme (one arena shared by both
    models + a stage buffer, or an arena each: here a deep stage with a small output and an early one whose output
    is larger than the patch model's activations), the patch model and plan as C constants (compiled here on the
    host), and the plan as JSON for check_app_output."""
    import json
    import subprocess

    from keras_mbv2.micro import emit, parse_c_array, tensor_arena_size
    from keras_mbv2.tflite import strip_strings
    from keras_mbv2.tflite.patches import plan_from_json

    patched = patch_model(mbv2, _cut_after(mbv2, stage), (3, 3))
    assert patched.shared == shared
    out = tmp_path / "micro"
    report = emit(patched, str(out), test_images=digits.x_test[:2], test_labels=digits.y_test[:2])
    assert parse_c_array((out / "model_data.cc").read_text()) == strip_strings(patched.rest)
    patch = parse_c_array((out / "model_patches.cc").read_text(), symbol="g_model_patch_data")
    assert patch == strip_strings(patched.patch)
    assert plan_from_json(json.loads((out / "model_patches.json").read_text())) == patched.plan
    assert "kNumRows = 64;" in (out / "model_settings.h").read_text()  # the app's input is the whole frame
    assert "AddMul" in (out / "model_op_resolver.h").read_text()  # both models' operators
    arenas = [patched.arena] if shared else [patched.rest_arena, patched.patch_arena]
    assert [report.arena_bytes, report.patch_arena_bytes] == [tensor_arena_size(a.total) for a in arenas] + (
        [None] if shared else [])
    assert report.stage_bytes == (patched.stage_bytes if shared else None)
    assert f"kTensorArenaSize = {report.arena_bytes};" in (out / "model_settings.h").read_text()
    assert report.device_ram_bytes == sum(tensor_arena_size(a.total) for a in arenas) + (
        patched.stage_bytes if shared else 0) + patched.band_bytes
    assert "patches 3x3 of " in (out / "model_report.txt").read_text()
    (tmp_path / "main.cc").write_text(HOST_MAIN)
    exe = str(tmp_path / "host")
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(out), str(tmp_path / "main.cc"),
                    str(out / "model_patches.cc"), "-o", exe], check=True)
    with pytest.raises(ValueError, match="holds a patched model's files"):  # the app would build as patched
        emit(mbv2, str(out))
    # the QEMU self-test links both arrays and checks each (TFLite identifier, 16-byte alignment, CRC32)
    micro = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "micro")
    build = subprocess.run(["make", "-s", "-C", micro, "selftest", f"MODEL_DIR={out}",
                            f"SELFTEST_BUILD={tmp_path / 'selftest'}"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting-config",
                          "enable=on,target=native", "-kernel", str(tmp_path / "selftest" / "selftest.elf")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    checked = re.findall(r"selftest: (patch model )?size=\d+ crc32=([0-9a-f]{8}) identifier=TFL3 aligned16=yes",
                         run.stdout)
    assert [(what, int(crc, 16)) for what, crc in checked] == [
        ("", zlib.crc32(strip_strings(patched.rest))), ("patch model ", zlib.crc32(strip_strings(patched.patch)))]
    printed = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.split()
    plan = patched.plan
    assert printed == [str(v) for v in (3, 3, plan.input[0].size, len(plan.masks),
                                        sum(y.size * x.size for y, x in plan.masks), report.patch_arena_bytes or 0,
                                        report.stage_bytes or 0,
                                        len(patch))]


FIRMWARE_RUNS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "firmware")


@pytest.mark.parametrize("stem, tolerance", [
    ("costfit_grid4", 0.01), ("costfit_grid6", 0.01), ("costfit_grid8", 0.01),  # what STAGE_COST was fitted to
    ("costfit_grid3", 0.01),  # broadcast masks: the run their cost came from
    ("readme_patched", 0.01), ("readme_patched_120k", 0.01),  # the same network, another instance
    ("anchor_mobilenetv2_030_80_patched", 0.01),  # another MobileNetV2, held out
    ("anchor_mobilenetv1_025_96_patched", 0.15),  # MobileNetV1's stage, broadcast masks: the model's worst
])
def test_the_cost_model_predicts_the_recorded_patch_stages(stem, tolerance):
    """STAGE_COST against the recorded QEMU runs (benchmarks/firmware/<stem>_mps2-an386.log, the plan beside it):
    the patch model's operators over every patch and the time outside the operators, in instructions."""
    import json

    from keras_mbv2.micro import parse_app_output
    from keras_mbv2.micro.boards import qemu_instructions
    from keras_mbv2.tflite.patches import plan_from_json

    with open(os.path.join(FIRMWARE_RUNS, f"{stem}_patches.json")) as f:
        plan = plan_from_json(json.load(f))
    with open(os.path.join(FIRMWARE_RUNS, f"{stem}_mps2-an386.log")) as f:
        out = parse_app_output(f.read())
    assert out.patch_invocations == plan.patches and out.done
    measured = qemu_instructions(sum(t for *_, t in out.patch_profile) + out.outside, "mps2-an386")
    assert abs(plan.stage_instructions() / measured - 1) <= tolerance


def test_the_recorded_runs_score_alike_on_every_board_patched_or_not():
    """The README's model on each QEMU board, unpatched and patched (two plans): each run's int8 scores equal the host
    runtime's (checked when recorded, `keras-mbv2 check-app`), so all equal each other; and the 4x4 plan chosen
    within 125,000 B costs at most 1.25x the unpatched instructions (1.57x before: readme_patched_before)."""
    from keras_mbv2.micro import parse_app_output
    from keras_mbv2.micro.boards import qemu_instructions

    runs = {}
    for name in os.listdir(FIRMWARE_RUNS):
        if name.startswith("readme_") and name.endswith(".log") and "_before_" not in name:
            with open(os.path.join(FIRMWARE_RUNS, name)) as f:
                text = f.read()
            if "overflowed by" not in text:  # the unpatched model does not link for netduinoplus2's 128 KiB
                runs[name[:-4]] = parse_app_output(text)
    assert {"readme_whole_mps2-an386", "readme_patched_mps2-an386", "readme_patched_120k_netduinoplus2"} <= set(runs)
    scores = {k: [tuple(image.scores) for image in out.images] for k, out in runs.items()}
    assert len(set(map(tuple, scores.values()))) == 1 and all(len(s) == 3 for s in scores.values())
    assert all(out.done and [image.label for image in out.images] == [7, 6, 3] for out in runs.values())
    whole = qemu_instructions(runs["readme_whole_mps2-an386"].images[0].ticks, "mps2-an386")
    patched = qemu_instructions(runs["readme_patched_mps2-an386"].images[0].ticks, "mps2-an386")
    assert patched / whole <= 1.25
