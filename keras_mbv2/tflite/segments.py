"""Segmented execution on stock TFLite Micro: an int8 model cut, in the flatbuffer, into consecutive segments that
run one after another in one arena, so that only one segment's persistent data exists at a time.

TFLM keeps every operator's persistent data (tensor and node structs, the per-channel requantization multipliers
and shifts: 8 B per output channel) for the model's whole life; on MobileNetV2 0.30 @ 80 that is about 74 KB of a
97 KB patched arena, and no split or patch plan lowers it. Cut into segments, each is a model of its own (the same
operators, tensors, buffers and quantization: no new conversion, so the outputs stay bit-exact); per inference the
device creates a `MicroInterpreter` for each segment in the one arena, runs `AllocateTensors`, copies the
segment's inputs in from the boundary buffer, invokes it, copies its outputs out and drops the interpreter.

The boundary buffer holds, at each cut, every tensor produced before it and read after it (a residual's input that
crosses the cut included), and at the end the model's outputs: its size is the largest such set. Between two segments
the tensors that pass through are moved to its front (in place, in order) and the finished segment's outputs copied
after them, so the buffer never needs more than that largest set. The device needs the largest segment's arena + the
buffer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from .flatbuffer import (
    METADATA_NAME,
    activation_sizes,
    metadata_name,
    opcode_names,
    pack_model,
    parse_model,
    single_subgraph,
)
from .schedule import lifetimes


@dataclass(frozen=True)
class Segment:
    """One segment: operators `first` .. `end` - 1 of the source model as a model of their own (`model`), whose
    inputs and outputs are the source's tensors `inputs` and `outputs` (indices in the source's subgraph, in the
    segment model's input and output order), and its arena as TFLM's recording allocator measured it (`ArenaUse`,
    host runtime)."""

    model: bytes
    first: int
    end: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    arena: Any = None


@dataclass(frozen=True)
class BufferLayout:
    """The boundary buffer as the firmware's segment loop uses it (`SegmentedModel.buffer_layout`): per segment,
    its inputs as (offset, bytes) (offset -1: the frame), the moves (from, to, bytes) done after it, its outputs as
    (offset, bytes) (offset -1: not kept, read by no later segment), the buffer's size, and the model's outputs'
    places once the last segment ran."""

    inputs: tuple[tuple[tuple[int, int], ...], ...]
    moves: tuple[tuple[tuple[int, int, int], ...], ...]
    outputs: tuple[tuple[tuple[int, int], ...], ...]
    size: int
    model_outputs: tuple[tuple[int, int], ...]


@dataclass
class SegmentedModel:
    """An int8 model run as consecutive segments in one arena (module docstring), with what the device needs,
    measured on the TFLM host runtime: `arena_bytes` (the largest segment's arena), `boundary_bytes` (the largest
    set of tensors that crosses a cut), `device_ram_bytes` (their sum)."""

    source: bytes  # the whole int8 model it was cut from
    segments: list[Segment]
    tensor_bytes: dict[int, int] = field(repr=False)  # the source's activation tensors' sizes
    model_inputs: tuple[int, ...] = ()
    model_outputs: tuple[int, ...] = ()

    @property
    def cuts(self) -> list[int]:
        """The operator indices where a segment starts, the first (0) left out."""
        return [s.first for s in self.segments[1:]]

    def crossing(self, index: int) -> tuple[int, ...]:
        """The tensors the boundary buffer holds before segment `index` (1 ..): produced before it, read at or
        after it."""
        produced = set(self.model_inputs)
        for s in self.segments[:index]:
            produced |= set(s.outputs)
        needed = set(self.model_outputs)
        for s in self.segments[index:]:
            needed |= set(s.inputs)
        return tuple(sorted(produced & needed))

    @property
    def boundary_bytes(self) -> int:
        """The boundary buffer: the largest set of tensors that crosses a cut, or the model's outputs, which the last
        segment copies out before its interpreter is dropped."""
        return max(sum(self.tensor_bytes[t] for t in self.crossing(i)) for i in range(1, len(self.segments) + 1))

    def buffer_layout(self, input_in_buffer: bool = False) -> "BufferLayout":
        """Where each tensor lies in the boundary buffer as the firmware's loop moves them (module docstring): each
        segment's inputs (offset -1: the frame, which the app writes straight into the first segment's input
        tensor, unless `input_in_buffer`: a patch stage's output, assembled at offset 0), then after it the moves
        of the tensors that pass through to the buffer's front (ascending, so each move is safe in place) and where
        its outputs are copied, after them. The last segment's outputs are the model's."""
        place: dict[int, int] = {t: 0 for t in self.model_inputs[:1]} if input_in_buffer else {}
        inputs, moves, outputs, size = [], [], [], self.tensor_bytes[self.model_inputs[0]] if input_in_buffer else 0
        for i, s in enumerate(self.segments):
            if not input_in_buffer and i > 0 and self.model_inputs[0] in s.inputs:
                raise ValueError(f"Segment {i} reads the model's input, which the app holds only in the first "
                                 f"segment's arena: cut after operator {s.first - 1} instead.")
            inputs.append(tuple((place.get(t, -1), self.tensor_bytes[t]) for t in s.inputs))
            keep = set(self.crossing(i + 1))
            kept = [(offset, t) for t, offset in sorted(place.items(), key=lambda item: item[1]) if t in keep]
            place, end, step = {}, 0, []
            for offset, t in kept:
                place[t] = end
                if offset != end:
                    step.append((offset, end, self.tensor_bytes[t]))
                end += self.tensor_bytes[t]
            out = []
            for t in s.outputs:
                if t in keep:
                    place[t] = end
                    out.append((end, self.tensor_bytes[t]))
                    end += self.tensor_bytes[t]
                else:
                    out.append((-1, self.tensor_bytes[t]))
            moves.append(tuple(step))
            outputs.append(tuple(out))
            size = max(size, end)
        return BufferLayout(tuple(inputs), tuple(moves), tuple(outputs), size,
                            tuple((place[t], self.tensor_bytes[t]) for t in self.model_outputs))

    @property
    def arena_bytes(self) -> int:
        """The one arena every segment runs in, in turn: the largest segment's, measured."""
        return max(s.arena.total for s in self.segments)

    @property
    def device_ram_bytes(self) -> int:
        """What the device needs besides code and weights: the arena + the boundary buffer."""
        return self.arena_bytes + self.boundary_bytes

    def describe(self) -> str:
        """One line: segments, the arena, the buffer, the persistent data the largest segment keeps."""
        big = max(self.segments, key=lambda s: s.arena.total)
        return (f"{len(self.segments)} segments (cut before operators {', '.join(map(str, self.cuts)) or '-'}): "
                f"{self.arena_bytes:,} B arena (the largest segment's, operators {big.first}-{big.end - 1}: "
                f"{big.arena.head:,} B activations + {big.arena.tail:,} B persistent) + {self.boundary_bytes:,} B "
                f"boundary buffer = {self.device_ram_bytes:,} B")

    def plan_json(self, input_in_buffer: bool = False) -> dict:
        """The loop's plan as the worker and the firmware read it: each segment's input and output tensors, the
        source's inputs and outputs, their sizes, and the boundary buffer's layout (`buffer_layout`) the loop
        follows."""
        layout = self.buffer_layout(input_in_buffer)
        used = {*self.model_inputs, *self.model_outputs, *(t for s in self.segments for t in (*s.inputs, *s.outputs))}
        return {"inputs": [list(s.inputs) for s in self.segments], "outputs": [list(s.outputs) for s in self.segments],
                "model_inputs": list(self.model_inputs), "model_outputs": list(self.model_outputs),
                "tensor_bytes": {str(t): self.tensor_bytes[t] for t in sorted(used)},
                "layout": {"inputs": layout.inputs, "moves": layout.moves, "outputs": layout.outputs,
                           "size": layout.size, "model_outputs": layout.model_outputs,
                           "input_in_buffer": input_in_buffer}}

    @classmethod
    def from_plan(cls, models: Sequence[bytes], plan: dict) -> "SegmentedModel":
        """The segments back from their models and `plan_json` (as `emit` writes it), to run the loop again."""
        segments = [Segment(m, 0, 0, tuple(i), tuple(o)) for m, i, o in zip(models, plan["inputs"], plan["outputs"])]
        return cls(b"", segments, {int(t): int(b) for t, b in plan["tensor_bytes"].items()},
                   tuple(plan["model_inputs"]), tuple(plan["model_outputs"]))

    def allocate_instructions(self, core: str) -> float:
        """Estimated instructions every inference spends allocating the segments on `core` (`ALLOCATE_COST`): each
        segment's `AllocateTensors`. Since every operator and channel is in exactly one segment, more segments cost
        about `ALLOCATE_COST[core]["model"]` each: the fewest segments that fit is the fastest plan."""
        return sum(allocate_instructions(s.model, core) for s in self.segments)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """int8 frames (N, H, W, C) -> int8 outputs, by the firmware's loop on the TFLM host runtime (each
        segment's interpreter created, allocated, invoked and dropped per frame)."""
        return run_segments(self, np.asarray(x))[0]


def cut_model(data: bytes, cuts: Sequence[int]) -> list[Segment]:
    """The segments of a single-subgraph model cut before each operator index in `cuts` (ascending, inside the
    model), each a model of its own with the source's tensors, buffers and quantization; arenas not measured."""
    model, graph = single_subgraph(data, "cut into segments")
    count = len(graph.operators)
    cuts = [int(c) for c in cuts]
    if cuts != sorted(set(cuts)) or any(not 0 < c < count for c in cuts):
        raise ValueError(f"`cuts` must be ascending operator indices in 1 .. {count - 1}. Received: cuts={cuts}")
    sizes = activation_sizes(model, graph)
    bounds = [0, *cuts, count]
    segments = []
    for a, b in zip(bounds, bounds[1:]):
        ops = graph.operators[a:b]
        produced = {int(t) for op in ops for t in op.outputs}
        inputs = list(dict.fromkeys(int(t) for op in ops for t in op.inputs if t >= 0 and int(t) in sizes
                                    and int(t) not in produced))
        later = {int(t) for op in graph.operators[b:] for t in op.inputs} | {int(t) for t in graph.outputs}
        outputs = [t for t in dict.fromkeys(int(t) for op in ops for t in op.outputs) if t in later]
        segments.append(Segment(_segment_bytes(data, a, b, inputs, outputs), a, b, tuple(inputs), tuple(outputs)))
    return segments


def _segment_bytes(data: bytes, first: int, end: int, inputs: list[int], outputs: list[int]) -> bytes:
    """Operators `first` .. `end` - 1 of `data` as a model: those inputs and outputs, the tensors and buffers they
    use (nothing else), no signature and no offline memory plan (the whole model's would not fit it)."""
    from .patches import _pruned

    model = parse_model(data)
    graph = model.subgraphs[0]
    graph.operators = graph.operators[first:end]
    graph.inputs, graph.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
    model.signatureDefs = None
    model.metadata = [m for m in model.metadata or [] if metadata_name(m) != METADATA_NAME]
    return pack_model(_pruned(model), len(data))


def segment_model(data: bytes, cuts: Sequence[int]) -> SegmentedModel:
    """Cut an int8 model before the operators `cuts` (`cut_model`) and measure every segment's arena on the TFLM
    host runtime (all in one child process; each on its memory twin, `arena_use`, when the calibration is
    degenerate): the device needs the largest of them + the boundary buffer."""
    from .flatbuffer import require_int8
    from .runtime import arena_use

    details = require_int8(data)
    model, graph = single_subgraph(data, "cut into segments")
    segmented = SegmentedModel(data, cut_model(data, cuts), activation_sizes(model, graph),
                               tuple(int(t) for t in graph.inputs), tuple(int(t) for t in graph.outputs))
    try:  # every segment allocated once, in one child process (no frame: the loop only reports)
        report = run_segments(segmented, np.zeros((0, *details["input_shape"][1:]), "int8"))[1]
        parts = report.split("[segment ")[1:]
        arenas = [segment_arena(p) for p in parts]
        if len(arenas) != len(segmented.segments) or any(a.total is None or a.head is None for a in arenas):
            raise RuntimeError(f"TFLite Micro did not report every segment's arena:\n{report[-500:]}")
    except RuntimeError:  # a degenerate calibration: each segment on its memory twin (`arena_use`)
        arenas = [arena_use(s.model, _first_input_shape(s.model)) for s in segmented.segments]
    segmented.segments = [replace(s, arena=a) for s, a in zip(segmented.segments, arenas)]
    return segmented


def segment_arena(report: str) -> Any:
    """A segment's `ArenaUse` from its part of the loop's report: the arena it needs is the larger of TFLM's recorded
    total and the smallest arena it allocates in (the worker's bisection: the temporary tensors of a Prepare can
    peak above the total), the head its planned activations; None where the report lacks either."""
    import re

    from .runtime import ArenaUse, parse_arena_bytes

    total, head = parse_arena_bytes(report), parse_arena_bytes(report, "head")
    smallest = re.search(r"Smallest arena (\d+) bytes", report)
    if total is None or head is None:
        return ArenaUse(None, None)
    return ArenaUse(max(total, int(smallest.group(1))) if smallest else total, head)


def allocate_instructions(model: bytes, core: str) -> float:
    """Estimated instructions of `model`'s `AllocateTensors` on `core` (`ALLOCATE_COST`'s cores)."""
    if core not in ALLOCATE_COST:
        raise ValueError(f"`core` must be one of {sorted(ALLOCATE_COST)}. Received: core={core!r}")
    graph = parse_model(model).subgraphs[0]
    channels = sum(len(t.quantization.scale) for t in graph.tensors if t.quantization is not None
                   and t.quantization.scale is not None and len(t.quantization.scale) > 1)
    cost = ALLOCATE_COST[core]
    return cost["model"] + cost["operator"] * len(graph.operators) + cost["channel"] * channels


def _first_input_shape(data: bytes) -> tuple[int, ...]:
    graph = parse_model(data).subgraphs[0]
    return tuple(int(d) for d in graph.tensors[int(graph.inputs[0])].shape)


def run_segments(segmented: SegmentedModel, x: np.ndarray, arena_size: int | None = None,
                 timeout: float = 600) -> tuple[np.ndarray, str]:
    """The segment loop (module docstring) on the TFLite Micro host runtime, in a child process: `x` is a batch of
    int8 frames; returns (outputs, every segment's allocation report, in order)."""
    from .runtime import _run_child

    def write(path: str) -> None:
        arrays = {f"segment_{i}": np.frombuffer(s.model, np.uint8) for i, s in enumerate(segmented.segments)}
        with open(path, "wb") as f:  # np.savez would add ".npz" to a bare path
            np.savez(f, plan=np.array(json.dumps(segmented.plan_json())), **arrays)

    arena = arena_size or max(max(len(s.model) for s in segmented.segments) * 10, 1 << 20)
    return _run_child("tflm-segments", write, x, arena, timeout, lambda: "")


# TFLM's persistent data for a segment, in bytes: a least-squares fit of the tails TFLM's recording allocator
# measured (host runtime) for 304 segments of MobileNetV2 0.35 @ 64 (10 classes), 0.5 @ 48 (100 classes), the rest
# model of 0.30 @ 80 (1000 classes) after its patch stage, and MobileNetV1 0.25 @ 96 (2 classes), cut at random
# operators and before every operator: base + per tensor + per channel of a per-channel quantized tensor (a
# filter's and its bias's: 8 B per output channel) + per segment input or output + per operator of each kind + per
# output unit of a FULLY_CONNECTED (TFLM keeps a multiplier and shift per unit). Largest error 50 B (2.2%).
# Operators of other kinds cost `other`, about the fitted kinds' mean. With the activation peak by liveness (and
# MEAN's scratch), the planner's estimates of those models' plans were within 30 B of the measured RAM.
TAIL_COST = {"base": 532.1, "tensor": 66.5, "channel": 4.0, "io": 72.1, "fc_unit": 4.0, "CONV_2D": 49.8,
             "DEPTHWISE_CONV_2D": 44.6, "ADD": 78.6, "FULLY_CONNECTED": 89.0, "MEAN": 56.5, "SOFTMAX": 114.4,
             "other": 72.0}
# While an operator's Prepare runs, its temporary tensors take arena beside the persistent data: a per-channel
# filter's and bias's zero points and structs, 12.5 B per channel + at most 480 B (measured, host runtime, by the
# smallest arena each single-operator segment of MobileNetV2 0.35 and 1.0 allocates in: 56 to 1,280 channels). A
# segment whose activations are small needs that peak, `PREPARE_COST["channel"]` x channels + "base" over its
# persistent data, rather than activations + persistent data.
PREPARE_COST = {"channel": 12.5, "base": 480.0}
# Instructions one model's `AllocateTensors` costs on the device, run per segment per inference (and, patched and
# segmented, the patch model's too): per model + per operator + per channel of a per-channel quantized tensor (each
# conv's Prepare computes a multiplier and shift per output channel in double precision: in software on the
# Cortex-M4, whose FPU is single precision). Least squares over every model's ticks the app printed (QEMU
# `-icount shift=0`, TFLM with CMSIS-NN) for MobileNetV2 0.30 @ 80 (1000 classes), 0.35 @ 96 (10) and MobileNetV1
# 0.25 @ 96 (2), patched + segmented, 11 to 14 models each (benchmarks/firmware/segments_allocate.json); fitted
# without one network, the held-out network's total was predicted within 4.8% (M4) and 1.1% (M7).
ALLOCATE_COST = {"cortex-m4": {"model": 68_057.0, "operator": 6_265.6, "channel": 593.6},
                 "cortex-m7": {"model": 3_561.8, "operator": 9_056.9, "channel": 147.2}}


@dataclass(frozen=True)
class SegmentPlan:
    """Cuts chosen before anything is measured: `cuts` (operator indices where segments start, 0 left out), the
    estimated largest segment arena (`TAIL_COST`'s persistent data + the activation peak by liveness, MEAN's scratch
    included, or `PREPARE_COST`'s temporary peak where larger) and the boundary buffer (exact: the largest set of
    tensors crossing a cut, or the model's outputs)."""

    cuts: tuple[int, ...]
    arena_estimate: int
    boundary_bytes: int

    @property
    def segments(self) -> int:
        """How many segments the cuts make."""
        return len(self.cuts) + 1

    @property
    def ram_estimate(self) -> int:
        """Estimated device RAM: the largest segment's arena + the boundary buffer."""
        return self.arena_estimate + self.boundary_bytes


def segment_plans(data: bytes, max_segments: int = 16) -> list[SegmentPlan]:
    """For each number of segments 1 .. `max_segments`, the cuts that need the least estimated device RAM (a
    minimax dynamic programme over every operator boundary, for each boundary-buffer size the cuts allow), ranked by
    segments; a plan that needs no less than one with fewer segments is left out."""
    model, graph = single_subgraph(data, "cut into segments")
    n = len(graph.operators)
    sizes = activation_sizes(model, graph)
    tensors = sorted(sizes)
    born, last = lifetimes(graph, sizes, range(n))  # the graph's outputs live to step n
    b_arr = np.array([born.get(t, n) for t in tensors])
    l_arr = np.array([max(last.get(t, born.get(t, n)), born.get(t, n)) for t in tensors])
    s_arr = np.array([sizes[t] for t in tensors], dtype=np.int64)
    # crossing bytes at each cut c (before operator c): produced before c, read at or after c
    cross = {c: int(s_arr[(b_arr < c) & (l_arr >= c)].sum()) for c in range(1, n)}
    outputs_bytes = sum(sizes[int(t)] for t in graph.outputs)  # the last segment copies them out
    op_tensors = [{int(v) for v in [*op.inputs, *op.outputs] if v >= 0} for op in graph.operators]
    names = opcode_names(model)
    op_cost = []  # each operator's own persistent data: its kind's, and a FULLY_CONNECTED's per output unit
    for op in graph.operators:
        kind = names[op.opcodeIndex]
        units = int(graph.tensors[int(op.outputs[0])].shape[-1]) if kind == "FULLY_CONNECTED" else 0
        op_cost.append(TAIL_COST.get(kind, TAIL_COST["other"]) + TAIL_COST["fc_unit"] * units)
    op_cost_sum = np.concatenate([[0.0], np.cumsum(op_cost)])
    channels = {i: len(t.quantization.scale) for i, t in enumerate(graph.tensors)
                if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale) > 1}
    # the temporary tensors' peak over the persistent data while each operator's Prepare runs (`PREPARE_COST`)
    prepare = [max((channels.get(int(t), 0) for t in op.inputs if t >= 0), default=0) for op in graph.operators]
    prepare = np.array([PREPARE_COST["channel"] * c + PREPARE_COST["base"] if c else 0.0 for c in prepare])
    # scratch buffers TFLM plans beside an operator's tensors: MEAN's int32 sums, one per output element
    scratch = np.array([4 * int(np.prod(graph.tensors[int(op.outputs[0])].shape)) if names[op.opcodeIndex] == "MEAN"
                        else 0 for op in graph.operators], np.int64)

    est = np.full((n + 1, n + 1), np.inf)
    for a in range(n):
        seen: set[int] = set()
        for b in range(a + 1, n + 1):
            seen |= op_tensors[b - 1]
            live = (b_arr < b) & (l_arr >= a) & ~((b_arr < a) & (l_arr < a))
            io = int(((b_arr < a) & (l_arr >= a) & live).sum() + ((b_arr >= a) & (b_arr < b) & (l_arr >= b)).sum())
            start, end = np.maximum(b_arr[live], a), np.minimum(l_arr[live], b - 1)
            steps = np.zeros(b - a + 1, np.int64)
            np.add.at(steps, start - a, s_arr[live])
            np.add.at(steps, end - a + 1, -s_arr[live])
            head = int((np.cumsum(steps)[:-1] + scratch[a:b]).max())
            tail = (TAIL_COST["base"] + op_cost_sum[b] - op_cost_sum[a] + TAIL_COST["tensor"] * len(seen)
                    + TAIL_COST["channel"] * sum(channels.get(t, 0) for t in seen) + TAIL_COST["io"] * io)
            est[a, b] = tail + max(head, prepare[a:b].max())
    plans: dict[int, SegmentPlan] = {}
    for cap in sorted(set(cross.values())):
        allowed = [0] + [c for c in range(1, n) if cross[c] <= cap]
        # best[k][b]: the least largest-segment estimate over k segments covering operators 0 .. b - 1
        best = {allowed_b: (est[0, allowed_b], ()) for allowed_b in [*allowed[1:], n]}
        for k in range(1, max_segments + 1):
            if k > 1:
                step = {}
                for b in [*allowed[1:], n]:
                    options = [(max(best[a][0], est[a, b]), best[a][1] + (a,)) for a in allowed[1:] if a < b
                               and a in best]
                    if options:
                        step[b] = min(options)
                best = step
            if n not in best:
                break
            arena, cuts = best[n]
            boundary = max([cross[c] for c in cuts] + [outputs_bytes])
            plan = SegmentPlan(cuts, int(arena), boundary)
            if k not in plans or plan.ram_estimate < plans[k].ram_estimate:
                plans[k] = plan
    ranked, least = [], None
    for k in sorted(plans):
        if least is None or plans[k].ram_estimate < least:
            ranked.append(plans[k])
            least = plans[k].ram_estimate
    return ranked
