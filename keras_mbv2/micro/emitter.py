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
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..quantization.evaluate import parse_arena_bytes, run_tflm
from ..quantization.export import operator_names, parse_model, read_tflite, require_int8
from .boards import BOARDS, fit_problems
from .memory_plan import offline_plan

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

    def __str__(self) -> str:
        lines = [
            f"model   {self.name}: {self.model_bytes:,} B flash (int8 .tflite)",
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
        if self.board:
            lines.append(f"board   {self.board}: fits")
        lines += [f"file    {f}" for f in self.files]
        return "\n".join(lines)


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
        raise ValueError(f"`name` must be a C identifier (letters, digits, _). Received: name={name!r}")
    return name


def tflite_macs(data: bytes) -> int:
    """Multiply-adds of the model's CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED operators."""
    model = parse_model(data)
    names = operator_names(data)
    macs = 0
    for graph in model.subgraphs:
        for op in graph.operators:
            kind = names[op.opcodeIndex]
            if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                continue
            out = graph.tensors[op.outputs[0]].shape
            weights = graph.tensors[op.inputs[1]].shape
            if kind == "CONV_2D":  # weights (out, kh, kw, in/groups)
                macs += int(np.prod(out)) * int(np.prod(weights[1:]))
            elif kind == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, out)
                macs += int(np.prod(out)) * int(weights[1] * weights[2])
            else:  # weights (out, in)
                macs += int(np.prod(out)) * int(weights[1])
    return macs


@dataclass(frozen=True)
class ArenaUse:
    """TFLM's arena: `total` = `head` (activation buffers, as planned) + `tail`."""

    total: int
    head: int

    @property
    def tail(self) -> int:
        return self.total - self.head


def arena_use(data: bytes, input_shape: Sequence[int] | None = None) -> ArenaUse:
    """The arena TFLM's recording allocator reports (in a child process).

    Measured after allocation, without an inference: TFLM plans every activation buffer and runs every
    operator's Prepare while allocating, and reports the same arena after an inference (checked on
    MobileNetV2 split and unsplit). So a model whose values are degenerate (an untrained network under int8
    calibration can abort in Invoke) still gets measured.
    """
    if input_shape is None:
        input_shape = require_int8(data)["input_shape"]
    x = np.zeros((0,) + tuple(input_shape[1:]), dtype="int8")
    _, report = run_tflm(data, x)
    total, head = parse_arena_bytes(report), parse_arena_bytes(report, "head")
    if total is None or head is None:
        raise RuntimeError(f"TFLite Micro did not report its arena use:\n{report[-500:]}")
    return ArenaUse(total, head)


def measure_arena(data: bytes, input_shape: Sequence[int]) -> int:
    """Total arena bytes TFLM's recording allocator reports (in a child process)."""
    return arena_use(data, input_shape).total


def tensor_arena_size(measured: int) -> int:
    """kTensorArenaSize for a measured arena: plus `ARENA_MARGIN`, rounded up to 16 bytes."""
    return int(math.ceil((measured + ARENA_MARGIN) / 16) * 16)


def _c_array(data: bytes) -> str:
    rows = []
    for i in range(0, len(data), 12):
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + 12]) + ",")
    return "\n".join(rows)


def _files(name: str, data: bytes, details: dict[str, Any], ops: list[str], arena: int, measured: int,
           labels: Sequence[str] | None) -> dict[str, str]:
    guard = name.upper()
    _, h, w, c = details["input_shape"] if len(details["input_shape"]) == 4 else (1, *details["input_shape"][1:], 1)
    classes = int(np.prod(details["output_shape"][1:]))
    header = "// Generated by keras_mbv2.micro.emit; do not edit.\n"
    files = {}
    files[f"{name}_model_data.h"] = (
        f"{header}#ifndef {guard}_MODEL_DATA_H_\n#define {guard}_MODEL_DATA_H_\n\n"
        f"extern const unsigned char g_{name}_model_data[];\nextern const unsigned int g_{name}_model_data_size;\n\n"
        f"#endif  // {guard}_MODEL_DATA_H_\n"
    )
    files[f"{name}_model_data.cc"] = (
        f'{header}#include "{name}_model_data.h"\n\n'
        f"// int8 TFLite flatbuffer, {len(data)} bytes. const keeps it in flash; TFLM needs 16-byte alignment.\n"
        f"alignas(16) const unsigned char g_{name}_model_data[] = {{\n{_c_array(data)}\n}};\n"
        f"const unsigned int g_{name}_model_data_size = {len(data)};\n"
    )
    label_lines = ""
    if labels:
        quoted = ", ".join('"' + str(label).replace("\\", "\\\\").replace('"', '\\"') + '"' for label in labels)
        label_lines = f"\nconstexpr const char* k{_camel(name)}Labels[kCategoryCount] = {{{quoted}}};\n"
    files[f"{name}_model_settings.h"] = (
        f"{header}#ifndef {guard}_MODEL_SETTINGS_H_\n#define {guard}_MODEL_SETTINGS_H_\n\n"
        f"constexpr int kNumRows = {h};\nconstexpr int kNumCols = {w};\nconstexpr int kNumChannels = {c};\n"
        f"constexpr int kInputSize = kNumRows * kNumCols * kNumChannels;\n"
        f"constexpr float kInputScale = {details['input_scale']!r}f;\n"
        f"constexpr int kInputZeroPoint = {details['input_zero_point']};\n"
        f"constexpr float kOutputScale = {details['output_scale']!r}f;\n"
        f"constexpr int kOutputZeroPoint = {details['output_zero_point']};\n"
        f"constexpr int kCategoryCount = {classes};\n"
        f"// TFLM arena: {measured} B measured with the TFLM host runtime (RecordingMicroAllocator, all operators prepared)\n"
        f"// + {ARENA_MARGIN} B margin. The 64-bit host over-counts a 32-bit target slightly.\n"
        f"constexpr int kTensorArenaSize = {arena};\n{label_lines}\n"
        f"#endif  // {guard}_MODEL_SETTINGS_H_\n"
    )
    adds = []
    for op in ops:
        method, int8 = TFLM_OPS[op]
        adds.append(f"  if (resolver.{method}({int8 or ''}) != kTfLiteOk) return kTfLiteError;")
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
) -> MicroReport:
    """Write `<name>_model_data.h/.cc`, `<name>_model_settings.h`, `<name>_op_resolver.h` and
    `<name>_report.txt` into `out_dir`, and return the report.

    The model must be full-int8. The arena is measured by allocating the model in the TFLM host runtime
    (in a child process) unless `arena_bytes` is given. With `board` (see `keras_mbv2.micro.BOARDS`) the
    model and arena must fit its flash and RAM. Nothing is written unless every check passes; files are
    written under temporary names and renamed into place.

    With `memory_plan` (default), the activation offsets are also planned here (`memory_plan.offline_plan`)
    and stored in the model's metadata when TFLM then reports a smaller arena than its own greedy plan;
    the C array holds that model (same operators and weights, so the same outputs).
    """
    name = _identifier(name)
    if board is not None and board not in BOARDS:
        raise ValueError(f"`board` must be one of {sorted(BOARDS)}. Received: board={board!r}")
    data = read_tflite(tflite)
    details = require_int8(data)
    ops = sorted(set(operator_names(data)))
    missing = [op for op in ops if op not in TFLM_OPS]
    if missing:
        raise ValueError(
            f"The model uses operators TFLite Micro does not provide: {missing}. Rebuild the model without them."
        )
    if labels is not None and len(labels) != int(np.prod(details["output_shape"][1:])):
        raise ValueError(f"`labels` must have one entry per class ({int(np.prod(details['output_shape'][1:]))}). "
                         f"Received: {len(labels)} labels")
    use = arena_use(data, details["input_shape"]) if arena_bytes is None else None
    online = None
    if use is not None and memory_plan and len(parse_model(data).subgraphs) == 1:
        planned, planned_head = offline_plan(data)
        if planned_head < use.head:
            planned_use = arena_use(planned, details["input_shape"])
            if planned_use.total < use.total:
                data, online, use = planned, use.total, planned_use
    measured = use.total if use is not None else int(arena_bytes)
    arena = tensor_arena_size(measured)
    if board is not None:
        problems = fit_problems(BOARDS[board], len(data), arena)
        if problems:
            raise ValueError(f"The model does not fit board={board!r}: " + "; ".join(problems))
    report = MicroReport(name, len(data), arena, measured, ops, tflite_macs(data), board,
                         activation_bytes=use.head if use is not None else None, online_arena_bytes=online)
    files = _files(name, data, details, ops, arena, measured, labels)
    report_name = f"{name}_report.txt"
    report.files = [os.path.join(out_dir, f) for f in [*files, report_name]]
    files[report_name] = str(report) + "\n"
    _write_all(out_dir, files)
    return report


def _write_all(out_dir: str, files: dict[str, str]) -> None:
    """Write every file to a temporary folder beside `out_dir`, then rename each into place."""
    created = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".emit-", dir=out_dir)
    try:
        for fname, text in files.items():
            with open(os.path.join(tmp, fname), "w", newline="\n") as f:
                f.write(text)
        for fname in files:
            os.replace(os.path.join(tmp, fname), os.path.join(out_dir, fname))
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parse_c_array(source: str, name: str = "model") -> bytes:
    """Read back the bytes of `g_<name>_model_data` from a generated .cc file."""
    match = re.search(rf"g_{name}_model_data\[\] = \{{(.*?)\}};", source, re.S)
    if match is None:
        raise ValueError(f"No g_{name}_model_data array in the source.")
    return bytes(int(v, 16) for v in re.findall(r"0x[0-9a-fA-F]{2}", match.group(1)))
