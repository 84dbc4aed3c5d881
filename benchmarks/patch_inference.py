"""Patch-based inference on stock TensorFlow Lite Micro (MCUNetV2's idea, bit-exact): whole device RAM.

Run: python benchmarks/patch_inference.py  (prints the markdown section; benchmarks/run.py puts it in RESULTS.md)

For each network, int8 on the TFLM host runtime, untrained, with batch-norm statistics recalibrated on the
calibration images (memory does not depend on the values; random statistics make the 1000-class softmax abort
TFLM when invoked); the keras.applications MobileNetV2s are carried into keras_mbv2 blocks as in
benchmarks/memory_split.py:
- default: the TFLM arena of the whole model (its input tensor is the frame);
- channel split: the splits that reach the floor no split can lower (MobileNetV2 only: MobileNetV1 has no
  inverted residuals);
- patches (+ splits): `keras_mbv2.micro.fit.search_patches`, the plan and splits with the least device RAM:
  the input band (the frame rows one row of patches reads; firmware/app fetches rows in order, so the whole frame
  is never in RAM) + the cheaper scheme, measured: the one arena both models share (the larger model's
  activations + both models' persistent data) + the stage buffer, or an arena each; and the same with the whole
  frame in RAM instead of the band;
- the patched outputs against the whole model's on the TFLM host runtime (random int8 frames);
- host latency: the patched loop against one whole inference, both on the TFLM host runtime in this process,
  per frame over `TIMING_FRAMES` frames (interpreter set-up subtracted with a 0-frame run; with 3 frames the
  set-up's own jitter swamped the per-frame time and the ratio moved 2x between runs), median of 3.
"""

from __future__ import annotations

import sys
import time

import keras
import numpy as np
from memory_split import randomized_batch_norms  # benchmarks/memory_split.py, beside this file

import keras_mbv2 as K
from keras_mbv2.micro.fit import search_patches
from keras_mbv2.models import plan_memory_splits, recalibrate_batch_norms, split_floor, split_model
from keras_mbv2.quantization import to_tflite
from keras_mbv2.tflite import _worker as worker
from keras_mbv2.tflite import arena_use, operator_names, parse_model, run_tflm
from keras_mbv2.tflite.patches import plan_to_json

NETWORKS = {  # label -> (builder, width, resolution)
    "MobileNetV2 0.35 @ 96": ("v2", 0.35, 96),
    "MobileNetV2 1.0 @ 224": ("v2", 1.0, 224),
    "MobileNetV1 0.25 @ 96": ("v1", 0.25, 96),
}
FRAMES = 3
TIMING_FRAMES = 16
ARENA = 8 << 20  # bytes given to each TFLM interpreter for the timing


def _model(kind: str, width: float, size: int, classes: int = 1000) -> keras.Model:
    keras.utils.set_random_seed(0)
    if kind == "v2":
        app = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=width, weights=None, classes=classes)
        return K.from_keras_application(randomized_batch_norms(app))
    return randomized_batch_norms(K.MobileNetV1((size, size, 3), alpha=width, weights=None, classes=classes))


def calibrated(kind: str, width: float, size: int, classes: int = 1000) -> tuple[keras.Model, np.ndarray, bytes]:
    """(the network untrained, its batch norms recalibrated on 32 random frames; the first 8 of those frames, the
    calibration images; its int8 conversion with them): what every row here and in anchors.py measures."""
    model = _model(kind, width, size, classes)
    calib = np.random.default_rng(1).uniform(-1, 1, (32, size, size, 3)).astype("float32")
    recalibrate_batch_norms(model, calib)
    calib = calib[:8]
    return model, calib, to_tflite(model, calib, num_calibration=8)


def floor_split(model: keras.Model, calib: np.ndarray) -> bytes:
    """`model` split down to the floor no channel split can lower, int8."""
    return to_tflite(split_model(model, plan_memory_splits(model, split_floor(model)[0])), calib, num_calibration=8)


def _operators(data: bytes) -> int:
    return len(parse_model(data).subgraphs[0].operators)


def _per_frame(run, x: np.ndarray, repeats: int = 3) -> float:
    """Seconds per frame of `run` in this process (interpreter set-up subtracted with a 0-frame run), median."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x[:0])
        empty = time.perf_counter() - start
        start = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - start - empty) / len(x))
    return float(np.median(times))


def _arenas(patched) -> str:
    """The scheme's part of the RAM, as its sum."""
    p, r = patched.patch_arena, patched.rest_arena
    if patched.shared:
        return (f"{patched.stage_bytes:,} stage buffer + {patched.arena.total:,} shared arena = max({p.head:,}, "
                f"{r.head:,}) + {p.tail:,} + {r.tail:,}")
    return f"{p.total:,} patch arena + {r.total:,} rest arena (an arena each; sharing: +{patched.stage_bytes:,} stage)"


def row(label: str, kind: str, width: float, size: int) -> dict:
    model, calib, whole = calibrated(kind, width, size)
    result = dict(network=label, default=arena_use(whole).total, ops=_operators(whole), split=None)
    if kind == "v2":
        result["split"] = arena_use(floor_split(model, calib)).total
    need, _, splits, data, patched = search_patches(model, calib, whole, log=lambda m: print(m, file=sys.stderr))
    x = np.random.default_rng(2).integers(-128, 128, (FRAMES, size, size, 3)).astype("int8")
    timed = np.random.default_rng(3).integers(-128, 128, (TIMING_FRAMES, size, size, 3)).astype("int8")
    identical = np.array_equal(patched.invoke(x), run_tflm(data, x)[0])
    plan = patched.plan
    result.update(
        patched=patched.device_ram_bytes, emitted=need, band=patched.band_bytes, arenas=_arenas(patched),
        whole_frame=patched.whole_frame_ram_bytes,
        splits=", ".join(f"{k}={v}" for k, v in splits.items() if v > 1) or "none",
        plan=plan.describe(), mac_overhead=plan.mac_overhead,
        patched_ops=f"{_operators(patched.patch)} + {_operators(patched.rest)}",
        new_ops=sorted(set(operator_names(patched.patch)) - set(operator_names(whole))),
        identical=identical,
        # in this process (the models ran cleanly in the child processes above): no process start-up in the time
        latency=_per_frame(lambda f: worker.run_patched(patched.patch, patched.rest, plan_to_json(plan), f, ARENA),
                           timed) / _per_frame(lambda f: worker.run_tflm(data, f, ARENA), timed),
    )
    return result


def section(rows: list[dict]) -> list[str]:
    lines = [
        "## Patch-based inference on stock TFLite Micro: the whole device RAM",
        "",
        "The early stage runs one spatial patch of its output at a time (a patch model invoked per patch, with the "
        "halo its receptive field needs and 0/1 border masks that reproduce the zero-point padding), the rest of "
        "the network once on the assembled stage output (`keras_mbv2.tflite.patches`, `fit_ram`). RAM counts "
        "everything the device needs: the TFLM arena and, patched, the stage buffer the patch outputs are assembled "
        "in and the input band the patches are cut from (the frame rows one row of patches reads, fetched in order "
        "with `GetImageRow`) or, in the column after, the whole int8 frame (unpatched, the frame is the model's "
        "input tensor, inside the arena). Patched, the cheaper of two schemes: both models share one arena (one "
        "`MicroAllocator`, TFLM's multi-tenant allocation: the larger model's activations + both models' persistent "
        "data) and the patch outputs are assembled in a stage buffer, or each model has its own arena and the patch "
        "outputs go straight into the rest model's input. Each arena measured on the TFLM host runtime "
        "(`print_allocations`), without the emitted 1,024 B margins.",
        "",
        "| network | default | channel split | patches (+ splits) | = band + the scheme's buffer and arenas "
        "| with the whole frame | splits | plan | extra MACs | operators | outputs vs whole int8 "
        "| host latency patched / whole |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        split = f"{r['split']:,}" if r["split"] else "n/a (no inverted residuals)"
        lines.append(
            f"| {r['network']} | {r['default']:,} | {split} | {r['patched']:,} | {r['band']:,} band + {r['arenas']} "
            f"| {r['whole_frame']:,} | {r['splits']} | {r['plan']} "
            f"| {r['mac_overhead']:+.1%} "
            f"| {r['ops']} -> {r['patched_ops']} (+{', '.join(r['new_ops'])}) "
            f"| {'identical' if r['identical'] else 'DIFFERENT'} on {FRAMES} frames | {r['latency']:.2f} |")
    lines += [
        "",
        "Anchors, both with their own code generator and kernels rather than stock TFLM: MCUNetV2 (Lin et al., "
        "NeurIPS 2021, \"Memory-efficient Patch-based Inference for Tiny Deep Learning\", Figure 1) reports "
        "MobileNetV2's peak memory 1,372 kB -> 172 kB with patch-based inference (activations only, TinyEngine "
        "in-place kernels); the STM32 model zoo (STM32Cube.AI) lists MobileNetV2 1.0 @ 224 int8 at 1,727 KiB of "
        "activation RAM. What stock TFLM adds and patches cannot remove: the per-channel quantization data of "
        "every operator (the arenas' persistent part).",
        "",
    ]
    return lines


def main() -> int:
    rows = []
    for label, (kind, width, size) in NETWORKS.items():
        rows.append(row(label, kind, width, size))
        print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(section(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
