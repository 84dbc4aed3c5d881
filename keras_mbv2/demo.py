"""The end-to-end job behind `keras-mbv2 demo`: digits -> float -> PTQ / QAT int8 -> TFLM -> micro files.

Everything is written into a temporary folder beside the destination and renamed into place at the end
(`keras_mbv2.files.output_folder`), so a failed or interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .checks import check_positive_int
from .files import output_folder
from .logs import native_stderr_to
from .tflite import Agreement, compare_outputs, live_bytes_per_operator

Log = Callable[[str], None]

#: The demo as `keras-mbv2 demo` runs it by default (the settings `SEED_SPREAD` was measured with).
DEFAULTS: dict[str, Any] = dict(network="mobilenet_v2", width=None, groups=None, image_size=32, epochs=15,
                                qat_epochs=3)
#: `keras-mbv2 demo --quick`: a short run that checks an installation.
QUICK: dict[str, Any] = dict(epochs=3, qat_epochs=1)
#: Accuracy points between the best and the worst of seeds 0, 1 and 2, per stage, of the default demo, measured
#: by `python benchmarks/demo_seeds.py` (benchmarks/DEMO_SEEDS.md). A difference between two stages smaller than
#: the larger of their two spreads is within run-to-run variation: not significant.
SEED_SPREAD: dict[str, float] = {"float": 2.8, "PTQ int8": 3.6, "QAT int8": 1.4}


def signed_points(points: float) -> str:
    """Accuracy points with their sign at one decimal (`+2.2`, `-0.4`), and `0.0` for a difference that rounds to
    nothing (never `-0.0`)."""
    text = f"{points:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


@dataclass(frozen=True)
class StageDifference:
    """One stage's test accuracy against another's, in points, and whether it exceeds the seed spread."""

    stage: str
    baseline: str
    points: float  # stage - baseline, accuracy points
    spread: float | None  # the larger seed spread of the two stages; None when not measured for these settings

    @property
    def significant(self) -> bool | None:
        """True/False when the spread is known: |points| larger than the spread; None when it is not."""
        return None if self.spread is None else abs(self.points) > self.spread

    @property
    def verdict(self) -> str:
        """'significant', 'not significant', or 'not rated' (no spread measured for these settings)."""
        return "not rated" if self.spread is None else "significant" if self.significant else "not significant"

    def __str__(self) -> str:
        if self.spread is None:
            return f"{signed_points(self.points)} points (seed spread not measured for these settings: not rated)"
        side = "beyond" if self.significant else "within"
        return f"{signed_points(self.points)} points ({side} the seed spread of {self.spread:.1f}: {self.verdict})"


@dataclass
class DemoResult:
    """What `run_demo` measured, and where it wrote it."""

    out_dir: str
    network: str
    float_accuracy: float
    ptq_accuracy: float
    qat_accuracy: float
    tflm_accuracy: float
    tflm_agreement: Agreement  # TFLM vs LiteRT's reference kernels on the test images
    model_bytes: int
    arena_bytes: int  # kTensorArenaSize: measured arena + margin
    measured_arena_bytes: int
    activation_bytes: int  # the arena's planned activation buffers (TFLM's head)
    macs: int
    params: int
    seconds: float
    train_images: int = 0
    test_images: int = 0
    epochs: int = 0
    qat_epochs: int = 0
    seed: int = 0
    spread: dict[str, float] | None = None  # SEED_SPREAD when run with the DEFAULTS, else None
    files: list[str] = field(default_factory=list)

    def differences(self) -> list[StageDifference]:
        """Each int8 stage against the float model (TFLM is compared with LiteRT output by output instead)."""
        stages = {"float": self.float_accuracy, "PTQ int8": self.ptq_accuracy, "QAT int8": self.qat_accuracy}
        return [StageDifference(stage, "float", 100 * (stages[stage] - stages["float"]),
                                None if self.spread is None else max(self.spread[stage], self.spread["float"]))
                for stage in ("PTQ int8", "QAT int8")]

    def table(self) -> str:
        """The result as the aligned two-column table the command prints."""
        ptq, qat = self.differences()
        rows = [
            ("float (Keras)", f"{self.float_accuracy:.1%}"),
            ("PTQ int8 (TFLite)", f"{self.ptq_accuracy:.1%}"),
            ("QAT int8 (TFLite)", f"{self.qat_accuracy:.1%}"),
            ("QAT int8 (TFLite Micro)", f"{self.tflm_accuracy:.1%} ({self.tflm_agreement})"),
            ("PTQ int8 - float", str(ptq)),
            ("QAT int8 - float", str(qat)),
            ("flash (model array)", f"{self.model_bytes:,} B"),
            ("RAM (TFLM arena)", f"{self.arena_bytes:,} B ({self.activation_bytes:,} activations + "
                                 f"{self.measured_arena_bytes - self.activation_bytes:,} persistent + margin)"),
            ("MAdds", f"{self.macs:,}"),
            ("params", f"{self.params:,}"),
            ("seed", str(self.seed)),
            ("files", self.out_dir),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _plots(workdir: str, result: DemoResult, profile: Any, operators: list[tuple[str, int]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc_png = os.path.join(workdir, "accuracy.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    stages = ["float", "PTQ int8", "QAT int8", "TFLM int8"]
    values = [result.float_accuracy, result.ptq_accuracy, result.qat_accuracy, result.tflm_accuracy]
    bars = ax.bar(stages, [v * 100 for v in values], color=["#4c72b0", "#dd8452", "#55a868", "#8172b3"])
    ax.bar_label(bars, labels=[f"{v:.1%}" for v in values])
    ax.set_ylabel(f"test accuracy (%), {result.test_images} images")
    ax.set_ylim(0, 105)
    ax.set_title(f"{result.network} on the digits: accuracy per stage (seed {result.seed})")
    if result.spread is not None:  # each bar's run-to-run spread over seeds 0-2, centred on this run
        spreads = [result.spread[s] for s in ("float", "PTQ int8", "QAT int8", "QAT int8")]
        ax.errorbar(range(4), [v * 100 for v in values], yerr=[s / 2 for s in spreads], fmt="none", ecolor="black",
                    capsize=4, lw=1)
    ax.set_xlabel("\n".join(f"{d.stage} - float {signed_points(d.points)} points: {d.verdict}"
                            for d in result.differences())
                  + ("" if result.spread is None else "\n(error bars: spread over seeds 0-2)"), fontsize=7)
    fig.tight_layout()
    fig.savefig(acc_png, dpi=110)
    plt.close(fig)

    # What the device needs, per operator of the int8 model as TFLM runs it: the persistent part of the arena
    # (tensor structs, per-channel quantization data) under the activations alive at that operator.
    mem_png = os.path.join(workdir, "memory.png")
    persistent = (result.measured_arena_bytes - result.activation_bytes) / 1024
    live = [b / 1024 for _, b in operators]
    peak = int(np.argmax(live))
    fig, ax = plt.subplots(figsize=(max(7, len(live) * 0.16), 5.2))
    x = np.arange(len(live))
    ax.bar(x, [persistent] * len(live), color="#c7c7c7", width=0.85, label=f"TFLM persistent data {persistent:.1f} KiB")
    ax.bar(x, live, bottom=persistent, width=0.85, label="activations alive at the operator (as TFLM plans them)",
           color=["#c44e52" if i == peak else "#4c72b0" for i in range(len(live))])
    ax.axhline(result.arena_bytes / 1024, color="black", lw=1,
               label=f"kTensorArenaSize {result.arena_bytes / 1024:.1f} KiB (measured + margin)")
    ax.axhline(persistent + profile.peak_activation_bytes / 1024, color="#dd8452", lw=1, ls="--",
               label=f"profiler estimate, each block as one operation: {profile.peak_activation_bytes / 1024:.1f} "
                     "KiB activations (paper Section 5.1)")
    ax.set_xticks(x[::max(1, len(x) // 20)], [f"{i}" for i in x[::max(1, len(x) // 20)]], fontsize=7)
    ax.set_xlabel(f"operator of the int8 model, in the order TFLM runs them (peak at #{peak}: {operators[peak][0]})")
    ax.set_ylabel("RAM (KiB)")
    ax.set_title(f"{result.network}: what the TFLM arena holds, operator by operator")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # off the bars
    fig.tight_layout()
    fig.savefig(mem_png, dpi=110)
    plt.close(fig)
    return [acc_png, mem_png]


def _report_md(result: DemoResult, profile: Any) -> str:
    persistent = result.measured_arena_bytes - result.activation_bytes
    arena = f"{result.arena_bytes:,} B = {result.activation_bytes:,} activations + {persistent:,} persistent + margin"
    estimate = f"{profile.peak_activation_bytes:,} B at `{profile.peak_layer}`"
    differences = result.differences()
    if result.spread is None:
        spread = ("The run-to-run spread was measured for the default settings only, so these differences are not "
                  "rated.")
    else:
        spread = ("Seed {seed} of the default settings. Over seeds 0, 1 and 2 the accuracies vary by up to "
                  + ", ".join(f"{v:.1f} ({k})" for k, v in result.spread.items())
                  + " points (`benchmarks/demo_seeds.py`): a difference between two stages smaller than that is "
                  "run-to-run variation, not an effect of quantization. QAT int8 scored above float with every seed "
                  "measured (`benchmarks/DEMO_SEEDS.md`): QAT goes on training the float model for 3 more epochs, "
                  "the likely cause, rather than quantization itself.").format(seed=result.seed)
    return f"""# keras-mbv2 demo: {result.network} on the bundled digits

Data: the UCI digits scikit-learn ships, {result.train_images} training and {result.test_images} test images
(stratified split, seed 0). Float training: {result.epochs} epochs, Adam 2e-3, batch 32, batch-norm momentum 0.9.
Quantization-aware training: {result.qat_epochs} epochs, Adam 1e-4. Calibration: 200 training images.
Seed {result.seed}, deterministic kernels: the same command prints the same accuracies. {spread}

| stage | value |
| --- | --- |
| float accuracy (Keras) | {result.float_accuracy:.1%} |
| PTQ int8 accuracy (TFLite) | {result.ptq_accuracy:.1%} |
| QAT int8 accuracy (TFLite, reference kernels) | {result.qat_accuracy:.1%} |
| QAT int8 accuracy (TFLite Micro host runtime) | {result.tflm_accuracy:.1%} |
| TFLM outputs vs TFLite reference kernels | {result.tflm_agreement} |
| PTQ int8 - float | {differences[0]} |
| QAT int8 - float | {differences[1]} |
| flash (model array, the bytes that go to the board) | {result.model_bytes:,} B |
| TFLM arena (RAM, kTensorArenaSize) | {arena} |
| MAdds | {result.macs:,} |
| params | {result.params:,} |
| profiler estimate, each block as one operation (not what TFLM needs) | {estimate} |
| run time | {result.seconds:.0f} s |

![accuracy per stage](accuracy.png)

![TFLM arena per operator](memory.png)

The arena is what the microcontroller needs for inference: TFLM's planned activation buffers (the largest set
alive at one operator, placed by its planner) plus its persistent data (tensor structs and per-channel
quantization parameters of every operator), measured on the TFLite Micro host runtime. The profiler's
block-level figure counts only the tensors between blocks, as if each block ran as one operation (the paper's
Section 5.1 estimate); TFLM runs every operator on its own, so its activations are larger.

Files: `model_float.keras` (Keras 3), `qat_model.h5` (tf_keras QAT, load under
`keras_mbv2.quantization.quantize_scope()`), `model_ptq_int8.tflite`, `model_int8.tflite`, `model_float.tflite`,
and `micro/` (C arrays, settings, op resolver for TensorFlow Lite Micro). For a whole firmware project around
them: `keras-mbv2 micro --tflite model_int8.tflite --project app` (then `make -C app model-objects`).
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
    from .training import compile_classifier, reproducible

    for name, value in (("epochs", epochs), ("qat_epochs", qat_epochs), ("image_size", image_size)):
        check_positive_int(name, value)
    if image_size < 32:
        raise ValueError(f"`image_size` must be at least 32 (the networks' strides). Received: image_size={image_size}")
    start = time.perf_counter()
    reproducible(seed)
    defaults = dict(network=network, width=width, groups=groups, image_size=image_size, epochs=epochs,
                    qat_epochs=qat_epochs) == DEFAULTS
    width = NETWORKS[network].demo_width if width is None else width
    model = build_network(network, (image_size, image_size, 1), width, groups, 10, bn_momentum=0.9)  # checks args
    # TensorFlow's native lines while training (with deterministic kernels, tf.data's `NodeDef mentions attribute
    # use_unbounded_threadpool` once per fit) stay off the terminal, as at start-up (keras_mbv2.logs)
    with output_folder(out, "--out", force) as work, native_stderr_to([]):
        log(f"[1/7] data: UCI digits from scikit-learn, resized to {image_size}x{image_size}")
        data = load_digits(image_size=image_size)
        log(f"[2/7] float training: {model.name}, {model.count_params():,} params, {epochs} epochs")
        compile_classifier(model, 2e-3)
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
            tflm_agreement=compare_outputs(micro.outputs, lite.outputs), model_bytes=report.model_bytes,
            arena_bytes=report.arena_bytes, measured_arena_bytes=report.measured_arena_bytes,
            activation_bytes=report.activation_bytes, macs=prof.macs, params=model.count_params(),
            seconds=time.perf_counter() - start, train_images=len(data.y_train), test_images=len(data.y_test),
            epochs=epochs, qat_epochs=qat_epochs, seed=seed, spread=dict(SEED_SPREAD) if defaults else None,
        )
        _plots(work, result, prof, live_bytes_per_operator(int8))
        with open(os.path.join(work, "report.md"), "w") as f:
            f.write(_report_md(result, prof))
        result.files = sorted(os.listdir(work))
    return result
