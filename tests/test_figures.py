"""The paper's figures drawn from the blocks: the drawing's content comes from the blocks, its numbers from the
profiler, and `keras-mbv2 figures --quick` writes the files."""

from __future__ import annotations

import os
import time

import pytest

from keras_mbv2 import cli
from keras_mbv2.figures import FIGURE3, FIGURE4, block_profile, evolution_costs, panel_numbers, trace
from keras_mbv2.layers import DepthwiseSeparable, InvertedResidual, NASNetNormalCell, ShuffleUnit

# (block, input, tensor shapes in order, which stay linear (hatched), operator labels)
TRACES = [
    (lambda: InvertedResidual(24, expansion=6), (56, 56, 24),
     [(56, 56, 24), (56, 56, 144), (56, 56, 144), (56, 56, 24), (56, 56, 24)],
     [True, False, False, True, True], ["1x1", "dw 3x3", "1x1", "+"]),
    (lambda: InvertedResidual(24, expansion=4), (56, 56, 24),  # a changed expansion changes the drawing
     [(56, 56, 24), (56, 56, 96), (56, 56, 96), (56, 56, 24), (56, 56, 24)],
     [True, False, False, True, True], ["1x1", "dw 3x3", "1x1", "+"]),
    (lambda: InvertedResidual(24, linear_bottleneck=False), (56, 56, 24),  # Figure 6a: no hatching left
     [(56, 56, 24), (56, 56, 144), (56, 56, 144), (56, 56, 24), (56, 56, 24)],
     [False, False, False, False, False], ["1x1", "dw 3x3", "1x1", "+"]),
    (lambda: InvertedResidual(32, strides=2), (56, 56, 24),  # stride 2: no shortcut
     [(56, 56, 24), (56, 56, 144), (28, 28, 144), (28, 28, 32)],
     [True, False, False, True], ["1x1", "dw 3x3 s2", "1x1"]),
    (lambda: DepthwiseSeparable(24, linear_bottleneck=True), (56, 56, 24),  # Figure 3c
     [(56, 56, 24), (56, 56, 24), (56, 56, 24)], [True, False, True], ["dw 3x3", "1x1"]),
    (lambda: DepthwiseSeparable(24), (56, 56, 24),  # Figure 3b
     [(56, 56, 24), (56, 56, 24), (56, 56, 24)], [False, False, False], ["dw 3x3", "1x1"]),
    (lambda: ShuffleUnit(480, groups=3, strides=2), (28, 28, 240),  # Figure 4c, stride 2
     [(28, 28, 240), (28, 28, 120), (28, 28, 120), (14, 14, 120), (14, 14, 240), (14, 14, 240), (14, 14, 480)],
     [False, False, False, True, True, False, False],
     ["GConv 1x1 g=3", "shuffle", "dw 3x3 s2", "GConv 1x1 g=3", "avg pool 3x3 s2", "concat"]),
]


@pytest.mark.parametrize("make,shape,shapes,linear,labels", TRACES, ids=[str(i) for i in range(len(TRACES))])
def test_the_drawing_is_the_blocks_own_graph(make, shape, shapes, linear, labels):
    graph = trace(make(), shape)
    assert graph.shapes() == shapes
    assert graph.linear() == linear
    assert graph.labels() == labels


def test_a_nasnet_cell_traces_as_a_graph_of_branches():
    graph = trace(NASNetNormalCell(8), [(28, 28, 48), (28, 28, 48)])
    assert graph.labels().count("+") == 5 and graph.labels()[-1] == "concat"
    assert graph.outputs[0].shape == (28, 28, 48) and max(t.row for t in graph.tensors) >= 2  # branches side by side


@pytest.mark.parametrize("panel", FIGURE3 + FIGURE4, ids=[p.title for p in FIGURE3 + FIGURE4])
def test_each_panels_numbers_are_the_profilers(panel):
    layer = block_profile(panel.make, panel.input_shape).layers[0]
    numbers = panel_numbers(panel)
    assert (numbers.params, numbers.macs, numbers.block_bytes, numbers.operator_bytes) == (
        layer.params, layer.macs, layer.activation_bytes, layer.inner_operator_bytes)
    assert numbers.macs > 0


def test_the_costs_follow_the_papers_formulas():
    for name, measured, formula, _ in evolution_costs():
        assert measured == formula, name


def test_figures_quick_writes_the_figures_within_a_minute(tmp_path, capsys):
    start = time.perf_counter()
    out = tmp_path / "figs"
    assert cli.main(["figures", "--out", str(out), "--quick"]) == 0
    assert time.perf_counter() - start < 60
    assert sorted(os.listdir(out)) == ["evolution.md", "figure3.png", "figure4.png"]
    for png in ("figure3.png", "figure4.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "evolution.md").read_text()
    regular = panel_numbers(FIGURE3[0]).macs
    assert f"| (a) regular conv | {regular:,} |" in text and "between bottlenecks" in text
    assert cli.main(["figures", "--out", str(out), "--quick"]) == 2  # not replaced without --force
    assert "--force" in capsys.readouterr().err


def test_draw_writes_a_blocks_drawing_and_a_models_blocks(tmp_path):
    import keras_mbv2 as K

    path = tmp_path / "ir.svg"
    graphs = K.draw(InvertedResidual(24, expansion=6), (56, 56, 24), str(path))
    svg = path.read_text()
    assert "56x56x144" in svg and "dw 3x3" in svg and [t.linear for t in graphs[0].tensors][:2] == [True, False]
    assert "56x56x96" in (K.draw(InvertedResidual(24, expansion=4), (56, 56, 24), str(path)) and path.read_text())
    model = K.MobileNetV2((32, 32, 1), alpha=0.35, classes=10)
    graphs = K.draw(model, path=str(tmp_path / "model.png"))
    assert len(graphs) == sum(isinstance(layer, K.layers.Block) for layer in model.layers)
    assert graphs[1].tensors[0].shape == (16, 16, 16)  # block 0 gets the stem's output, as in the model
    assert K.draw(model, (64, 64, 1), str(tmp_path / "model.png"))[1].tensors[0].shape == (32, 32, 16)
    with pytest.raises(ValueError, match=r"`path` must end in .png, .svg, .pdf. Received: path='.*x.jpg'"):
        K.draw(model, path=str(tmp_path / "x.jpg"))
    with pytest.raises(ValueError, match="`input_shape` is needed"):
        K.draw(InvertedResidual(24), path=str(tmp_path / "y.png"))
    assert sorted(os.listdir(tmp_path)) == ["ir.svg", "model.png"]


def test_the_demos_and_the_searchs_figures_read_whole(tmp_path):
    """accuracy.png and memory.png of the demo, front.png of the search, drawn from made-up results: the suite's
    figure check (conftest: no text beyond the canvas, no legend over data) runs on each as it is saved."""
    from types import SimpleNamespace

    from keras_mbv2.demo import DemoResult, _plots
    from keras_mbv2.search import Candidate, Limits, Measurement
    from keras_mbv2.search.report import SearchResult, plot_front
    from keras_mbv2.search.trials import Trial
    from keras_mbv2.tflite import Agreement

    agreement = Agreement(360, 3600, 0, 0, 360)
    result = DemoResult(str(tmp_path), "mobilenetv2_0.35_32", 0.936, 0.939, 0.967, 0.967, agreement, 611_272, 88_336,
                        87_312, 15_360, 1_122_864, 422_730, 87.0, 1437, 360, 15, 3, 0,
                        {"float": 2.8, "PTQ int8": 3.6, "QAT int8": 1.4})
    operators = [(f"CONV_2D_{i}", 4_000 + 300 * (i % 9)) for i in range(60)]
    assert [os.path.basename(p) for p in _plots(str(tmp_path), result, SimpleNamespace(peak_activation_bytes=12_288),
                                                operators)] == ["accuracy.png", "memory.png"]
    measurements = []
    for width, size, ram, flash, fits, technique in ((0.35, 96, 150_000, 600_000, True, "as built"),
                                                     (0.35, 128, 205_000, 605_000, True, "channel splits"),
                                                     (0.5, 160, 207_000, 746_000, True, "patches"),
                                                     (0.5, 128, 300_000, 952_000, False, "")):
        c = Candidate("mobilenet_v2", width, size, 6)
        measurements.append(Measurement(c, macs=int(width * size * size * 1000), params=400_000, measured=True,
                                        fits=fits, fits_as_built=technique == "as built", flash=flash,
                                        ram_as_built=ram + 50_000, ram=ram if fits else None,
                                        need=None if fits else ram, technique=technique))
    trials = [Trial(m.candidate, 2, 0.9, 0.3, 10.0, 5.0, 29) for m in measurements[1:3]]
    search = SearchResult(str(tmp_path), Limits.of("arduino-nano-33-ble"), measurements[1], 0.95, 0.95, 0.95,
                          "identical", 605_000, 205_000, 4, 1, measurements, trials, measurements[0], 60.0, classes=3)
    plot_front(search, str(tmp_path / "front.png"))
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
