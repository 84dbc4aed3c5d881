"""Memory-efficient inference (paper Section 5.1) on stock TensorFlow Lite Micro: arena and accuracy.

Run: python benchmarks/memory_split.py [--qat-epochs 3]  (prints the markdown; benchmarks/run.py puts it in
RESULTS.md)

1. Arena: keras.applications MobileNetV2 (alpha 0.35 at 96x96x3 and 1.0 at 224x224x3), carried into
   keras_mbv2 blocks and converted to int8, on the TFLM host runtime (`print_allocations`), unsplit and with
   the splits `plan_memory_splits` picks for the floor: the largest operator that cannot be split (block 0's
   depthwise). Randomised batch-norm statistics stand in for trained weights: the arena does not depend on
   the values.
2. Accuracy: MobileNetV2 0.35 trained on the bundled digits at 96x96x3, then QAT (tfmot) unsplit and split
   from the same float weights, int8 on the TFLM host runtime.
"""

from __future__ import annotations

import argparse
import sys

import keras
import numpy as np
from qat_digits import qat_int8, train_float  # benchmarks/qat_digits.py, beside this file

import keras_mbv2 as K
from keras_mbv2.datasets import load_digits
from keras_mbv2.micro import arena_use, tflite_macs
from keras_mbv2.models import plan_memory_splits, split_floor, split_model
from keras_mbv2.quantization import evaluate_tflite, to_tflite
from keras_mbv2.tflite import activation_peak, operator_names, parse_model

ARENA_MODELS = {"MobileNetV2 0.35 @ 96": (0.35, 96), "MobileNetV2 1.0 @ 224": (1.0, 224)}


def randomized_batch_norms(model: keras.Model) -> keras.Model:
    """Batch-norm weights and statistics drawn at random (seed 0), standing in for trained ones."""
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])
    return model


def _floor_plan(model: keras.Model) -> dict[str, int]:
    """The splits that bring every block down to the largest unsplittable operator."""
    return plan_memory_splits(model, split_floor(model)[0])


def arena_rows() -> list[dict]:
    rows = []
    for label, (alpha, size) in ARENA_MODELS.items():
        keras.utils.set_random_seed(0)
        app = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None)
        model = K.from_keras_application(randomized_batch_norms(app))
        calib = np.random.default_rng(1).uniform(-1, 1, (8, size, size, 3)).astype("float32")
        plan = _floor_plan(model)
        split = split_model(model, plan)
        row = dict(network=label, splits={k: v for k, v in plan.items() if v > 1},
                   floor=K.profile(split).peak_operator_bytes)
        for key, m in (("base", model), ("split", split)):
            data = to_tflite(m, calib, num_calibration=8)
            raw = to_tflite(m, calib, num_calibration=8, schedule=False)  # the converter's own operator order
            use = arena_use(data)
            row[key] = dict(total=use.total, head=use.head, macs=tflite_macs(data), ops=_operator_count(data),
                            adds=_add_elements(data), converter_peak=activation_peak(raw)[0], bytes=len(data))
        rows.append(row)
        print(row, flush=True)
        keras.backend.clear_session()
    return rows


def _operator_count(data: bytes) -> int:
    return len(parse_model(data).subgraphs[0].operators)


def _add_elements(data: bytes) -> int:
    """Element-wise additions of the ADD operators (the partial sums a split adds beside the MACs)."""
    graph, names = parse_model(data).subgraphs[0], operator_names(data)
    return sum(int(np.prod(graph.tensors[op.outputs[0]].shape)) for op in graph.operators
               if names[op.opcodeIndex] == "ADD")


def qat_rows(epochs: int = 15, qat_epochs: int = 3, qat_lr: float = 3e-5, size: int = 96) -> dict:
    data = load_digits(image_size=size, channels=3)
    keras.utils.set_random_seed(0)
    model = K.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, classes=10, bn_momentum=0.9)
    result = dict(float=train_float(model, data, epochs), test_images=len(data.y_test))
    plan = _floor_plan(model)
    result["splits"] = {k: v for k, v in plan.items() if v > 1}
    for key, m in (("base", model), ("split", split_model(model, plan))):
        keras.utils.set_random_seed(1)
        int8 = qat_int8(m, data, qat_epochs, qat_lr)
        micro = evaluate_tflite(int8, data.x_test, data.y_test, runtime="tflm")
        use = arena_use(int8)
        result[key] = dict(tflm=micro.accuracy, total=use.total, head=use.head, macs=tflite_macs(int8))
        print(key, result[key], flush=True)
    return result


def markdown(arena: list[dict], qat: dict | None, qat_args: dict) -> list[str]:
    lines = [
        "## Memory-efficient inference on stock TFLite Micro (paper Section 5.1)",
        "",
        "Inverted residual blocks computed in channel slices of their expansion (`memory_splits`), converted to "
        "int8 and run on the TFLM host runtime (arena from `print_allocations()`: activations = the planner's "
        "head, persistent = tensor structs, operator data and per-channel quantization parameters). Splits: "
        "the smallest per block that reaches the floor, the largest operator that cannot be split (block 0's "
        "depthwise input + output).",
        "",
        "| model | splits | arena before | arena after | activations before | activations after | floor "
        "| after / floor | MACs overhead | ADD elements | operators | converter's order peak |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in arena:
        b, s = r["base"], r["split"]
        splits = ", ".join(f"{k}={v}" for k, v in r["splits"].items())
        lines.append(
            f"| {r['network']} | {splits} | {b['total']:,} | {s['total']:,} | {b['head']:,} | {s['head']:,} "
            f"| {r['floor']:,} | {s['head'] / r['floor']:.3f} | {s['macs'] / b['macs'] - 1:+.2%} "
            f"| {b['adds']:,} -> {s['adds']:,} | {b['ops']} -> {s['ops']} | {s['converter_peak']:,} |"
        )
    lines += [
        "",
        "Anchors (shared/DESIGN.md section 4), both with custom kernels: MCUNet TinyEngine mbv2-w0.35 (r144) 295 kB "
        "peak SRAM; STM32 X-CUBE-AI model zoo MobileNetV2 0.35@128 int8 237 KiB activation RAM. The issue's "
        "reference for tfmot-quantized keras.applications MobileNetV2 0.35@96: arena 210,192 B, head 138,240 B.",
        "Converter's order peak: the activation peak of the split model in the order the TFLite converter emits "
        "(`to_tflite(schedule=False)`); equal to the floor means the converter already runs each block slice by "
        "slice. `to_tflite` reorders the operators depth-first when that needs less "
        "(`keras_mbv2.tflite.schedule`). ADD elements: element-wise additions, the partial sums a split adds "
        "beside the unchanged multiply-adds.",
        "",
    ]
    if qat is not None:
        b, s = qat["base"], qat["split"]
        splits = ", ".join(f"{k}={v}" for k, v in qat["splits"].items())
        lines += [
            f"QAT on the digits at 96x96x3 ({qat['test_images']} test images; float {qat_args['epochs']} epochs, "
            f"QAT {qat_args['qat_epochs']} epochs Adam {qat_args['qat_lr']:g} from the same float weights; "
            "int8 on the TFLM host runtime):",
            "",
            "| MobileNetV2 0.35 @ 96 | float | QAT int8 (TFLM) | arena | activations | MACs |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| unsplit | {qat['float']:.1%} | {b['tflm']:.1%} | {b['total']:,} | {b['head']:,} | {b['macs']:,} |",
            f"| split ({splits}) | {qat['float']:.1%} | {s['tflm']:.1%} | {s['total']:,} | {s['head']:,} "
            f"| {s['macs']:,} |",
            "",
        ]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--qat-lr", type=float, default=3e-5)
    parser.add_argument("--skip-qat", action="store_true")
    args = parser.parse_args(argv)
    qat_args = dict(epochs=args.epochs, qat_epochs=args.qat_epochs, qat_lr=args.qat_lr)
    arena = arena_rows()
    qat = None if args.skip_qat else qat_rows(**qat_args)
    print("\n".join(markdown(arena, qat, qat_args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
