"""The recorded firmware runs (benchmarks/firmware/*.log, made by hand: benchmarks/firmware/README.md) as tables.

Run: python benchmarks/firmware_runs.py  (prints the markdown sections; benchmarks/run.py puts them in RESULTS.md)

1. Every core: the README's patch-based model (MobileNetV2 0.35 @ 96x96x3) unpatched and patched on each QEMU
   board, instructions per inference (SysTick ticks under `-icount shift=0`, converted with each board's measured
   SysTick clock, `keras_mbv2.micro.boards.QEMU_SYSTICK_HZ`) and the RAM the app used.
2. What the patch stage costs, before and after this round's changes, and the cost model `patch_model` ranks
   plans with (`keras_mbv2.tflite.patches.STAGE_COST`) against every recorded patched run.
"""

from __future__ import annotations

import json
import os
import re
import sys

from keras_mbv2.micro import parse_app_output
from keras_mbv2.micro.boards import QEMU_SYSTICK_HZ, qemu_instructions
from keras_mbv2.tflite.patches import plan_from_json

FIRMWARE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware")
CORES = {"mps2-an386": "Cortex-M4", "mps2-an500": "Cortex-M7", "mps2-an505": "Cortex-M33",
         "mps3-an547": "Cortex-M55", "netduinoplus2": "Cortex-M4 (STM32F405: 1 MiB flash, 128 KiB SRAM)"}


def run(stem: str, board: str):
    """The parsed log `<stem>_<board>.log`, or None (not recorded), or the linker's error line (did not link)."""
    path = os.path.join(FIRMWARE, f"{stem}_{board}.log")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        text = f.read()
    if "overflowed by" in text:
        return re.search(r"region `(\w+)' overflowed by (\d+) bytes", text).expand(r"does not link: \1 short by \2 B")
    return parse_app_output(text)


def instructions(output, board: str) -> float:
    """Millions of instructions of the first image's inference."""
    return qemu_instructions(output.images[0].ticks, board) / 1e6


def stage_measured(output, board: str) -> float:
    """The patch stage's instructions (the patch model's operators over every patch and the time outside the
    operators: the loop's copies and mask fills, TFLM's Invoke), millions."""
    ticks = sum(t for _, _, t in output.patch_profile) + (output.outside or 0)
    return qemu_instructions(ticks, board) / 1e6


def plan(stem: str):
    with open(os.path.join(FIRMWARE, f"{stem}_patches.json")) as f:
        return plan_from_json(json.load(f))


def cost_rows() -> list[tuple[str, str, float, float]]:
    """(run, plan, predicted, measured) millions of patch-stage instructions for every recorded patched run with
    its plan (`<stem>_patches.json`) on the Cortex-M4."""
    rows = []
    for name in sorted(os.listdir(FIRMWARE)):
        if not name.endswith("_patches.json"):
            continue
        stem = name[:-len("_patches.json")]
        output = run(stem, "mps2-an386")
        if output is None or isinstance(output, str):
            continue
        p = plan(stem)
        rows.append((stem, p.describe(), p.stage_instructions() / 1e6, stage_measured(output, "mps2-an386")))
    return rows


def section() -> list[str]:
    lines = [
        "## The firmware on every core (QEMU, CMSIS-NN): the README's patch-based model",
        "",
        "MobileNetV2 0.35 @ 96x96x3, 10 classes, batch norms calibrated on the digits (the README's block), int8 "
        "with the plan's splits (block_2=3, block_3=2), run by `firmware/app` with `make run-app BOARD=...` "
        "(benchmarks/firmware/README.md). Instructions per inference = SysTick ticks x 1e9 / the board's SysTick "
        "clock (" + ", ".join(f"{b} {hz / 1e6:g} MHz" for b, hz in QEMU_SYSTICK_HZ.items()) + ") under `-icount "
        "shift=0`; RAM = the arena the app used (TFLM's `arena_used_bytes`, on the 32-bit core) + the input band "
        "and stage buffer when patched. Every run's int8 scores equal the host TFLM runtime's on all 3 test images "
        "(`keras-mbv2 check-app`).",
        "",
        "| board | core | unpatched M instructions | unpatched RAM | patched 4x4 (`fit_ram(model, 125_000)`) "
        "| RAM | / unpatched | patched 8x8 (`fit_ram(model, 120_000)`) | RAM | / unpatched |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for board, core in CORES.items():
        whole = run("readme_whole", board)
        cells = [board, core]
        if whole is None:
            continue
        cells += ([whole, ""] if isinstance(whole, str) else
                  [f"{instructions(whole, board):.2f}", f"{whole.device_ram_bytes:,}"])
        for stem in ("readme_patched", "readme_patched_120k"):
            out = run(stem, board)
            if out is None:
                cells += ["not run", "", ""]
            elif isinstance(out, str):
                cells += [out, "", ""]
            else:
                ratio = (f"{instructions(out, board) / instructions(whole, board):.3f}x"
                         if not isinstance(whole, str) else "")
                cells += [f"{instructions(out, board):.2f}", f"{out.device_ram_bytes:,}", ratio]
        lines.append("| " + " | ".join(cells) + " |")
    before = run("readme_patched_before", "mps2-an386")
    whole = run("readme_whole", "mps2-an386")
    lines += [
        "",
        "## The patch stage's cost on the Cortex-M4, and the cost model that ranks plans",
        "",
        "The same model on `mps2-an386`, unpatched "
        f"{instructions(whole, 'mps2-an386'):.2f} M instructions. Before (8x8 patches, a one-channel mask "
        "broadcast over each of 4 tensors, TFLM's reference broadcasting MUL): "
        f"{instructions(before, 'mps2-an386'):.2f} M, "
        f"{instructions(before, 'mps2-an386') / instructions(whole, 'mps2-an386'):.2f}x. After: masks only where a "
        "kernel wider than 1 reads padding (2 of the 4), full-size masks (CMSIS-NN's elementwise MUL) where the "
        "device RAM stays the same, the loop copying rows, and within the 125,000 B budget the plan predicted "
        "fastest (4x4): see the table above. The model (`STAGE_COST`) was fitted to the costfit 4x4, 6x6 and 8x8 "
        "runs; the other rows are predictions:",
        "",
        "| run | plan | predicted M instructions (patch stage) | measured | error |",
        "| --- | --- | --- | --- | --- |",
    ]
    for stem, described, predicted, measured in cost_rows():
        lines.append(f"| {stem} | {described} | {predicted:.2f} | {measured:.2f} | {predicted / measured - 1:+.1%} |")
    lines.append("")
    return lines


def main() -> int:
    print("\n".join(section()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
