"""The end-to-end job behind `keras-mbv2 demo`: digits -> float -> PTQ / QAT int8 -> TFLM -> micro files.

Everything is written into a temporary folder beside the destination and renamed into place at the end
(`keras_mbv2.files.output_folder`), so a failed or interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .files import output_folder
from .tflite import Agreement, compare_outputs

Log = Callable[[str], None]


@dataclass
class DemoResult:
    out_dir: str
    network: str
    float_accuracy: float
    ptq_accuracy: float
    qat_accuracy: float
    tflm_accuracy: float
    tflm_agreement: Agreement  # TFLM vs LiteRT's reference kernels on the test images
    model_bytes: int
    arena_bytes: int
    macs: int
    params: int
    seconds: float
    files: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The result as the aligned two-column table the command prints."""
        rows = [
            ("float (Keras)", f"{self.float_accuracy:.1%}"),
            ("PTQ int8 (TFLite)", f"{self.ptq_accuracy:.1%}"),
            ("QAT int8 (TFLite)", f"{self.qat_accuracy:.1%}"),
            ("QAT int8 (TFLite Micro)", f"{self.tflm_accuracy:.1%} ({self.tflm_agreement})"),
            ("model bytes (flash)", f"{self.model_bytes:,}"),
            ("arena bytes (RAM)", f"{self.arena_bytes:,}"),
            ("MAdds", f"{self.macs:,}"),
            ("params", f"{self.params:,}"),
            ("files", self.out_dir),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _plots(workdir: str, result: DemoResult, profile) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc_png = os.path.join(workdir, "accuracy.png")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    stages = ["float", "PTQ int8", "QAT int8", "TFLM int8"]
    values = [result.float_accuracy, result.ptq_accuracy, result.qat_accuracy, result.tflm_accuracy]
    bars = ax.bar(stages, [v * 100 for v in values], color=["#4c72b0", "#dd8452", "#55a868", "#8172b3"])
    ax.bar_label(bars, labels=[f"{v:.1%}" for v in values])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"{result.network} on the digits: accuracy per stage")
    fig.tight_layout()
    fig.savefig(acc_png, dpi=110)
    plt.close(fig)

    mem_png = os.path.join(workdir, "memory.png")
    names = [layer.name for layer in profile.layers]
    live = [layer.live_bytes / 1024 for layer in profile.layers]
    peak = int(np.argmax(live))
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.28), 3.6))
    colors = ["#c44e52" if i == peak else "#4c72b0" for i in range(len(names))]
    ax.bar(range(len(names)), live, color=colors)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("live activations (KiB, int8)")
    ax.set_title(f"Activation memory per layer; peak {profile.peak_activation_bytes:,} B at {profile.peak_layer}")
    ax.annotate("peak", (peak, live[peak]), ha="center", va="bottom", color="#c44e52")
    fig.tight_layout()
    fig.savefig(mem_png, dpi=110)
    plt.close(fig)
    return [acc_png, mem_png]


def _report_md(result: DemoResult, profile) -> str:
    return f"""# keras-mbv2 demo: {result.network} on the bundled digits

| stage | value |
| --- | --- |
| float accuracy (Keras) | {result.float_accuracy:.1%} |
| PTQ int8 accuracy (TFLite) | {result.ptq_accuracy:.1%} |
| QAT int8 accuracy (TFLite, reference kernels) | {result.qat_accuracy:.1%} |
| QAT int8 accuracy (TFLite Micro host runtime) | {result.tflm_accuracy:.1%} |
| TFLM outputs vs TFLite reference kernels | {result.tflm_agreement} |
| model bytes (flash) | {result.model_bytes:,} |
| TFLM arena bytes (RAM, kTensorArenaSize) | {result.arena_bytes:,} |
| MAdds | {result.macs:,} |
| params | {result.params:,} |
| peak activation memory, each block as one op (int8) | {profile.peak_activation_bytes:,} B at `{profile.peak_layer}` |
| run time | {result.seconds:.0f} s |

![accuracy per stage](accuracy.png)

![activation memory per layer](memory.png)

Files: `model_float.keras` (Keras 3), `qat_model.h5` (tf_keras QAT, load under
`keras_mbv2.quantization.quantize_scope()`), `model_ptq_int8.tflite`, `model_int8.tflite`, `model_float.tflite`,
and `micro/` (C arrays, settings, op resolver for TensorFlow Lite Micro; build with `micro/Makefile` of the
keras_mbv2 repository).
"""


def run_demo(
    out: str,
    network: str = "mobilenet_v2",
    width: float | None = None,
    groups: int | None = None,
    image_size: int = 32,
    epochs: int = 15,
    qat_epochs: int = 3,
    force: bool = False,
    seed: int = 0,
    log: Log = print,
) -> DemoResult:
    """Train `network` on the bundled digits, quantize it (post-training and quantization-aware), run the int8
    model on LiteRT and on the TFLite Micro host runtime, emit the microcontroller C files, and write
    report.md with plots into the folder `out` (built under a temporary name, renamed into place at the end;
    an existing non-empty folder is replaced only with `force`)."""
    import keras

    from .datasets import load_digits
    from .micro import emit
    from .models.networks import NETWORKS, build_network
    from .profiler import profile as profile_model
    from .quantization import evaluate_tflite, fit_qat, quantize_aware, to_tflite

    for name, value in (("--epochs", epochs), ("--qat-epochs", qat_epochs), ("--image-size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer. Received: {name} {value!r}")
    start = time.perf_counter()
    with output_folder(out, "--out", force) as work:
        log(f"[1/7] data: UCI digits from scikit-learn, resized to {image_size}x{image_size}")
        data = load_digits(image_size=image_size)
        keras.utils.set_random_seed(seed)
        width = NETWORKS[network].demo_width if width is None else width
        model = build_network(network, (image_size, image_size, 1), width, groups, 10, bn_momentum=0.9)
        log(f"[2/7] float training: {model.name}, {model.count_params():,} params, {epochs} epochs")
        model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
        progress = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs: log(f"      epoch {e + 1}/{epochs}  loss {logs['loss']:.4f}  "
                                             f"accuracy {logs['accuracy']:.3f}")
        )
        model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=[progress])
        float_acc = float(model.evaluate(data.x_test, data.y_test, verbose=0)[1])
        model.save(os.path.join(work, "model_float.keras"))

        log("[3/7] post-training int8 quantization (calibration on 200 training images)")
        ptq = to_tflite(model, data.x_train[:200])
        ptq_acc = evaluate_tflite(ptq, data.x_test, data.y_test).accuracy
        with open(os.path.join(work, "model_ptq_int8.tflite"), "wb") as f:
            f.write(ptq)
        with open(os.path.join(work, "model_float.tflite"), "wb") as f:
            f.write(to_tflite(model, quantize="float"))

        log(f"[4/7] quantization-aware training: {qat_epochs} epochs (tfmot on the flat tf_keras twin)")
        import tf_keras

        qat = quantize_aware(model)
        qat_progress = tf_keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs: log(f"      epoch {e + 1}/{qat_epochs}  loss {logs['loss']:.4f}  "
                                             f"accuracy {logs['accuracy']:.3f}")
        )
        fit_qat(qat, data.x_train, data.y_train, os.path.join(work, "qat_run"), epochs=qat_epochs,
                learning_rate=1e-4, callbacks=[qat_progress], verbose=0, seed=seed)
        import warnings

        with warnings.catch_warnings():  # tf_keras calls HDF5 "legacy"; it is the format tfmot documents
            warnings.simplefilter("ignore", UserWarning)
            qat.save(os.path.join(work, "qat_model.h5"))
        shutil.rmtree(os.path.join(work, "qat_run"), ignore_errors=True)
        int8 = to_tflite(qat, data.x_train[:200])
        with open(os.path.join(work, "model_int8.tflite"), "wb") as f:
            f.write(int8)
        lite = evaluate_tflite(int8, data.x_test, data.y_test)

        log(f"[5/7] TFLite Micro host runtime: {len(data.y_test)} test images")
        micro = evaluate_tflite(int8, data.x_test, data.y_test, runtime="tflm")

        log("[6/7] micro: C arrays, settings, op resolver, measured arena")
        report = emit(int8, os.path.join(work, "micro"), name="model", labels=list(data.class_names))

        log("[7/7] report: report.md, accuracy.png, memory.png")
        prof = profile_model(model, bytes_per_activation=1)
        result = DemoResult(
            out_dir=os.path.abspath(out), network=model.name, float_accuracy=float_acc, ptq_accuracy=ptq_acc,
            qat_accuracy=lite.accuracy, tflm_accuracy=micro.accuracy,
            tflm_agreement=compare_outputs(micro.outputs, lite.outputs), model_bytes=len(int8),
            arena_bytes=report.arena_bytes, macs=prof.macs, params=model.count_params(),
            seconds=time.perf_counter() - start,
        )
        _plots(work, result, prof)
        with open(os.path.join(work, "report.md"), "w") as f:
            f.write(_report_md(result, prof))
        result.files = sorted(os.listdir(work))
    return result
