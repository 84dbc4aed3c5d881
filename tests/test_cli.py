"""The `keras-mbv2` command line: help, exit codes, atomic outputs, and the paper comparison."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from keras_mbv2 import cli

SUBCOMMANDS = ["demo", "build", "profile", "compare", "train", "qat", "export", "micro"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert "example: keras-mbv2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["build", "--network", "bogus", "--out", "m.keras"], "--network"),
        (["build", "--out", "m.h5"], "--out must end with .keras"),
        (["build", "--width", "-1", "--out", "m.keras"], "--width -1.0"),
        (["build", "--network", "shufflenet_v1", "--groups", "5", "--out", "m.keras"], "--groups 5"),
        (["build", "--input-shape", "96x96", "--out", "m.keras"], "--input-shape"),
        (["build", "--input-shape", "16x16x3", "--out", "m.keras"], "--input-shape (16, 16, 3)"),
        (["profile", "--model", "missing.keras"], "--model 'missing.keras'"),
        (["build", "--network", "mobilenet_v2", "--groups", "3", "--out", "m.keras"], "--groups 3"),
        (["demo", "--epochs", "0", "--out", "d"], "--epochs 0"),
        (["demo", "--out", "missing_parent/d"], "--out 'missing_parent/d'"),
        (["export", "--model", "nope.keras", "--out", "m.tflite"], "--model 'nope.keras'"),
        (["export", "--model", "m.keras", "--out", "m.bin"], "--out must end with .tflite"),
        (["micro", "--tflite", "missing.tflite", "--out", "o"], "missing.tflite"),
        (["train", "--data", "no_such_folder", "--out", "m.keras"], "--data 'no_such_folder'"),
    ],
)
def test_bad_usage_exits_2_with_one_line_and_no_file(argv, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = run_cli(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert fragment in err and len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == []


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


@pytest.mark.slow
def test_compare_reproduces_table4(capsys):
    assert cli.main(["compare"]) == 0
    text = capsys.readouterr().out
    rows = {line.split("  ")[0].strip(): line for line in text.splitlines() if "M" in line and "%" in line}
    for name in ("MobileNetV1", "NASNet-A", "MobileNetV2", "ShuffleNet (x2)"):
        diff = float(rows[name].split("%")[0].split()[-1])
        assert abs(diff) <= 1.5, rows[name]


def test_demo_fast_mode_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli(["demo", "--out", str(out), "--epochs", "1", "--qat-epochs", "1"]) == 0
    text = capsys.readouterr().out
    for stage in ("float (Keras)", "PTQ int8 (TFLite)", "QAT int8 (TFLite)", "QAT int8 (TFLite Micro)"):
        line = next(line for line in text.splitlines() if line.startswith(stage))
        assert line.split()[len(stage.split())].endswith("%")
        float(line.split()[len(stage.split())].rstrip("%"))
    assert re.search(r"\(outputs identical on all 360 images\)|predictions agree on 3\d\d of 360\)", text), text
    assert {"report.md", "accuracy.png", "memory.png", "model_int8.tflite", "model_float.keras", "micro"} <= set(
        os.listdir(out))
    assert sorted(os.listdir(out / "micro")) == ["model_data.cc", "model_data.h", "model_op_resolver.h",
                                                  "model_report.txt", "model_settings.h"]
    for png in ("accuracy.png", "memory.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![accuracy per stage](accuracy.png)" in (out / "report.md").read_text()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no temporary folder left

    # an existing non-empty folder is not overwritten without --force
    before = sorted(os.listdir(out))
    assert run_cli(["demo", "--out", str(out), "--epochs", "1"]) == 2
    assert "--force" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == before


def test_failed_step_exits_1_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("calibration exploded")

    monkeypatch.setattr("keras_mbv2.quantization.to_tflite", broken)
    out = tmp_path / "demo"
    assert run_cli(["demo", "--out", str(out), "--epochs", "1", "--qat-epochs", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("RuntimeError: calibration exploded") and len(err.splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_train_export_micro_chain(tmp_path, capsys):
    model, tflite, micro = str(tmp_path / "m.keras"), str(tmp_path / "m.tflite"), str(tmp_path / "micro")
    assert run_cli(["train", "--width", "0.35", "--epochs", "1", "--out", model]) == 0
    assert run_cli(["export", "--model", model, "--out", tflite]) == 0
    assert run_cli(["micro", "--tflite", tflite, "--out", micro, "--board", "nucleo-f746zg"]) == 0
    text = capsys.readouterr().out
    assert "board   nucleo-f746zg: fits" in text and "arena" in text
    assert run_cli(["micro", "--tflite", tflite, "--out", str(tmp_path / "m2"), "--board", "nowhere"]) == 2
