"""QAT bridge, conversion, LiteRT/TFLM evaluation, resume after a kill, distributed training, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_mbv2 as K
from keras_mbv2.datasets import load_digits
from keras_mbv2.quantization import (
    evaluate_tflite,
    fit_qat,
    quantize_aware,
    quantize_scope,
    read_tflite,
    require_int8,
    run_litert,
    run_tflm,
    to_tf_keras,
    to_tflite,
)
from keras_mbv2.quantization.flatten import check_equal
from keras_mbv2.tflite import compare_outputs

TINY = {
    "MobileNetV2": lambda: K.MobileNetV2(input_shape=(32, 32, 1), alpha=0.35, classes=10),
    "MobileNetV1": lambda: K.MobileNetV1(input_shape=(32, 32, 1), alpha=0.25, classes=10),
    "ShuffleNetV1": lambda: K.ShuffleNetV1(input_shape=(32, 32, 1), groups=3, scale=0.25, classes=10),
    "NASNet": lambda: K.NASNet(input_shape=(32, 32, 1), penultimate_filters=96, num_blocks=1, stem_block_filters=8,
                               skip_reduction=False, classes=10),
}


def _randomize_batch_norms(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.path.endswith(("gamma", "beta", "moving_mean", "moving_variance")):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))


@pytest.fixture(scope="module")
def digits():
    return load_digits(image_size=32)


@pytest.mark.parametrize("family", list(TINY))
def test_flat_tf_keras_graph_equals_keras3_model(family):
    import tf_keras

    model = TINY[family]()
    _randomize_batch_norms(model)
    flat = to_tf_keras(model)
    x = np.random.default_rng(3).uniform(0, 1, (4, 32, 32, 1)).astype("float32")
    assert check_equal(model, flat, x) <= 1e-5
    assert all(type(layer).__module__.startswith("tf_keras") for layer in flat.layers)
    assert not any(isinstance(layer, tf_keras.Model) for layer in flat.layers)  # flat: no nesting
    assert flat.count_params() == model.count_params()
    if family == "NASNet":  # the BN after the factorized-reduction concat is split so tfmot can fold it
        assert any(layer.name.endswith("adjust_bn_part2") for layer in flat.layers)
    if family == "ShuffleNetV1":
        assert any(isinstance(layer, tf_keras.layers.Permute) for layer in flat.layers)


# MobileNetV2 goes through the same path in the QAT example, the demo and the README's command sequence.
@pytest.mark.parametrize("family", ["MobileNetV1", "ShuffleNetV1", "NASNet"])
def test_short_qat_converts_and_runs_alike_on_litert_and_tflm(family, digits, tmp_path):
    qat = quantize_aware(TINY[family]())  # accuracy is the slow test's and the benchmark's business
    rows = fit_qat(qat, digits.x_train[:256], digits.y_train[:256], str(tmp_path), epochs=1, batch_size=64, verbose=0)
    assert [int(r["epoch"]) for r in rows] == [0]
    tflite = to_tflite(qat, digits.x_train[:16], num_calibration=16)
    details = require_int8(tflite)
    assert details["input_shape"] == (1, 32, 32, 1) and details["output_shape"] == (1, 10)
    x, y = digits.x_test[:40], digits.y_test[:40]
    lite = evaluate_tflite(tflite, x, y)
    micro = evaluate_tflite(tflite, x, y, runtime="tflm")
    assert lite.outputs.dtype == np.int8
    _assert_serving_signature_runs(tflite, x[:1])
    # TFLM and TFLite's reference kernels are usually bit-exact; where they are not, by one int8 step on a few
    # scores (DESIGN.md section 5; 3 of 400 for the ShuffleNet here with tflite-micro 0.dev20261023)
    agreement = compare_outputs(micro.outputs, lite.outputs)
    assert agreement.max_step <= 1 and agreement.differing <= 0.02 * agreement.scores, agreement
    assert 0.0 <= lite.accuracy <= 1.0 and micro.arena_bytes > 0
    assert set(_operators(tflite)) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX",
                                       "RESHAPE", "TRANSPOSE", "CONCATENATION", "AVERAGE_POOL_2D", "MAX_POOL_2D",
                                       "PAD", "RELU", "STRIDED_SLICE", "QUANTIZE", "DEQUANTIZE"}


def _operators(tflite: bytes) -> list[str]:
    from keras_mbv2.tflite import operator_names

    return operator_names(tflite)


def test_float_tflite_matches_keras(digits):
    model = TINY["MobileNetV2"]()
    _randomize_batch_norms(model)
    f32 = to_tflite(model, quantize="float")
    x = digits.x_test[:16]
    assert np.max(np.abs(run_litert(f32, x) - model.predict(x, verbose=0))) < 1e-4
    assert "SHAPE" not in _operators(f32) and "PACK" not in _operators(f32)  # static batch 1
    _assert_serving_signature_runs(f32, x[:1])


def _assert_serving_signature_runs(tflite: bytes, x: np.ndarray) -> None:
    """LiteRT's signature runner (its documented way to call a model) finds "serving_default", keyed as a
    SavedModel's signature would be, and gives what invoking the interpreter gives."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from keras_mbv2.tflite.flatbuffer import io_details
    from keras_mbv2.tflite.runtime import quantize_input

    interpreter = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["x"], "outputs": ["output_0"]}}
    x = quantize_input(x, io_details(tflite))
    out = interpreter.get_signature_runner()(x=x)["output_0"]
    np.testing.assert_array_equal(out, run_litert(tflite, x))


RESUME_SCRIPT = textwrap.dedent("""
    import hashlib, os, sys
    import numpy as np, keras, tf_keras
    import keras_mbv2 as K
    from keras_mbv2.quantization import quantize_aware, fit_qat
    out, kill_after = sys.argv[1], int(sys.argv[2])
    keras.utils.set_random_seed(0)
    x = np.random.rand(64, 32, 32, 1).astype("float32"); y = np.random.randint(0, 10, 64)

    class Kill(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == kill_after:
                os._exit(9)  # die like a killed job: no cleanup, no return

        def on_train_begin(self, logs=None):
            print("STARTED", flush=True)

        def on_epoch_begin(self, epoch, logs=None):
            print("EPOCH", epoch, flush=True)

    qat = quantize_aware(K.MobileNetV1(input_shape=(32, 32, 1), alpha=0.25, classes=10, dropout=float(sys.argv[3])))
    fit_qat(qat, x, y, out, epochs=4, batch_size=32, callbacks=[Kill()], verbose=0)
    print("DONE", hashlib.sha256(b"".join(w.tobytes() for w in qat.get_weights())).hexdigest(), flush=True)
""")


def test_killed_qat_run_resumes_without_losing_or_repeating_an_epoch_and_ends_as_if_never_stopped(tmp_path):
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    out = str(tmp_path / "run")
    first = subprocess.run([sys.executable, str(script), out, "2", "0"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 9, first.stderr[-2000:]
    assert [line for line in first.stdout.splitlines() if line.startswith("EPOCH")] == ["EPOCH 0", "EPOCH 1"]
    second = subprocess.run([sys.executable, str(script), out, "0", "0"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert [line for line in second.stdout.splitlines() if line.startswith("EPOCH")] == ["EPOCH 2", "EPOCH 3"]
    with open(os.path.join(out, "history.csv")) as f:
        assert [int(line.split(",")[0]) for line in f.read().splitlines()[1:]] == [0, 1, 2, 3]
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == [f"epoch_00{i}.h5" for i in (1, 2, 3, 4)]
    # and it ends with the weights of a run never stopped, bit for bit (each epoch's batches from (seed, epoch); no
    # Dropout, whose masks tf_keras draws from a stream the backup does not hold)
    whole = subprocess.run([sys.executable, str(script), str(tmp_path / "whole"), "0", "0"], capture_output=True,
                           text=True, timeout=600)
    done = [line for line in second.stdout.splitlines() if line.startswith("DONE")]
    assert done and done == [line for line in whole.stdout.splitlines() if line.startswith("DONE")], whole.stdout


DISTRIBUTED_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras_mbv2 as K
    from keras_mbv2.quantization import quantize_aware, fit_qat, to_tflite, require_int8
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x = np.random.rand(64, 32, 32, 1).astype("float32"); y = np.random.randint(0, 10, 64)
    qat = quantize_aware(K.MobileNetV1(input_shape=(32, 32, 1), alpha=0.25, classes=10), strategy=strategy)
    calls, step = [], type(qat).train_step  # one call per replica per trace of the training step
    qat.train_step = (lambda self, data: calls.append(1) or step(self, data)).__get__(qat)
    rows = fit_qat(qat, x, y, sys.argv[1], epochs=1, batch_size=16, strategy=strategy, verbose=0)
    require_int8(to_tflite(qat, x[:8], num_calibration=8))
    print("REPLICAS", strategy.num_replicas_in_sync, "EPOCHS", len(rows), "TRACES",
          len(calls) // strategy.num_replicas_in_sync, flush=True)
""")


def test_qat_under_mirrored_strategy_on_two_cpu_devices(tmp_path):
    script = tmp_path / "dist.py"
    script.write_text(DISTRIBUTED_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # the first step traced once: the slots, loss and metrics built before (qat._build_before_tracing), not twice
    assert "REPLICAS 2 EPOCHS 1 TRACES 1" in result.stdout, result.stdout[-2000:]


def test_qat_model_saves_and_loads_under_quantize_scope(tmp_path):
    import tf_keras

    qat = quantize_aware(TINY["MobileNetV1"]())
    path = str(tmp_path / "qat.h5")
    qat.save(path)
    with quantize_scope():
        loaded = tf_keras.models.load_model(path)
    x = np.random.rand(2, 32, 32, 1).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6)


class Scale(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


def test_a_run_folder_whose_path_is_a_glob_pattern_is_refused_before_training(tmp_path):
    qat = quantize_aware(TINY["MobileNetV1"]())
    x, y = np.random.rand(4, 32, 32, 1).astype("float32"), np.arange(4)
    with pytest.raises(ValueError, match=r"`out_dir` must not contain '\[' or '\]'.*Received: `out_dir` '.*run\[2\]'"):
        fit_qat(qat, x, y, str(tmp_path / "run[2]"), epochs=1)
    assert not (tmp_path / "run[2]").exists()


def test_unsupported_layer_is_named():
    inputs = keras.Input((32, 32, 1))
    x = K.layers.ConvBNAct(8)(inputs)
    x = Scale(name="my_scale")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(ValueError, match="'my_scale'.*Scale.*built-in"):
        quantize_aware(model)


@pytest.fixture(scope="module")
def float_tflite():
    return to_tflite(TINY["MobileNetV1"](), quantize="float")


def test_bad_conversion_and_evaluation_inputs(float_tflite, tmp_path, digits):
    model = TINY["MobileNetV1"]()
    with pytest.raises(ValueError, match="representative_data` is empty"):
        to_tflite(model, np.zeros((0, 32, 32, 1), "float32"))
    with pytest.raises(ValueError, match="representative_data=None"):
        to_tflite(model, None)
    with pytest.raises(ValueError, match="quantize='int4'"):
        to_tflite(model, digits.x_train[:4], quantize="int4")
    with pytest.raises(ValueError, match="must be a full-int8 model.*float32 input"):
        require_int8(float_tflite)
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        read_tflite(b"this is not a model at all")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_tflite(float_tflite[: len(float_tflite) // 3])
    with pytest.raises(ValueError, match="does not exist"):
        read_tflite(str(tmp_path / "missing.tflite"))
    with pytest.raises(ValueError, match="runtime='gpu'"):
        evaluate_tflite(float_tflite, digits.x_test[:2], digits.y_test[:2], runtime="gpu")
    with pytest.raises(ValueError, match=r"x.shape=\(2, 16, 16, 1\)"):
        evaluate_tflite(float_tflite, np.zeros((2, 16, 16, 1)), np.zeros(2))


def test_tflm_failure_in_child_is_an_error_here(float_tflite):
    with pytest.raises(RuntimeError, match="TFLite Micro .*calling process is unaffected"):
        run_tflm(float_tflite, np.zeros((1, 32, 32, 1), "float32"), arena_size=64)


def test_load_digits():
    a = load_digits(image_size=24, channels=3)
    b = load_digits(image_size=24, channels=3)
    assert a.x_train.shape[1:] == (24, 24, 3) and a.x_train.dtype == np.float32
    assert len(a.x_train) + len(a.x_test) == 1797 and set(np.unique(a.y_test)) == set(range(10))
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    np.testing.assert_array_equal(a.x_test, b.x_test)
    with pytest.raises(ValueError, match="channels=2"):
        load_digits(channels=2)


def _train_step_traces(model) -> list[int]:
    """A list that counts the Python calls of `model`'s train_step: one per trace of the training step."""
    calls: list[int] = []
    step = type(model).train_step

    def counted(self, data):
        calls.append(1)
        return step(self, data)

    model.train_step = counted.__get__(model)
    return calls


@pytest.mark.parametrize("path", ["float (compile_classifier)", "float read back (build_before_tracing)",
                                  "QAT (fit_qat)"])
def test_the_first_training_step_is_traced_once(path, digits, tmp_path):
    """Keras 3 on TensorFlow and tf_keras create the optimizer's and the compiled metrics' variables while tracing the
    first step, then trace it all again; the package builds them first (keras_mbv2.training.build_before_tracing,
    quantization.qat._build_before_tracing): one trace, half the time before the first step."""
    from keras_mbv2.training import build_before_tracing, compile_classifier

    x, y = digits.x_train[:64], digits.y_train[:64]
    model = compile_classifier(TINY["MobileNetV1"](), 1e-3)
    if path.startswith("float read back"):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        model.save(tmp_path / "m.keras")
        model = build_before_tracing(keras.models.load_model(tmp_path / "m.keras"))
    if path.startswith("QAT"):
        model = quantize_aware(model)
        calls = _train_step_traces(model)
        fit_qat(model, x, y, str(tmp_path / "run"), epochs=1, batch_size=32, verbose=0)
    else:
        calls = _train_step_traces(model)
        history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
        assert 0 <= history.history["accuracy"][0] <= 1  # the metric counts this run's steps only
    assert len(calls) == 1, f"the training step was traced {len(calls)} times"
