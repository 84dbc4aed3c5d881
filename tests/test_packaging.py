"""The package as users install it: a built wheel in a fresh virtual environment, outside the checkout.

A clone installed with `pip install -e .` hides what a wheel leaves out (the firmware sources, a data file) and
what only the checkout's folder provides. Here `python -m build` makes the wheel and the sdist, the wheel goes into
a brand-new virtual environment, and from an empty folder elsewhere the demo runs (`--quick`) and a firmware project
is written whose model objects compile with arm-none-eabi-g++.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(argv: list[str], cwd: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="gcc-arm-none-eabi is not installed")
def test_the_built_wheel_installs_and_deploys_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), ROOT], cwd=str(tmp_path))
    wheel = next(dist.glob("keras_mbv2-*.whl"))
    sdist = next(dist.glob("keras_mbv2-*.tar.gz"))
    with zipfile.ZipFile(wheel) as z:  # the firmware project ships inside the package
        names = set(z.namelist())
    assert {"keras_mbv2/firmware/Makefile", "keras_mbv2/firmware/app/model_runner.cc",
            "keras_mbv2/firmware/boards/mps2_an386.ld"} <= names
    with tarfile.open(sdist) as t:  # the sdist keeps the repository's layout: the firmware is micro/
        assert any(n.endswith("/micro/app/main.cc") for n in t.getnames())
    # one copy: the wheel's firmware is the repository's micro/, file for file
    micro = {os.path.relpath(os.path.join(d, f), os.path.join(ROOT, "micro"))
             for d, _, fs in os.walk(os.path.join(ROOT, "micro")) if "build" not in d.split(os.sep) for f in fs}
    assert {n[len("keras_mbv2/firmware/"):] for n in names if n.startswith("keras_mbv2/firmware/")} == micro

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=str(tmp_path))
    python, exe = str(venv / "bin" / "python"), str(venv / "bin" / "keras-mbv2")
    _run([python, "-m", "pip", "install", "-q", str(wheel)], cwd=str(tmp_path))
    work = tmp_path / "user"
    work.mkdir()
    where = _run([python, "-c", "import keras_mbv2; print(keras_mbv2.__file__, keras_mbv2.__version__)"], str(work))
    location, version = where.stdout.split()
    assert location.startswith(str(venv)) and not location.startswith(ROOT), location  # the wheel, not the clone
    assert _run([exe, "--version"], str(work)).stdout.strip() == f"keras-mbv2 {version}"

    demo = _run([exe, "demo", "--quick", "--out", "demo"], str(work)).stdout
    assert "QAT int8 (TFLite Micro)" in demo and (work / "demo" / "model_int8.tflite").is_file()
    _run([exe, "micro", "--tflite", "demo/model_int8.tflite", "--project", "p", "--board", "arduino-nano-33-ble"],
         str(work))
    project = {os.path.relpath(os.path.join(d, f), str(work / "p")) for d, _, fs in os.walk(work / "p") for f in fs}
    firmware = {f for f in micro if f != "README.md"} | {"FIRMWARE.md"}  # micro/README.md is the project's FIRMWARE.md
    assert firmware <= project and all(f.startswith("model/") or f in ("README.md", "project.mk")
                                       for f in project - firmware), sorted(project - firmware)
    _run(["make", "-s", "-C", "p", "model-objects", "TARGET_ARCH=cortex-m4"], str(work))
    assert (work / "p" / "build" / "cortex-m4" / "model_data.o").is_file()


def test_pyproject_lists_every_package_and_maps_the_firmware_to_micro():
    """pyproject.toml lists its packages (the firmware, `micro/`, has no __init__.py, so nothing finds it): a new
    subpackage missing from the list would be missing from the wheel."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    found = {os.path.relpath(d, ROOT).replace(os.sep, ".") for d, _, fs in os.walk(os.path.join(ROOT, "keras_mbv2"))
             if "__init__.py" in fs}
    assert set(setuptools["packages"]) == found | {"keras_mbv2.firmware"}
    assert setuptools["package-dir"] == {"keras_mbv2.firmware": "micro"}
    assert not os.path.exists(os.path.join(ROOT, "keras_mbv2", "firmware"))  # one copy: micro/
    from keras_mbv2.micro import firmware_dir

    assert os.path.samefile(firmware_dir(), os.path.join(ROOT, "micro"))


def test_every_test_timed_for_the_order_still_exists():
    """tests/durations.json orders the suite longest first (tests/conftest.py): a renamed test would lose its place
    and could start last, so every test it names is defined in the file it names."""
    import json
    import re

    with open(os.path.join(ROOT, "tests", "durations.json")) as f:
        seconds = json.load(f)["seconds"]
    for key in seconds:
        path, name = key.split("::")
        with open(os.path.join(ROOT, "tests", path)) as f:
            assert re.search(rf"^def {re.escape(name.split('[')[0])}\(", f.read(), re.M), key
