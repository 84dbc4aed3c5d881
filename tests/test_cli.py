"""The `keras-mbv2` command line: help, exit codes, atomic outputs, and the paper comparison."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from harness import NATIVE_LINE

import keras_mbv2
from keras_mbv2 import cli

SUBCOMMANDS = ["demo", "build", "profile", "compare", "train", "qat", "export", "micro"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert "example: keras-mbv2" in capsys.readouterr().out


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_version_help_and_usage_errors_answer_without_tensorflow():
    """`--help`, `--version` and a bad value answer from the parser alone: no Keras, no TensorFlow imported."""
    probe = textwrap.dedent("""
        import sys
        from keras_mbv2 import cli
        for argv in (["--version"], ["--help"], ["micro", "--help"], ["build", "--width", "x", "--out", "m.keras"]):
            try:
                cli.main(argv)
            except SystemExit:
                pass
        print("LOADED", sorted(m for m in ("tensorflow", "keras", "jax", "tf_keras") if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().endswith("LOADED []"), result.stdout[-500:] + result.stderr[-500:]
    exe = shutil.which("keras-mbv2") or pytest.fail("the keras-mbv2 console script is not installed")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout == f"keras-mbv2 {keras_mbv2.__version__}\n"


# usage errors about files and folders, each answered before Keras or TensorFlow load (the three first)
FILE_ERRORS = [
    (["micro", "--tflite", "missing.tflite", "--out", "x"], "--tflite file does not exist"),
    (["train", "--data", "/nonexistent", "--out", "m.keras"], "--data must be 'digits' or an image folder"),
    (["demo", "--out", "."], "--out must not be the current folder"),
    (["qat", "--model", "nope.keras", "--run-dir", "r", "--tflite", "q.tflite"], "--model file not found"),
    (["export", "--model", "nope.keras", "--out", "m.tflite"], "--model file not found"),
    (["profile", "--model", "nope.keras"], "--model file not found"),
    (["micro", "--model", "nope.keras", "--fit-ram", "90000", "--out", "x"], "--model file not found"),
    (["micro", "--tflite", ".", "--out", "x"], "--tflite is a folder"),
    (["search", "--board", "arduino-nano-33-ble", "--data", "nowhere"], "--data must be 'digits'"),
    (["check-app", "--log", "nope.log", "--dir", "d"], "--log file not found"),
    (["figures", "--out", "."], "--out must not be the current folder"),
    (["build", "--out", "m.tflite"], "--out must end with .keras"),
]


def test_usage_errors_about_files_answer_before_tensorflow_loads(tmp_path):
    probe = textwrap.dedent(f"""
        import sys
        from keras_mbv2 import cli
        codes = [cli.main(argv) for argv in {[argv for argv, _ in FILE_ERRORS]!r}]
        print("CODES", codes)
        print("LOADED", sorted(m for m in ("tensorflow", "keras", "jax", "tf_keras") if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert f"CODES {[2] * len(FILE_ERRORS)}" in result.stdout, result.stdout[-500:] + result.stderr[-2000:]
    assert result.stdout.strip().endswith("LOADED []"), result.stdout[-500:]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == len(FILE_ERRORS)
    for line, (_, fragment) in zip(errors, FILE_ERRORS):
        assert fragment in line, (line, fragment)


def test_every_flag_has_help_and_shows_its_default():
    parser = cli.make_parser()
    for name, sub in parser.commands.items():
        text = sub.format_help()
        for action in sub._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            assert action.help, f"keras-mbv2 {name} {action.option_strings[-1]} has no help text"
            shown = action.required or action.default in (None, False, argparse.SUPPRESS)
            assert shown or f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)


def test_the_package_keeps_tensorflows_start_up_lines_off_the_terminal():
    """`import keras_mbv2` first, then Keras and TensorFlow as a user would: nothing native on stderr (the CUDA
    probe's `E0000 ... failed call to cuInit` included); KERAS_MBV2_VERBOSE=1 lets the lines through."""
    code = "import keras_mbv2\nimport keras\nimport tensorflow as tf\nprint(float(keras.ops.sum(tf.ones(3))))"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "3.0", quiet.stderr[-2000:]
    assert not NATIVE_LINE.search(quiet.stderr), quiet.stderr[-2000:]
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**env, "KERAS_MBV2_VERBOSE": "1"})
    assert NATIVE_LINE.search(loud.stderr), loud.stderr[-2000:]  # the check itself sees the lines


def run_cli(argv):
    """Exit code of `keras-mbv2 ARGV`, whether argparse exits or main returns."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def test_build_then_profile(tmp_path, capsys):
    out = str(tmp_path / "m.keras")
    assert cli.main(["build", "--network", "mobilenet_v2", "--width", "0.35", "--input-shape", "96x96x3",
                     "--classes", "10", "--out", out]) == 0
    assert os.listdir(tmp_path) == ["m.keras"]
    assert cli.main(["profile", "--model", out]) == 0
    text = capsys.readouterr().out
    assert "InvertedResidual" in text and "<- peak" in text


def test_entry_point_installed():
    exe = shutil.which("keras-mbv2") or pytest.fail("the keras-mbv2 console script is not installed")
    result = subprocess.run([exe, "compare", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Tables 3 and 4" in result.stdout


def test_compare_reproduces_table4(capsys):
    assert cli.main(["compare"]) == 0
    text = capsys.readouterr().out
    rows = {line.split("  ")[0].strip(): line for line in text.splitlines() if "M" in line and "%" in line}
    for name in ("MobileNetV1", "NASNet-A", "MobileNetV2", "ShuffleNet (x2)"):
        diff = float(rows[name].split("%")[0].split()[-1])
        assert abs(diff) <= 1.5, rows[name]


def test_failed_step_exits_1_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("calibration exploded")

    monkeypatch.setattr("keras_mbv2.datasets.load_digits", broken)  # the demo's first step
    out = tmp_path / "demo"
    assert run_cli(["demo", "--out", str(out), "--epochs", "1", "--qat-epochs", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("RuntimeError: calibration exploded") and len(err.splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_training_says_where_it_is_within_an_epoch_when_not_on_a_terminal():
    """Keras' progress bar on a terminal; in a log, a step line every STEP_INTERVAL seconds and one per epoch;
    nothing with --quiet."""
    import io

    import keras

    from keras_mbv2.training import fit_progress, step_progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert fit_progress(keras.callbacks.Callback, 2, print, stream=Terminal()) == (1, [])
    assert fit_progress(keras.callbacks.Callback, 2, print, quiet=True) == (0, [])
    verbose, callbacks = fit_progress(keras.callbacks.Callback, 2, print, stream=io.StringIO())
    assert verbose == 0 and len(callbacks) == 1
    lines = []
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.zeros((64, 4), "float32"), np.zeros(64, "int64")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[step_progress(keras.callbacks.Callback, 2,
                                                                                 lines.append, interval=0)])
    assert re.fullmatch(r"epoch 1/2  step 1/4  loss [\d.]+  ~0:0\d left in the epoch", lines[0]), lines
    assert [line.split("  ")[0] for line in lines].count("epoch 2/2") == 4 + 1  # 4 steps, then the epoch's line
    assert re.fullmatch(r"epoch 2/2  \d+ s  loss [\d.]+", lines[-1]), lines[-1]


@pytest.mark.parametrize("argv,epochs", [
    ([], (15, 3)),
    (["--quick"], (3, 1)),
    (["--quick", "--epochs", "1"], (1, 1)),  # a flag given applies with --quick too
    (["--qat-epochs", "2"], (15, 2)),
])
def test_demo_quick_sets_only_the_epochs_not_given(argv, epochs, monkeypatch, tmp_path):
    import keras_mbv2.demo

    seen = {}

    def fake_run_demo(out, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before any work: only the arguments matter here

    monkeypatch.setattr(keras_mbv2.demo, "run_demo", fake_run_demo)
    assert cli.main(["demo", "--out", str(tmp_path / "d"), *argv]) == 130
    assert (seen["epochs"], seen["qat_epochs"]) == epochs
