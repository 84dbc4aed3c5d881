"""A block test harness in the manner of Keras' `run_layer_test`, for the keras_mbv2 blocks, and helpers
shared by the test modules."""

from __future__ import annotations

import fcntl
import inspect
import os
import pickle
import re
import tempfile
import time

import keras
import numpy as np
import pytest

BASE_CONFIG_KEYS = {"name", "trainable", "dtype"}

# TensorFlow's native log lines: absl's (`E0000 00:00:...`, TensorFlow 2.17 on) and TensorFlow's own before them
# (`2026-12-01 20:28:52.091537: E external/...`)
NATIVE_LINE = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} \d\d:\d\d:|\d{4}-\d\d-\d\d "
                         r"\d\d:\d\d:\d\d\.\d+: [IWEF] )", re.M)


#: A `keras-mbv2 search` (or `keras_mbv2.search.search`) stage-1 line of a candidate measured on TFLM in that run
SEARCH_MEASURED = re.compile(r"^  (MobileNetV2 .*?): [\d,]+ MACs: .*\[measured", re.M)


def signal_at(process, pattern: str, signum: int, timeout: float = 600, count: int = 1,
              wait: float = 120) -> tuple[int, str, str, float]:
    """Read a started command's output until the `count`-th line matching `pattern`, send `signum`; (exit code,
    stdout, stderr, seconds from the signal to the exit, at most `wait`)."""
    seen, deadline = [], time.monotonic() + timeout
    for line in process.stdout:
        seen.append(line)
        count -= bool(re.search(pattern, line))
        if not count:
            break
        assert time.monotonic() < deadline, "".join(seen)[-3000:]
    else:
        pytest.fail(f"the command ended before {pattern!r}:\n{''.join(seen)[-3000:]}\n{process.stderr.read()[-3000:]}")
    start = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=wait)
    return process.returncode, "".join(seen) + out, err, time.monotonic() - start


def built_once(tmp_path_factory, name: str, build):
    """`build()`'s result (picklable: a converted model's bytes), built once per pytest run and read back by every
    other worker: the first worker to ask builds it under a lock while the others wait (a build alone on the two
    cores takes about half the time of two side by side), then they read the file it wrote. Under xdist the workers'
    temporary folders share one parent, new for each run; without xdist the run's own folder is used."""
    from keras_mbv2.files import write_file

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / f"built-once-{name}.pickle"
    with open(root / f"built-once-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return pickle.loads(path.read_bytes())
        result = build()
        write_file(str(path), pickle.dumps(result))
        return result


def recalibrated_int8(model, digits):
    """`model` with its batch-norm statistics from 256 training images, so that the scores depend on the image (the
    initial statistics give every image the same scores), converted to full int8 on 64."""
    from keras_mbv2.models import recalibrate_batch_norms
    from keras_mbv2.quantization import to_tflite

    recalibrate_batch_norms(model, digits.x_train[:256])
    return to_tflite(model, digits.x_train[:64], num_calibration=64)


#: The two networks the patch and segment tests cut, at 64x64x3 on the digits: each builder's name and its width
DIGITS64 = {"MobileNetV2": 0.35, "MobileNetV1": 0.25}


def digits64_int8(tmp_path_factory, network: str, digits) -> bytes:
    """`network` of `DIGITS64` (seed 0) as `recalibrated_int8`, built once per run (`built_once`)."""
    import keras_mbv2 as K

    def build():
        keras.utils.set_random_seed(0)
        model = getattr(K, network)((64, 64, 3), alpha=DIGITS64[network], classes=10, weights=None)
        return recalibrated_int8(model, digits)

    return built_once(tmp_path_factory, f"digits64-{network}", build)


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _shape(t):
    return tuple(t.shape)


def run_block_test(
    block_cls,
    init_kwargs: dict,
    input_shapes: list[tuple],
    expected_output_shapes: list[tuple],
    expected_trainable_weights: int,
    expected_has_skip: bool | None = None,
):
    """Config round trip, symbolic/eager/computed shapes, weights, one train step, .keras round trip."""
    # 1. get_config returns exactly the constructor arguments (plus Keras' base keys), and round-trips.
    block = block_cls(**init_kwargs)
    config = block.get_config()
    params = set(inspect.signature(block_cls.__init__).parameters) - {"self", "kwargs"}
    assert set(config) - BASE_CONFIG_KEYS == params, (set(config), params)
    for key, value in init_kwargs.items():
        assert config[key] == value, (key, config[key], value)
    assert block_cls.from_config(config).get_config() == config

    # 2. symbolic call in a functional model
    inputs = [keras.Input(shape[1:], batch_size=None) for shape in input_shapes]
    call_arg = inputs if len(inputs) > 1 else inputs[0]
    outputs = _as_list(block(call_arg))
    assert [_shape(o)[1:] for o in outputs] == [s[1:] for s in expected_output_shapes]
    computed = block.compute_output_shape(
        [tuple(i.shape) for i in inputs] if len(inputs) > 1 else tuple(inputs[0].shape)
    )
    several = isinstance(computed, (list, tuple)) and computed and isinstance(computed[0], (list, tuple))
    computed = list(computed) if several else [computed]
    assert [tuple(c)[1:] for c in computed] == [s[1:] for s in expected_output_shapes]
    if expected_has_skip is not None:
        assert block.has_skip is expected_has_skip
    assert len(block.trainable_weights) == expected_trainable_weights
    model = keras.Model(inputs, outputs)

    # 3. eager call, batch of 2
    data = [np.random.uniform(-1, 1, (2,) + s[1:]).astype("float32") for s in input_shapes]
    eager = _as_list(block(data if len(data) > 1 else data[0]))
    assert [_shape(e) for e in eager] == [(2,) + s[1:] for s in expected_output_shapes]

    # 4. one training step changes every trainable weight that receives gradient
    before = [w.numpy().copy() for w in block.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    targets = [np.random.uniform(-1, 1, (2,) + s[1:]).astype("float32") for s in expected_output_shapes]
    model.train_on_batch(data, targets)
    changed = [not np.allclose(b, w.numpy()) for b, w in zip(before, block.trainable_weights)]
    # Every kernel moves. A batch norm that feeds a linear (depthwise) conv and then another batch norm
    # has exactly-zero gradients in training mode (the second BN removes its shift and scale), so its
    # gamma and beta may stay; kernels never may.
    for w, moved in zip(block.trainable_weights, changed):
        assert moved or w.path.endswith(("gamma", "beta")), f"{w.path} did not change after a training step"

    # 5. .keras round trip without custom_objects, equal outputs in inference mode
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "block.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    expected = _as_list(model.predict(data, verbose=0))
    got = _as_list(loaded.predict(data, verbose=0))
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)
    return block, model


def randomize_batch_norms(model, seed=0):
    """Inference statistics as after training (an untrained network degenerates under int8 calibration)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape))
        elif "moving_mean" in w.path or "beta" in w.path:
            w.assign(rng.normal(0, 0.1, w.shape))
        elif "gamma" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape))
    return model


def figure_problems(fig) -> list[str]:
    """What a reader would miss in a matplotlib figure: text cut at the canvas' edges, and a legend inside the axes
    over the data it describes (a plotted point, a line's vertex, a bar). Empty when the figure reads whole."""
    from matplotlib.patches import Rectangle
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    problems = []
    drawn = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)  # what is drawn, in pixels
    if drawn.x0 < canvas.x0 - 2 or drawn.y0 < canvas.y0 - 2 or drawn.x1 > canvas.x1 + 2 or drawn.y1 > canvas.y1 + 2:
        cut = [t.get_text()[:60] for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
               and (t.axes is None or t.axes.axison) and not canvas.contains(*t.get_window_extent(renderer).p1)]
        problems.append(f"drawn beyond the canvas ({drawn.x0:.0f}, {drawn.y0:.0f}, {drawn.x1:.0f}, {drawn.y1:.0f} "
                        f"of {canvas.x1:.0f} x {canvas.y1:.0f} px): {cut[:4]}")
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer)
        if not box.overlaps(ax.bbox):
            continue  # placed outside the axes
        points = [ax.transData.transform(line.get_xydata()) for line in ax.lines]
        points += [c.get_offset_transform().transform(c.get_offsets()) for c in ax.collections
                   if len(c.get_offsets())]
        hidden = sum(int(box.contains(x, y)) for pts in points for x, y in np.asarray(pts).reshape(-1, 2))
        hidden += sum(int(p.get_window_extent(renderer).overlaps(box)) for p in ax.patches
                      if isinstance(p, Rectangle) and p.get_height() and p.get_width())
        if hidden:
            problems.append(f"the legend of {ax.get_title()[:40]!r} hides {hidden} data point(s) or bar(s)")
    return problems
