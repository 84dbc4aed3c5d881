"""Patch-based inference on stock TensorFlow Lite Micro, bit-exact (MCUNetV2, Lin et al., NeurIPS 2021).

The early, high-resolution stage of a MobileNet holds the largest feature maps; no channel split can lower the
peak of an operator that reads one whole (paper Section 5.1's floor). Here that stage runs one spatial patch of
its output at a time, so its feature maps never exist whole, and the rest of the network runs as usual on the
assembled stage output. Two int8 models, run by the firmware (and by `run_patched` on the host) as:

    for each patch (oy, ox) of the stage output:
        patch model input 0  <- the frame's region for the patch, zero point outside the image
        patch model input j  <- mask j: 1 where region j of an intermediate tensor lies inside it, else 0
        invoke the patch model; copy its output into the stage buffer at (oy, ox)
    copy the stage buffer into the rest model's input; invoke the rest model

Two ways to hold them, whichever needs less RAM (`PatchedModel.shared`): one TFLM arena for both (one
`MicroAllocator` for both interpreters, TFLM's multi-tenant allocation): they never run at once, so their
activations overlap and the arena needs the larger of the two activation areas plus both models' persistent
data (`shared_arena`); every patch invocation overwrites that shared area, the rest model's input included,
hence the stage buffer beside it. Or an arena each, the patch outputs written straight into the rest model's
input (no stage buffer): smaller when the stage output is larger than the smaller model's activations.

- **Patch model**: the stage's operators on patch-sized tensors. Every spatial operator reads, besides the
  patch, the halo its kernel needs (the receptive field is walked back from the stage output), with VALID
  padding. Where a region crosses the border of a tensor that an operator with a kernel wider than 1 reads, the
  whole model reads zero padding — the tensor's zero point in int8 — so the tensor is first multiplied by a 0/1
  mask (an int8 MUL at scale 1, whose multiplier is exactly 1: inside the image the value is unchanged, outside
  it becomes the zero point). A 1x1 convolution needs none: its values outside the tensor only reach its own
  outside, which the next spatial operator's mask removes (the stage output lies inside). A mask as large as the
  tensor (`full_masks`) is an elementwise MUL, which TFLM's CMSIS-NN kernels run with `arm_elementwise_mul_s8`;
  a mask of one channel broadcasts, which only TFLM's slow reference kernel does (measured on the Cortex-M4:
  benchmarks/firmware/). The full mask adds its size to the patch model's activations, which costs nothing
  where they are the smaller of the two models' (one shared arena): `patch_model` takes it where the device RAM
  stays the same. A tensor read by two operators with different halos (a residual's input) is cut to each with
  STRIDED_SLICE.
  So every output value is computed from the same int8 values, with the same kernels, as in the whole model.
- **Rest model**: the whole model's remaining operators, with the stage output as its input.

Both are ordinary .tflite models with builtin operators, so stock TFLM (and LiteRT) run them; the firmware's
loop is plain C++ over TFLM's public API. The patch stage ends where one tensor is all that flows on (after a
block), and every patch has the same size (the last one in a row overlaps its neighbour when the grid does not
divide the stage output), so one patch model serves every patch.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .flatbuffer import (
    METADATA_NAME,
    activation_sizes,
    metadata_name,
    opcode_names,
    operator_macs,
    pack_model,
    parse_model,
    single_subgraph,
)

SPATIAL = ("CONV_2D", "DEPTHWISE_CONV_2D")
STAGE_OPERATORS = (*SPATIAL, "ADD")  # what a patch stage may hold: local operators with same-size ADDs
MEASURED_CANDIDATES = 4  # best-estimated plans patch_model builds and measures on TFLM
#: What the patch stage costs on a Cortex-M4 (QEMU's mps2-an386, TFLM with CMSIS-NN kernels), in instructions:
#: per multiply-add of the patch model's operators, per value a full-size mask multiplies (CMSIS-NN's
#: arm_elementwise_mul_s8), per value a broadcast mask multiplies (TFLM's reference kernel), and per invocation
#: (TFLM's Invoke, the kernels' set-up, the loop's copies and mask fills). Fitted to the README plan's recorded runs
#: at 4x4, 6x6 and 8x8 patches (benchmarks/firmware/costfit_*; the held-out 3x3 run's convolutions and copies are
#: predicted within 0.2%, and the broadcast figure is that run's MUL). Its predictions against every recorded run:
#: benchmarks/RESULTS.md (a held-out MobileNetV2 0.30 @ 80 within 0.2%, MobileNetV1 within 13.4%).
STAGE_COST = {"mac": 5.75, "masked": 33.8, "masked_broadcast": 50.8, "invocation": 5478.0}


@dataclass(frozen=True)
class Axis:
    """Where one tensor's region lies, along one axis, for a patch whose output starts at `o`:
    from `stride * o + offset`, `size` long, in a tensor `full` long (outside [0, full) is padding)."""

    stride: int
    offset: int
    size: int
    full: int

    def start(self, o: int) -> int:
        """Where the region of the patch whose output starts at `o` begins (negative: in the padding)."""
        return self.stride * o + self.offset

    def inside(self, o: int) -> np.ndarray:
        """1 where the region of the patch at `o` lies inside the tensor, else 0."""
        positions = self.start(o) + np.arange(self.size)
        return ((positions >= 0) & (positions < self.full)).astype("int8")

    def crosses_border(self, starts: list[int]) -> bool:
        """Whether the region of any patch in `starts` reaches outside the tensor (into padding)."""
        return any(self.start(o) < 0 or self.start(o) + self.size > self.full for o in starts)


@dataclass
class PatchPlan:
    """Everything the patch loop needs besides the two models (also emitted as C constants)."""

    cut: int  # the whole model's first `cut` operators form the patch stage
    stage_tensor: int  # index in the whole model of the stage output, the rest model's input
    grid: tuple[int, int]  # patches along y and x
    stage_shape: tuple[int, int, int]  # (H, W, C) of the stage output
    patch: tuple[int, int]  # output rows and columns of one patch
    starts: tuple[list[int], list[int]]  # output start of each patch row / column
    input: tuple[Axis, Axis]  # the frame region a patch reads (y, x)
    input_zero_point: int
    masks: list[tuple[Axis, Axis]] = field(default_factory=list)  # patch model inputs 1..: y and x regions
    macs: int = 0  # multiply-adds of one patched inference (patch model x patches + rest model)
    macs_whole: int = 0
    mask_channels: list[int] = field(default_factory=list)  # per mask: 1 (broadcast) or its tensor's channels
    patch_macs: int = 0  # multiply-adds of one patch model invocation
    masked_values: int = 0  # values the masks multiply in one invocation (the masked tensors' regions)

    @property
    def patches(self) -> int:
        """How many times the patch model runs per inference."""
        return len(self.starts[0]) * len(self.starts[1])

    def stage_instructions(self, full_masks: bool | None = None) -> float:
        """The patch stage's predicted instructions per inference on a Cortex-M4 with CMSIS-NN (`STAGE_COST`): the
        part of the patched inference that `grid` and the masks change (the rest model's is the whole model's).
        `full_masks`: cost the masks as full-size (True) or broadcast (False) rather than as the plan holds them."""
        if full_masks is None:
            full_masks = any(c > 1 for c in self.mask_channels)
        masked = STAGE_COST["masked" if full_masks else "masked_broadcast"]
        return self.patches * (STAGE_COST["mac"] * self.patch_macs + masked * self.masked_values
                               + STAGE_COST["invocation"])

    @property
    def band_rows(self) -> int:
        """The frame rows one row of patches reads: all of the frame the loop holds when rows arrive in order."""
        return min(self.input[0].size, self.input[0].full)

    @property
    def mac_overhead(self) -> float:
        """Extra multiply-adds of the halos (and overlapping last patches), as a fraction of the whole model's."""
        return self.macs / self.macs_whole - 1

    def describe(self) -> str:
        """One line: grid, patch, stage, input patch, masks, extra multiply-adds."""
        h, w, c = self.stage_shape
        return (f"{self.grid[0]}x{self.grid[1]} of {self.patch[0]}x{self.patch[1]} over the first "
                f"{self.cut} operators (stage output {h}x{w}x{c}), input patch {self.input[0].size}x"
                f"{self.input[1].size} of the frame, {len(self.masks)} border masks"
                f"{' (full size)' if any(c > 1 for c in self.mask_channels) else ''}, "
                f"MACs {self.mac_overhead:+.1%}")


def _options(op: Any) -> Any:
    return op.builtinOptions


def _pad_before(full_in: int, full_out: int, stride: int, kernel: int, dilation: int, same: bool) -> int:
    """TensorFlow's padding before the first element (SAME puts the odd one after)."""
    if not same:
        return 0
    total = max((full_out - 1) * stride + (kernel - 1) * dilation + 1 - full_in, 0)
    return total // 2


def _spatial_geometry(kind: str, graph: Any, op: Any) -> list[tuple[int, int, int, int]]:
    """Per axis (y, x): (stride, kernel, dilation, padding before) of a CONV_2D or DEPTHWISE_CONV_2D."""
    from ai_edge_litert import schema_py_generated as schema

    options = _options(op)
    x, w, y = (graph.tensors[i].shape for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    kernel = (int(w[1]), int(w[2]))  # OHWI for conv, 1HWC for depthwise
    stride = (int(options.strideH), int(options.strideW))
    dilation = (int(options.dilationHFactor or 1), int(options.dilationWFactor or 1))
    same = options.padding == schema.Padding.SAME
    return [(stride[a], kernel[a], dilation[a],
             _pad_before(int(x[1 + a]), int(y[1 + a]), stride[a], kernel[a], dilation[a], same)) for a in (0, 1)]


def stage_cuts(data: bytes) -> list[tuple[int, int]]:
    """(cut, tensor) for every place a patch stage can end: after operator cut - 1, where the operators so far are
    all `STAGE_OPERATORS` and exactly one 4-D activation tensor (`tensor`) flows on to the rest."""
    model, graph = single_subgraph(data, "patched")
    names = opcode_names(model)
    sizes = activation_sizes(model, graph)
    last_use: dict[int, int] = {}
    for i, op in enumerate(graph.operators):
        for t in op.inputs:
            if t in sizes:
                last_use[t] = i
    produced: set[int] = set(int(t) for t in graph.inputs)
    cuts = []
    for i, op in enumerate(graph.operators[:-1]):
        if names[op.opcodeIndex] not in STAGE_OPERATORS:
            break
        produced.update(int(t) for t in op.outputs)
        live = [t for t in produced if last_use.get(t, -1) > i]
        if len(live) == 1 and len(graph.tensors[live[0]].shape) == 4 and live[0] not in graph.inputs:
            cuts.append((i + 1, live[0]))
    return cuts


def _regions(model: Any, graph: Any, cut: int, stage: int, patch: tuple[int, int]) -> tuple[dict, dict]:
    """Walk the receptive field back from a patch of the stage output.

    Returns ({tensor: (Axis y, Axis x)} the region each stage tensor must hold — the hull of what its readers
    need — and {(operator, input position): (Axis y, Axis x)} the region each operator reads."""
    names = opcode_names(model)
    full = {t: (int(graph.tensors[t].shape[1]), int(graph.tensors[t].shape[2])) for t in range(len(graph.tensors))
            if graph.tensors[t].shape is not None and len(graph.tensors[t].shape) == 4}
    # (stride, start offset, end offset) per axis: the region is [stride * o + start, stride * o + end)
    need: dict[int, list[tuple[int, int, int]]] = {stage: [(1, 0, patch[0]), (1, 0, patch[1])]}
    reads: dict[tuple[int, int], list[tuple[int, int, int]]] = {}

    def merge(t: int, region: list[tuple[int, int, int]]) -> None:
        if t not in need:
            need[t] = region
            return
        merged = []
        for (s0, a0, b0), (s1, a1, b1) in zip(need[t], region):
            if s0 != s1:
                raise ValueError(f"tensor {t} is read at two strides ({s0}, {s1}): not a patchable stage")
            merged.append((s0, min(a0, a1), max(b0, b1)))
        need[t] = merged

    sizes = activation_sizes(model, graph)
    for i in reversed(range(cut)):
        op = graph.operators[i]
        kind = names[op.opcodeIndex]
        out = need.get(int(op.outputs[0]))
        if out is None:
            raise ValueError(f"operator {i} ({kind}) of the stage does not lead to its output")
        if kind in SPATIAL:
            region = [(s * stride, stride * a - pad, stride * (b - 1) - pad + dilation * (kernel - 1) + 1)
                      for (s, a, b), (stride, kernel, dilation, pad) in zip(out, _spatial_geometry(kind, graph, op))]
            reads[(i, 0)] = region
            merge(int(op.inputs[0]), region)
        else:  # ADD of two same-shape tensors
            for position, t in enumerate(op.inputs):
                if int(t) in sizes:
                    if full[int(t)] != full[int(op.outputs[0])]:
                        raise ValueError(f"operator {i} (ADD) broadcasts: not a patchable stage")
                    reads[(i, position)] = out
                    merge(int(t), out)

    def axes(t: int, region: list[tuple[int, int, int]]) -> tuple[Axis, Axis]:
        return tuple(Axis(s, a, b - a, full[t][k]) for k, (s, a, b) in enumerate(region))  # type: ignore[return-value]

    tensors = {t: axes(t, r) for t, r in need.items()}
    operator_reads = {key: axes(int(graph.operators[key[0]].inputs[key[1]]), r) for key, r in reads.items()}
    return tensors, operator_reads


def _starts(full: int, grid: int) -> tuple[int, list[int]]:
    """(patch size, starts): `grid` equal patches covering [0, full), the last shifted back to end at `full`."""
    size = math.ceil(full / grid)
    return size, sorted({min(i * size, full - size) for i in range(grid)})


def _opcode(model: Any, name: str) -> int:
    """Index of builtin operator `name` in the model's operator-code table, added when missing."""
    from ai_edge_litert import schema_py_generated as schema

    names = opcode_names(model)
    if name in names:
        return names.index(name)
    code = schema.OperatorCodeT()
    value = getattr(schema.BuiltinOperator, name)
    code.builtinCode, code.deprecatedBuiltinCode, code.version = value, min(value, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def split_model(data: bytes, cut: int, grid: tuple[int, int],
                full_masks: bool = False) -> tuple[bytes, bytes, PatchPlan]:
    """(patch model, rest model, plan) for the stage of the first `cut` operators (a cut from `stage_cuts`) run
    in `grid` = (rows, columns) patches of its output; `full_masks`: each border mask as large as the tensor it
    masks (an elementwise MUL, fast with CMSIS-NN) rather than one channel broadcast over the channels."""
    from ai_edge_litert import schema_py_generated as schema

    cuts = dict(stage_cuts(data))
    if cut not in cuts:
        raise ValueError(f"`cut` must end a patchable stage, one of {sorted(cuts)}. Received: cut={cut!r}")
    stage = cuts[cut]
    model, graph = single_subgraph(data, "patched")
    names = opcode_names(model)
    h, w, c = (int(v) for v in graph.tensors[stage].shape[1:])
    if not (1 <= grid[0] <= h and 1 <= grid[1] <= w):
        raise ValueError(f"`grid` must be between 1x1 and the stage output's {h}x{w}. Received: grid={grid!r}")
    (ph, starts_y), (pw, starts_x) = _starts(h, grid[0]), _starts(w, grid[1])
    tensors, reads = _regions(model, graph, cut, stage, (ph, pw))
    source = int(graph.inputs[0])
    if source not in tensors:
        raise ValueError("the patch stage does not start at the model's input")

    # --- the patch model: the stage's operators on patch-sized tensors, VALID padding, masks and slices
    patch = schema.ModelT()
    patch.version, patch.description = model.version, b"keras_mbv2 patch stage"
    patch.operatorCodes = copy.deepcopy(model.operatorCodes)
    empty = schema.BufferT()
    patch.buffers = [empty]
    sub = schema.SubGraphT()
    sub.tensors, sub.operators = [], []
    patch.subgraphs = [sub]

    def new_tensor(shape: list[int], like: Any, data_: np.ndarray | None = None, quantization: Any = "like",
                   dtype: int | None = None) -> int:
        tensor = schema.TensorT()
        tensor.shape = np.array(shape, np.int32)
        tensor.type = like.type if dtype is None else dtype
        tensor.quantization = copy.deepcopy(like.quantization) if quantization == "like" else quantization
        tensor.hasRank = True
        buffer = schema.BufferT()
        if data_ is not None:
            buffer.data = np.frombuffer(np.ascontiguousarray(data_).tobytes(), np.uint8)
        patch.buffers.append(buffer)
        tensor.buffer = len(patch.buffers) - 1
        sub.tensors.append(tensor)
        return len(sub.tensors) - 1

    def region_shape(t: int, axes: tuple[Axis, Axis]) -> list[int]:
        return [1, axes[0].size, axes[1].size, int(graph.tensors[t].shape[3])]

    activations = activation_sizes(model, graph)
    mapped = {source: new_tensor(region_shape(source, tensors[source]), graph.tensors[source])}
    constants: dict[int, int] = {}
    masks: list[tuple[Axis, Axis]] = []
    mask_inputs: list[int] = []
    mask_channels: list[int] = []
    masked_values = 0
    mul, strided_slice = _opcode(patch, "MUL"), _opcode(patch, "STRIDED_SLICE")
    one = schema.QuantizationParametersT()
    one.scale, one.zeroPoint = np.array([1.0], np.float32), np.array([0], np.int64)

    def add_op(opcode: int, inputs: list[int], outputs: list[int], options_type: int, options: Any) -> None:
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode, np.array(inputs, np.int32), np.array(outputs, np.int32)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        sub.operators.append(op)

    def sliced(t: int, have: tuple[Axis, Axis], want: tuple[Axis, Axis]) -> int:
        """The patch tensor of `t` cut from region `have` to `want` (STRIDED_SLICE), or itself when equal."""
        begin = [0, want[0].offset - have[0].offset, want[1].offset - have[1].offset, 0]
        if begin[1:3] == [0, 0] and (want[0].size, want[1].size) == (have[0].size, have[1].size):
            return mapped[t]
        shape = region_shape(t, want)
        end = [b + s for b, s in zip(begin, shape)]
        ints = schema.TensorType.INT32
        args = [new_tensor([4], graph.tensors[t], np.array(v, "<i4"), None, ints) for v in (begin, end, [1] * 4)]
        out = new_tensor(shape, graph.tensors[t])
        add_op(strided_slice, [mapped[t], *args], [out], schema.BuiltinOptions.StridedSliceOptions,
               schema.StridedSliceOptionsT())
        return out

    for i in range(cut):
        op = graph.operators[i]
        kind = names[op.opcodeIndex]
        inputs = []
        for position, t in enumerate(int(v) for v in op.inputs):
            if t < 0:
                inputs.append(t)
            elif t not in activations:  # weights, biases: the same constant
                if t not in constants:
                    tensor = graph.tensors[t]
                    constants[t] = new_tensor(list(tensor.shape), tensor, np.array(model.buffers[tensor.buffer].data))
                inputs.append(constants[t])
            else:
                want = reads[(i, position)]
                fed = sliced(t, tensors[t], want)
                starts = (starts_y, starts_x)
                # Only a kernel wider than 1 reads padding: a 1x1 convolution's values outside the tensor are
                # outside its output too, never used (the next spatial operator masks them, the stage output
                # lies inside)
                kernels = [kernel for _, kernel, _, _ in _spatial_geometry(kind, graph, op)] if kind in SPATIAL else []
                if (kind in SPATIAL and t != source
                        and any(k > 1 and a.crosses_border(s) for k, a, s in zip(kernels, want, starts))):
                    channels = int(graph.tensors[t].shape[3]) if full_masks else 1
                    mask = new_tensor([1, want[0].size, want[1].size, channels], graph.tensors[t], None, one,
                                      schema.TensorType.INT8)
                    out = new_tensor(region_shape(t, want), graph.tensors[t])
                    options = schema.MulOptionsT()
                    add_op(mul, [fed, mask], [out], schema.BuiltinOptions.MulOptions, options)
                    masks.append(want)
                    mask_inputs.append(mask)
                    mask_channels.append(channels)
                    masked_values += math.prod(region_shape(t, want))
                    fed = out
                inputs.append(fed)
        outputs = []
        for t in (int(v) for v in op.outputs):
            mapped[t] = new_tensor(region_shape(t, tensors[t]), graph.tensors[t])
            outputs.append(mapped[t])
        options = copy.deepcopy(op.builtinOptions)
        if kind in SPATIAL:
            options.padding = schema.Padding.VALID
        add_op(op.opcodeIndex, inputs, outputs, op.builtinOptionsType, options)
    sub.inputs = np.array([mapped[source], *mask_inputs], np.int32)
    sub.outputs = np.array([mapped[stage]], np.int32)
    patch_bytes = pack_model(patch)

    # --- the rest model: the remaining operators, the stage output as input
    rest = parse_model(data)
    rest_graph = rest.subgraphs[0]
    rest_graph.operators = rest_graph.operators[cut:]
    rest_graph.inputs = np.array([stage], np.int32)
    rest.signatureDefs = None
    rest.metadata = [m for m in rest.metadata or [] if metadata_name(m) != METADATA_NAME]
    rest_bytes = pack_model(_pruned(rest))

    patch_graph = parse_model(patch_bytes).subgraphs[0]
    patch_names = opcode_names(parse_model(patch_bytes))
    per_patch = sum(operator_macs(patch_names[op.opcodeIndex], patch_graph, op) for op in patch_graph.operators)
    whole = sum(operator_macs(names[op.opcodeIndex], graph, op) for op in graph.operators)
    rest_macs = whole - sum(operator_macs(names[op.opcodeIndex], graph, op) for op in graph.operators[:cut])
    q = graph.tensors[source].quantization
    plan = PatchPlan(cut, stage, (len(starts_y), len(starts_x)), (h, w, c), (ph, pw), (starts_y, starts_x),
                     tensors[source], int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None else 0,
                     masks, per_patch * len(starts_y) * len(starts_x) + rest_macs, whole, mask_channels, per_patch,
                     masked_values)
    return patch_bytes, rest_bytes, plan


def _pruned(model: Any) -> Any:
    """`model` without the tensors no operator or graph input/output refers to, and the buffers they held."""
    graph = model.subgraphs[0]
    used = sorted({int(t) for op in graph.operators for t in [*op.inputs, *op.outputs] if t >= 0}
                  | {int(t) for t in [*graph.inputs, *graph.outputs]})
    index = {old: new for new, old in enumerate(used)}

    def remap(values: Any) -> Any:
        return None if values is None else np.array([index[int(v)] if v >= 0 else -1 for v in values], np.int32)

    graph.tensors = [graph.tensors[t] for t in used]
    for op in graph.operators:
        op.inputs, op.outputs, op.intermediates = remap(op.inputs), remap(op.outputs), remap(op.intermediates)
    graph.inputs, graph.outputs = remap(graph.inputs), remap(graph.outputs)
    buffers = sorted({0} | {t.buffer for t in graph.tensors} | {m.buffer for m in model.metadata or []})
    where = {old: new for new, old in enumerate(buffers)}
    model.buffers = [model.buffers[b] for b in buffers]
    for t in graph.tensors:
        t.buffer = where[t.buffer]
    for m in model.metadata or []:
        m.buffer = where[m.buffer]
    return model


def _peak(ops: list[Any], sizes: dict[int, int], first: list[int], keep: list[int]) -> int:
    """Liveness peak of `ops` in order: tensors in `first` exist before the first, those in `keep` to the end."""
    from ..profiler import liveness_peak

    born = {t: -1 for t in first if t in sizes}
    last = {t: len(ops) for t in keep if t in sizes}
    for step, op in enumerate(ops):
        for t in op.outputs:
            if t in sizes:
                born.setdefault(int(t), step)
        for t in op.inputs:
            if t in sizes:
                last[int(t)] = max(last.get(int(t), step), step)
    return liveness_peak(born, last, sizes, len(ops))[0]


@dataclass(frozen=True)
class Candidate:
    """A patch plan ranked before any arena is measured: activation peaks by liveness (what TFLM's planner places
    at best) of the built patch model and of the rest model's operators."""

    cut: int
    grid: tuple[int, int]
    patch_peak: int  # the patch model's activations (its input patch, masks, masked copies and slices included)
    rest_peak: int  # the rest model's activations (the stage output, its input, included)
    mac_overhead: float
    stage_bytes: int  # the stage output, the shared arena's stage buffer
    band_bytes: int  # the input band the patches are cut from
    instructions: float = 0.0  # the patch stage's, predicted with full-size masks (`PatchPlan.stage_instructions`)

    @property
    def ram(self) -> int:
        """RAM beside the persistent data: the input band and the activations of the cheaper scheme, one shared
        arena (the larger model's activations) + the stage buffer, or an arena each."""
        return self.band_bytes + min(max(self.patch_peak, self.rest_peak) + self.stage_bytes,
                                     self.patch_peak + self.rest_peak)


def candidates(data: bytes, max_mac_overhead: float = 0.2, max_grid: int = 8) -> list[Candidate]:
    """Every (cut, square grid) whose halos add at most `max_mac_overhead` multiply-adds, least estimated RAM
    (`Candidate.ram`) first; ties go to the smaller sum of both models' activations, fewer patches, the earlier
    cut."""
    from .schedule import activation_peak

    model, graph = single_subgraph(data, "patched")
    names = opcode_names(model)
    sizes = activation_sizes(model, graph)
    macs = [operator_macs(names[op.opcodeIndex], graph, op) for op in graph.operators]
    whole = sum(macs)
    frame = graph.tensors[int(graph.inputs[0])].shape
    found = []
    for cut, stage in stage_cuts(data):
        rest_peak = _peak(graph.operators[cut:], sizes, [stage], list(graph.outputs))
        h, w = (int(v) for v in graph.tensors[stage].shape[1:3])
        for g in range(1, min(max_grid, h, w) + 1):
            (ph, starts_y), (pw, starts_x) = _starts(h, g), _starts(w, g)
            tensors, _ = _regions(model, graph, cut, stage, (ph, pw))
            per_patch = 0
            for i in range(cut):
                op = graph.operators[i]
                out = tensors[int(op.outputs[0])]
                full = graph.tensors[int(op.outputs[0])].shape
                per_patch += macs[i] * out[0].size * out[1].size // max(1, int(full[1]) * int(full[2]))
            overhead = (per_patch * len(starts_y) * len(starts_x) + sum(macs[cut:])) / whole - 1
            if overhead <= max_mac_overhead:
                patch, _, plan = split_model(data, cut, (g, g))
                band = plan.band_rows * int(frame[2]) * int(frame[3])
                found.append(Candidate(cut, (g, g), activation_peak(patch)[0], rest_peak, overhead, sizes[stage],
                                       band, plan.stage_instructions(full_masks=True)))
    return sorted(found, key=lambda c: (c.ram, c.patch_peak + c.rest_peak, c.grid, c.cut))


@dataclass
class PatchedModel:
    """A model run as patch stage + rest on TFLM, with what the device needs measured on the host runtime."""

    patch: bytes  # the patch model (.tflite)
    rest: bytes  # the rest model (.tflite)
    plan: PatchPlan
    patch_arena: Any = None  # ArenaUse of each, measured on the TFLM host runtime, each in its own arena
    rest_arena: Any = None
    frame_bytes: int = 0  # the whole int8 input frame
    source: bytes = b""  # the whole int8 model it was split from

    @property
    def band_bytes(self) -> int:
        """The input band: the frame rows one row of patches reads (full width), which is all of the frame the
        loop holds when the sensor delivers rows in order (firmware/app reads them with GetImageRow into a ring)."""
        return self.plan.band_rows * (self.frame_bytes // self.plan.input[0].full)

    @property
    def arena(self) -> Any:
        """The one TFLM arena both models would share (`shared_arena` of the two measured arenas): the larger
        activation area and both persistent tails."""
        from .runtime import shared_arena

        return shared_arena(self.patch_arena, self.rest_arena)

    @property
    def stage_bytes(self) -> int:
        """The stage output. Sharing an arena needs it as a buffer of its own: the patch outputs are assembled
        there (each patch invocation overwrites the shared activation area, the rest model's input included), then
        copied into the rest model's input."""
        return math.prod(self.plan.stage_shape)

    @property
    def shared(self) -> bool:
        """The scheme that needs less RAM, measured: True, one arena for both models + the stage buffer; False, an
        arena each, the patch outputs written straight into the rest model's input. Sharing wins when the stage
        output is smaller than the smaller model's activations."""
        return self.stage_bytes + self.arena.total < self.patch_arena.total + self.rest_arena.total

    @property
    def arenas_bytes(self) -> int:
        """RAM of the chosen scheme besides the input: the shared arena + the stage buffer, or both arenas."""
        if self.shared:
            return self.stage_bytes + self.arena.total
        return self.patch_arena.total + self.rest_arena.total

    def describe_arenas(self) -> str:
        """One line: the chosen scheme's arenas and buffers, measured."""
        if self.shared:
            a = self.arena
            return (f"{self.stage_bytes:,} B stage buffer + {a.total:,} B arena shared by both models ({a.head:,} B "
                    f"activations, the larger model's, + {a.tail:,} B persistent)")
        return (f"{self.patch_arena.total:,} B patch arena + {self.rest_arena.total:,} B rest arena (an arena each: "
                f"sharing one needs a {self.stage_bytes:,} B stage buffer, more than the smaller model's "
                f"{min(self.patch_arena.head, self.rest_arena.head):,} B of activations)")

    @property
    def device_ram_bytes(self) -> int:
        """Everything the device needs, measured: the input band and the chosen scheme's arenas and buffers."""
        return self.band_bytes + self.arenas_bytes

    @property
    def whole_frame_ram_bytes(self) -> int:
        """`device_ram_bytes` with the whole frame in RAM instead of the band (a camera that writes whole frames)."""
        return self.frame_bytes + self.arenas_bytes

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """int8 frames (N, H, W, C) -> int8 outputs, by the firmware's loop on the TFLM host runtime."""
        return run_patched(self.patch, self.rest, self.plan, np.asarray(x))[0]


def patch_model(data: bytes, cut: int | None = None, grid: tuple[int, int] | None = None,
                max_mac_overhead: float = 0.2) -> PatchedModel:
    """Split an int8 model into patch stage and rest and measure both models' arenas on the TFLM host runtime
    (`PatchedModel.arena`: the one they share), each with an offline memory plan where that makes TFLM's arena
    smaller (`memory_plan.with_tightest_plan`). Unless `cut` and `grid` are given, the first `MEASURED_CANDIDATES`
    `candidates` are built and measured and the one that needs the least device RAM is returned (the estimate
    ranks by activations; persistent data and TFLM's own placement are only known once measured)."""
    from .flatbuffer import require_int8

    require_int8(data)
    if not isinstance(max_mac_overhead, (int, float)) or not max_mac_overhead >= 0:
        raise ValueError(f"`max_mac_overhead` must be a fraction >= 0 (0.2: 20% more multiply-adds). "
                         f"Received: max_mac_overhead={max_mac_overhead!r}")
    if cut is not None and grid is not None:
        plans = [(cut, grid)]
    else:
        found = candidates(data, max_mac_overhead)
        if not found:
            raise ValueError(f"No patch stage keeps the extra multiply-adds within max_mac_overhead="
                             f"{max_mac_overhead!r}.")
        plans = [(c.cut, c.grid) for c in found[:MEASURED_CANDIDATES]]
    best = None
    for cut, grid in plans:
        patched = _measured(data, cut, grid)
        if best is None or patched.device_ram_bytes < best.device_ram_bytes:
            best = patched
    return best


def _measured(data: bytes, cut: int, grid: tuple[int, int]) -> PatchedModel:
    """The plan (cut, grid) built and both models' arenas measured, each with an offline memory plan where it beats
    TFLM's own, with full-size masks where they keep the device RAM."""
    from .memory_plan import with_tightest_plan

    patch, rest, plan = split_model(data, cut, grid)
    patch, patch_use, _ = with_tightest_plan(patch)
    rest, rest_use, _ = with_tightest_plan(rest)
    graph = single_subgraph(data, "patched")[1]
    frame = math.prod(int(v) for v in graph.tensors[int(graph.inputs[0])].shape[1:])  # the whole int8 frame
    patched = PatchedModel(patch, rest, plan, patch_use, rest_use, frame, data)
    faster = _with_full_masks(patched) if plan.masks else None
    if faster is not None and faster.device_ram_bytes <= patched.device_ram_bytes:
        patched = faster  # the same RAM, elementwise masks: CMSIS-NN's MUL instead of the reference broadcast
    return patched


def faster_plan(patched: PatchedModel, ram_bytes: int, max_mac_overhead: float = 0.2,
                tries: int = MEASURED_CANDIDATES) -> PatchedModel:
    """The plan predicted to run fastest (`PatchPlan.stage_instructions`, the measured `STAGE_COST`) whose measured
    device RAM (`device_ram_bytes`) is at most `ram_bytes`, trying the `tries` fastest predicted to be faster than
    `patched` (a plan already within `ram_bytes`, returned when none is) and to fit (their estimated RAM beside
    `patched`'s measured). Fewer, larger patches repeat less of the halo and fewer invocations, and need a wider
    input band and larger patch activations, which the rest model's activations often hide in a shared arena."""
    found = candidates(patched.source, max_mac_overhead)
    base = next((c for c in found if (c.cut, c.grid) == (patched.plan.cut, patched.plan.grid)), None)
    if base is None:
        return patched
    best, tried = patched, 0
    for c in sorted(found, key=lambda c: c.instructions):
        if tried >= tries or c.instructions >= best.plan.stage_instructions():
            break
        if patched.device_ram_bytes + c.ram - base.ram > ram_bytes:
            continue
        tried += 1
        measured = _measured(patched.source, c.cut, c.grid)
        if (measured.device_ram_bytes <= ram_bytes
                and measured.plan.stage_instructions() < best.plan.stage_instructions()):
            best = measured
    return best


def _with_full_masks(patched: PatchedModel) -> PatchedModel | None:
    """`patched` with full-size border masks, measured, where its patch model's activations could stay within
    the larger model's (so the shared arena does not grow); else None (not built)."""
    from .memory_plan import with_tightest_plan
    from .schedule import activation_peak

    plan = patched.plan
    patch, _, full = split_model(patched.source, plan.cut, plan.grid, full_masks=True)
    if activation_peak(patch)[0] > max(patched.patch_arena.head, patched.rest_arena.head):
        return None
    patch, patch_use, _ = with_tightest_plan(patch)
    return PatchedModel(patch, patched.rest, full, patch_use, patched.rest_arena, patched.frame_bytes,
                        patched.source)


def plan_to_json(plan: PatchPlan) -> dict:
    """The plan as plain data (what `run_patched` passes to the TFLM worker and `emit` writes beside the C files):
    each Axis as [stride, offset, size, full]."""
    def axis(a: Axis) -> list[int]:
        return [a.stride, a.offset, a.size, a.full]

    return {"cut": plan.cut, "stage_tensor": plan.stage_tensor, "grid": list(plan.grid),
            "stage_shape": list(plan.stage_shape), "patch": list(plan.patch),
            "starts": [list(s) for s in plan.starts], "input": [axis(a) for a in plan.input],
            "input_zero_point": plan.input_zero_point, "masks": [[axis(a) for a in m] for m in plan.masks],
            "mask_channels": list(plan.mask_channels), "macs": plan.macs, "macs_whole": plan.macs_whole,
            "patch_macs": plan.patch_macs, "masked_values": plan.masked_values}


def plan_from_json(data: dict) -> PatchPlan:
    """Inverse of `plan_to_json`."""
    def axis(v: list[int]) -> Axis:
        return Axis(*v)

    return PatchPlan(data["cut"], data["stage_tensor"], tuple(data["grid"]), tuple(data["stage_shape"]),
                     tuple(data["patch"]), (list(data["starts"][0]), list(data["starts"][1])),
                     (axis(data["input"][0]), axis(data["input"][1])), data["input_zero_point"],
                     [(axis(m[0]), axis(m[1])) for m in data["masks"]], data["macs"], data["macs_whole"],
                     list(data.get("mask_channels", [1] * len(data["masks"]))), data.get("patch_macs", 0),
                     data.get("masked_values", 0))


def run_patched(patch_model: bytes, rest_model: bytes, plan: Any, x: np.ndarray, arena_size: int | None = None,
                timeout: float = 600, segments: Any = None) -> tuple[np.ndarray, str]:
    """The patch loop of `keras_mbv2.tflite.patches` on the TFLite Micro host runtime, in a child process, exactly
    as the firmware runs it: `x` is a batch of int8 frames; returns (outputs, the two models' allocation reports,
    the patch model's first). `segments` (a `segments.SegmentedModel` of the rest model): the stage output then
    runs through the rest model's segments, one at a time."""
    import json

    from .runtime import _run_child

    def write(path: str) -> None:
        extra = {} if segments is None else {
            "segment_plan": np.array(json.dumps(segments.plan_json(input_in_buffer=True))),
            **{f"segment_{i}": np.frombuffer(s.model, np.uint8) for i, s in enumerate(segments.segments)}}
        with open(path, "wb") as f:  # np.savez would add ".npz" to a bare path
            np.savez(f, patch=np.frombuffer(patch_model, np.uint8), rest=np.frombuffer(rest_model, np.uint8),
                     plan=np.array(json.dumps(plan_to_json(plan))), **extra)

    arena = arena_size or max(len(patch_model) * 10, len(rest_model) * 10, 1 << 20)
    return _run_child("tflm-patched", write, x, arena, timeout, lambda: "")
