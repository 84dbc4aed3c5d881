"""The anchors' own configurations on stock TensorFlow Lite Micro: the networks published RAM figures are for.

Run: python benchmarks/anchors.py  (prints the markdown section; benchmarks/run.py puts it in RESULTS.md)

- MobileNetV2 0.30 @ 80x80x3, 1000 classes: the network of Plumerai's published comparison (blog "Plumerai's
  inference engine ... world's fastest", 2022: Cortex-M7, total RAM TFLM + CMSIS-NN 155 KiB, STM32 X-CUBE-AI
  109 KiB, MCUNet's TinyEngine 98 KiB, Plumerai 80 KiB).
- MobileNetV1 0.25 @ 96x96x3, 2 classes: MLPerf Tiny's visual wake words reference (v1.0 results: the best
  Cortex-M4 latency, STM32 X-CUBE-AI on a NUCLEO-L4R5ZI, 89 ms; the TFLM reference submission 601 ms).

Each int8 on the TFLM host runtime, untrained, batch-norm statistics recalibrated (benchmarks/patch_inference.py:
RAM and flash do not depend on the weights' values). Device RAM, everything the device needs for inference:
- default: TFLM's arena of the whole model (the frame is its input tensor);
- offline plan: the same with `keras_mbv2.tflite.memory_plan`'s tightest plan where TFLM then needs less;
- channel splits: MobileNetV2's blocks split down to the floor no split can lower (paper Section 5.1);
- patches (+ splits): `keras_mbv2.micro.fit.search_patches`, the plan with the least device RAM (input band +
  arenas + stage buffer), its outputs checked identical to the whole int8 model's on the TFLM host runtime.
Flash: the arrays `emit` writes (tensor names stripped; both models when patched). On the emulated Cortex-M4 and M7
(the recorded app runs in benchmarks/firmware/, `<stem>_whole|patched_<board>.log`, of the models
benchmarks/firmware_models.py writes): the RAM the app used (arena used on the 32-bit core + band + stage buffer)
and instructions per inference (SysTick ticks under `-icount shift=0`, `boards.qemu_instructions`).
"""

from __future__ import annotations

import sys

import firmware_runs  # benchmarks/firmware_runs.py, beside this file
import numpy as np
from patch_inference import FRAMES, calibrated, floor_split  # benchmarks/patch_inference.py

from keras_mbv2.micro.emitter import flash_bytes
from keras_mbv2.micro.fit import search_patches
from keras_mbv2.tflite import arena_use, run_tflm
from keras_mbv2.tflite.memory_plan import with_tightest_plan

ANCHORS = {  # label -> (builder, width, resolution, classes, log stem in benchmarks/firmware/)
    "MobileNetV2 0.30 @ 80, 1000 classes": ("v2", 0.30, 80, 1000, "anchor_mobilenetv2_030_80"),
    "MobileNetV1 0.25 @ 96, 2 classes": ("v1", 0.25, 96, 2, "anchor_mobilenetv1_025_96"),
}
KIB = 1024
# Published total RAM for MobileNetV2 0.30 @ 80 on a Cortex-M7 (Plumerai's table), KiB
PLUMERAI_TABLE = {"TFLM + CMSIS-NN": 155, "STM32 X-CUBE-AI": 109, "MCUNet TinyEngine": 98, "Plumerai": 80}
BOARDS = {"mps2-an386": "M4", "mps2-an500": "M7"}


def row(label: str, kind: str, width: float, size: int, classes: int) -> dict:
    model, calib, whole = calibrated(kind, width, size, classes)
    default = arena_use(whole).total
    _, planned, _ = with_tightest_plan(whole)
    result = dict(network=label, default=default, planned=min(default, planned.total), flash=flash_bytes(whole),
                  split=None)
    if kind == "v2":
        split = floor_split(model, calib)
        result["split"] = min(arena_use(split).total, with_tightest_plan(split)[1].total)
    need, _, splits, data, patched = search_patches(model, calib, whole, log=lambda m: print(m, file=sys.stderr))
    x = np.random.default_rng(2).integers(-128, 128, (FRAMES, size, size, 3)).astype("int8")
    result.update(patched=patched.device_ram_bytes, patched_flash=flash_bytes(patched), plan=patched.plan.describe(),
                  splits=", ".join(f"{k}={v}" for k, v in splits.items() if v > 1) or "none",
                  identical=np.array_equal(patched.invoke(x), run_tflm(data, x)[0]))
    return result


def device(stem: str) -> dict[str, dict[str, tuple[int, float]]]:
    """{"whole"|"patched": {core: (RAM the app used, millions of instructions per inference)}} from the recorded
    runs `<stem>_<variant>_<board>.log` that exist."""
    found: dict[str, dict[str, tuple[int, float]]] = {}
    for variant in ("whole", "patched"):
        for board, core in BOARDS.items():
            out = firmware_runs.run(f"{stem}_{variant}", board)
            if out is not None:
                found.setdefault(variant, {})[core] = (out.device_ram_bytes, firmware_runs.instructions(out, board))
    return found


def section(rows: list[dict]) -> list[str]:
    lines = [
        "## The anchors' configurations on stock TFLite Micro (`benchmarks/anchors.py`)",
        "",
        "Total device RAM for inference in KiB (1,024 B): TFLM's arena (frame included) unpatched; patched, the input "
        "band + the arena(s) + the stage buffer. Measured on the TFLM host runtime (64-bit: a Cortex-M's arena is a "
        "few hundred bytes smaller), without `emit`'s 1 KiB margin. Untrained networks, batch norms recalibrated.",
        "",
        "| network | default | offline plan | channel splits | patches (+ splits) | flash | flash patched | plan "
        "| patched outputs vs whole |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        split = f"{r['split'] / KIB:.1f}" if r["split"] else "n/a (no inverted residuals)"
        lines.append(
            f"| {r['network']} | {r['default'] / KIB:.1f} | {r['planned'] / KIB:.1f} | {split} "
            f"| **{r['patched'] / KIB:.1f}** | {r['flash'] / KIB:.1f} | {r['patched_flash'] / KIB:.1f} "
            f"| {r['plan']}; splits {r['splits']} | {'identical' if r['identical'] else 'DIFFERENT'} on {FRAMES} "
            f"frames |")
    lines += [
        "",
        "On the emulated cores (QEMU, `firmware/app`, CMSIS-NN; each run's scores equal the host runtime's on its 3 "
        "test images): RAM the app used in KiB and instructions per inference, unpatched and patched (the plan "
        "above, TFLM's own placement of each arena).",
        "",
        "| network | core | unpatched RAM | unpatched M instructions | patched RAM | patched M instructions "
        "| patched / unpatched |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        runs = r["device"]
        for core in BOARDS.values():
            if core in runs.get("whole", {}) and core in runs.get("patched", {}):
                (wr, wi), (pr, pi) = runs["whole"][core], runs["patched"][core]
                lines.append(f"| {r['network']} | Cortex-{core} | {wr / KIB:.1f} | {wi:.2f} | **{pr / KIB:.1f}** "
                             f"| {pi:.2f} | {pi / wi:.2f}x |")
    v2 = rows[0]
    lines += [
        "",
        "MobileNetV2 0.30 @ 80 beside Plumerai's published table (Cortex-M7, total RAM, KiB):",
        "",
        "| engine | RAM KiB |",
        "| --- | --- |",
        *(f"| {engine} (published) | {kib} |" for engine, kib in PLUMERAI_TABLE.items()),
        f"| stock TFLM, this package: default arena | {v2['default'] / KIB:.1f} |",
        f"| stock TFLM, this package: offline plan | {v2['planned'] / KIB:.1f} |",
        f"| stock TFLM, this package: channel splits | {v2['split'] / KIB:.1f} |",
        f"| stock TFLM, this package: patches (+ splits), bit-exact | **{v2['patched'] / KIB:.1f}** |",
        *(f"| stock TFLM, this package, on the emulated Cortex-{core}: unpatched / patched | "
          f"{v2['device']['whole'][core][0] / KIB:.1f} / **{v2['device']['patched'][core][0] / KIB:.1f}** |"
          for core in BOARDS.values() if core in v2["device"].get("patched", {})),
        "",
    ]
    return lines


def main() -> int:
    rows = []
    for label, (kind, width, size, classes, stem) in ANCHORS.items():
        rows.append(row(label, kind, width, size, classes) | {"device": device(stem)})
        print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(section(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
