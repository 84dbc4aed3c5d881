"""An int8 .tflite -> the C/C++ files a TensorFlow Lite Micro application needs.

Conventions of the TFLM examples (person_detection, tools/generate_cc_arrays.py,
tools/gen_micro_mutable_op_resolver): `alignas(16) const unsigned char g_<name>_model_data[]` (const, so it
stays in flash) with its size, a `model_settings.h` with input geometry and quantization, and a
`MicroMutableOpResolver<N>` registering exactly the model's operators.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..files import write_files
from ..tflite import (
    arena_use,
    operator_names,
    read_tflite,
    require_int8,
    strip_strings,
    tflite_macs,
)
from ..tflite.flatbuffer import memory_twin
from ..tflite.memory_plan import with_tightest_plan
from ..tflite.patches import PatchedModel, PatchPlan, plan_to_json
from ..tflite.runtime import check_input_range, quantize_input
from ..tflite.segments import SegmentedModel
from .boards import BOARDS, fit_problems

# Host-measured arena plus this margin. The 64-bit host runtime already over-counts a 32-bit target
# (MobileNetV2 0.35 digits: 87,312 B host vs 81,732 B on a Cortex-M4), the margin covers alignment and
# platform differences.
ARENA_MARGIN = 1024

# TFLM MicroMutableOpResolver methods for builtin operators; the value is the int8-specialised
# registration where TFLM (and CMSIS-NN) provides one, else None.
TFLM_OPS: dict[str, tuple[str, str | None]] = {
    "ADD": ("AddAdd", None),
    "AVERAGE_POOL_2D": ("AddAveragePool2D", "tflite::Register_AVERAGE_POOL_2D_INT8()"),
    "CONCATENATION": ("AddConcatenation", None),
    "CONV_2D": ("AddConv2D", "tflite::Register_CONV_2D_INT8()"),
    "DEPTHWISE_CONV_2D": ("AddDepthwiseConv2D", "tflite::Register_DEPTHWISE_CONV_2D_INT8()"),
    "DEQUANTIZE": ("AddDequantize", None),
    "FULLY_CONNECTED": ("AddFullyConnected", "tflite::Register_FULLY_CONNECTED_INT8()"),
    "HARD_SWISH": ("AddHardSwish", None),
    "LOGISTIC": ("AddLogistic", None),
    "MAX_POOL_2D": ("AddMaxPool2D", "tflite::Register_MAX_POOL_2D_INT8()"),
    "MEAN": ("AddMean", None),
    "MUL": ("AddMul", None),
    "PAD": ("AddPad", None),
    "PADV2": ("AddPadV2", None),
    "QUANTIZE": ("AddQuantize", None),
    "RELU": ("AddRelu", None),
    "RELU6": ("AddRelu6", None),
    "RESHAPE": ("AddReshape", None),
    "SOFTMAX": ("AddSoftmax", "tflite::Register_SOFTMAX_INT8()"),
    "SQUEEZE": ("AddSqueeze", None),
    "STRIDED_SLICE": ("AddStridedSlice", None),
    "SUB": ("AddSub", None),
    "TRANSPOSE": ("AddTranspose", None),
}


@dataclass
class MicroReport:
    """What `emit` wrote and measured: flash (model bytes) and RAM (arena) of the model on TFLite Micro."""

    name: str
    model_bytes: int
    arena_bytes: int  # kTensorArenaSize
    measured_arena_bytes: int
    operators: list[str]
    macs: int
    board: str | None = None
    files: list[str] = field(default_factory=list)
    activation_bytes: int | None = None  # the arena's planned activation buffers (TFLM's "head")
    online_arena_bytes: int | None = None  # the arena TFLM planned itself, when an offline plan beat it
    cannot_run: str | None = None  # why the model cannot run yet (an untrained network), when it cannot
    array_bytes: int | None = None  # the array written, when it differs from model_bytes (an untrained network)
    patches: PatchPlan | None = None  # patch-based inference: the plan; model_bytes then counts both arrays
    patch_arena_bytes: int | None = None  # kPatchArenaSize, when each model has its own arena
    stage_bytes: int | None = None  # the stage buffer, when both models share kTensorArenaSize
    frame_bytes: int | None = None  # the whole input frame
    band_bytes: int | None = None  # the input band the patch loop holds instead of the frame
    segments: SegmentedModel | None = None  # segmented execution: the model (patched: the rest model) in segments
    boundary_bytes: int | None = None  # kBoundaryBytes, segmented (patched: it first holds the stage output)

    @property
    def device_ram_bytes(self) -> int:
        """The RAM the emitted files need: kTensorArenaSize, and with patches also kPatchArenaSize or the stage
        buffer, and the input band."""
        return (self.arena_bytes + (self.patch_arena_bytes or 0) + (self.stage_bytes or 0) + (self.band_bytes or 0)
                + (self.boundary_bytes or 0))

    def _summary(self) -> list[str]:
        flash = f"model   {self.name}: {self.model_bytes:,} B flash (int8 .tflite, tensor names stripped)"
        if self.array_bytes is not None and self.array_bytes != self.model_bytes:
            flash = (f"model   {self.name}: {self.model_bytes:,} B flash once trained, to within flatbuffer padding "
                     f"(the untrained array written is {self.array_bytes:,} B: its equal constants are stored once)")
        lines = [
            flash,
            f"arena   {self.arena_bytes:,} B RAM (kTensorArenaSize = measured {self.measured_arena_bytes:,} B "
            f"+ {ARENA_MARGIN:,} B margin)",
            f"ops     {', '.join(self.operators)}",
            f"MACs    {self.macs:,}",
        ]
        if self.activation_bytes is not None:
            lines.insert(2, f"        {self.activation_bytes:,} B activations + "
                            f"{self.measured_arena_bytes - self.activation_bytes:,} B TFLM persistent data")
        if self.online_arena_bytes is not None:
            lines.append(f"plan    offline memory plan in the model (OfflineMemoryAllocation): arena "
                         f"{self.online_arena_bytes:,} B -> {self.measured_arena_bytes:,} B")
        if self.patches is not None:
            lines[0] = (f"model   {self.name}: {self.model_bytes:,} B flash (patch model + rest model, int8 .tflite, "
                        "tensor names stripped)")
            if self.segments is not None:
                arenas = ""  # the segments' lines below
            elif self.stage_bytes:
                arenas = (f"{self.arena_bytes:,} B shared by the patch and rest models (kTensorArenaSize = measured "
                          f"{self.measured_arena_bytes:,} B + {ARENA_MARGIN:,} B margin) + {self.stage_bytes:,} B "
                          "stage buffer")
            else:
                arenas = (f"{self.arena_bytes:,} B rest model (kTensorArenaSize) + {self.patch_arena_bytes:,} B "
                          "patch model (kPatchArenaSize)")
            lines[1] = (f"arena   {arenas} + {self.band_bytes:,} B input band = {self.device_ram_bytes:,} B RAM (the "
                        f"whole {self.frame_bytes:,} B frame is never in RAM: the app reads rows with GetImageRow)")
            lines.insert(2, f"patches {self.patches.describe()}")
        if self.segments is not None:
            lines[0] = (f"model   {self.name}: {self.model_bytes:,} B flash ({'patch model + ' if self.patches else ''}"
                        f"{len(self.segments.segments)} segment models, int8 .tflite, tensor names stripped)")
            lines[1] = (f"arena   {self.arena_bytes:,} B, every {'model' if self.patches else 'segment'} in turn "
                        f"(kTensorArenaSize = the largest measured {self.measured_arena_bytes:,} B + "
                        f"{ARENA_MARGIN:,} B margin) + {self.boundary_bytes:,} B boundary buffer (kBoundaryBytes"
                        + (f"; first the {self.patches.stage_shape[0]}x{self.patches.stage_shape[1]}x"
                           f"{self.patches.stage_shape[2]} stage output) + {self.band_bytes:,} B input band"
                           if self.patches else ")")
                        + f" = {self.device_ram_bytes:,} B RAM")
            lines.insert(2, f"segments {self.segments.describe()}")
        if self.board:
            lines.append(f"board   {self.board}: fits")
        if self.cannot_run:
            lines.append(f"runs    NOT YET: {self.cannot_run}")
        return lines

    def __str__(self) -> str:
        return "\n".join([*self._summary(), *(f"file    {f}" for f in self.files)])

    def file_report(self) -> str:
        """The `<name>_report.txt` text: the same lines with the files by name, so that emitting one model into
        two folders gives identical files."""
        return "\n".join([*self._summary(), *(f"file    {os.path.basename(f)}" for f in self.files)]) + "\n"


def file_stem(name: str) -> str:
    """The stem of the model's data and settings files and array, in the TFLM examples' style:
    `person_detect` -> `person_detect_model` (person_detect_model_data.h, g_person_detect_model_data), and a
    name already ending in "model" is kept (`model` -> model_data.h, g_model_data)."""
    return name if name.endswith("model") else f"{name}_model"


def emitted_names(name: str) -> list[str]:
    """The file names `emit(..., name=name)` writes (with test images, also `<stem>_test_images.h/.cc`; for a
    patched model, also `<stem>_patches.h/.cc/.json`; in segments, `<stem>_segments.h/.cc/.json`)."""
    stem = file_stem(name)
    return [f"{stem}_data.h", f"{stem}_data.cc", f"{stem}_settings.h", f"{name}_op_resolver.h", f"{name}_report.txt",
            f"{stem}_test_images.h", f"{stem}_test_images.cc", f"{stem}_patches.h", f"{stem}_patches.cc",
            f"{stem}_patches.json", f"{stem}_segments.h", f"{stem}_segments.cc", f"{stem}_segments.json"]


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
        raise ValueError(f"`name` must be a C identifier (letters, digits, _). Received: name={name!r}")
    return name


def tensor_arena_size(measured: int) -> int:
    """kTensorArenaSize for a measured arena: plus `ARENA_MARGIN`, rounded up to 16 bytes."""
    return int(math.ceil((measured + ARENA_MARGIN) / 16) * 16)


def emitted_ram(patched: PatchedModel) -> int:
    """RAM of a patched model as emitted: the input band, and the shared arena's kTensorArenaSize and the stage
    buffer, or each model's arena size (kTensorArenaSize, kPatchArenaSize)."""
    if patched.shared:
        return patched.band_bytes + patched.stage_bytes + tensor_arena_size(patched.arena.total)
    return patched.band_bytes + tensor_arena_size(patched.patch_arena.total) + tensor_arena_size(
        patched.rest_arena.total)


def flash_bytes(model: bytes | PatchedModel, segments: SegmentedModel | None = None) -> int:
    """Flash of the model's arrays as `emit` writes them once the model is trained: the int8 flatbuffer with tensor
    names stripped (both, patch and rest, for a patched model; with `segments`, each segment's instead of the whole
    model's or the rest model's), each measured on its memory twin, so that an untrained network's equal constants
    (stored once by the converter) do not understate it."""
    if segments is not None:
        return sum(flash_bytes(s.model) for s in segments.segments) + (
            flash_bytes(model.patch) if isinstance(model, PatchedModel) else 0)
    if isinstance(model, PatchedModel):
        return flash_bytes(model.patch) + flash_bytes(model.rest)
    return len(strip_strings(memory_twin(model)))


def _c_array(data: bytes) -> str:
    rows = []
    for i in range(0, len(data), 12):
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + 12]) + ",")
    return "\n".join(rows)


def _test_image_files(stem: str, images: np.ndarray, labels: np.ndarray | None) -> dict[str, str]:
    """`<stem>_test_images.h/.cc`: int8 images, already quantized with the model's input parameters, for the
    app's image_provider (and the QEMU run, whose scores `check_app_output` compares with the host's)."""
    header = "// Generated by keras_mbv2.micro.emit; do not edit.\n"
    guard = stem.upper() + "_TEST_IMAGES_H_"
    n, size = len(images), int(np.prod(images.shape[1:]))
    rows = ",\n".join("  {" + ", ".join(str(int(v)) for v in image.ravel()) + "}" for image in images)
    label_values = ", ".join(str(int(v)) for v in (labels if labels is not None else [-1] * n))
    return {
        f"{stem}_test_images.h": (
            f"{header}#ifndef {guard}\n#define {guard}\n\n#include <cstdint>\n\n"
            f"constexpr int kNumTestImages = {n};\n"
            f"// Quantized int8 inputs ({size} values each) and their labels (-1: unknown).\n"
            f"extern const int8_t g_test_images[kNumTestImages][{size}];\n"
            f"extern const int g_test_labels[kNumTestImages];\n\n#endif  // {guard}\n"
        ),
        f"{stem}_test_images.cc": (
            f'{header}#include "{stem}_test_images.h"\n\n'
            f"const int8_t g_test_images[kNumTestImages][{size}] = {{\n{rows}\n}};\n"
            f"const int g_test_labels[kNumTestImages] = {{{label_values}}};\n"
        ),
    }


def _files(name: str, data: bytes, details: dict[str, Any], ops: list[str], arena: int, measured: int,
           labels: Sequence[str] | None, arena_comment: str | None = None) -> dict[str, str]:
    stem = file_stem(name)
    guard = name.upper()
    _, h, w, c = details["input_shape"] if len(details["input_shape"]) == 4 else (1, *details["input_shape"][1:], 1)
    classes = int(np.prod(details["output_shape"][1:]))
    header = "// Generated by keras_mbv2.micro.emit; do not edit.\n"
    files = {}
    guard = stem.upper()
    files[f"{stem}_data.h"] = (
        f"{header}#ifndef {guard}_DATA_H_\n#define {guard}_DATA_H_\n\n"
        f"extern const unsigned char g_{stem}_data[];\nextern const unsigned int g_{stem}_data_size;\n\n"
        f"#endif  // {guard}_DATA_H_\n"
    )
    files[f"{stem}_data.cc"] = (
        f'{header}#include "{stem}_data.h"\n\n'
        f"// int8 TFLite flatbuffer, {len(data)} bytes. const keeps it in flash; TFLM needs 16-byte alignment.\n"
        f"alignas(16) const unsigned char g_{stem}_data[] = {{\n{_c_array(data)}\n}};\n"
        f"const unsigned int g_{stem}_data_size = {len(data)};\n"
    )
    names = [str(label) for label in labels] if labels else [str(i) for i in range(classes)]
    quoted = ", ".join('"' + label.replace("\\", "\\\\").replace('"', '\\"') + '"' for label in names)
    label_lines = f"\nconstexpr const char* kCategoryLabels[kCategoryCount] = {{{quoted}}};\n"
    files[f"{stem}_settings.h"] = (
        f"{header}#ifndef {guard}_SETTINGS_H_\n#define {guard}_SETTINGS_H_\n\n"
        f"constexpr int kNumRows = {h};\nconstexpr int kNumCols = {w};\nconstexpr int kNumChannels = {c};\n"
        f"constexpr int kInputSize = kNumRows * kNumCols * kNumChannels;\n"
        f"constexpr float kInputScale = {details['input_scale']!r}f;\n"
        f"constexpr int kInputZeroPoint = {details['input_zero_point']};\n"
        f"constexpr float kOutputScale = {details['output_scale']!r}f;\n"
        f"constexpr int kOutputZeroPoint = {details['output_zero_point']};\n"
        f"constexpr int kCategoryCount = {classes};\n"
        + (arena_comment or
           f"// TFLM arena: {measured} B measured with the TFLM host runtime (RecordingMicroAllocator, all\n"
           f"// operators prepared) + {ARENA_MARGIN} B margin. The 64-bit host over-counts a 32-bit target slightly.\n")
        + f"constexpr int kTensorArenaSize = {arena};\n{label_lines}\n"
        f"#endif  // {guard}_SETTINGS_H_\n"
    )
    adds = []
    for op in ops:
        method, int8 = TFLM_OPS[op]
        adds.append(f"  if (resolver.{method}({int8 or ''}) != kTfLiteOk) return kTfLiteError;")
    guard = name.upper()
    files[f"{name}_op_resolver.h"] = (
        f"{header}#ifndef {guard}_OP_RESOLVER_H_\n#define {guard}_OP_RESOLVER_H_\n\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        f"// Exactly the {len(ops)} operators of the model, int8 kernels where TFLM has them.\n"
        f"using {_camel(name)}OpResolver = tflite::MicroMutableOpResolver<{len(ops)}>;\n\n"
        f"inline TfLiteStatus Register{_camel(name)}Ops({_camel(name)}OpResolver& resolver) {{\n"
        + "\n".join(adds) + "\n  return kTfLiteOk;\n}\n\n"
        f"#endif  // {guard}_OP_RESOLVER_H_\n"
    )
    return files


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def emit(
    tflite: Any,
    out_dir: str,
    name: str = "model",
    board: str | None = None,
    labels: Sequence[str] | None = None,
    arena_bytes: int | None = None,
    memory_plan: bool = True,
    test_images: np.ndarray | None = None,
    test_labels: Sequence[int] | None = None,
    segments: SegmentedModel | None = None,
) -> MicroReport:
    """Write `<stem>_data.h/.cc`, `<stem>_settings.h`, `<name>_op_resolver.h` and `<name>_report.txt` into
    `out_dir`, and return the report. The stem is `file_stem(name)`: `model_data.h` for the default name,
    `digits_model_data.h` for name="digits".

    The model must be full-int8. The arena is measured by allocating the model in the TFLM host runtime
    (in a child process) unless `arena_bytes` is given. With `board` (see `keras_mbv2.micro.BOARDS`) the
    model and arena must fit its flash and RAM. Nothing is written unless every check passes; files are
    written under temporary names and renamed into place.

    With `memory_plan` (default), the activation offsets are also planned here (`memory_plan.offline_plan`)
    and stored in the model's metadata when TFLM then reports a smaller arena than its own greedy plan;
    the C array holds that model (same operators and weights, so the same outputs).

    `tflite` may also be a `keras_mbv2.tflite.PatchedModel` (`fit_ram(...).patched`): the model array is then the
    rest model, `<stem>_patches.h/.cc` hold the patch model, the scheme and the plan for firmware/app's patch loop,
    and `<stem>_patches.json` the plan for `check_app_output`; `kTensorArenaSize` is the arena both models share
    or, when an arena each needs less RAM (`PatchedModel.shared`), the rest model's, beside `kPatchArenaSize`; as
    measured (`arena_bytes` and `memory_plan` apply to whole models only).

    With `segments` (`fit_ram(..., segments=True).segmented`: the model, or a PatchedModel's rest model, cut by
    `keras_mbv2.tflite.segments`), the files run it in segments: the model array is the first segment,
    `<stem>_segments.h/.cc` hold the others and the boundary buffer's layout for firmware/app's segment loop (one
    arena, kTensorArenaSize, every segment in turn, the patch model first when patched), `<stem>_segments.json` the
    plan for `check_app_output`.

    With `test_images` (float images in the range the model was trained on, shape (N, H, W, C)), also write
    `<stem>_test_images.h/.cc`: the images quantized with the model's input parameters, exactly as
    `evaluate_tflite` quantizes them, for the app's image_provider (`make run-app` classifies them on QEMU, and
    `keras_mbv2.micro.check_app_output` compares its scores with the host runtime's bit for bit).
    """
    name = _identifier(name)
    if board is not None and board not in BOARDS:
        raise ValueError(f"`board` must be one of {sorted(BOARDS)}. Received: board={board!r}")
    patched = tflite if isinstance(tflite, PatchedModel) else None
    _check_not_stale(out_dir, name, patched is not None, segments is not None)
    if segments is not None:
        return _emit_segmented(segments, patched, tflite, out_dir, name, board, labels, test_images, test_labels)
    if patched is not None:
        return _emit_patched(tflite, out_dir, name, board, labels, test_images, test_labels)
    data = read_tflite(tflite)
    details = require_int8(data)
    ops = sorted(set(operator_names(data)))
    _check_operators_and_labels(ops, details, labels)
    use = arena_use(data, details["input_shape"]) if arena_bytes is None else None
    online = None
    if use is not None and memory_plan:
        data, use, online_use = with_tightest_plan(data, use)
        online = online_use.total if online_use is not None else None
    measured = use.total if use is not None else int(arena_bytes)
    arena = tensor_arena_size(measured)
    cannot_run = use.cannot_run if use is not None else None
    data = strip_strings(data)
    # Flash of the architecture: an untrained network's equal constants (zero biases, ...) share buffers and
    # vanish once trained, so its size is that of its memory twin, which holds every constant apart.
    flash = flash_bytes(data) if cannot_run else len(data)
    _check_board(board, flash, arena)
    report = MicroReport(name, flash, arena, measured, ops, tflite_macs(data), board,
                         activation_bytes=use.head if use is not None else None, online_arena_bytes=online,
                         cannot_run=cannot_run, array_bytes=len(data))
    files = _files(name, data, details, ops, arena, measured, labels)
    _add_test_images(files, name, details, test_images, test_labels)
    return _write_with_report(out_dir, report, files)


def _check_not_stale(out_dir: str, name: str, patched: bool, segmented: bool) -> None:
    """micro/Makefile builds the app as patched (segmented) when `<stem>_patches.h` (`_segments.h`) is in the folder:
    refuse to emit a model without them beside such files, which would then run around the wrong model."""
    for kind, wanted, what in (("patches", patched, "a patched"), ("segments", segmented, "a segmented")):
        stale = os.path.join(out_dir, f"{file_stem(name)}_{kind}.h")
        if not wanted and os.path.exists(stale):
            raise ValueError(f"`out_dir` holds {what} model's files ({os.path.basename(stale)} ...): emit into another "
                             f"folder or remove {file_stem(name)}_{kind}.* first. Received: out_dir={out_dir!r}")


def _check_operators_and_labels(ops: list[str], details: dict[str, Any], labels: Sequence[str] | None) -> None:
    missing = [op for op in ops if op not in TFLM_OPS]
    if missing:
        raise ValueError(
            f"The model uses operators TFLite Micro does not provide: {missing}. Rebuild the model without them."
        )
    classes = int(np.prod(details["output_shape"][1:]))
    if labels is not None and len(labels) != classes:
        raise ValueError(f"`labels` must have one entry per class ({classes}). Received: {len(labels)} labels")


def _check_board(board: str | None, flash: int, ram: int) -> None:
    if board is not None:
        problems = fit_problems(BOARDS[board], flash, ram)
        if problems:
            raise ValueError(f"The model does not fit board={board!r}: " + "; ".join(problems))


def _write_with_report(out_dir: str, report: MicroReport, files: dict[str, str]) -> MicroReport:
    """Write `files` and `<name>_report.txt` (which lists them all) into `out_dir`; the report knows its files."""
    report_name = f"{report.name}_report.txt"
    report.files = [os.path.join(out_dir, f) for f in [*files, report_name]]
    files[report_name] = report.file_report()
    write_files(out_dir, files)
    return report


def _add_test_images(files: dict[str, str], name: str, details: dict[str, Any], test_images: np.ndarray | None,
                     test_labels: Sequence[int] | None) -> None:
    if test_images is None:
        return
    x = np.asarray(test_images, dtype="float32")
    if x.ndim != 4 or x.shape[1:] != tuple(details["input_shape"][1:]) or len(x) == 0:
        raise ValueError(f"`test_images` must have shape (N, *{tuple(details['input_shape'][1:])}). "
                         f"Received: test_images with shape {x.shape}")
    if test_labels is not None and len(test_labels) != len(x):
        raise ValueError(f"`test_labels` must have one entry per test image ({len(x)}). "
                         f"Received: {len(test_labels)} labels")
    check_input_range(x, details)
    files.update(_test_image_files(file_stem(name), quantize_input(x, details),
                                   None if test_labels is None else np.asarray(test_labels)))


def _patch_files(stem: str, patch: bytes, plan: PatchPlan, patch_arena: int | None,
                 measured: int | None, segmented: bool = False) -> dict[str, str]:
    """`<stem>_patches.h/.cc`: the patch model's array, the scheme (one shared arena, or the patch model's own
    arena of `patch_arena` bytes) and the plan as constants for the app's loop; `<stem>_patches.json`: the same
    plan for host tools (`check_app_output`)."""
    import json

    header = "// Generated by keras_mbv2.micro.emit; do not edit.\n"
    guard = stem.upper() + "_PATCHES_H_"

    def axis(a: Any) -> str:
        return f"{{{a.stride}, {a.offset}, {a.size}, {a.full}}}"

    masks = ",\n".join(f"    {{{axis(y)}, {axis(x)}}}" for y, x in plan.masks) or "    {{0, 0, 0, 0}, {0, 0, 0, 0}}"
    h, w, c = plan.stage_shape
    if segmented:
        scheme = ("// The patch model runs first in kTensorArenaSize (its interpreter made and dropped each\n"
                  "// inference); the patch outputs are assembled in the boundary buffer, the rest model's segments'\n"
                  "// input.\n"
                  "#define KERAS_MBV2_SHARED_ARENA 1\n\n")
    elif patch_arena is None:
        scheme = ("// Both models share kTensorArenaSize (one MicroAllocator); the patch outputs are assembled in a\n"
                  "// stage buffer, copied into the rest model's input before it runs.\n"
                  "#define KERAS_MBV2_SHARED_ARENA 1\n\n")
    else:
        scheme = ("// Each model has its own arena; the patch outputs go straight into the rest model's input.\n"
                  "#define KERAS_MBV2_SHARED_ARENA 0\n"
                  f"// Patch model arena: {measured} B measured with the TFLM host runtime + {ARENA_MARGIN} B margin.\n"
                  f"constexpr int kPatchArenaSize = {patch_arena};\n\n")
    return {
        f"{stem}_patches.h": (
            f"{header}#ifndef {guard}\n#define {guard}\n\n"
            "// Patch-based inference (keras_mbv2.tflite.patches): the patch model runs once per patch of the stage\n"
            "// output, on the frame's region for it (zero point outside the image) and one 0/1 mask per border\n"
            "// region; its output goes to the patch's place in the stage output; then the rest model runs on it.\n"
            "#define KERAS_MBV2_PATCHED 1\n"
            f"{scheme}"
            f"extern const unsigned char g_{stem}_patch_data[];\n"
            f"extern const unsigned int g_{stem}_patch_data_size;\n"
            f"#define MODEL_PATCH_DATA g_{stem}_patch_data\n#define MODEL_PATCH_DATA_SIZE g_{stem}_patch_data_size\n\n"
            f"constexpr int kStageRows = {h};\nconstexpr int kStageCols = {w};\nconstexpr int kStageChannels = {c};\n"
            f"constexpr int kPatchOutRows = {plan.patch[0]};\nconstexpr int kPatchOutCols = {plan.patch[1]};\n"
            f"constexpr int kPatchRowCount = {len(plan.starts[0])};\n"
            f"constexpr int kPatchColCount = {len(plan.starts[1])};\n"
            f"constexpr int kPatchRowStarts[kPatchRowCount] = {{{', '.join(map(str, plan.starts[0]))}}};\n"
            f"constexpr int kPatchColStarts[kPatchColCount] = {{{', '.join(map(str, plan.starts[1]))}}};\n\n"
            "// A region along one axis: from stride * (patch output start) + offset, size long, in a tensor full\n"
            "// long; outside [0, full) is padding.\n"
            "struct PatchAxis {\n  int stride, offset, size, full;\n};\n"
            f"constexpr PatchAxis kPatchInput[2] = {{{axis(plan.input[0])}, {axis(plan.input[1])}}};  // rows, cols\n"
            f"constexpr int kPatchMaskCount = {len(plan.masks)};  // patch model inputs 1..kPatchMaskCount\n"
            f"constexpr PatchAxis kPatchMasks[{max(1, len(plan.masks))}][2] = {{\n{masks}\n}};\n"
            "// Each mask's channels: 1, broadcast over its tensor's channels, or all of them (elementwise MUL)\n"
            f"constexpr int kPatchMaskChannels[{max(1, len(plan.masks))}] = "
            f"{{{', '.join(str(c) for c in plan.mask_channels) or '1'}}};\n\n"
            f"#endif  // {guard}\n"
        ),
        f"{stem}_patches.cc": (
            f'{header}#include "{stem}_patches.h"\n\n'
            f"// The patch model: int8 TFLite flatbuffer, {len(patch)} bytes, in flash.\n"
            f"alignas(16) const unsigned char g_{stem}_patch_data[] = {{\n{_c_array(patch)}\n}};\n"
            f"const unsigned int g_{stem}_patch_data_size = {len(patch)};\n"
        ),
        f"{stem}_patches.json": json.dumps(plan_to_json(plan), indent=1) + "\n",
    }


def _emit_patched(patched: PatchedModel, out_dir: str, name: str, board: str | None, labels: Sequence[str] | None,
                  test_images: np.ndarray | None, test_labels: Sequence[int] | None) -> MicroReport:
    """`emit` for a patched model: the rest model as the model array (its settings give the frame's geometry and
    quantization, the app's input), the patch model and plan beside it."""
    if not patched.source:
        raise ValueError("`tflite` is a PatchedModel without its source model: make it with patch_model(data).")
    details = require_int8(patched.source)
    rest, patch = strip_strings(patched.rest), strip_strings(patched.patch)
    ops = sorted(set(operator_names(rest)) | set(operator_names(patch)))
    _check_operators_and_labels(ops, details, labels)
    shared = patched.arena
    if patched.shared:
        used, patch_arena, stage = shared, None, patched.stage_bytes
        comment = (f"// TFLM arena shared by the rest model (this array) and the patch model (one MicroAllocator, "
                   f"TFLM's\n// multi-tenant allocation): {shared.head} B activations (the larger model's: patch "
                   f"{patched.patch_arena.head} B, rest\n// {patched.rest_arena.head} B) + {shared.tail} B persistent "
                   f"data of both, measured with the TFLM host runtime, + {ARENA_MARGIN} B margin.\n")
    else:
        used, stage = patched.rest_arena, None
        patch_arena = tensor_arena_size(patched.patch_arena.total)
        comment = None
    arena = tensor_arena_size(used.total)
    _check_board(board, len(rest) + len(patch), emitted_ram(patched))
    report = MicroReport(name, len(rest) + len(patch), arena, used.total, ops, patched.plan.macs, board,
                         activation_bytes=used.head, patches=patched.plan, patch_arena_bytes=patch_arena,
                         stage_bytes=stage, frame_bytes=patched.frame_bytes, band_bytes=patched.band_bytes,
                         cannot_run=shared.cannot_run)
    files = _files(name, rest, details, ops, arena, used.total, labels, comment)
    files.update(_patch_files(file_stem(name), patch, patched.plan, patch_arena, patched.patch_arena.total))
    _add_test_images(files, name, details, test_images, test_labels)
    return _write_with_report(out_dir, report, files)


def _segment_files(stem: str, segmented: SegmentedModel, models: list[bytes], patched: bool) -> dict[str, str]:
    """`<stem>_segments.h/.cc`: the segment models after the first (the model array) and the boundary buffer's
    layout (`SegmentedModel.buffer_layout`) as constants for the app's segment loop; `<stem>_segments.json`: the
    plan for host tools (`check_app_output`)."""
    import json

    header = "// Generated by keras_mbv2.micro.emit; do not edit.\n"
    guard = stem.upper() + "_SEGMENTS_H_"
    layout = segmented.buffer_layout(input_in_buffer=patched)
    n = len(models)

    def table(kind: str, rows: Any, width: int) -> str:
        body = ",\n".join("    {" + ", ".join("{" + ", ".join(map(str, item)) + "}" for item in row) + "}"
                          for row in rows)
        return f"constexpr {kind}[kSegmentCount][{max(1, width)}] = {{\n{body}\n}};\n"

    widths = [max(len(r) for r in rows) for rows in (layout.inputs, layout.moves, layout.outputs)]
    (out_offset, out_bytes), = layout.model_outputs[:1]
    arrays = "".join(f"\n// Segment {i}: operators {s.first}-{s.end - 1}, {len(m)} bytes, in flash.\n"
                     f"alignas(16) const unsigned char g_{stem}_segment_{i}_data[] = {{\n{_c_array(m)}\n}};\n"
                     for i, (s, m) in enumerate(zip(segmented.segments, models)) if i > 0)
    names = ", ".join([f"g_{stem}_data", *(f"g_{stem}_segment_{i}_data" for i in range(1, n))])
    return {
        f"{stem}_segments.h": (
            f"{header}#ifndef {guard}\n#define {guard}\n\n"
            "// Segmented execution (keras_mbv2.tflite.segments): per inference, each segment's interpreter is made\n"
            "// in kTensorArenaSize, allocated, given its inputs from the boundary buffer (the first segment: the frame"
            + (", or\n// the stage output the patch model assembled there" if patched else "") + "), invoked; then the "
            "tensors that pass\n// through move to the buffer's front and its outputs are copied after them, and the "
            "interpreter is dropped.\n"
            "#define KERAS_MBV2_SEGMENTED 1\n\n"
            f"constexpr int kSegmentCount = {n};\n"
            "// The segment models: [0] is the model array (MODEL_DATA), the others in the .cc beside this header.\n"
            "extern const unsigned char* const kSegmentModels[kSegmentCount];\n"
            f"constexpr int kBoundaryBytes = {layout.size};\n\n"
            "// A tensor in the boundary buffer; offset -1: an input the frame fills, an output no later segment\n"
            "// reads.\n"
            "struct SegmentSpan {\n  int offset, bytes;\n};\n"
            "// After a segment, a tensor that passes through moves toward the buffer's front (in order: safe in\n"
            "// place).\n"
            "struct SegmentMove {\n  int from, to, bytes;\n};\n"
            f"constexpr int kSegmentInputCount[kSegmentCount] = {{{', '.join(str(len(r)) for r in layout.inputs)}}};\n"
            + table("SegmentSpan kSegmentInputs", layout.inputs, widths[0])
            + f"constexpr int kSegmentMoveCount[kSegmentCount] = {{{', '.join(str(len(r)) for r in layout.moves)}}};\n"
            + table("SegmentMove kSegmentMoves", layout.moves, widths[1])
            + f"constexpr int kSegmentOutputCount[kSegmentCount] = "
              f"{{{', '.join(str(len(r)) for r in layout.outputs)}}};\n"
            + table("SegmentSpan kSegmentOutputs", layout.outputs, widths[2])
            + f"// After the last segment, the model's output (kCategoryCount scores) lies here in the buffer.\n"
              f"constexpr int kModelOutputOffset = {out_offset};\n\n#endif  // {guard}\n"
        ),
        f"{stem}_segments.cc": (
            f'{header}#include "{stem}_segments.h"\n\n#include "{stem}_data.h"\n{arrays}\n'
            f"const unsigned char* const kSegmentModels[kSegmentCount] = {{{names}}};\n"
        ),
        f"{stem}_segments.json": json.dumps(segmented.plan_json(patched), indent=1) + "\n",
    }


def _emit_segmented(segmented: SegmentedModel, patched: PatchedModel | None, tflite: Any, out_dir: str, name: str,
                    board: str | None, labels: Sequence[str] | None, test_images: np.ndarray | None,
                    test_labels: Sequence[int] | None) -> MicroReport:
    """`emit` in segments: the first segment as the model array (the settings are the whole model's), the other
    segments and the buffer layout beside it, the patch model and plan too when patched; one arena for all."""
    if patched is not None and not patched.source:
        raise ValueError("`tflite` is a PatchedModel without its source model: make it with patch_model(data).")
    source = patched.rest if patched is not None else read_tflite(tflite)
    if segmented.source != source:
        raise ValueError("`segments` must be cut from `tflite` (from a PatchedModel's rest model): pass "
                         "fit_ram(...).segmented with the same result's model. Received: segments of another model")
    details = require_int8(patched.source if patched is not None else source)
    models = [strip_strings(s.model) for s in segmented.segments]
    patch = strip_strings(patched.patch) if patched is not None else b""
    ops = sorted({op for m in [*models, patch] if m for op in operator_names(m)})
    _check_operators_and_labels(ops, details, labels)
    arenas = [s.arena for s in segmented.segments] + ([patched.patch_arena] if patched is not None else [])
    measured = max(a.total for a in arenas)
    arena = tensor_arena_size(measured)
    boundary = segmented.buffer_layout(input_in_buffer=patched is not None).size
    band = patched.band_bytes if patched is not None else None
    flash = sum(map(len, models)) + len(patch)
    _check_board(board, flash, arena + boundary + (band or 0))
    macs = patched.plan.macs if patched is not None else tflite_macs(source)
    report = MicroReport(name, flash, arena, measured, ops, macs, board,
                         patches=patched.plan if patched is not None else None,
                         frame_bytes=patched.frame_bytes if patched is not None else None, band_bytes=band,
                         segments=segmented, boundary_bytes=boundary,
                         cannot_run=next((a.cannot_run for a in arenas if a.cannot_run), None))
    comment = (f"// TFLM arena: every {'model (the patch model, then each segment)' if patched else 'segment'} runs "
               f"in it in turn; the largest, {measured} B,\n// measured with the TFLM host runtime + {ARENA_MARGIN} B "
               "margin.\n")
    files = _files(name, models[0], details, ops, arena, measured, labels, comment)
    if patched is not None:
        files.update(_patch_files(file_stem(name), patch, patched.plan, None, None, segmented=True))
    files.update(_segment_files(file_stem(name), segmented, models, patched is not None))
    _add_test_images(files, name, details, test_images, test_labels)
    return _write_with_report(out_dir, report, files)


def parse_c_array(source: str, name: str = "model", symbol: str | None = None) -> bytes:
    """Read back the bytes of the model array (`g_<file_stem(name)>_data`, or `symbol`) from a generated .cc
    file."""
    symbol = symbol or f"g_{file_stem(name)}_data"
    match = re.search(rf"{symbol}\[\] = \{{(.*?)\}};", source, re.S)
    if match is None:
        raise ValueError(f"No {symbol} array in the source.")
    return bytes(int(v, 16) for v in re.findall(r"0x[0-9a-fA-F]{2}", match.group(1)))
