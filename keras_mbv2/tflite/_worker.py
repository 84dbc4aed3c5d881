"""Child process that runs a .tflite model in LiteRT (reference kernels) or the TFLite Micro host runtime.

Both runtimes can abort the whole process (SIGABRT) on degenerate models (e.g. a calibration that gives a
near-zero softmax input scale), so the parent runs this file in a child and turns a crash into an error.
Run by file path, so that only numpy and the runtime are imported:

    python _runtime_worker.py RUNTIME MODEL INPUTS OUT ARENA

RUNTIME is "litert", "tflm", "tflm-patched" (MODEL is then an .npz of the patch model, the rest model and the
plan; see keras_mbv2.tflite.patches) or "tflm-segments" (an .npz of the segment models and their plan; see
keras_mbv2.tflite.segments); INPUTS is a .npy of already-quantized inputs (N, ...); OUT is the .npz to
write (outputs, and TFLM's allocation report); ARENA is TFLM's arena size in bytes. With N = 0, TFLM only
allocates (and prepares every operator), which already fixes the arena it reports.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import numpy as np


def run_litert(model: bytes, inputs: np.ndarray, reference_kernels: bool = True) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    interp = Interpreter(model_content=model, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outputs = []
    for sample in inputs:
        interp.set_tensor(inp["index"], sample[None, ...])
        interp.invoke()
        outputs.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(outputs)


def run_tflm(model: bytes, inputs: np.ndarray, arena_size: int) -> tuple[np.ndarray, str]:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    outputs = []
    for x in inputs:
        interp.set_input(x[None, ...], 0)
        interp.invoke()
        outputs.append(np.array(interp.get_output(0))[0])
    return (np.stack(outputs) if outputs else np.zeros((0,), "int8")), _allocations(interp)


def _allocations(interp) -> str:
    """TFLM's allocation report (print_allocations writes to the C stderr: captured around it)."""
    with tempfile.TemporaryFile() as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            interp.print_allocations()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        return log.read().decode(errors="replace")


def run_patched(patch_model: bytes, rest_model: bytes, plan: dict, inputs: np.ndarray,
                arena_size: int, segments: tuple[list[bytes], dict] | None = None) -> tuple[np.ndarray, str]:
    """The firmware's patch loop (keras_mbv2.tflite.patches) on the TFLM host runtime: every patch's output is
    written into the stage output, which is then the rest model's input; the rest model runs once. The firmware
    gives both interpreters one arena (one MicroAllocator, with a stage buffer) or an arena each
    (`PatchedModel.shared`); this runtime gives each its own, which moves where tensors lie, not what the kernels
    compute. With `segments` (the rest model's segment models and their plan), the stage output goes through the
    segment loop instead of the rest model."""
    from tflite_micro.python.tflite_micro import runtime

    patch = runtime.Interpreter.from_bytes(patch_model, arena_size=arena_size)
    rest = runtime.Interpreter.from_bytes(rest_model, arena_size=arena_size) if segments is None else None
    reports: list[str] = []
    (ay, ax), masks = plan["input"], plan["masks"]
    channels = plan.get("mask_channels") or [1] * len(masks)
    ph, pw = plan["patch"]
    outputs = []
    for frame in inputs:
        stage = np.zeros(plan["stage_shape"], "int8")
        height, width = frame.shape[:2]
        for oy in plan["starts"][0]:
            for ox in plan["starts"][1]:
                y0, x0 = ay[0] * oy + ay[1], ax[0] * ox + ax[1]
                region = np.full((ay[2], ax[2], frame.shape[2]), plan["input_zero_point"], "int8")
                top, left = max(y0, 0), max(x0, 0)
                bottom, right = min(y0 + ay[2], height), min(x0 + ax[2], width)
                region[top - y0:bottom - y0, left - x0:right - x0] = frame[top:bottom, left:right]
                patch.set_input(region[None], 0)
                for j, (my, mx) in enumerate(masks, start=1):
                    rows = np.arange(my[2]) + my[0] * oy + my[1]
                    cols = np.arange(mx[2]) + mx[0] * ox + mx[1]
                    inside = ((rows >= 0) & (rows < my[3]))[:, None] & ((cols >= 0) & (cols < mx[3]))[None, :]
                    mask = np.repeat(inside.astype("int8")[None, :, :, None], channels[j - 1], axis=3)
                    patch.set_input(mask, j)
                patch.invoke()
                stage[oy:oy + ph, ox:ox + pw] = np.array(patch.get_output(0))[0]
        if segments is not None:
            outputs.append(segment_loop(segments[0], segments[1], stage[None], arena_size, reports))
            continue
        rest.set_input(stage[None], 0)
        rest.invoke()
        outputs.append(np.array(rest.get_output(0))[0])
    report = "[patch model]\n" + _allocations(patch)
    report += "[rest model]\n" + _allocations(rest) if rest is not None else \
        "".join(f"[segment {i}]\n{r}{smallest_arena(m, r, arena_size)}"
                for i, (m, r) in enumerate(zip(segments[0], reports)))  # the rest's segments, when run
    return (np.stack(outputs) if outputs else np.zeros((0,), "int8")), report


def run_segments(models: list[bytes], plan: dict, inputs: np.ndarray, arena_size: int) -> tuple[np.ndarray, str]:
    """The firmware's segment loop (keras_mbv2.tflite.segments) on the TFLM host runtime: per frame, for each
    segment, an interpreter is created and allocated, the segment's input tensors are set from the values so far
    (the frame for the model's inputs), it is invoked, its outputs are kept, and the interpreter is dropped. The
    report is each segment's allocations (from its first interpreter, or one made only to report them) and the
    smallest arena it allocates in (`smallest_arena`)."""
    from tflite_micro.python.tflite_micro import runtime

    reports: list[str] = []
    outputs = [segment_loop(models, plan, frame[None], arena_size, reports) for frame in inputs]
    for model in models[len(reports):]:  # no frame: allocate each segment once, for its report
        reports.append(_allocations(runtime.Interpreter.from_bytes(model, arena_size=arena_size)))
    report = "".join(f"[segment {i}]\n{r}{smallest_arena(m, r, arena_size)}"
                     for i, (m, r) in enumerate(zip(models, reports)))
    return (np.stack(outputs) if outputs else np.zeros((0,), "int8")), report


def smallest_arena(model: bytes, report: str, arena_size: int) -> str:
    """"Smallest arena N bytes": the least arena (to 16 B) in which `model` allocates. It can exceed the total the
    recording allocator reports (`report`): while each operator's Prepare runs, its temporary tensors (a per-channel
    filter's zero points: 4 B per channel) take arena beside the persistent data, before the activations are
    planned; a segment with many channels and small activations needs that peak, not the total."""
    import re

    from tflite_micro.python.tflite_micro import runtime

    if not hasattr(os, "fork"):  # each try in a forked copy of this process: none where there is no fork
        return ""

    def allocates(size: int) -> bool:  # a failed allocation leaves TFLM's temporary state behind (later ones crash)
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
                runtime.Interpreter.from_bytes(model, arena_size=size)
                os._exit(0)
            except BaseException:
                os._exit(1)
        return os.waitpid(pid, 0)[1] == 0

    found = re.search(r"Arena allocation total (\d+) bytes", report)
    low = int(found.group(1)) if found else 16
    if allocates(low):
        return f"Smallest arena {low} bytes\n"
    high = arena_size
    while high - low > 16:  # fails at low, allocates at high
        middle = (low + high) // 2
        low, high = (low, middle) if allocates(middle) else (middle, high)
    return f"Smallest arena {high} bytes\n"


def segment_loop(models: list[bytes], plan: dict, x: np.ndarray, arena_size: int, reports: list[str]) -> np.ndarray:
    """One inference through the segments (`run_segments`), `x` the model's input (batch of 1), exactly as
    firmware/app's loop: the tensors between segments live in one int8 boundary buffer, at the offsets of the plan's
    layout (`SegmentedModel.buffer_layout`), moved and overwritten as there; the first time, each segment's
    allocation report is appended to `reports`. Returns the model's output (without the batch axis)."""
    from tflite_micro.python.tflite_micro import runtime

    layout, shapes = plan["layout"], {}
    buffer = np.zeros(layout["size"], np.int8)
    if layout["input_in_buffer"]:  # a patch stage's output, assembled at the buffer's front
        buffer[:x.size] = x.ravel()
    for i, model in enumerate(models):
        interp = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
        for j, (offset, size) in enumerate(layout["inputs"][i]):
            value = x if offset < 0 else buffer[offset:offset + size]
            interp.set_input(value.reshape(interp.get_input_details(j)["shape"]), j)
        interp.invoke()
        for start, to, size in layout["moves"][i]:  # toward the front, in order, as the firmware's memmove
            buffer[to:to + size] = buffer[start:start + size].copy()
        for j, (offset, size) in enumerate(layout["outputs"][i]):
            if offset >= 0:
                value = np.asarray(interp.get_output(j))
                buffer[offset:offset + size] = value.ravel()
                shapes[plan["outputs"][i][j]] = value.shape
        if len(reports) < len(models):
            reports.append(_allocations(interp))
        del interp
    offset, size = layout["model_outputs"][0]
    return buffer[offset:offset + size].reshape(shapes[plan["model_outputs"][0]][1:])


def _segment_models(models: Any) -> list[bytes]:
    """The segment models `segment_0` .. `segment_<n-1>` of a loaded .npz, in order (none: [])."""
    count = sum(1 for k in models.files if k.startswith("segment_") and k[8:].isdigit())
    return [models[f"segment_{i}"].tobytes() for i in range(count)]


def main(runtime: str, model_path: str, inputs_path: str, out_path: str, arena_size: int) -> None:
    inputs = np.load(inputs_path)
    if runtime == "tflm-segments":  # MODEL is an .npz: segment_0 .. segment_<n-1> and the plan as JSON
        import json

        models = np.load(model_path)
        outputs, report = run_segments(_segment_models(models), json.loads(str(models["plan"])), inputs, arena_size)
        np.savez(out_path, outputs=outputs, allocations=np.array(report))
        return
    if runtime == "tflm-patched":  # MODEL is an .npz: patch and rest models and the plan as JSON
        import json

        models = np.load(model_path)
        segment_models = _segment_models(models)  # the rest model's segments, when it runs in segments
        segments = (segment_models, json.loads(str(models["segment_plan"]))) if segment_models else None
        outputs, report = run_patched(models["patch"].tobytes(), models["rest"].tobytes(),
                                      json.loads(str(models["plan"])), inputs, arena_size, segments)
        np.savez(out_path, outputs=outputs, allocations=np.array(report))
        return
    with open(model_path, "rb") as f:
        model = f.read()
    if runtime == "litert":
        outputs, report = run_litert(model, inputs), ""
    else:
        outputs, report = run_tflm(model, inputs, arena_size)
    np.savez(out_path, outputs=outputs, allocations=np.array(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
