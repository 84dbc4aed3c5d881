"""Running .tflite models on the host: LiteRT (reference kernels) and the TFLite Micro runtime.

Both runtimes can abort the whole process on degenerate models, so everything here that a user's data can reach
runs them in a child process (`_worker.py`) and turns a crash into an error. TFLM's arena is measured the same
way, from its recording allocator's report.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .flatbuffer import (
    degenerate_tensors,
    io_details,
    memory_twin,
    opcode_names,
    pack_model,
    parse_model,
    read_tflite,
    require_int8,
)

RUNTIMES = ("litert", "tflm")
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")


@dataclass
class TFLiteResult:
    """What `evaluate_tflite` measured: the accuracy on the labels given, each image's raw outputs and predicted
    class, the runtime ("litert" or "tflm"), and for TFLM the arena its recording allocator reported."""

    accuracy: float
    outputs: np.ndarray  # raw outputs (int8 for an int8 model)
    predictions: np.ndarray
    runtime: str
    arena_bytes: int | None = None  # TFLM only: the arena the recording allocator reported


# An int8 input covers [(-128 - zero point) * scale, (127 - zero point) * scale]: the range of the calibration
# images. When more than this fraction of the values given lies outside it (by more than a tenth of its width),
# the images were scaled differently from the training data (0-255 against 0-1, say) and would be clipped.
OUT_OF_RANGE_FRACTION = 0.05


def check_input_range(x: np.ndarray, details: dict[str, Any]) -> None:
    """Raise when float images `x` lie mostly outside the range the model's int8 input represents."""
    if details["input_dtype"] != "int8" or x.size == 0:
        return
    scale, zero = details["input_scale"], details["input_zero_point"]
    low, high = (-128 - zero) * scale, (127 - zero) * scale
    margin = 0.1 * (high - low)
    outside = float(np.mean((x < low - margin) | (x > high + margin)))
    if outside > OUT_OF_RANGE_FRACTION:
        raise ValueError(
            f"`x` is not in the range the model was calibrated for: {outside:.0%} of its values lie outside "
            f"[{low:.3g}, {high:.3g}] (int8 input scale {scale:.3g}, zero point {zero}), and x spans "
            f"[{float(x.min()):.3g}, {float(x.max()):.3g}]. Scale the images as for training (e.g. x / 255)."
        )


def quantize_input(x: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    """Float images -> the model's input dtype (int8: round(x / scale) + zero point, clipped)."""
    x = np.asarray(x, dtype="float32")
    if details["input_dtype"] != "int8":
        return x
    q = np.round(x / details["input_scale"]) + details["input_zero_point"]
    return np.clip(q, -128, 127).astype("int8")


def run_litert(tflite: bytes, x: np.ndarray, reference_kernels: bool = True) -> np.ndarray:
    """Outputs for each image (batch 1 each), in this process. Reference kernels make int8 results
    bit-exact with TFLM. A degenerate model can abort the process: `run_isolated` is the safe way."""
    from ._worker import run_litert as run

    return run(tflite, x, reference_kernels)


def parse_arena_bytes(allocations: str, part: str = "total") -> int | None:
    """Arena bytes from TFLM's RecordingMicroAllocator report ("[RecordingMicroAllocator] Arena
    allocation total N bytes"). `part`: "total", "head" (the planned activation buffers) or "tail"
    (persistent data: tensor structs, operator data, quantization parameters)."""
    match = re.search(rf"Arena allocation {part} (\d+) bytes", allocations)
    return int(match.group(1)) if match else None


def run_isolated(tflite: bytes, x: np.ndarray, runtime: str = "litert", arena_size: int | None = None,
                 timeout: float = 600) -> tuple[np.ndarray, str]:
    """Run `x` (already in the model's input dtype) through `runtime` ("litert" or "tflm") in a child
    process, where a crash of the runtime (both can abort on degenerate models) becomes a RuntimeError here.

    Returns (outputs, TFLM allocation report or "").
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {RUNTIMES}. Received: runtime={runtime!r}")

    arena = arena_size or max(len(tflite) * 10, 1 << 20)
    return _run_child(runtime, _writer(tflite), x, arena, timeout,
                      lambda: _likely_cause(tflite) or _aborting_operator(tflite, runtime, x[:1], arena, timeout))


def _run_child(runtime: str, write_model: Any, x: np.ndarray, arena: int, timeout: float,
               cause: Any) -> tuple[np.ndarray, str]:
    label = "LiteRT" if runtime == "litert" else "TFLite Micro"
    with tempfile.TemporaryDirectory(prefix="keras_mbv2_run_") as tmp:
        model_path, in_path, out_path = (os.path.join(tmp, n) for n in ("model", "in.npy", "out.npz"))
        write_model(model_path)
        np.save(in_path, x)
        proc = subprocess.run(
            # by path, not -m: the child then imports only numpy and the runtime, not TensorFlow
            [sys.executable, _WORKER, runtime, model_path, in_path, out_path, str(arena)],
            capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            how = (
                f"was killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
                else f"exited with code {proc.returncode}"
            )
            tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"{label} {how} while running the model ({tail}).{cause()} "
                               "The calling process is unaffected.")
        result = np.load(out_path)
        return result["outputs"], str(result["allocations"])


# TFLite's reference int8 softmax (kernels/internal/reference/softmax.h, shared by TFLM) aborts on
# `TFLITE_CHECK(0 <= exponent && exponent <= 31)` once its sum of exponentials passes 2^9, i.e. when more than about
# 512 scores are near the maximum (tflite-micro#3499). Measured here with near-uniform scores: 512 classes run, 600
# abort, on LiteRT's reference kernels and on TFLM alike.
SOFTMAX_SAFE_CLASSES = 512


def _writer(data: bytes) -> Any:
    """A `write_model(path)` for `_run_child` that writes `data`."""

    def write(path: str) -> None:
        with open(path, "wb") as f:
            f.write(data)

    return write


def _model_up_to(data: bytes, last: int) -> bytes:
    """`data` with only its first `last` + 1 operators, that operator's output the model's output."""
    model = parse_model(data)
    graph = model.subgraphs[0]
    graph.operators = graph.operators[:last + 1]
    graph.outputs = [graph.operators[last].outputs[0]]
    model.signatureDefs = []
    return pack_model(model, len(data))


def _aborting_operator(tflite: bytes, runtime: str, x: np.ndarray, arena: int, timeout: float) -> str:
    """A sentence naming the first operator whose run kills `runtime`, found by running ever shorter prefixes of
    the model (a binary search, each prefix in its own child process), or "" when it cannot be found."""
    try:
        model = parse_model(tflite)
        if len(model.subgraphs) != 1:
            return ""
        names = opcode_names(model)
        operators = model.subgraphs[0].operators
        low, high = 0, len(operators) - 1  # the whole model aborts: the first aborting prefix ends in [low, high]
        while low < high:
            middle = (low + high) // 2
            prefix = _model_up_to(tflite, middle)
            try:
                _run_child(runtime, _writer(prefix), x, arena, timeout, lambda: "")
                low = middle + 1
            except RuntimeError:
                high = middle
        op = operators[low]
        shapes = [tuple(int(d) for d in model.subgraphs[0].tensors[t].shape) for t in op.inputs if t >= 0][:1]
    except Exception:  # a model too broken to cut: the message says what it can without it
        return ""
    shape = shapes[0] if shapes else "?"
    kind = names[op.opcodeIndex]
    why = ("a check inside that operator's reference kernel failed (the runtime says no more)")
    if kind == "SOFTMAX" and shapes and shapes[0][-1] > SOFTMAX_SAFE_CLASSES:
        why = (f"the reference int8 SOFTMAX checks that the sum of its exponentials stays below 2^9, which more than "
               f"about {SOFTMAX_SAFE_CLASSES} classes with near-equal scores exceed ({shape[-1]} classes here: an "
               "untrained or barely trained head; train it further, give it as many outputs as the data has "
               "classes, or end the model before its softmax)")
    return (f" The runtime aborts in operator #{low} ({kind}, input shape {shape}); the {low} operators before it "
            f"run: {why}.")


def _likely_cause(tflite: bytes) -> str:
    """A sentence naming the tensor whose degenerate quantization makes the runtimes abort, or ""."""
    try:
        bad = degenerate_tensors(tflite)
    except Exception:  # a model too broken to parse says so elsewhere
        return ""
    if not bad:
        return ""
    name, scale, where = bad[0]
    return (f" Likely cause: tensor {name!r} ({where}) has quantization scale {scale:.2g}"
            f"{f', and {len(bad) - 1} more tensors below 1e-6' if len(bad) > 1 else ''}: the model was not trained "
            "(or not calibrated on representative data) before conversion.")


def run_tflm(tflite: bytes, x: np.ndarray, arena_size: int | None = None,
             timeout: float = 600) -> tuple[np.ndarray, str]:
    """The TFLite Micro host runtime, in a child process. Returns (outputs, allocation report)."""
    return run_isolated(tflite, x, "tflm", arena_size, timeout)


def evaluate_tflite(tflite: Any, x: np.ndarray, y: np.ndarray, runtime: str = "litert") -> TFLiteResult:
    """Accuracy of a .tflite classifier on images `x` (float, in the range the model was trained on) and
    integer labels `y`, on LiteRT (reference kernels) or the TFLite Micro host runtime, each in a child
    process so that a runtime crash is an error here."""
    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {RUNTIMES}. Received: runtime={runtime!r}")
    data = read_tflite(tflite)
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(
            f"`x` and `y` must be non-empty and of equal length. Received: {len(x)} images, {len(y)} labels")
    details = io_details(data)
    if tuple(x.shape[1:]) != details["input_shape"][1:]:
        raise ValueError(f"`x` images must have shape {details['input_shape'][1:]}. Received: x.shape={x.shape}")
    check_input_range(x.astype("float32"), details)
    outputs, report = run_isolated(data, quantize_input(x, details), runtime)
    arena = parse_arena_bytes(report) if runtime == "tflm" else None
    predictions = np.argmax(outputs.reshape(len(outputs), -1), axis=-1)
    return TFLiteResult(float(np.mean(predictions == y)), outputs, predictions, runtime, arena)


@dataclass(frozen=True)
class ArenaUse:
    """TFLM's arena: `total` = `head` (activation buffers, as planned) + `tail` (persistent data).

    `cannot_run` says why the model itself cannot run when the arena had to be measured on its `memory_twin`."""

    total: int
    head: int
    cannot_run: str | None = None

    @property
    def tail(self) -> int:
        """Persistent data: tensor structs, operator data, per-channel quantization parameters."""
        return self.total - self.head


def shared_arena(*uses: ArenaUse) -> ArenaUse:
    """One arena for models that run one after another, as TFLM allocates it when one `MicroAllocator` is passed to
    each `MicroInterpreter` (multi-tenant allocation, tflite-micro's `TestMultiTenantInterpreter`): their
    activation heads overlap, so the head is the largest of them; each model's persistent tail stays. Each tail
    here was measured in its own arena, which also holds its own allocator objects (a few hundred bytes the shared
    arena holds once): the sum is an upper bound by that much."""
    head = max(u.head for u in uses)
    return ArenaUse(head + sum(u.tail for u in uses), head, next((u.cannot_run for u in uses if u.cannot_run), None))


def arena_use(data: bytes, input_shape: Sequence[int] | None = None) -> ArenaUse:
    """The arena TFLM's recording allocator reports (in a child process).

    Measured after allocation, without an inference: TFLM plans every activation buffer and runs every
    operator's Prepare while allocating, and reports the same arena after an inference (checked on
    MobileNetV2 split and unsplit).

    A model TFLM cannot prepare because its quantization is degenerate (an untrained network) is measured on its
    `memory_twin`, which has the memory of a trained model of the same architecture; `cannot_run` then names the
    degenerate tensor.
    """
    if input_shape is None:
        input_shape = require_int8(data)["input_shape"]
    x = np.zeros((0,) + tuple(input_shape[1:]), dtype="int8")
    cannot_run = None
    try:
        _, report = run_tflm(data, x)
    except RuntimeError:
        bad = degenerate_tensors(data)
        if not bad:
            raise
        name, scale, where = bad[0]
        more = f" ({len(bad)} tensors below 1e-6)" if len(bad) > 1 else ""
        cannot_run = (f"tensor {name!r} ({where}) has quantization scale {scale:.2g}{more}: train the model (or "
                      "calibrate it on representative data) before it can run. Its arena was measured on a copy with "
                      "sane scales, which needs what the trained model will")
        _, report = run_tflm(memory_twin(data), x)
    total, head = parse_arena_bytes(report), parse_arena_bytes(report, "head")
    if total is None or head is None:
        raise RuntimeError(f"TFLite Micro did not report its arena use:\n{report[-500:]}")
    return ArenaUse(total, head, cannot_run)


def measure_arena(data: bytes, input_shape: Sequence[int]) -> int:
    """Total arena bytes TFLM's recording allocator reports (in a child process)."""
    return arena_use(data, input_shape).total


@dataclass(frozen=True)
class Agreement:
    """How two runtimes' int8 outputs for the same inputs compare (DESIGN.md: TFLM and TFLite's reference kernels
    are usually bit-exact, but not always; one int8 step of rounding in one score is the difference seen)."""

    images: int
    scores: int  # outputs compared
    differing: int  # outputs that are not equal
    max_step: int  # largest |difference| in int8 steps
    same_predictions: int  # images whose argmax agrees

    @property
    def identical(self) -> bool:
        """True when every output is equal."""
        return self.differing == 0

    def __str__(self) -> str:
        if self.identical:
            return f"outputs identical on all {self.images} images"
        return (f"{self.differing} of {self.scores} outputs differ (at most {self.max_step} int8 step"
                f"{'s' if self.max_step > 1 else ''}); predictions agree on {self.same_predictions} of {self.images}")


def compare_outputs(a: np.ndarray, b: np.ndarray) -> Agreement:
    """Compare two runtimes' outputs for the same images (first axis: images)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"The outputs to compare must have one shape. Received: {a.shape} and {b.shape}")
    diff = np.abs(a.astype("int64") - b.astype("int64"))
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return Agreement(len(a), int(a.size), int(np.count_nonzero(diff)), int(diff.max(initial=0)),
                     int(np.sum(flat_a.argmax(-1) == flat_b.argmax(-1))))
