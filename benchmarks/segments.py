"""Segmented execution below TFLM's persistent-data wall, on the anchors' configurations (host runtime).

Run: python benchmarks/segments.py > benchmarks/SEGMENTS.md  (progress on stderr; about 15 min on 2 cores)

Each network untrained, batch norms recalibrated, int8 (benchmarks/patch_inference.py's `calibrated`: RAM does not
depend on the weights' values), on the TFLM host runtime. Device RAM, everything the device needs for inference:
- whole: TFLM's arena of the whole model (the frame is its input tensor);
- segments: the whole model cut by `segment_plans` into the segments that need the least RAM, each measured
  (`segment_model`): the largest segment's arena + the boundary buffer;
- patched: `search_patches`' least-RAM plan (input band + arenas + stage buffer), as in RESULTS.md;
- patched + segments: that plan's rest model cut the same way: band + one arena (the patch model's and every
  segment's, in turn) + the larger of the stage buffer and the boundary buffer (`fit.segmented_ram`), its outputs
  checked identical to the whole int8 model's on random int8 frames.
Each segment's arena is the larger of TFLM's recorded total and the smallest arena it allocates in (bisected:
many-channel operators' Prepare needs temporary memory beside the persistent data). The host, not the device: the
device runs (QEMU, Cortex-M4 and M7, the 64 KiB board) and `AllocateTensors`' instructions per inference are in
benchmarks/firmware/ and benchmarks/RESULTS.md.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from patch_inference import FRAMES, calibrated  # benchmarks/patch_inference.py, beside this file

from keras_mbv2.micro.fit import search_patches, segmented_ram
from keras_mbv2.tflite import arena_use, run_tflm
from keras_mbv2.tflite.patches import run_patched
from keras_mbv2.tflite.segments import segment_model, segment_plans

KIB = 1024
# label -> (builder, width, resolution, classes, the target in bytes)
NETWORKS = {
    "MobileNetV2 0.30 @ 80, 1000 classes": ("v2", 0.30, 80, 1000, 48 * KIB),
    "MobileNetV2 0.35 @ 96, 10 classes": ("v2", 0.35, 96, 10, 64 * KIB),
    "MobileNetV1 0.25 @ 96, 2 classes": ("v1", 0.25, 96, 2, 48 * KIB),
    "MobileNetV2 1.0 @ 224, 1000 classes": ("v2", 1.0, 224, 1000, 300_000),
}


def _least(data: bytes):
    """The segmentation of `data` the planner estimates to need the least RAM, measured."""
    return segment_model(data, segment_plans(data)[-1].cuts)


def row(label: str, kind: str, width: float, size: int, classes: int, target: int) -> dict:
    start = time.monotonic()
    model, calib, whole = calibrated(kind, width, size, classes)
    unpatched = _least(whole)
    _, _, _, data, patched = search_patches(model, calib, whole, log=lambda m: print(m, file=sys.stderr))
    rest = _least(patched.rest)
    x = np.random.default_rng(2).integers(-128, 128, (FRAMES, size, size, 3)).astype("int8")
    outputs = run_patched(patched.patch, patched.rest, patched.plan, x, segments=rest)[0]
    print(f"{label}: {time.monotonic() - start:.0f} s", file=sys.stderr)
    return dict(network=label, target=target, whole=arena_use(whole).total, segments=unpatched.device_ram_bytes,
                segments_plan=f"{len(unpatched.segments)} segments", patched=patched.device_ram_bytes,
                both=segmented_ram(rest, patched), both_plan=f"{patched.plan.describe().split(' (')[0]}; rest in "
                f"{len(rest.segments)} segments, largest arena {rest.arena_bytes:,} B, boundary "
                f"{rest.boundary_bytes:,} B",
                identical=np.array_equal(outputs, run_tflm(data, x)[0]))


def main() -> int:
    rows = [row(label, *spec) for label, spec in NETWORKS.items()]
    print("| network | whole | segments | patched | patched + segments | target | met | outputs vs whole int8 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        met = "yes" if r["both"] <= r["target"] else f"no, {r['both'] - r['target']:,} B over"
        print(f"| {r['network']} | {r['whole']:,} | {r['segments']:,} ({r['segments_plan']}) | {r['patched']:,} | "
              f"**{r['both']:,}** ({r['both_plan']}) | {r['target']:,} | {met} | "
              f"{'identical' if r['identical'] else 'DIFFER'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
