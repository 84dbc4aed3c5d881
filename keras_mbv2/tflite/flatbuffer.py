"""A .tflite file as data: read and check it, walk its tensors and operators, and pack it back.

TFLite models are flatbuffers (schema.fbs). LiteRT ships the generated Python object API
(`ai_edge_litert.schema_py_generated`), so a model is parsed once into a mutable `ModelT`, inspected or edited,
and packed back with `pack_model` — the one place that writes a flatbuffer.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

TFLITE_IDENTIFIER = b"TFL3"
METADATA_NAME = "OfflineMemoryAllocation"  # the metadata entry TFLM reads an offline memory plan from

# TFLite TensorType -> bytes per element (schema.fbs).
TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 11: 8, 15: 2, 16: 2}


def metadata_name(entry: Any) -> str:
    """The name of a model's metadata entry (bytes in LiteRT's object API) as text."""
    return entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)


def read_tflite(tflite: bytes | str | os.PathLike, name: str = "tflite") -> bytes:
    """The bytes of a .tflite model (bytes or a path), checked to be a TFLite flatbuffer."""
    if isinstance(tflite, (str, os.PathLike)):
        if not os.path.isfile(tflite):
            raise ValueError(f"`{name}` file does not exist. Received: {name}={os.fspath(tflite)!r}")
        with open(tflite, "rb") as f:
            data = f.read()
        label = repr(os.fspath(tflite))
    elif isinstance(tflite, (bytes, bytearray)):
        data, label = bytes(tflite), f"<{len(tflite)} bytes>"
    else:
        raise ValueError(f"`{name}` must be .tflite bytes or a path. Received: {name}={type(tflite).__name__}")
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(f"`{name}` is not a TFLite flatbuffer (no 'TFL3' identifier). Received: {name}={label}")
    try:
        model = parse_model(data)
        if not model.subgraphs:
            raise ValueError("no subgraphs")
    except Exception as exc:
        raise ValueError(f"`{name}` is a truncated or corrupt TFLite model ({exc}). Received: {name}={label}") from exc
    return data


def parse_model(data: bytes) -> Any:
    """The whole flatbuffer as LiteRT's generated object API (`ModelT`); raises on truncated data."""
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))


def pack_model(model: Any, size_hint: int = 0) -> bytes:
    """Serialise a `ModelT` (from `parse_model`, possibly edited) back into .tflite bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def single_subgraph(data: bytes, purpose: str) -> tuple[Any, Any]:
    """(model, its only subgraph); raises naming `purpose` for models with control flow (several subgraphs)."""
    model = parse_model(data)
    if len(model.subgraphs or []) != 1:
        raise ValueError(
            f"Only single-subgraph models can be {purpose}. Received: {len(model.subgraphs or [])} subgraphs"
        )
    return model, model.subgraphs[0]


def builtin_names() -> dict[int, str]:
    """BuiltinOperator code -> name (CONV_2D, ...)."""
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def opcode_names(model: Any) -> list[str]:
    """The builtin operator name of each entry of a parsed model's operator-code table."""
    names = builtin_names()
    return [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), f"CUSTOM({c.customCode!r})")
            for c in model.operatorCodes or []]


def operator_names(data: bytes) -> list[str]:
    """The builtin operator names a model uses, in the order of its operator-code table."""
    return opcode_names(parse_model(data))


def activation_sizes(model: Any, graph: Any) -> dict[int, int]:
    """Bytes of every tensor a memory planner must place: not constant (no buffer data), not a variable."""
    sizes = {}
    for index, tensor in enumerate(graph.tensors):
        buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
        constant = buffer is not None and buffer.data is not None and len(buffer.data) > 0
        if not constant and not tensor.isVariable:
            shape = tensor.shape if tensor.shape is not None else []
            sizes[index] = int(np.prod(shape)) * TYPE_BYTES.get(tensor.type, 4)
    return sizes


def operator_macs(kind: str, graph: Any, op: Any) -> int:
    """Multiply-adds of one CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED operator (0 for other kinds)."""
    if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return 0
    out = graph.tensors[op.outputs[0]].shape
    weights = graph.tensors[op.inputs[1]].shape
    if kind == "CONV_2D":  # weights (out, kh, kw, in/groups)
        return int(np.prod(out)) * int(np.prod(weights[1:]))
    if kind == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, out)
        return int(np.prod(out)) * int(weights[1] * weights[2])
    return int(np.prod(out)) * int(weights[1])  # weights (out, in)


def tflite_macs(data: bytes) -> int:
    """Multiply-adds of the model's CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED operators."""
    model = parse_model(data)
    names = opcode_names(model)
    return sum(operator_macs(names[op.opcodeIndex], graph, op) for graph in model.subgraphs for op in graph.operators)


def io_details(tflite: bytes) -> dict[str, Any]:
    """Input/output dtype, shape, scale and zero point, read with LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    return {
        "input_dtype": np.dtype(inp["dtype"]).name, "input_shape": tuple(int(d) for d in inp["shape"]),
        "input_scale": float(inp["quantization"][0]), "input_zero_point": int(inp["quantization"][1]),
        "output_dtype": np.dtype(out["dtype"]).name, "output_shape": tuple(int(d) for d in out["shape"]),
        "output_scale": float(out["quantization"][0]), "output_zero_point": int(out["quantization"][1]),
    }


def require_int8(tflite: bytes, name: str = "tflite") -> dict[str, Any]:
    """Raise unless the model is full-integer (int8 input and output), as microcontrollers need."""
    details = io_details(tflite)
    if details["input_dtype"] != "int8" or details["output_dtype"] != "int8":
        raise ValueError(
            f"`{name}` must be a full-int8 model (int8 input and output); it has {details['input_dtype']} input and "
            f"{details['output_dtype']} output. Convert with to_tflite(model, representative_data, quantize='int8')."
        )
    return details


# Activation scales of trained int8 models are 1e-3 and up; an untrained network (default batch-norm statistics)
# calibrates to scales near 1e-8, on which TFLM's kernels abort while preparing.
DEGENERATE_SCALE = 1e-6


def degenerate_tensors(data: bytes, threshold: float = DEGENERATE_SCALE) -> list[tuple[str, float, str]]:
    """(tensor name, scale, "output of OP #i") of every activation tensor whose quantization scale is below
    `threshold`, in operator order: such a model was not trained (or not calibrated on representative data)."""
    model = parse_model(data)
    names = opcode_names(model)
    found = []
    for graph in model.subgraphs:
        sizes = activation_sizes(model, graph)
        for i, op in enumerate(graph.operators):
            for t in op.outputs:
                q = graph.tensors[t].quantization
                if t in sizes and q is not None and q.scale is not None and len(q.scale):
                    scale = float(np.min(q.scale))
                    if scale < threshold:
                        name = graph.tensors[t].name
                        found.append((name.decode() if isinstance(name, bytes) else str(name), scale,
                                      f"output of {names[op.opcodeIndex]} #{i}"))
    return found


def strip_strings(data: bytes) -> bytes:
    """`data` without the strings a device never reads (tensor and subgraph names, signature defs), with
    TensorFlow's own `flatbuffer_utils.strip_strings`. Operators, weights, quantization and metadata (an offline
    memory plan) are kept, so outputs and arena are unchanged. The converter names constant tensors after the
    values it folded, so only the stripped size depends on the architecture alone."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = parse_model(data)
    flatbuffer_utils.strip_strings(model)
    return pack_model(model, len(data))


def with_serving_signature(data: bytes) -> bytes:
    """`data` with the one signature LiteRT's `get_signature_runner()` finds: "serving_default", its input keyed
    "x" and its outputs "output_0", "output_1", ... (the keys TensorFlow's SavedModel path writes for
    `to_tflite`'s `lambda x: model(x)`). The converter's frozen-graph path, which `to_tflite` takes because it is
    2-3x faster, writes none. A model with signatures is returned as it is."""
    from ai_edge_litert import schema_py_generated as schema

    model = parse_model(data)
    if model.signatureDefs:
        return data
    graph = model.subgraphs[0]

    def entry(key: str, index: int) -> Any:
        mapping = schema.TensorMapT()
        mapping.name, mapping.tensorIndex = key, int(index)
        return mapping

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    signature.inputs = [entry("x" if len(graph.inputs) == 1 else f"x_{i}", t) for i, t in enumerate(graph.inputs)]
    signature.outputs = [entry(f"output_{i}", t) for i, t in enumerate(graph.outputs)]
    model.signatureDefs = [signature]
    return pack_model(model, len(data))


def _insert_tensor(model: Any, graph: Any, at: int, tensor: Any) -> None:
    """Insert `tensor` at index `at` of `graph`, renumbering every reference to the tensors after it (operators,
    graph inputs and outputs, and the OfflineMemoryAllocation plan of a single-subgraph model)."""
    def shift(indices: Any) -> Any:
        return None if indices is None else np.array([i + 1 if i >= at else i for i in indices], np.int32)

    graph.tensors.insert(at, tensor)
    for op in graph.operators:
        op.inputs, op.outputs, op.intermediates = shift(op.inputs), shift(op.outputs), shift(op.intermediates)
    graph.inputs, graph.outputs = shift(graph.inputs), shift(graph.outputs)
    for entry in model.metadata or []:
        if metadata_name(entry) == METADATA_NAME and len(model.subgraphs) == 1:
            values = np.frombuffer(bytes(model.buffers[entry.buffer].data), dtype="<i4").tolist()
            values = [*values[:2], values[2] + 1, *values[3:3 + at], -1, *values[3 + at:]]
            model.buffers[entry.buffer].data = np.frombuffer(np.array(values, "<i4").tobytes(), np.uint8)


def memory_twin(data: bytes) -> bytes:
    """A model with the memory of `data` once trained: every quantization scale set to 1/256, constant buffers the
    converter shared between tensors copied apart, and biases it dropped for being zero restored (zeros). The
    copies go into the empty buffer entries the converter leaves where it merged equal constants, so the twin has
    the trained model's buffer table, and size, exactly.

    The arena TFLM needs depends on the shapes, operators and quantization layout, not on the values, so this
    twin measures what a trained model of the same architecture needs even when `data` itself cannot run (an
    untrained network calibrates to degenerate scales). For a trained model the twin has the same size and arena.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = parse_model(data)
    names = opcode_names(model)

    def constant(tensor: Any) -> bool:
        buffer = model.buffers[tensor.buffer]
        return buffer.data is not None and len(buffer.data) > 0

    referenced = {t.buffer for g in model.subgraphs for t in g.tensors} | {m.buffer for m in model.metadata or []}
    free = [i for i, b in enumerate(model.buffers)
            if i > 0 and i not in referenced and (b.data is None or len(b.data) == 0)]

    def new_buffer(data: np.ndarray) -> int:
        """Index of a buffer holding `data`: an unused empty entry when there is one, else a new one."""
        buffer = schema.BufferT()
        buffer.data = data
        if free:
            model.buffers[free[0]] = buffer
            return free.pop(0)
        model.buffers.append(buffer)
        return len(model.buffers) - 1

    for graph in model.subgraphs:
        for op in graph.operators:
            kind = names[op.opcodeIndex]
            if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and (len(op.inputs) < 3 or op.inputs[2] < 0):
                weights = graph.tensors[op.inputs[1]]
                channels = int(weights.shape[3] if kind == "DEPTHWISE_CONV_2D" else weights.shape[0])
                wq = weights.quantization
                n = len(wq.scale) if wq is not None and wq.scale is not None and len(wq.scale) else 1
                bias = schema.TensorT()
                bias.shape, bias.type, bias.name = np.array([channels], np.int32), schema.TensorType.INT32, b"bias"
                bias.hasRank = True  # as the converter writes a bias
                bias.quantization = schema.QuantizationParametersT()
                bias.quantization.scale = np.full(n, 1 / 256, np.float32)
                bias.quantization.zeroPoint = np.zeros(n, np.int64)
                bias.buffer = new_buffer(np.zeros(4 * channels, np.uint8))
                at = int(op.inputs[1])  # where the converter puts a bias: just before its weights
                _insert_tensor(model, graph, at, bias)
                inputs = [*op.inputs, -1, -1][:max(3, len(op.inputs))]
                inputs[2] = at
                op.inputs = np.array(inputs, np.int32)
        seen: set[int] = set()
        for tensor in graph.tensors:
            if constant(tensor):
                if tensor.buffer in seen:
                    tensor.buffer = new_buffer(np.array(model.buffers[tensor.buffer].data, copy=True))
                seen.add(tensor.buffer)
            q = tensor.quantization
            if q is not None and q.scale is not None and len(q.scale):
                q.scale = np.full(len(q.scale), 1 / 256, np.float32)
    return pack_model(model, len(data))
