"""Keras models the package did not build (keras.applications', a user's): profiled, converted to int8 and run on
TFLite Micro, or refused before any training in one complete line that names the layer (issue: a user's own
models)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_mbv2.models import recalibrate_batch_norms
from keras_mbv2.profiler import profile
from keras_mbv2.quantization import quantize_aware, to_tflite
from keras_mbv2.tflite import arena_use, io_details, operator_names, quantize_input, run_litert, run_tflm

X = np.random.default_rng(0).uniform(0, 1, (48, 32, 32, 3)).astype("float32")


def _applications(name):
    build = {
        "MobileNetV3Small": lambda: keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None,
                                                                         classes=4, alpha=0.75),
        "EfficientNetB0": lambda: keras.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=4),
        "ResNet50": lambda: keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classes=4),
    }[name]
    return recalibrate_batch_norms(build(), X)  # an untrained network's statistics would give degenerate scales


# (MobileNetV3Large has MobileNetV3Small's layers: benchmarks/APPLICATIONS.md runs it)
# model -> (operators its int8 model must hold: what TFLite fuses its activations into, the refusal of QAT: the
# layer named, its class) -- None where tfmot takes the model
CASES = {
    "MobileNetV3Small": ({"HARD_SWISH"}, ("layer 'activation", "(Activation)", "'hard_silu'")),
    "EfficientNetB0": ({"LOGISTIC", "MUL"}, ("'rescaling", "(Rescaling)")),
    "ResNet50": ({"CONV_2D", "ADD"}, None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_keras_applications_profile_and_convert_to_int8_that_runs_on_tflm(name):
    model = _applications(name)
    report = profile(model)
    assert report.params == model.count_params() and report.macs > 0 and report.peak_operator_bytes > 0
    assert not report.not_counted  # every layer with weights of these families is one the profiler knows
    assert "total" in report.table()
    # the conversion is the model's function: its float TFLite model gives the Keras model's scores
    floats = run_litert(to_tflite(model, quantize="float"), X[:4]).reshape(4, -1)
    np.testing.assert_allclose(floats, model.predict(X[:4], verbose=0), atol=1e-3)
    int8 = to_tflite(model, X[:16])
    assert CASES[name][0] <= set(operator_names(int8))
    use = arena_use(int8)
    assert use.cannot_run is None and use.total > report.peak_operator_bytes / 2, use
    # and the int8 model runs on TFLite Micro as on LiteRT's reference kernels (an untrained network's int8 scores
    # are not compared with its float ones: benchmarks/APPLICATIONS.md does that on trained ones)
    x = quantize_input(X[:4], io_details(int8))
    on_tflm, _ = run_tflm(int8, x)
    assert np.array_equal(on_tflm.reshape(4, -1), run_litert(int8, x).reshape(4, -1))


@pytest.mark.parametrize("name", [n for n, (_, refusal) in CASES.items() if refusal])
def test_quantization_aware_training_refuses_before_training_naming_the_layer(name):
    model = _applications(name)
    with pytest.raises(ValueError) as exc:
        quantize_aware(model)
    message = str(exc.value)
    assert "\n" not in message and message.endswith(".")
    for part in CASES[name][1]:
        assert part in message, message
    assert "keras-mbv2 export --quantize int8" in message  # what to do


def test_activations_tf_keras_names_otherwise_go_through_qat():
    """Keras 3's `silu` is tf_keras' `swish`, and `relu6` a ReLU(6): both quantize with tfmot."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, activation="silu")(inputs)
    x = keras.layers.Activation("relu6")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    qat = quantize_aware(model)  # checked equal to the Keras 3 model in float on the way
    assert qat.count_params() >= model.count_params()


def test_profile_names_the_layers_whose_macs_it_does_not_count():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.Conv2DTranspose(4, 3, strides=2, name="upsample")(x)
    x = x + 1.0  # a Keras op in the graph: an Operation without weights
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    report = profile(model)
    assert [lp.name for lp in report.not_counted] == ["upsample"]
    upsample = model.get_layer("upsample").count_params()
    note = report.not_counted_note()
    assert "upsample (Conv2DTranspose)" in note and f"{upsample:,} params" in note
    assert f"{upsample / model.count_params():.1%}" in note and note in report.table()


def test_the_command_line_profiles_exports_and_emits_mobilenet_v3_small(tmp_path, monkeypatch, capsys):
    """The issue's must-show, as a user types it: profile, export --quantize int8, micro on MobileNetV3Small."""
    from keras_mbv2 import cli

    monkeypatch.chdir(tmp_path)
    _applications("MobileNetV3Small").save("v3.keras")
    assert cli.main(["profile", "--model", "v3.keras"]) == 0
    assert cli.main(["export", "--model", "v3.keras", "--quantize", "int8", "--data", "digits",
                     "--out", "v3.tflite"]) == 0
    assert cli.main(["micro", "--tflite", "v3.tflite", "--out", "v3_micro"]) == 0
    out = capsys.readouterr().out
    assert "saved v3.tflite" in out and "AddHardSwish" in (tmp_path / "v3_micro" / "model_op_resolver.h").read_text()
