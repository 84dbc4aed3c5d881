"""keras_mbv2 benchmarks: every figure a ratio measured interleaved in one run, as a median of repeats.

Run: python benchmarks/run.py [--repeats 7] [--out benchmarks/RESULTS.md]

1. Keras float inference, batch 1 and 32 at 224x224: each keras_mbv2 network (built from pluggable blocks)
   vs its keras.applications twin (the same network as one flat functional graph), same weights.
2. TFLite at 96x96x3: int8 vs float latency (LiteRT, default kernels) and size, per network.
3. Microcontroller memory at 96x96x3: TFLM arena (host runtime) vs the profiler's int8 peak activation
   lower bound, and vs the keras.applications twin exported the same way; flash bytes beside it.
4. Memory-efficient inference (paper Section 5.1, `benchmarks/memory_split.py`): MobileNetV2's TFLM arena
   unsplit and split (0.35 at 96, 1.0 at 224), and QAT accuracy on the digits at 96x96, split vs unsplit.
5. Patch-based inference on stock TFLM (`benchmarks/patch_inference.py`): the whole device RAM (frame and
   arenas) default, channel split and patched, extra MACs, outputs against the whole model, host latency.
6. The anchors' own configurations (`benchmarks/anchors.py`): MobileNetV2 0.30 @ 80 (1000 classes) and MobileNetV1
   0.25 @ 96 (2 classes), device RAM on stock TFLM beside the published figures, on the host and on QEMU.
7. The firmware on QEMU (`benchmarks/firmware/`): per-operator instruction counts of firmware/app with CMSIS-NN and
   with TFLM's reference kernels on the Cortex-M4; the README's patch-based model on every board; the patch stage's
   cost model against every recorded run (`benchmarks/firmware_runs.py`). From the logs recorded there (TFLM is
   built by hand: see its README).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import anchors  # benchmarks/anchors.py
import firmware_runs  # benchmarks/firmware_runs.py
import keras
import memory_split  # benchmarks/memory_split.py, beside this file
import numpy as np
import patch_inference  # benchmarks/patch_inference.py
import tensorflow as tf

import keras_mbv2 as K
from keras_mbv2.files import write_file
from keras_mbv2.micro import measure_arena, offline_plan, parse_app_output, profile_by_operator
from keras_mbv2.micro.boards import qemu_instructions
from keras_mbv2.quantization import to_tflite
from keras_mbv2.tflite import io_details


def interleaved(fns: dict[str, callable], repeats: int, inner: int) -> dict[str, list[float]]:
    """Time each function `inner` times per round, alternating between them every round."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up (tracing)
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t) / inner)
    return times


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def keras_inference(repeats: int) -> list[tuple]:
    rows = []
    twins = [
        ("MobileNetV1 1.0", lambda: keras.applications.MobileNet(weights=None)),
        ("MobileNetV2 1.0", lambda: keras.applications.MobileNetV2(weights=None)),
        ("NASNetMobile", lambda: keras.applications.NASNetMobile(weights=None)),
    ]
    for label, build_app in twins:
        app = build_app()
        ours = K.from_keras_application(app)
        for batch in (1, 32):
            x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (batch, 224, 224, 3)).astype("float32"))
            f_app = tf.function(lambda v, m=app: m(v, training=False))
            f_ours = tf.function(lambda v, m=ours: m(v, training=False))
            times = interleaved({"ours": lambda: f_ours(x).numpy(), "app": lambda: f_app(x).numpy()}, repeats,
                                inner=1 if batch == 32 else 5)
            rows.append((label, batch, statistics.median(times["app"]) * 1e3, statistics.median(times["ours"]) * 1e3,
                         ratio(times, "ours", "app")))
        keras.backend.clear_session()
    return rows


MCU = {
    "MobileNetV2 0.35": (lambda s: K.MobileNetV2(input_shape=s, alpha=0.35, classes=10, classifier_activation=None),
                         lambda s: keras.applications.MobileNetV2(input_shape=s, alpha=0.35, classes=10, weights=None,
                                                                  classifier_activation=None)),
    "MobileNetV1 0.25": (lambda s: K.MobileNetV1(input_shape=s, alpha=0.25, classes=10, classifier_activation=None),
                         lambda s: keras.applications.MobileNet(input_shape=s, alpha=0.25, classes=10, weights=None,
                                                                classifier_activation=None)),
    "ShuffleNetV1 g=3 0.5x": (lambda s: K.ShuffleNetV1(input_shape=s, groups=3, scale=0.5, classes=10,
                                                       classifier_activation=None), None),
    "NASNet-A 1 @ 192": (lambda s: K.NASNet(input_shape=s, penultimate_filters=192, num_blocks=1, stem_block_filters=16,
                                            skip_reduction=False, classes=10, classifier_activation=None), None),
}


def tflite_latency(tflite: bytes, repeats: int):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite, num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    return lambda: interp.invoke()


def mcu(repeats: int) -> list[dict]:
    rows = []
    shape = (96, 96, 3)
    calib = np.random.default_rng(0).uniform(0, 1, (32, 96, 96, 3)).astype("float32")
    for label, (ours_fn, app_fn) in MCU.items():
        keras.utils.set_random_seed(0)
        model = ours_fn(shape)
        f32 = to_tflite(model, quantize="float")
        int8 = to_tflite(model, calib, num_calibration=32)
        times = interleaved({"int8": tflite_latency(int8, repeats), "float": tflite_latency(f32, repeats)},
                            repeats, inner=10)
        arena = measure_arena(int8, io_details(int8)["input_shape"])
        planned, planned_head = offline_plan(int8)  # as emit does: kept only where it beats TFLM's placement
        planned_arena = measure_arena(planned, io_details(planned)["input_shape"])
        lower = K.profile(model, bytes_per_activation=1).peak_activation_bytes
        row = dict(network=label, float_bytes=len(f32), int8_bytes=len(int8),
                   latency_ratio=ratio(times, "int8", "float"),
                   int8_ms=statistics.median(times["int8"]) * 1e3, arena=arena, lower_bound=lower, app_arena=None,
                   planned_arena=min(arena, planned_arena))
        if app_fn is not None:
            app = app_fn(shape)
            app_int8 = to_tflite(app, calib, num_calibration=32)  # keras.applications' own graph (ZeroPadding...)
            row["app_arena"] = measure_arena(app_int8, io_details(app_int8)["input_shape"])
            row["app_int8_bytes"] = len(app_int8)
        rows.append(row)
        keras.backend.clear_session()
    return rows


FIRMWARE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware")
BOARD = "mps2-an386"  # the board of the per-operator logs


def firmware_section() -> list[str]:
    """Per-operator cost of firmware/app on QEMU, one column per kernel set, from benchmarks/firmware/*.log."""
    kernels = {}
    for name, label in (("qemu_mps2_an386_cmsis_nn.log", "CMSIS-NN"), ("qemu_mps2_an386_reference.log", "reference")):
        path = os.path.join(FIRMWARE, name)
        if os.path.isfile(path):
            with open(path) as f:
                kernels[label] = parse_app_output(f.read())
    if not kernels:
        return []
    tables = {label: {op: (count, ticks) for op, count, ticks, _ in profile_by_operator(out)}
              for label, out in kernels.items()}
    first = next(iter(kernels.values()))
    first_table = next(iter(tables.values()))
    lines = [
        "## The firmware on an emulated Cortex-M4: instructions per operator (firmware/app, QEMU mps2-an386)",
        "",
        f"The demo's MobileNetV2 0.35 on 32x32x1 digits, int8, run by `firmware/app` built against TFLite Micro and "
        f"run with `make run-app` (how: benchmarks/firmware/README.md). QEMU is not cycle-accurate: with `-icount "
        f"shift=0` each instruction takes 1 ns and SysTick counts at 25 MHz, so instructions = "
        f"{qemu_instructions(1, BOARD):g} x SysTick ticks, a proxy for cost, not cycles. Arena used on the M4: "
        + ", ".join(f"{out.arena_used:,} B ({k})" for k, out in kernels.items())
        + f" of the emitted {first.arena_size:,} B (the 64-bit host TFLM runtime's measure plus 1 KiB). The five "
        "embedded test images' scores equal the host TFLM runtime's bit for bit with either kernel set "
        "(`keras-mbv2 check-app`).",
        "",
        "| operator | count | " + " | ".join(f"{k} M instructions | share" for k in tables)
        + (" | reference / CMSIS-NN" if len(tables) == 2 else "") + " |",
        "| --- | --- | " + " | ".join("--- | ---" for _ in tables) + (" | ---" if len(tables) == 2 else "") + " |",
    ]
    totals = {k: sum(ticks for _, ticks in t.values()) for k, t in tables.items()}
    for op, (count, _) in sorted(first_table.items(), key=lambda kv: -kv[1][1]):
        cells = [f"{qemu_instructions(t[op][1], BOARD) / 1e6:.2f} | {t[op][1] / totals[k]:.1%}"
                 for k, t in tables.items()]
        ratio = (f" | {tables['reference'][op][1] / tables['CMSIS-NN'][op][1]:.1f}x" if len(tables) == 2 else "")
        lines.append(f"| {op} | {count} | " + " | ".join(cells) + ratio + " |")
    cells = [f"**{qemu_instructions(total, BOARD) / 1e6:.2f}** | 100%" for total in totals.values()]
    ratio = f" | **{totals['reference'] / totals['CMSIS-NN']:.1f}x**" if len(tables) == 2 else ""
    lines += [f"| all | {sum(c for c, _ in first_table.values())} | " + " | ".join(cells) + ratio
              + " |", ""]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="keras_mbv2 benchmarks (ratios measured in one run)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"))
    parser.add_argument("--skip-keras", action="store_true", help="skip the 224x224 Keras inference section")
    parser.add_argument("--skip-memory-qat", action="store_true", help="skip the QAT accuracy of section 4")
    args = parser.parse_args(argv)
    lines = [
        "# keras_mbv2 benchmark results",
        "",
        f"Generated by `python benchmarks/run.py` on {platform.machine()} with {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}. Each ratio is the "
        f"median over {args.repeats} interleaved rounds in one process; absolute times are for orientation only.",
        "",
    ]
    if not args.skip_keras:
        rows = keras_inference(args.repeats)
        lines += [
            "## Keras float inference at 224x224: keras_mbv2 (blocks) vs keras.applications (flat graph)",
            "",
            "| network | batch | keras.applications ms | keras_mbv2 ms | ratio (target <= 1.05) |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [f"| {n} | {b} | {a:.1f} | {o:.1f} | {r:.3f} |" for n, b, a, o, r in rows]
        lines.append("")
        print("\n".join(lines), flush=True)
    rows = mcu(args.repeats)
    lines += [
        "## TFLite at 96x96x3: int8 vs float (LiteRT, 1 thread)",
        "",
        "| network | float bytes | int8 bytes | size ratio | int8 ms | latency ratio int8/float |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {r['network']} | {r['float_bytes']:,} | {r['int8_bytes']:,} "
              f"| {r['int8_bytes'] / r['float_bytes']:.3f} "
              f"| {r['int8_ms']:.2f} | {r['latency_ratio']:.3f} |" for r in rows]
    lines += [
        "",
        "## Microcontroller memory at 96x96x3, int8 (TFLM host runtime arena)",
        "",
        "| network | flash bytes | TFLM arena | with emit's offline memory plan | profiler lower bound (blocks as "
        "one op) | arena / bound | keras.applications twin arena |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        app = f"{r['app_arena']:,}" if r["app_arena"] else "no twin"
        lines.append(f"| {r['network']} | {r['int8_bytes']:,} | {r['arena']:,} | {r['planned_arena']:,} "
                     f"| {r['lower_bound']:,} | {r['arena'] / r['lower_bound']:.1f} | {app} |")
    lines += [
        "",
        "Anchors (shared/DESIGN.md): TFLM person_detection (MobileNetV1 0.25, 96x96x1) arena 136 KiB; STM32 model zoo "
        "MobileNetV2 0.35@128 int8 237 KiB; MCUNet TinyEngine mbv2-w0.35 (r144) 295 kB peak SRAM.",
        "The arena includes persistent per-channel quantization data, not only activations; the lower bound is "
        "what an executor that never materialises a block's expanded tensor would need (paper Section 5.1).",
        "",
    ]
    qat_args = dict(epochs=15, qat_epochs=3, qat_lr=3e-5)
    arena = memory_split.arena_rows()
    qat = None if args.skip_memory_qat else memory_split.qat_rows(**qat_args)
    lines += memory_split.markdown(arena, qat, qat_args)
    lines += patch_inference.section(
        [patch_inference.row(label, *spec) for label, spec in patch_inference.NETWORKS.items()])
    lines += anchors.section([anchors.row(label, *spec[:4]) | {"device": anchors.device(spec[4])}
                              for label, spec in anchors.ANCHORS.items()])
    lines += firmware_section()
    lines += firmware_runs.section()
    text = "\n".join(lines)
    write_file(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
