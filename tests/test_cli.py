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


def test_quick_start_demo_as_printed(tmp_path):
    """The README's first command, `keras-mbv2 demo` with its defaults, in an empty folder (the install is the
    suite's own): it writes report.md, both plots and the micro files, and prints the result table."""
    exe = shutil.which("keras-mbv2") or pytest.fail("the keras-mbv2 console script is not installed")
    result = subprocess.run([exe, "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    for stage in ("float (Keras)", "PTQ int8 (TFLite)", "QAT int8 (TFLite)", "QAT int8 (TFLite Micro)"):
        line = next(line for line in text.splitlines() if line.startswith(stage))
        assert float(line.split()[len(stage.split())].rstrip("%")) > 85, line  # 15 float and 3 QAT epochs
    assert re.search(r"\(outputs identical on all 360 images\)|predictions agree on 3\d\d of 360\)", text), text
    out = tmp_path / "keras-mbv2-demo"
    assert sorted(os.listdir(tmp_path)) == ["keras-mbv2-demo"]  # no temporary folder left
    assert {"report.md", "accuracy.png", "memory.png", "model_int8.tflite", "model_float.keras", "micro"} <= set(
        os.listdir(out))
    assert sorted(os.listdir(out / "micro")) == ["model_data.cc", "model_data.h", "model_op_resolver.h",
                                                  "model_report.txt", "model_settings.h"]
    for png in ("accuracy.png", "memory.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "![accuracy per stage](accuracy.png)" in report and "![TFLM arena per operator](memory.png)" in report
    assert "1437 training and 360 test images" in report and "15 epochs, Adam 2e-3" in report
    arena = re.search(r"arena bytes \(RAM\)\s+([\d,]+) \(([\d,]+) activations \+ ([\d,]+) persistent", text)
    total, head, tail = (int(g.replace(",", "")) for g in arena.groups())
    assert head > 0 and tail > head and total == -(-(head + tail + 1024) // 16) * 16  # measured + margin
    assert f"{total:,} B = {head:,} activations + {tail:,} persistent + margin" in report

    # an existing non-empty folder is not overwritten without --force
    before = sorted(os.listdir(out))
    again = subprocess.run([exe, "demo", "--epochs", "1"], cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 2 and "--force" in again.stderr
    assert sorted(os.listdir(out)) == before


def test_failed_step_exits_1_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("calibration exploded")

    monkeypatch.setattr("keras_mbv2.datasets.load_digits", broken)  # the demo's first step
    out = tmp_path / "demo"
    assert run_cli(["demo", "--out", str(out), "--epochs", "1", "--qat-epochs", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("RuntimeError: calibration exploded") and len(err.splitlines()) == 1
    assert os.listdir(tmp_path) == []
