"""The paper's Figures 3, 4 and 6, drawn from the very blocks you train, and its claims about them measured.

`trace(block, input_shape)` runs a block's own `compose()` with an `apply` that records tensors instead of computing
them: one node per tensor (its shape; whether a non-linearity touched it), one edge per operator (conv k x k,
depthwise, 1x1, group conv, shuffle, pool, concat, +). Batch norms and activations are not separate tensors: an
activation marks its tensor non-linear, so a tensor left linear is drawn hatched, as the paper draws the linear
bottleneck. `draw_graph` lays the graph out left to right (each tensor a box whose thickness follows its channels);
`draw(block_or_model, input_shape, path)` is the public door (`keras_mbv2.draw`), and `figure`, `figure6` and
`evolution_markdown` make `keras-mbv2 figures`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import keras
import numpy as np

from .demo import signed_points
from .layers import (
    Block,
    Bottleneck,
    ChannelShuffle,
    ConvBNAct,
    DepthwiseSeparable,
    InvertedResidual,
    NASNetNormalCell,
    ShuffleUnit,
)
from .profiler import Profile, profile
from .training import compile_classifier


@dataclass(eq=False)
class Tensor:
    """A tensor of a traced block: (H, W, C), whether it stayed linear, its position in the drawing."""

    shape: tuple[int, int, int]
    linear: bool = True
    depth: int = 0
    row: int = 0

    @property
    def label(self) -> str:
        """HxWxC."""
        return "x".join(str(d) for d in self.shape)


@dataclass
class Edge:
    """An operator: its input tensors, its output tensor, and its label as the paper writes it."""

    sources: list[Tensor]
    target: Tensor
    label: str


@dataclass
class Trace:
    """A block as tensors and operators, inputs first."""

    name: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    tensors: list[Tensor] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def shapes(self) -> list[tuple[int, int, int]]:
        """Every tensor's shape, in the order they were made."""
        return [t.shape for t in self.tensors]

    def linear(self) -> list[bool]:
        """Every tensor's linearity (hatched in the drawing), in the same order."""
        return [t.linear for t in self.tensors]

    def labels(self) -> list[str]:
        """Every operator's label, in order."""
        return [e.label for e in self.edges]


def op_label(layer: keras.layers.Layer) -> str:
    """The operator as the paper labels it: "conv 3x3", "dw 3x3 s2", "1x1", "GConv 1x1 g=3", "shuffle", ..."""
    strides = getattr(layer, "strides", (1, 1))
    stride = f" s{strides[0]}" if strides and strides[0] > 1 else ""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        k = layer.kernel_size[0]
        return f"dw {k}x{k}{stride}"
    if isinstance(layer, keras.layers.SeparableConv2D):
        k = layer.kernel_size[0]
        return f"sep {k}x{k}{stride}"
    if isinstance(layer, keras.layers.Conv2D):
        k = layer.kernel_size[0]
        if layer.groups > 1:
            return f"GConv {k}x{k} g={layer.groups}{stride}"
        return f"1x1{stride}" if k == 1 else f"conv {k}x{k}{stride}"
    if isinstance(layer, ChannelShuffle):
        return "shuffle"
    if isinstance(layer, (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D)):
        k = layer.pool_size[0]
        return f"{'avg' if isinstance(layer, keras.layers.AveragePooling2D) else 'max'} pool {k}x{k}{stride}"
    if isinstance(layer, keras.layers.Add):
        return "+"
    if isinstance(layer, keras.layers.Concatenate):
        return "concat"
    if isinstance(layer, keras.layers.ZeroPadding2D):
        return "pad"
    if isinstance(layer, keras.layers.Cropping2D):
        return "crop"
    return type(layer).__name__


_KEEP_TENSOR = (keras.layers.BatchNormalization,)
_NON_LINEAR = (keras.layers.ReLU, keras.layers.Activation)


def trace(block: Block, input_shape: Sequence[int] | Sequence[Sequence[int]]) -> Trace:
    """Trace `block` on an input of `input_shape` (H, W, C; a list of two for a NASNet cell's [x, previous])."""
    several = isinstance(input_shape[0], (list, tuple))
    shapes = [tuple(s) for s in input_shape] if several else [tuple(input_shape)]
    if not block.built:
        block.build([(None, *s) for s in shapes] if several else (None, *shapes[0]))
    first = _trace_once(block, shapes, several, inputs_linear=True)
    # A block takes what it gives: its input is drawn like its output (a linear bottleneck in, one out).
    result = _trace_once(block, shapes, several, inputs_linear=first.outputs[0].linear)
    _layout(result)
    return result


def _trace_once(block: Block, shapes: list[tuple[int, ...]], several: bool, inputs_linear: bool) -> Trace:
    inputs = [Tensor(s, linear=inputs_linear) for s in shapes]
    result = Trace(block.name, inputs, [], list(inputs))

    def record(layer: keras.layers.Layer, x: Any) -> Any:
        sources = list(x) if isinstance(x, (list, tuple)) else [x]
        if isinstance(layer, _KEEP_TENSOR) and len(sources) == 1:
            return x
        if isinstance(layer, _NON_LINEAR) and len(sources) == 1:
            if not (isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "linear"):
                sources[0].linear = False
            return x
        in_shapes = [(None, *t.shape) for t in sources]
        out_shape = layer.compute_output_shape(in_shapes if len(sources) > 1 else in_shapes[0])
        # A conv makes new features, linear until an activation touches them; a sum, concatenation, shuffle, pool,
        # pad or crop only rearranges or mixes its inputs, and is linear when they are.
        makes_features = isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))
        out = Tensor(tuple(int(d) for d in out_shape[1:]), linear=True if makes_features else
                     all(t.linear for t in sources))
        result.tensors.append(out)
        result.edges.append(Edge(sources, out, op_label(layer)))
        return out

    outputs = block.compose(inputs if several else inputs[0], record)
    result.outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    return result


def _layout(graph: Trace) -> None:
    for edge in graph.edges:
        edge.target.depth = max(edge.target.depth, 1 + max(s.depth for s in edge.sources))
    rows: dict[int, int] = {}
    for t in graph.tensors:
        t.row = rows.get(t.depth, 0)
        rows[t.depth] = t.row + 1


def block_profile(block_factory: Callable[[], Block], input_shape: Sequence[int],
                  bytes_per_activation: int = 1) -> Profile:
    """The profiler's numbers for one block alone on an input of `input_shape` (a fresh block each time)."""
    several = isinstance(input_shape[0], (list, tuple))
    inputs = [keras.Input(tuple(s)) for s in input_shape] if several else keras.Input(tuple(input_shape))
    outputs = block_factory()(inputs)
    return profile(keras.Model(inputs, outputs), bytes_per_activation)


def draw_graph(graph: Trace, ax: Any, title: str = "", note: str = "", channels: int | None = None,
               spatial: int | None = None) -> None:
    """Draw a traced block on a matplotlib axis: boxes for tensors (thickness ~ channels, hatched when linear,
    labelled with their shape), arrows labelled with operators, shortcuts arched above. `channels` and
    `spatial` fix the scale (default: this block's largest), so that several panels compare."""
    from matplotlib.patches import FancyArrowPatch, Rectangle

    channels = channels or max(t.shape[2] for t in graph.tensors)
    spatial = spatial or max(t.shape[0] for t in graph.tensors)
    dense = max(t.row for t in graph.tensors) > 3  # a NASNet cell: many branches side by side
    dx, dy = (3.0, 1.5) if dense else (2.2, 1.9)
    boxes = {}
    for t in graph.tensors:
        width = 0.15 + 0.85 * t.shape[2] / channels  # thickness follows the channel count
        height = 0.4 + 0.8 * t.shape[0] / spatial
        x, y = t.depth * dx, -t.row * dy
        boxes[id(t)] = (x, y, width, height)
        ax.add_patch(Rectangle((x - width / 2, y - height / 2), width, height, facecolor="#dbe9f6" if t.linear
                               else "#f6d7b8", edgecolor="#333333", hatch="////" if t.linear else None, lw=1))
    shown = set()
    for edge in graph.edges:  # where many branches keep one shape, a shape is labelled where it first appears
        if not dense or edge.target.shape != edge.sources[0].shape:
            shown.add(id(edge.target))
    for t in graph.tensors:
        if not dense or id(t) in shown or t in graph.inputs or t in graph.outputs:
            x, y, _, height = boxes[id(t)]
            ax.text(x, y - height / 2 - 0.12, t.label, ha="center", va="top", fontsize=6)
    for edge in graph.edges:
        tx, ty, tw, th = boxes[id(edge.target)]
        for source in edge.sources:
            sx, sy, sw, sh = boxes[id(source)]
            skip = edge.target.depth - source.depth > 1
            arrow = FancyArrowPatch((sx + sw / 2, sy + (sh / 2 if skip else 0)), (tx - tw / 2, ty),
                                    arrowstyle="-|>", mutation_scale=7, lw=0.8, color="#555555",
                                    connectionstyle=f"arc3,rad={-0.35 if skip else 0.0}")
            ax.add_patch(arrow)
        sx, sy, _, _ = boxes[id(edge.sources[-1])]  # the nearest source: a shortcut's is the last
        if edge.label in ("+", "concat") or len(edge.sources) > 1:  # a join: above the tensor it makes
            x, y = tx, ty + th / 2 + 0.05
        else:  # on its arrow, where branches on other rows do not cross it
            x, y = (sx + tx) / 2, (sy + ty) / 2 + 0.12
        ax.text(x, y, edge.label, ha="center", va="bottom", fontsize=5 if dense or len(edge.label) > 8 else 6,
                color="#8b0000" if edge.label == "+" else "black")
    depth = max(t.depth for t in graph.tensors)
    rows = max(t.row for t in graph.tensors)
    ax.set_xlim(-1.2, depth * dx + 1.2)
    ax.set_ylim(-rows * dy - 1.4, 1.6)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    if note:
        ax.text(0.0, -0.02, note, transform=ax.transAxes, fontsize=6, va="top", family="monospace")


DRAWING_SUFFIXES = (".png", ".svg", ".pdf")


def draw(block_or_model: Block | keras.Model, input_shape: Any = None, path: str | None = None,
         columns: int = 3) -> list[Trace]:
    """Draw a block as the paper draws it, or a model's blocks one panel each in order, from their own `compose()`:
    a box per tensor (thickness ~ channels, labelled HxWxC, hatched where linear), the operator between tensors,
    the shortcut's `+`. `input_shape` is the block's (H, W, C), a list of two for a NASNet cell; for a model it
    defaults to the model's own and each block gets the shape it receives there. The suffix of `path` picks the
    format: .png, .svg or .pdf. Written to a temporary name and renamed into place. Returns the traced graphs."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).lower().endswith(DRAWING_SUFFIXES):
        raise ValueError(f"`path` must end in {', '.join(DRAWING_SUFFIXES)}. Received: path={path!r}")
    if isinstance(block_or_model, Block):
        if input_shape is None:
            raise ValueError("`input_shape` is needed to draw a block: (H, W, C), e.g. (56, 56, 24). "
                             "Received: input_shape=None")
        panels = [(block_or_model.name, block_or_model, input_shape)]
    elif isinstance(block_or_model, keras.Model):
        if input_shape is not None and tuple(input_shape) != tuple(block_or_model.input_shape[1:]):
            block_or_model = keras.models.clone_model(block_or_model, input_tensors=keras.Input(tuple(input_shape)))
        panels = [(layer.name, layer, _received_shape(layer)) for layer in block_or_model.layers
                  if isinstance(layer, Block)]
        if not panels:
            raise ValueError(f"`block_or_model` has no keras_mbv2 blocks to draw. Received: {block_or_model.name}")
    else:
        raise ValueError(f"`block_or_model` must be a keras_mbv2 block or a Keras model built from them. Received: "
                         f"{type(block_or_model).__name__}")
    graphs = [trace(block, shape) for _, block, shape in panels]
    render(graphs, [name for name, _, _ in panels], os.fspath(path), min(columns, len(graphs)))
    return graphs


def render(graphs: Sequence[Trace], titles: Sequence[str], path: str, columns: int,
           notes: Sequence[str] | None = None, title: str = "") -> None:
    """Traced blocks side by side on one scale (channels and resolution), one panel each, written to `path`
    through a temporary file (format by its suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import atomic_write

    rows = -(-len(graphs) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.2 * rows), squeeze=False)
    channels = max(t.shape[2] for g in graphs for t in g.tensors)
    spatial = max(t.shape[0] for g in graphs for t in g.tensors)
    for ax, graph, name, note in zip(axes.ravel(), graphs, titles, notes or [""] * len(graphs)):
        draw_graph(graph, ax, name, note, channels, spatial)
    for ax in axes.ravel()[len(graphs):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130))
    finally:
        plt.close(fig)


def _received_shape(layer: keras.layers.Layer) -> Any:
    """The (H, W, C) a block receives in its model (a list of them for several inputs)."""
    inputs = layer.input
    if isinstance(inputs, (list, tuple)):
        return [tuple(int(d) for d in t.shape[1:]) for t in inputs]
    return tuple(int(d) for d in inputs.shape[1:])


@dataclass(frozen=True)
class Panel:
    """One block of a figure: its letter and title, how to make it, and its input shape."""

    title: str
    make: Callable[[], Block]
    input_shape: Any


# Figure 3: the same 56x56x24 -> 56x56x24 shape for every design; (d) with the paper's expansion t=6.
FIGURE3 = [
    Panel("(a) regular conv", lambda: ConvBNAct(24, 3, name="a"), (56, 56, 24)),
    Panel("(b) separable", lambda: DepthwiseSeparable(24, name="b"), (56, 56, 24)),
    Panel("(c) separable, linear bottleneck", lambda: DepthwiseSeparable(24, linear_bottleneck=True, name="c"),
          (56, 56, 24)),
    Panel("(d) inverted residual, t=6", lambda: InvertedResidual(24, expansion=6, name="d"), (56, 56, 24)),
]

# Figure 4: the four networks' blocks, stride 1 and stride 2 where the paper draws both.
FIGURE4 = [
    Panel("(a) NASNet-A normal cell", lambda: NASNetNormalCell(8, name="nasnet"), [(28, 28, 48), (28, 28, 48)]),
    Panel("(b) MobileNetV1", lambda: DepthwiseSeparable(64, name="v1"), (28, 28, 64)),
    Panel("(c) ShuffleNet, stride 1", lambda: ShuffleUnit(240, groups=3, name="shuffle_s1"), (28, 28, 240)),
    Panel("(c) ShuffleNet, stride 2", lambda: ShuffleUnit(480, groups=3, strides=2, name="shuffle_s2"),
          (28, 28, 240)),
    Panel("(d) MobileNetV2, stride 1", lambda: InvertedResidual(32, name="v2_s1"), (28, 28, 32)),
    Panel("(d) MobileNetV2, stride 2", lambda: InvertedResidual(64, strides=2, name="v2_s2"), (28, 28, 32)),
]


@dataclass(frozen=True)
class PanelNumbers:
    """A panel's annotation: the profiler's numbers for its block (int8 activations)."""

    params: int
    macs: int
    block_bytes: int  # the block run as one operation: its input and output
    operator_bytes: int  # its operators run one by one, as TFLite Micro does (Section 5.1)


def panel_numbers(panel: Panel) -> PanelNumbers:
    """The profiler's figures for the panel's block."""
    layer = block_profile(panel.make, panel.input_shape).layers[0]
    return PanelNumbers(layer.params, layer.macs, layer.activation_bytes, layer.inner_operator_bytes)


def _note(numbers: PanelNumbers) -> str:
    return (f"params {numbers.params:,}\nMAdds  {numbers.macs:,}\n"
            f"memory {numbers.block_bytes:,} B as one op\n       {numbers.operator_bytes:,} B per operator")


def figure(panels: Sequence[Panel], path: str, title: str, columns: int = 2) -> list[PanelNumbers]:
    """Draw `panels` into one PNG (or SVG, by the suffix of `path`); returns each panel's numbers."""
    graphs = [trace(panel.make(), panel.input_shape) for panel in panels]
    numbers = [panel_numbers(panel) for panel in panels]
    render(graphs, [panel.title for panel in panels], path, columns, [_note(n) for n in numbers], title)
    return numbers


def evolution_costs() -> list[tuple[str, int, int, str]]:
    """(design, multiply-adds from the block, the paper's formula, the formula as text) for Figure 3 at
    56x56, 24 -> 24 channels, k=3, t=6 (paper Section 3.1 and Table 1)."""
    h = w = 56
    d_in = d_out = 24
    k, t = 3, 6
    formulas = [
        ("(a) regular conv", h * w * d_in * d_out * k * k, "h*w*d_i*d_j*k^2"),
        ("(b) separable", h * w * d_in * (k * k + d_out), "h*w*d_i*(k^2 + d_j)"),
        ("(c) separable, linear bottleneck", h * w * d_in * (k * k + d_out), "h*w*d_i*(k^2 + d_j)"),
        ("(d) inverted residual, t=6", h * w * d_in * t * (d_in + k * k + d_out), "h*w*d'*t*(d' + k^2 + d'')"),
    ]
    return [(name, panel_numbers(panel).macs, value, text) for panel, (name, value, text) in zip(FIGURE3, formulas)]


def shortcut_memory() -> list[tuple[str, int, int]]:
    """(where the shortcut joins, the profiler's block-level bytes, its per-operator bytes) for a shortcut between
    the narrow bottlenecks (inverted residual) and one between the expanded tensors (classic bottleneck), same
    wide 144 and narrow 24 channels at 56x56, int8 (paper Section 3.3 and 5.1)."""
    rows = []
    for label, make, shape in (
        ("between bottlenecks (inverted residual, 24 -> 144 -> 24)", lambda: InvertedResidual(24, 6), (56, 56, 24)),
        ("between expansions (classic bottleneck, 144 -> 24 -> 144)",
         lambda: Bottleneck(144, bottleneck_ratio=1 / 6), (56, 56, 144)),
    ):
        layer = block_profile(make, shape).layers[0]
        rows.append((label, layer.activation_bytes, layer.inner_operator_bytes))
    return rows


def evolution_markdown(ablation: str | None = None) -> str:
    """`evolution.md`: the cost and memory claims measured from the blocks; the accuracy table when given."""
    lines = ["# From regular convolutions to inverted residuals, measured", "",
             "Generated by `keras-mbv2 figures` from the blocks in `keras_mbv2.layers` (paper Figures 3 and 4, "
             "Sections 3 and 5.1). Numbers: the profiler's, for one block at 56x56, 24 -> 24 channels, 3x3, t=6, "
             "int8 activations.", "", "## Cost (paper Section 3.1)", "",
             "| design | MAdds (block) | paper's formula | formula value | cost / (a) |",
             "| --- | --- | --- | --- | --- |"]
    costs = evolution_costs()
    regular = costs[0][1]
    for name, measured, value, text in costs:
        lines.append(f"| {name} | {measured:,} | `{text}` | {value:,} | {measured / regular:.3f} |")
    b, d = costs[1][1], costs[3][1]
    lines += ["", f"(b) costs {regular / b:.1f}x less than (a) (the paper's 8-9x for k=3: k^2 d_j / (k^2 + d_j) "
              f"= {9 * 24 / (9 + 24):.1f} here); (c) costs the same as (b), its difference is the missing ReLU; (d) "
              f"costs {d / b:.1f}x (b), its 1x1 work t times the bottleneck's.", "",
              "## Memory (paper Sections 3.3, 5.1)", "",
              "| shortcut | block as one operation (B) | operator by operator (B) |", "| --- | --- | --- |"]
    memory = shortcut_memory()
    for label, block_bytes, operator_bytes in memory:
        lines.append(f"| {label} | {block_bytes:,} | {operator_bytes:,} |")
    lines += ["", f"The shortcut between the narrow bottlenecks keeps {memory[0][1]:,} B alive across the block, "
              f"against {memory[1][1]:,} B between expansions: {memory[1][1] / memory[0][1]:.1f}x less, the paper's "
              "argument for inverted residuals (Section 3.3)."]
    if ablation:
        lines += ["", ablation]
    return "\n".join(lines) + "\n"


# --- Figure 6: the same body from each design, trained ------------------------------------------------------------
# (name, block maker(filters, strides)): the body is a stem, then stages of (channels, repeats, stride) at 32x32.
ABLATION_STAGES = ((16, 1, 1), (24, 2, 2), (32, 2, 2), (64, 2, 2))
ABLATION = {
    "(b) separable": lambda c, s, bn: DepthwiseSeparable(c, strides=s, **bn),
    "(c) separable, linear bottleneck": lambda c, s, bn: DepthwiseSeparable(c, strides=s, linear_bottleneck=True,
                                                                            **bn),
    "(d) inverted residual (linear, shortcut between bottlenecks)": lambda c, s, bn: InvertedResidual(
        c, expansion=6, strides=s, **bn),
    "Fig. 6a: inverted residual with ReLU6 after the projection": lambda c, s, bn: InvertedResidual(
        c, expansion=6, strides=s, linear_bottleneck=False, **bn),
    "Fig. 6b: shortcut between expansions (classic bottleneck)": lambda c, s, bn: Bottleneck(
        c * 6, bottleneck_ratio=1 / 6, strides=s, **bn),
    "inverted residual without shortcuts": lambda c, s, bn: InvertedResidual(c, expansion=6, strides=s, residual=False,
                                                                             **bn),
}


def ablation_model(name: str, width: float, classes: int = 10, seed: int = 0) -> keras.Model:
    """The ablation body built from design `name`, its channels scaled by `width`, for 32x32x1 images."""
    keras.utils.set_random_seed(seed)
    bn = dict(bn_momentum=0.9)
    inputs = keras.Input((32, 32, 1))
    x = ConvBNAct(max(8, int(round(16 * width))), 3, strides=2, **bn)(inputs)
    for channels, repeats, stride in ABLATION_STAGES:
        for i in range(repeats):
            x = ABLATION[name](max(4, int(round(channels * width))), stride if i == 0 else 1, bn)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x), name=f"ablation_{seed}")


def equal_madds_widths(reference: str = "(d) inverted residual (linear, shortcut between bottlenecks)") -> dict:
    """A width per design such that its body has (nearly) the multiply-adds of the reference at width 1."""
    target = profile(ablation_model(reference, 1.0)).macs
    widths = {}
    for name in ABLATION:
        low, high = 0.1, 8.0
        for _ in range(14):  # bisection on the width (to 0.001); MAdds grow with it
            mid = (low + high) / 2
            low, high = (mid, high) if profile(ablation_model(name, mid)).macs < target else (low, mid)
        widths[name] = round((low + high) / 2, 3)
    return widths


def run_ablation(seeds: int = 3, epochs: int = 8, qat_epochs: int = 2,
                 log: Callable[[str], None] = print) -> tuple[str, list[dict]]:
    """Train every design at equal MAdds on the digits over `seeds` seeds; of the first seed, the int8 accuracy by
    post-training quantization and after `qat_epochs` of quantization-aware training, and the TFLM arena.
    Returns (the markdown section, the rows)."""
    import tempfile
    import time

    from .datasets import load_digits
    from .quantization import evaluate_tflite, fit_qat, quantize_aware, to_tflite
    from .tflite import arena_use

    data = load_digits(image_size=32)
    widths = equal_madds_widths()
    rows = []
    start, runs, done = time.monotonic(), len(widths) * seeds, 0
    for name, width in widths.items():
        accuracies, int8 = [], None
        for seed in range(seeds):
            model = ablation_model(name, width, seed=seed)
            compile_classifier(model, 3e-3)
            model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
            accuracies.append(float(model.evaluate(data.x_test, data.y_test, verbose=0)[1]))
            done += 1
            left = (time.monotonic() - start) / done * (runs - done)
            log(f"      {name}, seed {seed}: {accuracies[-1]:.1%}  (run {done}/{runs}, ~{int(left) // 60} min "
                f"{int(left) % 60:02d} s left)")
            if seed == 0:
                ptq = to_tflite(model, data.x_train[:200])
                qat = quantize_aware(model)
                with tempfile.TemporaryDirectory() as run_dir:
                    fit_qat(qat, data.x_train, data.y_train, run_dir, epochs=qat_epochs, verbose=0)
                qat_tflite = to_tflite(qat, data.x_train[:200])
                int8 = (evaluate_tflite(ptq, data.x_test, data.y_test).accuracy,
                        evaluate_tflite(qat_tflite, data.x_test, data.y_test).accuracy, arena_use(qat_tflite).total)
                log(f"      {name}: PTQ int8 {int8[0]:.1%}, QAT int8 {int8[1]:.1%}, TFLM arena {int8[2]:,} B")
        rows.append(dict(name=name, width=width, params=model.count_params(), macs=profile(model).macs,
                         mean=float(np.mean(accuracies)), std=float(np.std(accuracies)), runs=accuracies,
                         ptq=int8[0], qat=int8[1], arena=int8[2]))
    by = {row["name"]: row for row in rows}
    ir = by["(d) inverted residual (linear, shortcut between bottlenecks)"]

    def held(claim: str, a: dict, b: dict) -> str:
        gap = a["mean"] - b["mean"]
        noise = a["std"] + b["std"]
        verdict = "held" if gap > noise else ("did not hold" if gap < -noise else "not resolved (within the spread)")
        return (f"- {claim}: {a['mean']:.1%} vs {b['mean']:.1%} ({signed_points(gap * 100)} points, spread "
                f"{noise * 100:.1f}): **{verdict}**.")

    lines = [f"## Accuracy (paper Figure 6): the same body from each design, equal MAdds, {seeds} seeds", "",
             f"Digits 32x32 ({len(data.y_train)} training, {len(data.y_test)} test images), {epochs} epochs, Adam "
             f"3e-3, batch-norm momentum 0.9; int8 of the first seed by post-training quantization (PTQ) and after "
             f"{qat_epochs} epochs of quantization-aware training (QAT, Adam 1e-4), arena of the QAT model measured "
             "on the TFLite Micro host runtime.", "",
             "| design | width | params | MAdds | float accuracy, mean ± std | runs | PTQ int8 | QAT int8 "
             "| TFLM arena |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        runs = ", ".join(f"{a:.1%}" for a in row["runs"])
        lines.append(f"| {row['name']} | {row['width']} | {row['params']:,} | {row['macs']:,} | {row['mean']:.1%} ± "
                     f"{row['std']:.1%} | {runs} | {row['ptq']:.1%} | {row['qat']:.1%} | {row['arena']:,} |")
    lines += ["", "Which of the paper's claims held here:",
              held("linear bottlenecks beat ReLU6 after the projection (Figure 6a)", ir,
                   by["Fig. 6a: inverted residual with ReLU6 after the projection"]),
              held("shortcuts between bottlenecks beat shortcuts between expansions (Figure 6b)", ir,
                   by["Fig. 6b: shortcut between expansions (classic bottleneck)"]),
              held("shortcuts help (Figure 6b, no residual)", ir, by["inverted residual without shortcuts"]),
              held("a linear bottleneck helps the separable block (Figure 3c vs 3b)",
                   by["(c) separable, linear bottleneck"], by["(b) separable"]),
              "", "The digits are an easy task for networks of this size: where the gaps sit inside the spread of "
              "3 seeds, this data set cannot separate the designs, which is itself the result."]
    return "\n".join(lines), rows


def figure6(rows: list[dict], path: str) -> None:
    """Bars: each design's mean float accuracy with its spread over seeds, and its int8 accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    y = np.arange(len(rows))
    ax.barh(y, [r["mean"] * 100 for r in rows], xerr=[r["std"] * 100 for r in rows], color="#4c72b0",
            label="float, mean ± std over seeds")
    ax.scatter([r["ptq"] * 100 for r in rows], y, color="#dd8452", zorder=3, label="PTQ int8 (first seed)")
    ax.scatter([r["qat"] * 100 for r in rows], y, color="#55a868", marker="D", zorder=3, label="QAT int8 (first seed)")
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=7)
    ax.set_xlim(min(min(r["mean"] - r["std"], r["ptq"], r["qat"]) for r in rows) * 100 - 5, 100)
    ax.set_xlabel("test accuracy (%), digits 32x32, equal multiply-adds")
    ax.set_title("MobileNetV2 paper, Figure 6, measured with the keras_mbv2 blocks", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def make_figures(out: str, quick: bool = True, log: Callable[[str], None] = print) -> list[str]:
    """Write figure3.png, figure4.png and evolution.md into the folder `out`, which must exist (with the
    Figure 6 ablation unless `quick`)."""
    log("[1/3] figure3.png: (a) regular conv -> (b) separable -> (c) linear bottleneck -> (d) inverted residual")
    figure(FIGURE3, os.path.join(out, "figure3.png"), "MobileNetV2 paper, Figure 3: from the keras_mbv2 blocks")
    log("[2/3] figure4.png: NASNet-A, MobileNetV1, ShuffleNet, MobileNetV2 blocks")
    figure(FIGURE4, os.path.join(out, "figure4.png"), "MobileNetV2 paper, Figure 4: from the keras_mbv2 blocks")
    log("[3/3] evolution.md: cost and memory" + ("" if quick else ", and the Figure 6 ablation (training)"))
    ablation = None
    written = ["figure3.png", "figure4.png", "evolution.md"]
    if not quick:
        ablation, rows = run_ablation(log=log)
        figure6(rows, os.path.join(out, "figure6.png"))
        written.append("figure6.png")
    with open(os.path.join(out, "evolution.md"), "w") as f:
        f.write(evolution_markdown(ablation))
    return [os.path.join(out, name) for name in written]
