"""The `keras-mbv2` command line: help, exit codes, atomic outputs, and the paper comparison."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from keras_mbv2 import cli

SUBCOMMANDS = ["build", "profile", "compare"]


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
        (["build", "--width", "-1", "--out", "m.keras"], "alpha=-1.0"),
        (["build", "--network", "shufflenet_v1", "--groups", "5", "--out", "m.keras"], "groups=5"),
        (["build", "--input-shape", "96x96", "--out", "m.keras"], "--input-shape"),
        (["build", "--input-shape", "16x16x3", "--out", "m.keras"], "input_shape=(16, 16, 3)"),
        (["profile", "--model", "missing.keras"], "--model 'missing.keras'"),
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
