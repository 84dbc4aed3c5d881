"""Parameters, multiply-adds and activation memory of a model, as the paper counts them.

- MACs: multiply-adds of convolutions and dense layers (the paper's "MAdds", Table 4); batch norm,
  activations, pooling and adds are not counted.
- Peak activation memory (paper Section 5.1 and Table 3): executing each top-level layer (each block)
  as one operation, the tensors that must exist at once are that operation's inputs and outputs plus every
  earlier tensor still needed later. Its maximum over the graph is the memory a runtime needs at least
  for activations when blocks never materialise their inner (expanded) tensors.
- Operator-level peak: the same liveness, but executing every built-in sub-layer as its own operator, as
  TensorFlow Lite (Micro) does, with batch norm and activations fused into the operator before them (as
  the TFLite converter fuses them). This is what TFLM's memory planner must at least place, and what a
  block's `memory_splits` (Section 5.1) reduces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from .checks import check_positive_int
from .layers import Block


@dataclass
class LayerProfile:
    """One top-level layer (or a block's sub-layer, in `children`) of a `Profile`: its parameters, multiply-adds
    (the paper's MAdds, Table 4) and the activation bytes live while it runs (Section 5.1, Table 3)."""

    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int
    activation_bytes: int  # this operation's inputs + outputs
    live_bytes: int = 0  # everything that must exist while it runs
    operator_bytes: int = 0  # everything that must exist during its largest built-in operator
    inner_operator_bytes: int = 0  # of which its own inputs, inner tensors and outputs
    children: list["LayerProfile"] = field(default_factory=list)


@dataclass
class Profile:
    """What `profile` measured of a model: parameters, multiply-adds (paper Table 4's MAdds), the peak activation
    memory with blocks as one operation and with every built-in operator on its own (Section 5.1, Table 3), per
    layer in `layers`. `not_counted` names the layers with weights whose multiply-adds the profiler does not know
    (their parameters are counted; their MACs are not in `macs`)."""

    name: str
    params: int
    macs: int
    peak_activation_bytes: int
    peak_layer: str
    bytes_per_activation: int
    layers: list[LayerProfile]
    peak_operator_bytes: int = 0
    peak_operator_layer: str = ""
    not_counted: list[LayerProfile] = field(default_factory=list)

    def not_counted_note(self) -> str:
        """One line naming the layers whose MACs are not counted and their share of the parameters; "" if none."""
        if not self.not_counted:
            return ""
        params = sum(lp.params for lp in self.not_counted)
        names = ", ".join(f"{lp.name} ({lp.kind})" for lp in self.not_counted[:6])
        more = f" and {len(self.not_counted) - 6} more" if len(self.not_counted) > 6 else ""
        return (f"MACs not counted for {len(self.not_counted)} layer{'s' if len(self.not_counted) > 1 else ''} the "
                f"profiler does not know: {names}{more} ({params:,} params, {params / max(self.params, 1):.1%} of "
                "the model's)")

    def memory_by_resolution(self) -> dict[int, tuple[int, int]]:
        """Paper Table 3's view: for each spatial size, the widest top-level tensor (channels, bytes)."""
        table: dict[int, tuple[int, int]] = {}
        for layer in self.layers:
            shape = layer.output_shape
            if len(shape) == 4 and shape[1] is not None:
                size, channels = shape[1], shape[3]
                nbytes = int(np.prod(shape[1:])) * self.bytes_per_activation
                if size not in table or channels > table[size][0]:
                    table[size] = (channels, nbytes)
        return dict(sorted(table.items(), reverse=True))

    def table(self, expand_blocks: bool = False) -> str:
        """A per-layer text table. `live bytes`: the layer run as one operation; `operator bytes`: its
        built-in operators run one by one (TFLite Micro), the figure `memory_splits` lowers. With
        `expand_blocks`, each block's sub-layers follow it (`block_3/expand`, ...: the paper's names, as
        `model.summary()` cannot show them)."""
        head = (f"{'layer':<28}{'kind':<22}{'output':<20}{'params':>11}{'MACs':>14}{'live bytes':>13}"
                f"{'operator bytes':>16}")
        rows = [head, "-" * len(head)]
        for layer in self.layers:
            mark = " <- peak" if layer.name == self.peak_layer else ""
            mark += " <- operator peak" if layer.name == self.peak_operator_layer else ""
            rows.append(
                f"{layer.name[:27]:<28}{layer.kind[:21]:<22}{str(layer.output_shape[1:])[:19]:<20}"
                f"{layer.params:>11,}{layer.macs:>14,}{layer.live_bytes:>13,}{layer.operator_bytes:>16,}{mark}"
            )
            for child in layer.children if expand_blocks else []:
                name = f"  {layer.name}/{child.name}"
                rows.append(f"{name[:27]:<28}{child.kind[:21]:<22}{str(child.output_shape[1:])[:19]:<20}"
                            f"{child.params:>11,}{child.macs:>14,}")
        rows.append("-" * len(head))
        rows.append(
            f"{'total':<70}{self.params:>11,}{self.macs:>14,}{self.peak_activation_bytes:>13,}"
            f"{self.peak_operator_bytes:>16,} (peaks, {self.bytes_per_activation} B/activation)"
        )
        if self.not_counted:
            rows.append(self.not_counted_note())
        return "\n".join(rows)


def _size(shape: Any) -> int:
    return int(np.prod([1 if d is None else d for d in shape[1:]]))


def layer_macs(layer: keras.layers.Layer, input_shape: Any, output_shape: Any) -> int:
    """Multiply-adds of one built-in layer for one image (batch dimension ignored)."""
    if isinstance(layer, keras.layers.SeparableConv2D):
        kh, kw = layer.kernel_size
        in_c = input_shape[-1]
        out_pixels = _size(output_shape) // output_shape[-1]
        return out_pixels * in_c * layer.depth_multiplier * (kh * kw + output_shape[-1])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return _size(output_shape) * kh * kw
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        return _size(output_shape) * kh * kw * (input_shape[-1] // layer.groups)
    if isinstance(layer, keras.layers.Dense):
        return _size(output_shape) * input_shape[-1]
    return 0


def _params(op: Any) -> int:
    """Parameters of one node's operation: a layer's weights; 0 for a Keras op (`x + 3.0` in a functional graph:
    an Operation, not a Layer, with no weights)."""
    return op.count_params() if isinstance(op, keras.layers.Layer) and op.weights else 0


#: Layers whose multiply-adds `layer_macs` counts, or which the paper counts as none (batch norm); any other layer
#: with weights is named in `Profile.not_counted`.
_COUNTED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D, keras.layers.Dense,
            keras.layers.BatchNormalization, keras.layers.Normalization)


def _block_children(block: Block, input_shape: Any) -> list[LayerProfile]:
    children: list[LayerProfile] = []

    def record(layer: keras.layers.Layer, shape: Any) -> Any:
        out = layer.compute_output_shape(shape)
        shapes_in = shape if isinstance(shape, list) else [shape]
        children.append(LayerProfile(
            name=layer.name, kind=type(layer).__name__, output_shape=tuple(out),
            params=_params(layer),
            macs=layer_macs(layer, shape, out) if not isinstance(shape, list) else 0,
            activation_bytes=sum(_size(s) for s in shapes_in) + _size(out),
        ))
        return out

    block.compose(input_shape, record)
    return children


def profile(model: keras.Model, bytes_per_activation: int = 1) -> Profile:
    """Profile a functional Keras model (any of ours, or a user's): params, MACs, peak activation memory.

    Args:
        bytes_per_activation: 1 for int8 (microcontrollers), 2 for the paper's 16-bit Table 3, 4 for float.
    """
    check_positive_int("bytes_per_activation", bytes_per_activation)
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise ValueError(f"`model` must be a functional Keras model. Received: model={model!r}")
    nodes = [n for depth in sorted(model._nodes_by_depth, reverse=True) for n in model._nodes_by_depth[depth]]
    # Liveness of every tensor: it exists from its producer until its last consumer (model outputs: the end).
    # A NASNet cell's second output *is* its input x, so it aliases it rather than adding memory.
    canonical: dict[int, int] = {}
    sizes: dict[int, int] = {}
    remaining: dict[int, int] = {}

    def key(t: Any) -> int:
        return canonical.get(id(t), id(t))

    # A batch norm or ReLU/ReLU6 after a convolution or dense layer (directly, or after another such) is fused into
    # that operator by the TFLite converter, whatever model it is in (keras.applications' flat graphs as much as our
    # blocks): its output is the operator's output buffer, so it aliases it and adds no memory or operator.
    # Likewise keras.applications' explicit ZeroPadding2D before a 'valid' stride-2 convolution, when it pads what
    # 'same' padding would: the converter folds it into the convolution.
    consumers: dict[int, int] = {}
    consumer: dict[int, Any] = {}
    producer: dict[int, Any] = {}
    for node in nodes:
        for t in node.input_tensors:
            consumers[id(t)] = consumers.get(id(t), 0) + 1
            consumer[id(t)] = node.operation
        for t in node.output_tensors:
            producer[id(t)] = node.operation
    outputs = {id(t) for t in keras.tree.flatten(model.outputs)}
    fused_nodes: set[int] = set()
    for node in nodes:
        outs = list(node.output_tensors)
        ins = list(node.input_tensors)
        if _is_nasnet_cell(node.operation) and len(outs) == 2:
            canonical[id(outs[1])] = key(ins[0])
        if (len(ins) == 1 and len(outs) == 1 and _fuses(node.operation) and consumers.get(id(ins[0])) == 1
                and id(ins[0]) not in outputs and (_fuses_into(producer.get(id(ins[0])))
                                                    or id(ins[0]) in canonical)):
            canonical[id(outs[0])] = key(ins[0])
            fused_nodes.add(id(node))
        elif (len(ins) == 1 and len(outs) == 1 and consumers.get(id(outs[0])) == 1
              and _pad_folds_into(node.operation, tuple(ins[0].shape), consumer.get(id(outs[0])))):
            canonical[id(outs[0])] = key(ins[0])
            fused_nodes.add(id(node))
        for t in ins:
            remaining[key(t)] = remaining.get(key(t), 0) + 1
        for t in outs:
            sizes.setdefault(key(t), _size(t.shape) * bytes_per_activation)
    for t in keras.tree.flatten(model.outputs):
        remaining[key(t)] = remaining.get(key(t), 0) + 1  # model outputs stay alive

    live: dict[int, int] = {}
    layers: list[LayerProfile] = []
    for node in nodes:
        op = node.operation
        ins = list(node.input_tensors)
        outs = list(node.output_tensors)
        new = {key(t): sizes[key(t)] for t in outs if key(t) not in live}
        if isinstance(op, keras.layers.InputLayer):
            live.update(new)
            continue
        fused = id(node) in fused_nodes
        live_now = sum(live.values()) + sum(new.values())
        in_shape = tuple(ins[0].shape) if len(ins) == 1 else [tuple(t.shape) for t in ins]
        out_shape = tuple(outs[0].shape)
        children = _block_children(op, in_shape) if isinstance(op, Block) else []
        macs = sum(c.macs for c in children) if isinstance(op, Block) else (
            layer_macs(op, in_shape, out_shape) if len(ins) == 1 else 0
        )
        in_keys = list(dict.fromkeys(key(t) for t in ins))
        io_bytes = sum(sizes[k] for k in in_keys) + sum(new.values())
        if fused:  # runs inside the operator before it: no operator, no memory of its own
            inner = 0
            io_bytes = sum(sizes[k] for k in in_keys)
        elif isinstance(op, Block):
            kept = [remaining[k] > sum(key(t) == k for t in ins) for k in in_keys]
            inner = _operator_peak(op, in_shape, kept, bytes_per_activation)
        else:
            inner = io_bytes
        layers.append(LayerProfile(
            name=op.name, kind=type(op).__name__, output_shape=out_shape,
            params=_params(op), macs=macs, activation_bytes=io_bytes,
            live_bytes=live_now, children=children,
            operator_bytes=0 if fused else live_now - io_bytes + inner, inner_operator_bytes=inner,
        ))
        live.update(new)
        for t in ins:
            remaining[key(t)] -= 1
            if remaining[key(t)] == 0:
                live.pop(key(t), None)
    peak = max(layers, key=lambda lp: lp.live_bytes)
    operator_peak = max(layers, key=lambda lp: lp.operator_bytes)
    ops = {n.operation.name: n.operation for n in nodes}
    not_counted = [lp for lp in layers if lp.params and not isinstance(ops[lp.name], (Block, *_COUNTED))]
    return Profile(
        name=model.name, params=model.count_params(), macs=sum(lp.macs for lp in layers),
        peak_activation_bytes=peak.live_bytes, peak_layer=peak.name, bytes_per_activation=bytes_per_activation,
        layers=layers, peak_operator_bytes=operator_peak.operator_bytes, peak_operator_layer=operator_peak.name,
        not_counted=not_counted,
    )


# Layers the TFLite converter fuses into the operator that produces their input (or that only rename it).
_FUSED = (keras.layers.BatchNormalization, keras.layers.ReLU, keras.layers.Activation)
# Operators a batch norm and a ReLU / ReLU6 after them are fused into (the converter folds the batch norm into the
# weights and the activation into the operator's fused activation).
_FUSING = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D, keras.layers.Dense)


def _fuses(layer: Any) -> bool:
    """A batch norm, or a ReLU / ReLU6 (`ReLU(max_value=6)`, `Activation("relu")`, ...), which TFLite fuses into the
    operator before it; not a leaky or thresholded ReLU, nor another activation."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return True
    if isinstance(layer, keras.layers.ReLU):
        return (layer.max_value in (None, 6) and not layer.negative_slope and not layer.threshold)
    if isinstance(layer, keras.layers.Activation):
        name = getattr(layer.activation, "__name__", "")
        return name in ("relu", "relu6", "linear")
    return False


def _fuses_into(layer: Any) -> bool:
    return isinstance(layer, _FUSING)


def _pad_folds_into(pad: Any, input_shape: tuple, conv: Any) -> bool:
    """A ZeroPadding2D that pads exactly what 'same' padding of the 'valid' convolution after it would (the
    converter then gives the convolution SAME padding and drops the PAD)."""
    if not isinstance(pad, keras.layers.ZeroPadding2D) or pad.data_format != "channels_last":
        return False
    if not isinstance(conv, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) or conv.padding != "valid":
        return False
    for axis, (before, after) in enumerate(pad.padding):
        size, kernel, stride = input_shape[1 + axis], conv.kernel_size[axis], conv.strides[axis]
        if size is None:
            return False
        dilated = (kernel - 1) * conv.dilation_rate[axis] + 1
        total = max((-(-size // stride) - 1) * stride + dilated - size, 0)
        if (before, after) != (total // 2, total - total // 2):
            return False
    return True


class _Buffer:
    """A tensor inside a block, for operator-level liveness: its shape and the buffer it occupies."""

    def __init__(self, shape: Any, owner: "_Buffer | None" = None) -> None:
        self.shape = tuple(shape)
        self.owner = owner or self


def _operator_peak(block: Block, input_shape: Any, kept: list[bool], bytes_per_activation: int) -> int:
    """Peak bytes of `block`'s inputs, inner tensors and outputs, running its sub-layers as operators in
    `compose` order. Inputs flagged in `kept` are needed after the block and stay alive throughout."""
    shapes = input_shape if isinstance(input_shape, list) else [input_shape]
    inputs = [_Buffer(s) for s in shapes]
    operators: list[tuple[list[_Buffer], _Buffer]] = []

    def record(layer: keras.layers.Layer, x: Any) -> Any:
        ins = x if isinstance(x, (list, tuple)) else [x]
        out_shape = layer.compute_output_shape([b.shape for b in ins] if isinstance(x, (list, tuple)) else x.shape)
        if isinstance(layer, _FUSED) and len(ins) == 1:
            return _Buffer(out_shape, ins[0].owner)
        out = _Buffer(out_shape)
        operators.append(([b.owner for b in ins], out))
        return out

    result = block.compose(inputs if isinstance(input_shape, list) else inputs[0], record)
    outputs = {b.owner for b in (result if isinstance(result, (list, tuple)) else [result])}
    end = len(operators)
    last_use = {b: end for b, keep in zip(inputs, kept) if keep} | {b: end for b in outputs}
    for i, (ins, _) in enumerate(operators):
        for b in ins:
            last_use[b] = max(last_use.get(b, i), i)
    born = {b: -1 for b in inputs} | {out: i for i, (_, out) in enumerate(operators)}
    size = {b: _size((None, *b.shape[1:])) * bytes_per_activation for b in born}
    return liveness_peak(born, last_use, size, len(operators))[0]


def liveness_peak(born: dict[Any, int], last_use: dict[Any, int], size: dict[Any, int], steps: int) -> tuple[int, int]:
    """(bytes, step): the largest sum of `size` over tensors alive at one of `steps` operator steps. A tensor
    is alive from `born` (-1: before the first step) to `last_use` (its birth when never used)."""
    peak, where = 0, 0
    for step in range(steps):
        live = sum(size[t] for t in born if born[t] <= step <= last_use.get(t, born[t]))
        if live > peak:
            peak, where = live, step
    return peak, where


def _is_nasnet_cell(op: Any) -> bool:
    from .layers.nasnet_cells import _NASNetCell

    return isinstance(op, _NASNetCell)
