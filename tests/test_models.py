"""The four networks: golden parameter counts, keras.applications parity, heads, round trips, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_mbv2 as K
from keras_mbv2.models.shufflenet_v1 import stage_channels

# keras.applications count_params() (weights=None, 1000 classes); parameters do not depend on input size.
KERAS_APPLICATION_PARAMS = [
    (K.MobileNetV1, dict(alpha=0.25), 475_544),
    (K.MobileNetV1, dict(alpha=0.5), 1_342_536),
    (K.MobileNetV1, dict(alpha=0.75), 2_601_976),
    (K.MobileNetV1, dict(alpha=1.0), 4_253_864),
    (K.MobileNetV2, dict(alpha=0.35), 1_691_208),
    (K.MobileNetV2, dict(alpha=0.5), 1_987_224),
    (K.MobileNetV2, dict(alpha=0.75), 2_663_064),
    (K.MobileNetV2, dict(alpha=1.0), 3_538_984),
    (K.MobileNetV2, dict(alpha=1.3), 5_431_048),
    (K.MobileNetV2, dict(alpha=1.4), 6_156_712),
    (K.NASNetMobile, dict(), 5_326_716),
]


@pytest.mark.parametrize("size", [224, 96])
@pytest.mark.parametrize(
    "builder,kwargs,expected", KERAS_APPLICATION_PARAMS,
    ids=[f"{b.__name__}{k}" for b, k, _ in KERAS_APPLICATION_PARAMS],
)
def test_params_equal_keras_applications(builder, kwargs, expected, size):
    assert builder(input_shape=(size, size, 3), **kwargs).count_params() == expected


# ShuffleNet V1 has no keras.applications twin: golden counts of our decoding of Table 1, and the
# paper's complexity (MFLOPs = multiply-adds) per group count at 1x (Table 1) and 2x (Table 5).
SHUFFLENET_GOLDEN = [
    # groups, scale, params, paper MFLOPs
    (1, 1.0, 1_546_624, 143),
    (2, 1.0, 1_754_248, 140),
    (3, 1.0, 1_890_208, 137),
    (4, 1.0, 1_996_088, 133),
    (8, 1.0, 2_473_936, 137),
    (3, 2.0, 5_499_736, 524),
]


@pytest.mark.parametrize("groups,scale,params,mflops", SHUFFLENET_GOLDEN)
def test_shufflenet_table1_params_and_complexity(groups, scale, params, mflops):
    model = K.ShuffleNetV1(input_shape=(224, 224, 3), groups=groups, scale=scale)
    assert model.count_params() == params
    assert K.profile(model).macs / 1e6 == pytest.approx(mflops, rel=0.015)


def test_shufflenet_stage_widths_are_table1_at_1x():
    assert stage_channels(3, 1.0) == (24, 240, 480, 960)
    assert stage_channels(8, 1.0) == (24, 384, 768, 1536)
    assert stage_channels(3, 0.5) == (12, 120, 240, 480)
    model = K.ShuffleNetV1(input_shape=(64, 64, 3), groups=3, include_top=False)
    assert not model.get_layer("stage2_unit1").group_first_conv  # Table 1 note
    assert model.get_layer("stage2_unit2").group_first_conv
    assert sum(1 for layer in model.layers if isinstance(layer, K.layers.ShuffleUnit)) == 16


# Paper Table 4 MAdds (millions) and our measured counts at 224x224.
PAPER_MADDS = [
    (K.MobileNetV2, dict(), 300, 0.01),
    (K.MobileNetV2, dict(alpha=1.4), 585, 0.01),
    (K.MobileNetV1, dict(), 575, 0.015),  # Table 4 says 575M; MobileNetV1's own paper says 569M
    (K.NASNetMobile, dict(), 564, 0.01),
]


@pytest.mark.parametrize("builder,kwargs,madds,tolerance", PAPER_MADDS, ids=[b.__name__ + str(k) for b, k, _, _ in PAPER_MADDS])
def test_madds_match_paper_table4(builder, kwargs, madds, tolerance):
    assert K.profile(builder(**kwargs)).macs / 1e6 == pytest.approx(madds, rel=tolerance)


def test_profile_peak_memory_is_block_input_plus_output():
    """Paper Section 5.1: executing each block as one op, MobileNetV2's largest need is the first
    bottleneck: 112x112x32 in + 112x112x16 out, at 16-bit activations."""
    p = K.profile(K.MobileNetV2(), bytes_per_activation=2)
    assert p.peak_layer == "expanded_conv"
    assert p.peak_activation_bytes == (32 + 16) * 112 * 112 * 2
    assert p.params == 3_538_984
    block = next(layer for layer in p.layers if layer.name == "block_1")
    assert [c.name for c in block.children][:3] == ["expand", "expand_BN", "expand_relu"]
    assert block.macs == sum(c.macs for c in block.children)
    # Table 3's view: the widest tensor per resolution
    assert K.profile(K.MobileNetV1(), 2).memory_by_resolution()[112] == (64, 112 * 112 * 64 * 2)
    assert "peak" in p.table()


def _randomize_batch_norms(model, seed=0):
    """Random inference statistics, so that a mis-mapped batch norm could not go unnoticed."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])


PARITY = [
    (keras.applications.MobileNetV2, dict(input_shape=(96, 96, 3), alpha=0.35, classifier_activation=None)),
    (keras.applications.MobileNetV2, dict(input_shape=(64, 64, 3), alpha=1.3, include_top=False)),
    (keras.applications.MobileNet, dict(input_shape=(96, 96, 3), alpha=0.25, classifier_activation=None)),
    (keras.applications.MobileNet, dict(input_shape=(64, 64, 3), alpha=0.75, depth_multiplier=2, include_top=False, pooling="max")),
    (keras.applications.NASNetMobile, dict(input_shape=(96, 96, 3), include_top=False, pooling="avg")),
]


@pytest.mark.parametrize("app,kwargs", PARITY, ids=[f"{a.__name__}{k}" for a, k in PARITY])
def test_from_keras_application_carries_weights(app, kwargs):
    app_model = app(weights=None, **kwargs)
    _randomize_batch_norms(app_model)
    ours = K.from_keras_application(app_model)
    assert ours.count_params() == app_model.count_params()
    x = np.random.default_rng(1).uniform(-1, 1, (2,) + tuple(kwargs["input_shape"])).astype("float32")
    expected = app_model.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert any(isinstance(layer, K.layers.Block) for layer in ours.layers)


FAMILIES = [
    (K.MobileNetV1, dict(alpha=0.25)),
    (K.MobileNetV2, dict(alpha=0.35)),
    (K.ShuffleNetV1, dict(groups=3, scale=0.5)),
    (K.NASNet, dict(penultimate_filters=96, num_blocks=1, stem_block_filters=8, skip_reduction=False)),
]


@pytest.mark.parametrize("pooling", [None, "avg", "max"])
@pytest.mark.parametrize("builder,kwargs", FAMILIES, ids=[b.__name__ for b, _ in FAMILIES])
def test_every_family_builds_small_without_top(builder, kwargs, pooling):
    model = builder(input_shape=(32, 32, 3), include_top=False, pooling=pooling, **kwargs)
    out = model(np.zeros((1, 32, 32, 3), "float32"))
    assert len(out.shape) == (4 if pooling is None else 2)


@pytest.mark.parametrize("builder,kwargs", FAMILIES, ids=[b.__name__ for b, _ in FAMILIES])
def test_keras_round_trip_per_family(builder, kwargs, tmp_path):
    model = builder(input_shape=(32, 32, 1), classes=10, **kwargs)
    x = np.random.rand(2, 32, 32, 1).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert loaded.count_params() == model.count_params()


def test_input_tensor_and_name():
    tensor = keras.Input((48, 48, 3))
    model = K.MobileNetV2(input_tensor=tensor, alpha=0.5, classes=7, name="mine")
    assert model.name == "mine" and model.output_shape == (None, 7)


def test_nasnet_large_configuration_matches_keras_structure():
    app = keras.applications.NASNetLarge(input_shape=(64, 64, 3), weights=None, include_top=False)
    ours = K.NASNet(input_shape=(64, 64, 3), include_top=False)
    assert ours.count_params() == app.count_params()


def test_weights_file_round_trip(tmp_path):
    model = K.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, classes=5)
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    again = K.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, classes=5, weights=path)
    x = np.random.rand(1, 32, 32, 3).astype("float32")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_keras_applications_weights_file_is_transferred(tmp_path):
    app = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, include_top=False)
    _randomize_batch_norms(app)
    path = str(tmp_path / "official.weights.h5")
    app.save_weights(path)
    ours = K.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=path)
    x = np.random.rand(1, 96, 96, 3).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), app.predict(x, verbose=0), atol=1e-5)


def test_imagenet_weights_offline(monkeypatch, tmp_path):
    """weights='imagenet' goes through keras.applications' downloader: offline it says what was tried;
    with the file in reach (here a stand-in served by a patched downloader) the weights are transferred."""
    from keras.src.utils import file_utils

    def offline(fname, origin=None, **kwargs):
        raise OSError(f"URL fetch failure on {origin}: no network")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(ValueError, match="weights='imagenet'.*no network.*weights='/path/to/file.h5'"):
        K.MobileNetV1(input_shape=(128, 128, 3), alpha=0.25, weights="imagenet")

    official = keras.applications.MobileNet(input_shape=(128, 128, 3), alpha=0.25, weights=None)
    _randomize_batch_norms(official)
    path = str(tmp_path / "mobilenet_2_5_128_tf.weights.h5")
    official.save_weights(path)
    monkeypatch.setattr(file_utils, "get_file", lambda *a, **k: path)
    ours = K.MobileNetV1(input_shape=(128, 128, 3), alpha=0.25, weights="imagenet", classifier_activation=None)
    x = np.random.rand(1, 128, 128, 3).astype("float32")
    ref = keras.Model(official.input, official.get_layer("reshape_2").output)
    np.testing.assert_allclose(ours.predict(x, verbose=0), ref.predict(x, verbose=0), atol=1e-5)


BAD = [
    (K.MobileNetV2, dict(alpha=0.6, weights="imagenet"), "alpha=0.6"),
    (K.MobileNetV2, dict(input_shape=(16, 16, 3)), r"input_shape=\(16, 16, 3\)"),
    (K.MobileNetV2, dict(weights="imagenet", classes=10), "classes=10"),
    (K.MobileNetV2, dict(alpha=-1), "alpha=-1"),
    (K.MobileNetV2, dict(expansion=0), "expansion=0"),
    (K.MobileNetV2, dict(pooling="mean", include_top=False), "pooling='mean'"),
    (K.MobileNetV2, dict(weights="/nonexistent/w.h5"), "weights='/nonexistent/w.h5'"),
    (K.MobileNetV1, dict(alpha=0.3, weights="imagenet"), "alpha=0.3"),
    (K.MobileNetV1, dict(dropout=1.5), "dropout=1.5"),
    (K.MobileNetV1, dict(input_shape=(224, 224)), r"input_shape=\(224, 224\)"),
    (K.ShuffleNetV1, dict(groups=5), "groups=5"),
    (K.ShuffleNetV1, dict(scale=0.75), "scale=0.75"),
    (K.ShuffleNetV1, dict(weights="imagenet"), "weights='imagenet'"),
    (K.NASNet, dict(penultimate_filters=100), "penultimate_filters=100"),
    (K.NASNetMobile, dict(classes=0), "classes=0"),
]


@pytest.mark.parametrize("builder,kwargs,fragment", BAD, ids=[f"{b.__name__}-{f}" for b, _, f in BAD])
def test_bad_builder_arguments(builder, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        builder(**kwargs)


def test_from_keras_application_rejects_other_models():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="app_model="):
        K.from_keras_application(model)


# Built at 32x32x3 with 1000 classes; equal to keras.applications' counts (shared/DESIGN.md section 4) where it has
# the network, and the same on every backend (tests/test_backends.py runs this on JAX).
SMALL_GOLDEN = [
    (K.MobileNetV2, dict(alpha=0.35), 1_691_208),
    (K.MobileNetV1, dict(alpha=0.25), 475_544),
    (K.ShuffleNetV1, dict(groups=3, scale=0.5), 730_564),
    (K.NASNetMobile, {}, 5_326_716),
]


@pytest.mark.parametrize("builder,kwargs,params", SMALL_GOLDEN, ids=[b.__name__ for b, _, _ in SMALL_GOLDEN])
def test_four_builders_param_counts_on_any_backend(builder, kwargs, params):
    assert builder(input_shape=(32, 32, 3), **kwargs).count_params() == params


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "one graph"])
def test_recalibrated_batch_norms_hold_the_running_average_of_the_batches_statistics(graph):
    """`recalibrate_batch_norms` (eager, or one TensorFlow graph as `RecalibrateBatchNorms` runs it from 4 epochs
    on) leaves each batch norm the average of the batches' statistics: what Keras' own update gives at momentum
    (k - 1) / k for the k-th batch, run twice on one model (the graph kept, the momentum restored), and the model is
    freed when its user lets it go."""
    from keras_mbv2.models.batch_norm import batch_norms, recalibrate_batch_norms

    x = np.random.default_rng(0).uniform(0, 1, (150, 32, 32, 1)).astype("float32")  # batches of 64, 64, 22
    model = K.MobileNetV2((32, 32, 1), alpha=0.35, classes=10, bn_momentum=0.9)
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    for k, start in enumerate(range(0, len(x), 64), start=1):
        for bn in batch_norms(reference):
            bn.momentum = (k - 1) / k
        reference(x[start:start + 64], training=True)
    for _ in range(2):
        recalibrate_batch_norms(model, x, graph=graph)
        for got, want in zip(batch_norms(model), batch_norms(reference)):
            np.testing.assert_allclose(np.asarray(got.moving_mean), np.asarray(want.moving_mean), atol=1e-5)
            np.testing.assert_allclose(np.asarray(got.moving_variance), np.asarray(want.moving_variance), rtol=1e-4)
    assert {bn.momentum for bn in batch_norms(model)} == {0.9}
    import gc
    import weakref

    freed = weakref.ref(model)
    del model, got, want  # the graph kept for the model does not keep it alive
    gc.collect()
    assert freed() is None
