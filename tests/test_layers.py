"""Every block of the paper's Figures 3 and 4, through the shared harness, plus numpy references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from harness import run_block_test
from keras.src.testing import TestCase as KerasTestCase

import keras_mbv2
from keras_mbv2 import layers as L

N = None
# (block, kwargs, input shapes, output shapes, trainable weights, has_skip)
# Trainable weights: a conv or dense kernel counts 1, a SeparableConv2D 2, a batch norm 2 (gamma, beta).
# NASNet cells: 1x1 conv + BN = 3; each of the 5 separable branches = 2 x (sep conv + BN) = 8;
# adjust: factorized reduction 2 convs + BN = 4, projection conv + BN = 3.
SEP = 8
CASES = [
    (L.ConvBNAct, dict(filters=8), [(N, 16, 16, 3)], [(N, 16, 16, 8)], 3, False),
    (L.ConvBNAct, dict(filters=16, strides=2, activation=None), [(N, 15, 15, 3)], [(N, 8, 8, 16)], 3, False),
    (L.ConvBNAct, dict(filters=12, kernel_size=1, groups=3), [(N, 8, 8, 6)], [(N, 8, 8, 12)], 3, False),
    (L.DepthwiseSeparable, dict(filters=16), [(N, 16, 16, 8)], [(N, 16, 16, 16)], 6, False),
    (L.DepthwiseSeparable, dict(filters=32, strides=2, linear_bottleneck=True), [(N, 16, 16, 8)], [(N, 8, 8, 32)], 6, False),
    (L.DepthwiseSeparable, dict(filters=8, depth_multiplier=2), [(N, 9, 9, 8)], [(N, 9, 9, 8)], 6, False),
    (L.Bottleneck, dict(filters=16), [(N, 16, 16, 16)], [(N, 16, 16, 16)], 9, True),
    (L.Bottleneck, dict(filters=32, strides=2), [(N, 16, 16, 16)], [(N, 8, 8, 32)], 9, False),
    (L.Bottleneck, dict(filters=16, linear_bottleneck=False, residual=False), [(N, 8, 8, 16)], [(N, 8, 8, 16)], 9, False),
    (L.InvertedResidual, dict(filters=16), [(N, 16, 16, 16)], [(N, 16, 16, 16)], 9, True),
    (L.InvertedResidual, dict(filters=16, strides=2), [(N, 16, 16, 16)], [(N, 8, 8, 16)], 9, False),
    (L.InvertedResidual, dict(filters=24), [(N, 16, 16, 16)], [(N, 16, 16, 24)], 9, False),
    (L.InvertedResidual, dict(filters=16, expansion=1), [(N, 16, 16, 16)], [(N, 16, 16, 16)], 6, True),
    (L.InvertedResidual, dict(filters=16, residual=False, linear_bottleneck=False), [(N, 8, 8, 16)], [(N, 8, 8, 16)], 9, False),
    (L.InvertedResidual, dict(filters=24, strides=2, expansion=4), [(N, 15, 15, 8)], [(N, 8, 8, 24)], 9, False),
    (L.InvertedResidual, dict(filters=16, memory_splits=3), [(N, 16, 16, 16)], [(N, 16, 16, 16)], 23, True),
    (L.InvertedResidual, dict(filters=24, strides=2, memory_splits=5), [(N, 15, 15, 8)], [(N, 8, 8, 24)], 37, False),
    (L.ChannelShuffle, dict(groups=3), [(N, 4, 4, 12)], [(N, 4, 4, 12)], 0, None),
    (L.ShuffleUnit, dict(filters=24, groups=3), [(N, 8, 8, 24)], [(N, 8, 8, 24)], 9, True),
    (L.ShuffleUnit, dict(filters=48, groups=3, strides=2, group_first_conv=False), [(N, 16, 16, 24)], [(N, 8, 8, 48)], 9, False),
    (L.ShuffleUnit, dict(filters=32, groups=4, strides=2, residual=False), [(N, 16, 16, 16)], [(N, 8, 8, 32)], 9, False),
    (L.ShuffleUnit, dict(filters=16, groups=1), [(N, 8, 8, 8)], [(N, 8, 8, 16)], 9, False),
    # NASNet cells: stem cell on x alone, then normal cells with factorized reduction / projection / identity
    (L.NASNetReductionCell, dict(filters=4), [(N, 16, 16, 8)], [(N, 8, 8, 16), (N, 16, 16, 8)], 3 + 5 * SEP, False),
    (L.NASNetNormalCell, dict(filters=4), [(N, 8, 8, 16), (N, 16, 16, 8)], [(N, 8, 8, 24), (N, 8, 8, 16)], 4 + 3 + 5 * SEP, False),
    (L.NASNetNormalCell, dict(filters=4), [(N, 8, 8, 16), (N, 8, 8, 12)], [(N, 8, 8, 24), (N, 8, 8, 16)], 3 + 3 + 5 * SEP, False),
    (L.NASNetNormalCell, dict(filters=4), [(N, 8, 8, 16), (N, 8, 8, 4)], [(N, 8, 8, 24), (N, 8, 8, 16)], 3 + 5 * SEP, False),
    (L.NASNetReductionCell, dict(filters=4), [(N, 8, 8, 24), (N, 8, 8, 16)], [(N, 4, 4, 16), (N, 8, 8, 24)], 3 + 3 + 5 * SEP, False),
]


def _case_id(case):
    cls, kwargs, shapes = case[0], case[1], case[2]
    args = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{cls.__name__}({args})@{'+'.join('x'.join(map(str, s[1:])) for s in shapes)}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_block_harness(case):
    cls, kwargs, in_shapes, out_shapes, n_weights, has_skip = case
    run_block_test(cls, kwargs, in_shapes, out_shapes, n_weights, has_skip)


@pytest.mark.parametrize("groups,channels", [(2, 8), (3, 12), (4, 8), (8, 16)])
def test_channel_shuffle_matches_numpy_permutation(groups, channels):
    x = np.random.rand(2, 3, 5, channels).astype("float32")
    perm = np.arange(channels).reshape(groups, channels // groups).T.ravel()
    got = keras.ops.convert_to_numpy(L.ChannelShuffle(groups)(x))
    np.testing.assert_array_equal(got, x[..., perm])
    # output channel j*g + i comes from input channel i*n + j (the paper's and torchvision's order)
    n = channels // groups
    assert all(perm[j * groups + i] == i * n + j for i in range(groups) for j in range(n))


def _np_depthwise(x, kernel, strides):
    """'same'-padded depthwise conv (TensorFlow convention), channels-last, kernel (k, k, C, 1)."""
    k = kernel.shape[0]
    _, h, w, c = x.shape
    oh, ow = -(-h // strides), -(-w // strides)
    ph = max((oh - 1) * strides + k - h, 0)
    pw = max((ow - 1) * strides + k - w, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((x.shape[0], oh, ow, c), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * strides:i * strides + k, j * strides:j * strides + k, :]
            out[:, i, j, :] = np.einsum("bhwc,hwc->bc", patch, kernel[..., 0])
    return out


def _np_bn(x, bn):
    gamma, beta, mean, var = (keras.ops.convert_to_numpy(w) for w in bn.weights)
    return gamma * (x - mean) / np.sqrt(var + bn.epsilon) + beta


@pytest.mark.parametrize("strides,linear", [(1, False), (2, False), (2, True)])
def test_depthwise_separable_matches_numpy(strides, linear):
    block = L.DepthwiseSeparable(6, strides=strides, linear_bottleneck=linear)
    x = np.random.uniform(-2, 2, (2, 7, 8, 4)).astype("float32")
    block(x)
    rng = np.random.default_rng(0)
    for bn in (block.depthwise_bn, block.pointwise_bn):  # non-trivial inference statistics
        bn.set_weights([rng.uniform(0.5, 2, w.shape) for w in bn.get_weights()])
    y = _np_depthwise(x.astype(np.float64), keras.ops.convert_to_numpy(block.depthwise.kernel), strides)
    y = np.clip(_np_bn(y, block.depthwise_bn), 0, 6)
    y = np.einsum("bhwc,cd->bhwd", y, keras.ops.convert_to_numpy(block.pointwise.kernel)[0, 0])
    y = _np_bn(y, block.pointwise_bn)
    if not linear:
        y = np.clip(y, 0, 6)
    got = keras.ops.convert_to_numpy(block(x, training=False))
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "strides,in_ch,out_ch,residual,expected",
    [(1, 16, 16, True, True), (2, 16, 16, True, False), (1, 16, 24, True, False), (1, 16, 16, False, False),
     (2, 16, 24, True, False)],
)
def test_skip_rule_and_add_sublayer(strides, in_ch, out_ch, residual, expected):
    assert L.skip_rule(strides, in_ch, out_ch, residual) is expected
    block = L.InvertedResidual(out_ch, strides=strides, residual=residual)
    block.build((None, 8, 8, in_ch))
    assert block.has_skip is expected
    assert (block.add is not None) is expected
    assert all(not isinstance(s, keras.layers.Add) for s in block.sublayers()) is (not expected)


def test_inverted_residual_shortcut_is_identity_when_branch_is_zero():
    block = L.InvertedResidual(8)
    x = np.random.rand(1, 4, 4, 8).astype("float32")
    block(x)
    block.project_BN.gamma.assign(np.zeros(8, "float32"))  # branch contributes only beta (zero)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block(x, training=False)), x, atol=1e-6)


def test_linear_bottleneck_flag_controls_projection_activation():
    x = np.random.uniform(-3, 3, (2, 6, 6, 8)).astype("float32")
    linear = L.InvertedResidual(8, residual=False)
    relu = L.InvertedResidual(8, residual=False, linear_bottleneck=False)
    y_lin = keras.ops.convert_to_numpy(linear(x, training=True))
    y_relu = keras.ops.convert_to_numpy(relu(x, training=True))
    assert y_lin.min() < 0  # batch-normalised, not clipped
    assert y_relu.min() >= 0 and y_relu.max() <= 6
    assert linear.project_relu is None and isinstance(relu.project_relu, keras.layers.ReLU)


def test_blocks_in_sequential_and_subclassed_models():
    seq = keras.Sequential([
        keras.Input((16, 16, 3)),
        L.ConvBNAct(16, strides=2),
        L.InvertedResidual(16, expansion=1),
        L.InvertedResidual(24, strides=2),
        L.ShuffleUnit(48, groups=3, strides=2, group_first_conv=False),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    assert seq.output_shape == (None, 10)

    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.stem = L.ConvBNAct(8)
            self.block = L.DepthwiseSeparable(16, strides=2)
            self.head = keras.layers.Dense(3)

        def call(self, x):
            return self.head(keras.ops.mean(self.block(self.stem(x)), axis=(1, 2)))

    assert Tiny()(np.zeros((2, 8, 8, 3), "float32")).shape == (2, 3)


def test_sublayer_names_read_like_figure_4():
    block = L.InvertedResidual(24, strides=2)
    block.build((None, 8, 8, 16))
    assert [s.name for s in block.sublayers()] == [
        "expand", "expand_BN", "expand_relu", "depthwise", "depthwise_BN", "depthwise_relu", "project", "project_BN",
    ]
    assert "InvertedResidual" in repr(keras_mbv2.layers.InvertedResidual(24))


BAD_ARGS = [
    (L.ConvBNAct, dict(filters=-1), "filters=-1"),
    (L.ConvBNAct, dict(filters=8, strides=3), "strides=3"),
    (L.ConvBNAct, dict(filters=8, activation="gelu"), "activation='gelu'"),
    (L.ConvBNAct, dict(filters=8, groups=3), "groups=3"),
    (L.DepthwiseSeparable, dict(filters=0), "filters=0"),
    (L.DepthwiseSeparable, dict(filters=8, depth_multiplier=0), "depth_multiplier=0"),
    (L.DepthwiseSeparable, dict(filters=8, linear_bottleneck="yes"), "linear_bottleneck='yes'"),
    (L.Bottleneck, dict(filters=8, bottleneck_ratio=0), "bottleneck_ratio=0"),
    (L.InvertedResidual, dict(filters=8, expansion=0), "expansion=0"),
    (L.InvertedResidual, dict(filters=8, strides=3), "strides=3"),
    (L.InvertedResidual, dict(filters=8, bn_momentum=1.5), "bn_momentum=1.5"),
    (L.InvertedResidual, dict(filters=8.5), "filters=8.5"),
    (L.ChannelShuffle, dict(groups=0), "groups=0"),
    (L.ShuffleUnit, dict(filters=24, groups=5), "groups=5"),
    (L.NASNetNormalCell, dict(filters=0), "filters=0"),
]


@pytest.mark.parametrize("cls,kwargs,fragment", BAD_ARGS, ids=[f"{c.__name__}-{f}" for c, _, f in BAD_ARGS])
def test_bad_arguments_name_argument_and_value(cls, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        cls(**kwargs)


@pytest.mark.parametrize(
    "layer,shape,fragment",
    [
        (lambda: L.ChannelShuffle(3), (None, 4, 4, 8), "groups=3"),
        (lambda: L.ShuffleUnit(24, groups=3), (None, 8, 8, 16), "groups=3"),
        (lambda: L.ShuffleUnit(24, groups=3, strides=2), (None, 8, 8, 24), "filters=24"),
        (lambda: L.ConvBNAct(8, groups=2), (None, 8, 8, 3), "groups=2"),
    ],
)
def test_bad_input_shapes_name_argument_and_value(layer, shape, fragment):
    with pytest.raises(ValueError, match=fragment):
        layer().build(shape)


class _KerasLayerTest(KerasTestCase):
    """Keras' own layer test (`run_layer_test`), as Keras tests its built-in layers."""

    def runTest(self):  # unittest needs one; the cases below call run_layer_test directly
        pass


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_keras_run_layer_test_with_mixed_precision(case):
    """Config and serialization round trips, symbolic and eager calls, a training step, and `mixed_float16`
    (the output in float16, every weight in float32), exactly as Keras checks its own layers."""
    cls, kwargs, in_shapes, out_shapes, n_weights, _ = case
    shapes = [(2, *s[1:]) for s in in_shapes]
    expected = [(2, *s[1:]) for s in out_shapes]
    _KerasLayerTest().run_layer_test(
        cls, init_kwargs=kwargs, input_shape=shapes[0] if len(shapes) == 1 else tuple(shapes),
        expected_output_shape=expected[0] if len(expected) == 1 else tuple(expected),  # the cells: (output, x)
        expected_num_trainable_weights=n_weights, run_mixed_precision_check=True,
    )


@pytest.mark.parametrize("policy,dtype", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
@pytest.mark.parametrize("case", CASES[::3], ids=[_case_id(c) for c in CASES[::3]])
def test_blocks_compute_in_the_policys_dtype_with_float32_weights(case, policy, dtype):
    cls, kwargs, in_shapes = case[:3]
    block = cls(**kwargs, dtype=policy)
    data = [np.random.uniform(-1, 1, (2, *s[1:])).astype("float32") for s in in_shapes]
    outputs = block(data if len(data) > 1 else data[0])
    for output in (outputs if isinstance(outputs, (list, tuple)) else [outputs]):
        assert keras.backend.standardize_dtype(output.dtype) == dtype
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in block.weights)
    if not isinstance(block, L.ChannelShuffle):
        assert {keras.backend.standardize_dtype(s.compute_dtype) for s in block.sublayers()} == {dtype}
