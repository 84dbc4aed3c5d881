"""Keras 3 backends: the blocks and networks on JAX (and PyTorch where installed), and models moving between them.

The suite runs on TensorFlow. Here the block and network tests run again in a child process on JAX (its CPU
wheel is a test dependency; a model trained on JAX and converted to int8 under TensorFlow is the README's
"Keras backends" block, which tests/test_readme.py runs and checks), and the same on PyTorch when torch is
installed, with a torch-trained model through the TensorFlow-only QAT and TFLite path (its wheel brings
~4.4 GB of CUDA libraries, too heavy for every CI run: `pip install torch` and run `pytest -m torch`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_mbv2 as K
from keras_mbv2.quantization import quantize_aware, run_litert, to_tflite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _on_backend(backend: str, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get(
        "PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


# Trains a small network one epoch on the backend, saves it, and records its outputs.
TRAIN_AND_SAVE = textwrap.dedent("""
    import sys
    import keras, numpy as np
    import keras_mbv2 as K
    from keras_mbv2.datasets import load_digits
    assert keras.backend.backend() == sys.argv[2], keras.backend.backend()
    keras.utils.set_random_seed(0)
    d = load_digits(image_size=32)
    m = K.MobileNetV2((32, 32, 1), alpha=0.35, classes=10, bn_momentum=0.9)
    m.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    m.fit(d.x_train[:128], d.y_train[:128], epochs=1, batch_size=32, verbose=0)
    m.save(sys.argv[1] + "/model.keras")
    np.save(sys.argv[1] + "/outputs.npy", np.asarray(m.predict(d.x_test[:16], verbose=0)))
""")


def _model_from_backend(backend: str, tmp_path):
    """Train and save on `backend` in a child process; load under TensorFlow here and check it there."""
    script = tmp_path / "train.py"
    script.write_text(TRAIN_AND_SAVE)
    result = _on_backend(backend, str(script), str(tmp_path), backend)
    assert result.returncode == 0, result.stderr[-3000:]
    from keras_mbv2.datasets import load_digits

    d = load_digits(image_size=32)
    # compile=False: the saved optimizer's config names the training backend's optimizer class, and importing
    # torch into this TensorFlow process crashes it (segmentation fault, torch 2.14 with TensorFlow 2.21)
    model = keras.models.load_model(tmp_path / "model.keras", compile=False)
    np.testing.assert_allclose(model.predict(d.x_test[:16], verbose=0), np.load(tmp_path / "outputs.npy"),
                               atol=1e-5)
    qat = quantize_aware(model)  # QAT and TFLite need TensorFlow: the .keras file carries the model over
    assert qat.count_params() > model.count_params()
    float_tflite = to_tflite(model, quantize="float")
    np.testing.assert_allclose(run_litert(float_tflite, d.x_test[:4]), model.predict(d.x_test[:4], verbose=0),
                               atol=1e-5)


def _backend_tests() -> list[str]:
    """On another backend, for every block class: our harness (a training step, .keras save and reload with equal
    outputs) and Keras' run_layer_test (mixed precision included); every family's .keras round trip, and the
    parameter counts (the same goldens as on TensorFlow) of all but NASNetMobile, whose 26 s build on JAX adds
    nothing its cells' tests here do not check. Every case of every block runs on TensorFlow."""
    from test_layers import CASES, _case_id

    first_of_each = {}
    for case in CASES:
        first_of_each.setdefault(case[0], case)
    return ["tests/test_models.py::test_keras_round_trip_per_family",
            *(f"tests/test_models.py::test_four_builders_param_counts_on_any_backend[{family}]"
              for family in ("MobileNetV2", "MobileNetV1", "ShuffleNetV1")),
            *(f"tests/test_layers.py::{test}[{_case_id(case)}]" for case in first_of_each.values()
              for test in ("test_block_harness", "test_keras_run_layer_test_with_mixed_precision"))]


BACKEND_TESTS = _backend_tests()


@pytest.mark.slow
def test_blocks_and_networks_tests_pass_on_jax():
    result = _on_backend("jax", "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *BACKEND_TESTS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1] and "failed" not in result.stdout.splitlines()[-1]


@pytest.mark.torch
def test_blocks_and_networks_tests_pass_on_torch():
    pytest.importorskip("torch", reason="PyTorch is not installed: pip install torch, then pytest -m torch")
    result = _on_backend("torch", "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *BACKEND_TESTS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.torch
def test_a_model_trained_on_torch_quantizes_and_converts_under_tensorflow(tmp_path):
    pytest.importorskip("torch", reason="PyTorch is not installed: pip install torch, then pytest -m torch")
    _model_from_backend("torch", tmp_path)


def test_builders_take_a_mixed_precision_policy():
    model = K.MobileNetV2((32, 32, 3), alpha=0.35, classes=10, dtype="mixed_float16")
    out = model(np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"  # the classifier computes in float32
    assert model.get_layer("block_3").compute_dtype == "float16"
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in model.weights)
    np.testing.assert_allclose(np.sum(np.asarray(out), axis=-1), 1.0, atol=1e-3)


def test_the_profile_table_shows_each_blocks_paper_named_sublayers():
    model = K.MobileNetV2((96, 96, 3), alpha=0.35, classes=10)
    table = K.profile(model).table(expand_blocks=True)
    for name, shape in (("block_3/expand", "(24, 24, 48)"), ("block_3/depthwise", "(12, 12, 48)"),
                        ("block_3/project", "(12, 12, 16)")):
        line = next(line for line in table.splitlines() if line.strip().startswith(name))
        assert shape in line, line
    assert "block_3/expand" not in K.profile(model).table()
