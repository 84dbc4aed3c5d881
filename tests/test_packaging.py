"""The package as users install it: a built wheel in a new virtual environment, outside the checkout, and the
README's first command run from it.

A clone installed with `pip install -e .` hides what a wheel leaves out (the firmware sources, a data file) and
what only the checkout's folder provides. Here `python -m build` makes the wheel and the sdist, the wheel goes into
a new virtual environment that already has TensorFlow, Keras and the rest of what the package needs (the suite's
own, less keras_mbv2: the environment a Keras user installs into; a fresh `.ci/run` installs them all from their
declared ranges, and tests/test_dependencies.py checks every import is declared), and from an empty folder
elsewhere the quick start's `keras-mbv2 demo` runs as printed and a firmware project is written whose model
objects compile with arm-none-eabi-g++.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from keras_mbv2.demo import SEED_SPREAD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_DEMO = re.compile(r"<!-- the demo's table[^\n]*\n```\n(.*?)```", re.S)


def _run(argv: list[str], cwd: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _site_packages(venv) -> str:
    return str(next((venv / "lib").glob("python3*")) / "site-packages")


def _environment_with_the_dependencies(tmp_path):
    """A new virtual environment that already has every package the suite's has, keras_mbv2 excepted: a folder of
    links to the suite's site-packages entries (not its .pth files, not keras_mbv2's own) on its path."""
    import sysconfig

    venv, deps = tmp_path / "venv", tmp_path / "dependencies"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=str(tmp_path))
    deps.mkdir()
    suite = sysconfig.get_paths()["purelib"]
    for name in os.listdir(suite):
        own = "keras_mbv2" in name.lower().replace("-", "_") or name.startswith("__editable__")
        if own or name.endswith(".pth") or name == "pip" or name.startswith("pip-"):  # the new venv has its own pip
            continue
        os.symlink(os.path.join(suite, name), deps / name)
    with open(os.path.join(_site_packages(venv), "suite_dependencies.pth"), "w") as f:
        f.write(f"{deps}\n")
    return venv


def _check_the_demo(result: subprocess.CompletedProcess, folder, exe: str) -> None:
    """The README's first command, `keras-mbv2 demo` with its defaults, run in the empty `folder`: it writes
    report.md, both plots and the micro files, and prints the result table the README shows."""
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    for stage in ("float (Keras)", "PTQ int8 (TFLite)", "QAT int8 (TFLite)", "QAT int8 (TFLite Micro)"):
        line = next(line for line in text.splitlines() if line.startswith(stage))
        assert float(line.split()[len(stage.split())].rstrip("%")) > 85, line  # 15 float and 3 QAT epochs
    assert re.search(r"\(outputs identical on all 360 images\)|predictions agree on 3\d\d of 360\)", text), text
    # The README's table is what the command prints: sizes exactly; accuracies within the measured seed spread
    # (the same on one machine: seeded, deterministic kernels; another CPU's kernels may round differently)
    printed = _table(text)
    readme = _table(README_DEMO.search(open(os.path.join(ROOT, "README.md")).read()).group(1))
    for row in ("flash (model array)", "RAM (TFLM arena)", "MAdds", "params", "seed"):
        assert printed[row] == readme[row], (row, printed[row], readme[row])
    for row, stage in (("float (Keras)", "float"), ("PTQ int8 (TFLite)", "PTQ int8"), ("QAT int8 (TFLite)", "QAT int8"),
                       ("QAT int8 (TFLite Micro)", "QAT int8")):
        points = abs(float(printed[row].split("%")[0]) - float(readme[row].split("%")[0]))
        assert points <= SEED_SPREAD[stage], (row, printed[row], readme[row])
    out = folder / "keras-mbv2-demo"
    assert sorted(os.listdir(folder)) == ["keras-mbv2-demo"]  # no temporary folder left
    assert {"report.md", "accuracy.png", "memory.png", "model_int8.tflite", "model_float.keras", "micro"} <= set(
        os.listdir(out))
    assert sorted(os.listdir(out / "micro")) == ["model_data.cc", "model_data.h", "model_op_resolver.h",
                                                  "model_report.txt", "model_settings.h"]
    for png in ("accuracy.png", "memory.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "![accuracy per stage](accuracy.png)" in report and "![TFLM arena per operator](memory.png)" in report
    assert "1437 training and 360 test images" in report and "15 epochs, Adam 2e-3" in report
    arena = re.search(r"RAM \(TFLM arena\)\s+([\d,]+) B \(([\d,]+) activations \+ ([\d,]+) persistent", text)
    total, head, tail = (int(g.replace(",", "")) for g in arena.groups())
    assert head > 0 and tail > head and total == -(-(head + tail + 1024) // 16) * 16  # measured + margin
    assert f"{total:,} B = {head:,} activations + {tail:,} persistent + margin" in report

    # an existing non-empty folder is not overwritten without --force
    before = sorted(os.listdir(out))
    again = subprocess.run([exe, "demo", "--epochs", "1"], cwd=folder, capture_output=True, text=True)
    assert again.returncode == 2 and "--force" in again.stderr
    assert sorted(os.listdir(out)) == before


def _table(text: str) -> dict[str, str]:
    """The demo's two-column table: row name -> value."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^(\S.*?) {2,}(\S.*)$", text, re.M)}


@pytest.mark.slow
def test_the_built_wheel_runs_the_quick_start_demo_and_deploys_outside_the_checkout(tmp_path):
    """The wheel and the sdist carry one copy of the firmware (micro/); the wheel installs into an environment that
    has the dependencies (pip adds only keras_mbv2), runs the README's `keras-mbv2 demo` as printed in an empty
    folder elsewhere (the demo's table, files and report: `_check_the_demo`), and writes a firmware project from the
    demo's int8 model whose model objects compile for a Cortex-M4."""
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

    venv = _environment_with_the_dependencies(tmp_path)
    python, exe = str(venv / "bin" / "python"), str(venv / "bin" / "keras-mbv2")
    _run([python, "-m", "pip", "install", "-q", str(wheel)], cwd=str(tmp_path))
    installed = {d.split("-")[0] for d in os.listdir(_site_packages(venv)) if d.endswith(".dist-info")}
    assert installed <= {"keras_mbv2", "pip", "setuptools"}, installed  # the dependencies were there: none again
    work = tmp_path / "user"
    work.mkdir()
    where = _run([python, "-c", "import keras_mbv2; print(keras_mbv2.__file__, keras_mbv2.__version__)"], str(work))
    location, version = where.stdout.split()
    assert location.startswith(str(venv)) and not location.startswith(ROOT), location  # the wheel, not the clone
    assert _run([exe, "--version"], str(work)).stdout.strip() == f"keras-mbv2 {version}"

    # the README's first command as printed, in the empty folder (the demo's own checks: _check_the_demo)
    _check_the_demo(_run([exe, "demo"], str(work)), work, exe)
    _run([exe, "micro", "--tflite", "keras-mbv2-demo/model_int8.tflite", "--project", "p", "--board",
          "arduino-nano-33-ble"], str(work))
    project = {os.path.relpath(os.path.join(d, f), str(work / "p")) for d, _, fs in os.walk(work / "p") for f in fs}
    firmware = {f for f in micro if f != "README.md"} | {"FIRMWARE.md"}  # micro/README.md is the project's FIRMWARE.md
    assert firmware <= project and all(f.startswith("model/") or f in ("README.md", "project.mk")
                                       for f in project - firmware), sorted(project - firmware)
    if shutil.which("arm-none-eabi-g++") is None:
        pytest.skip("gcc-arm-none-eabi is not installed: the project's model objects were not compiled")
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
