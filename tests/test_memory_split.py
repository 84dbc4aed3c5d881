"""Memory-efficient inference (paper Section 5.1): split inverted residuals, their int8 graphs on TFLM,
operator scheduling and fitting a RAM budget.

Golden numbers: MobileNetV2 alpha 0.35 at 96x96x3, int8. Block 1 expands 48x48x8 to 48x48x48 (110,592 B)
and its depthwise writes 24x24x48 (27,648 B): 138,240 B, TFLM's planned activations ("head"). The floor is
block 0's depthwise, which runs on the stem output and cannot be split: 2 x 48x48x16 = 73,728 B.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from harness import randomize_batch_norms

import keras_mbv2 as K
from keras_mbv2 import cli
from keras_mbv2.layers import InvertedResidual
from keras_mbv2.micro import arena_use, fit_ram, tensor_arena_size, tflite_macs
from keras_mbv2.models import memory_splits_of, plan_memory_splits, split_floor, split_model
from keras_mbv2.quantization import fit_qat, quantize_aware, run_isolated, to_tflite
from keras_mbv2.tflite import with_tightest_plan
from keras_mbv2.tflite.patches import patch_model
from keras_mbv2.tflite.schedule import (
    activation_peak,
    depth_first_order,
    reorder_operators,
    schedule_operators,
)

UNSPLIT_HEAD = 48 * 48 * 48 + 24 * 24 * 48  # 138,240
FLOOR = 2 * 48 * 48 * 16  # 73,728


def _single(block, shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, block(inputs))


BLOCKS = [  # kwargs, input shape, memory_splits
    (dict(filters=8), (12, 12, 8), 2),
    (dict(filters=8), (12, 12, 8), 5),  # 48 channels in slices of 10, 10, 10, 9, 9
    (dict(filters=16, strides=2), (11, 11, 8), 3),
    (dict(filters=8, linear_bottleneck=False, residual=False), (12, 12, 8), 48),  # one channel per slice
    (dict(filters=12, expansion=4, kernel_size=5), (9, 9, 6), 4),
]


@pytest.mark.parametrize("kwargs,shape,splits", BLOCKS, ids=[f"{k}-{s}" for k, _, s in BLOCKS])
def test_split_block_computes_the_same_function(kwargs, shape, splits):
    whole = InvertedResidual(**kwargs)
    base = randomize_batch_norms(_single(whole, shape))
    for w in base.weights:
        if "kernel" in w.path:
            w.assign(np.random.default_rng(3).normal(0, 0.3, w.shape))
    part = InvertedResidual(**kwargs, memory_splits=splits)
    split = _single(part, shape)
    part.set_full_weights(whole.full_weights())
    back = InvertedResidual(**kwargs)
    _single(back, shape)
    back.set_full_weights(part.full_weights())  # and back, exactly
    for a, b in zip(back.weights, whole.weights):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(1).normal(size=(3, *shape)).astype("float32")
    for training in (False, True):  # batch statistics are per channel, so training mode agrees as well
        np.testing.assert_allclose(split(x, training=training), base(x, training=training), atol=2e-5)
    assert len(part.slice_channels) == splits and sum(part.slice_channels) == sum(whole.slice_channels)
    assert max(part.slice_channels) - min(part.slice_channels) <= 1
    assert split.count_params() == base.count_params()
    assert K.profile(split).macs == K.profile(base).macs  # Section 5.1: the multiply-adds do not change
    assert K.profile(split).peak_operator_bytes < K.profile(base).peak_operator_bytes


@pytest.fixture(scope="module")
def mbv2():
    keras.utils.set_random_seed(0)
    return randomize_batch_norms(K.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, classes=10))


PLANS = [  # activation budget -> splits the planner picks (others 1), operator-level peak after
    (UNSPLIT_HEAD, {}, UNSPLIT_HEAD),
    (100_000, {"block_1": 2}, 87_552),  # slice 0's tensors + the block input kept for slice 1
    (81_100, {"block_1": 3}, FLOOR),  # the target: within 10% of the floor
    (FLOOR, {"block_1": 3}, FLOOR),
]


def test_mobilenet_v2_memory_golden_numbers_and_plans(mbv2):
    p = K.profile(mbv2)
    assert (p.peak_operator_bytes, p.peak_operator_layer) == (UNSPLIT_HEAD, "block_1")
    assert split_floor(mbv2) == (FLOOR, "expanded_conv")
    x = np.random.default_rng(2).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    for budget, expected, peak in PLANS:
        plan = plan_memory_splits(mbv2, budget)
        assert {k: v for k, v in plan.items() if v > 1} == expected, budget
        split = split_model(mbv2, plan)
        q = K.profile(split)
        assert q.peak_operator_bytes == peak
        assert q.macs == p.macs and q.params == p.params
        np.testing.assert_allclose(split(x, training=False), mbv2(x, training=False), atol=1e-5)
    with pytest.raises(ValueError, match="'expanded_conv' needs 73,728 B"):
        plan_memory_splits(mbv2, FLOOR - 1)


def test_mobilenet_v2_1_0_at_224_reaches_its_floor():
    model = K.MobileNetV2()
    assert K.profile(model).peak_operator_bytes == 112 * 112 * 96 + 56 * 56 * 96  # block 1: 1,505,280 B
    floor, layer = split_floor(model)
    assert (floor, layer) == (2 * 112 * 112 * 32, "expanded_conv")  # 802,816 B
    plan = plan_memory_splits(model, floor)
    assert K.profile(K.MobileNetV2(memory_splits=plan)).peak_operator_bytes == floor


def test_builder_option_round_trips_and_matches_split_model(mbv2, tmp_path):
    built = K.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, classes=10, memory_splits={"block_1": 3, "block_2": 2})
    assert memory_splits_of(built) == {**memory_splits_of(mbv2), "block_1": 3, "block_2": 2}
    assert [w.shape for w in built.weights] == [w.shape for w in split_model(mbv2, memory_splits_of(built)).weights]
    splits = memory_splits_of(K.MobileNetV2(memory_splits=2))
    assert all(s == 2 for name, s in splits.items() if name != "expanded_conv")
    split = split_model(mbv2, {"block_1": 3})
    path = str(tmp_path / "split.keras")
    split.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(4).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    np.testing.assert_array_equal(loaded(x, training=False), split(x, training=False))
    assert memory_splits_of(loaded)["block_1"] == 3
    merged = split_model(loaded, 1)  # back to unsplit: the original weights exactly
    for a, b in zip(merged.weights, mbv2.weights):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def int8_pair(mbv2):
    """The converter's own operator order (schedule=False), so the tests see what it emits."""
    calib = np.random.default_rng(5).uniform(-1, 1, (8, 96, 96, 3)).astype("float32")
    return tuple(to_tflite(m, calib, num_calibration=8, schedule=False)
                 for m in (mbv2, split_model(mbv2, {"block_1": 3})))


def test_split_int8_model_plans_to_the_floor_on_tflm(int8_pair):
    base, split = int8_pair
    assert activation_peak(base)[0] == UNSPLIT_HEAD and activation_peak(split)[0] == FLOOR
    assert arena_use(base).head == UNSPLIT_HEAD  # the reference head
    use = arena_use(split)
    assert use.head == FLOOR  # TFLM's greedy planner reaches the floor exactly
    assert use.tail - arena_use(base).tail < 4096  # 8 more operators' persistent data
    assert tflite_macs(split) == tflite_macs(base)
    # The converter keeps each slice's operators together: its order is already the depth-first one,
    # so to_tflite's scheduling leaves the bytes as they are.
    assert depth_first_order(split) == list(range(len(depth_first_order(split))))
    assert schedule_operators(split) is split
    x = np.random.default_rng(6).integers(-128, 128, (4, 96, 96, 3)).astype("int8")
    lite, _ = run_isolated(split, x, "litert")
    micro = np.concatenate([run_isolated(split, x[i:i + 1], "tflm")[0] for i in range(len(x))])
    np.testing.assert_array_equal(lite, micro)


def _breadth_first(data):
    """A valid but memory-hungry order: every slice's expand conv before any depthwise."""
    from keras_mbv2.tflite import parse_model

    graph = parse_model(data).subgraphs[0]
    producer = {t: i for i, op in enumerate(graph.operators) for t in op.outputs}
    waiting = {i: {producer[t] for t in op.inputs if t in producer} for i, op in enumerate(graph.operators)}
    order, ready = [], [i for i, deps in waiting.items() if not deps]
    while ready:
        op = ready.pop(0)
        order.append(op)
        for other, deps in waiting.items():
            if op in deps:
                deps.discard(op)
                if not deps:
                    ready.append(other)
    return order


def test_scheduler_restores_a_slice_by_slice_order(int8_pair):
    _, split = int8_pair
    bad = reorder_operators(split, _breadth_first(split))
    assert activation_peak(bad)[0] > FLOOR
    assert arena_use(bad).head == activation_peak(bad)[0]  # the estimate is what TFLM plans
    fixed = schedule_operators(bad)
    assert activation_peak(fixed)[0] == FLOOR and arena_use(fixed).head == FLOOR
    x = np.random.default_rng(7).integers(-128, 128, (1, 96, 96, 3)).astype("int8")
    outputs = [run_isolated(m, x, "tflm")[0] for m in (split, bad, fixed)]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])
    with pytest.raises(ValueError, match="before the operators producing"):
        reorder_operators(split, list(reversed(range(len(depth_first_order(split))))))
    with pytest.raises(ValueError, match="permutation"):
        reorder_operators(split, [0, 0, 1])


def test_split_model_survives_qat_and_int8_conversion(mbv2, tmp_path):
    from keras_mbv2.datasets import load_digits

    data = load_digits(image_size=96, channels=3)
    split = split_model(mbv2, {"block_1": 3})
    qat = quantize_aware(split)
    names = [layer.name for layer in qat.layers]
    assert not any("block_1_project_BN" == n.removeprefix("quant_") for n in names)  # folded into the slices
    assert sum("block_1_project_" in n and n.endswith("_folded") for n in names) == 3
    fit_qat(qat, data.x_train[:64], data.y_train[:64], str(tmp_path), epochs=1, learning_rate=1e-5, verbose=0)
    int8 = to_tflite(qat, data.x_train[:32])
    assert arena_use(int8).head == FLOOR
    x = np.round(data.x_test[:3] / 0.0078125).clip(-128, 127).astype("int8")
    lite, _ = run_isolated(int8, x, "litert")
    micro = np.concatenate([run_isolated(int8, x[i:i + 1], "tflm")[0] for i in range(len(x))])
    np.testing.assert_array_equal(lite, micro)


def test_fit_ram_splits_only_as_far_as_the_budget_needs(mbv2):
    calib = np.random.default_rng(8).uniform(-1, 1, (8, 96, 96, 3)).astype("float32")
    roomy = fit_ram(mbv2, 300_000, calib)
    assert roomy.model is mbv2 and all(s == 1 for s in roomy.memory_splits.values())
    tight = fit_ram(mbv2, 160_000, calib)
    assert {k: v for k, v in tight.memory_splits.items() if v > 1} == {"block_1": 3}
    assert tight.before.head == UNSPLIT_HEAD and tight.after.head == FLOOR
    assert tensor_arena_size(tight.after.total) <= 160_000 < tensor_arena_size(tight.before.total)
    assert tight.macs_after == tight.macs_before
    assert "block_1=3" in str(tight)
    with pytest.raises(ValueError, match="ram_bytes=60000") as exc:
        fit_ram(mbv2, 60_000, calib)
    assert "'expanded_conv' needs 73,728 B" in str(exc.value) and "persistent data (72,032 B," in str(exc.value)
    assert "whatever the plan" in str(exc.value)  # refused after one conversion: no split or patch search


def test_fit_ram_goes_below_the_split_floor_in_patches(mbv2):
    """Below the channel-split floor (147,600 B here), the stem's stage runs in spatial patches and the blocks
    after it are split: everything the device needs, input band and arenas (and a stage buffer when both models
    share one), measured on TFLM. 125,000 B is
    the issue's target for MobileNetV2 0.35 @ 96."""
    calib = np.random.default_rng(8).uniform(-1, 1, (8, 96, 96, 3)).astype("float32")
    result = fit_ram(mbv2, 125_000, calib)
    patched = result.patched
    assert patched is not None and result.device_ram_bytes <= 125_000
    band = patched.plan.input[0].size * 96 * 3  # the frame rows one row of patches reads
    assert patched.band_bytes == band < 27_648
    p, r = patched.patch_arena, patched.rest_arena  # one shared arena + the stage buffer, or an arena each
    assert result.device_ram_bytes == band + min(patched.stage_bytes + max(p.head, r.head) + p.tail + r.tail,
                                                 p.total + r.total)
    assert patched.whole_frame_ram_bytes == result.device_ram_bytes - band + 27_648
    assert result.device_ram_bytes < arena_use(result.tflite).total  # the same splits as one arena need more
    assert 0 < patched.plan.mac_overhead <= 0.2 and result.macs_after == patched.plan.macs
    x = np.random.default_rng(9).integers(-128, 128, (2, 96, 96, 3)).astype("int8")
    np.testing.assert_array_equal(result.invoke(x), run_isolated(result.tflite, x, "tflm")[0])
    text = str(result)
    # within the budget, the plan predicted fastest: 4x4 patches, fewer invocations and halos than the least-RAM 8x8
    assert "patches 4x4" in text and f"= {result.device_ram_bytes:,} B RAM" in text
    least_ram = patch_model(result.tflite, patched.plan.cut, (8, 8))
    assert least_ram.device_ram_bytes < result.device_ram_bytes
    assert patched.plan.stage_instructions() < 0.85 * least_ram.plan.stage_instructions()


def test_cli_profile_shows_the_split_operator_peak(capsys):
    args = ["profile", "--width", "0.35", "--input-shape", "96x96x3", "--classes", "10"]
    assert cli.main(args) == 0
    unsplit = capsys.readouterr().out.strip().splitlines()[-1]
    assert cli.main(args + ["--memory-splits", "3"]) == 0
    split = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"{UNSPLIT_HEAD:,}" in unsplit and f"{FLOOR:,}" in split
    assert unsplit.split()[2] == split.split()[2]  # the same MACs


@pytest.mark.parametrize("application,kwargs", [(keras.applications.MobileNetV2, {"alpha": 0.35}),
                                                (keras.applications.MobileNet, {"alpha": 0.25})],
                         ids=["MobileNetV2", "MobileNet"])
def test_profile_of_a_keras_application_counts_operators_as_tflm_plans_them(application, kwargs):
    """A model the package did not build: its batch norms and ReLUs are layers of their own, and its stride-2
    convolutions follow an explicit ZeroPadding2D; the converter fuses both away, and so does the profiler, so its
    operator-level peak is TFLM's planned activations (it counted 225,840 B for MobileNetV2, not 138,240 B): those
    of TFLM's own plan for MobileNetV2, and of the offline plan `emit` writes for MobileNet (TFLM's greedy planner
    places its tensors in 73,728 B, the liveness peak is 55,296 B)."""
    keras.utils.set_random_seed(0)
    app = randomize_batch_norms(application(input_shape=(96, 96, 3), weights=None, **kwargs))
    calibration = np.random.default_rng(4).uniform(-1, 1, (8, 96, 96, 3)).astype("float32")
    _, planned, _ = with_tightest_plan(to_tflite(app, calibration, num_calibration=8))
    head = planned.head
    assert K.profile(app).peak_operator_bytes == head
    built = {"MobileNetV2": K.MobileNetV2, "MobileNet": K.MobileNetV1}[application.__name__]
    assert K.profile(built(input_shape=(96, 96, 3), **kwargs)).peak_operator_bytes == head  # ours: the same
