"""The README and the docs are code: their Python blocks and the command sequence run as printed, and so does every
example; the documentation site builds with warnings as errors.

Blocks are extracted from the markdown, so the text and the test cannot drift. A Python block preceded by a
comment naming an example file must equal that file's code (which `test_example_runs` runs); every other Python
block runs here in a fresh process, in an empty folder. The bash block marked for it runs line by line.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys

import pytest
from harness import NATIVE_LINE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
MARKER = re.compile(r"<!-- the same code as (examples/[\w.]+)")


def code_blocks(path: str, language: str) -> list[tuple[str, str]]:
    """(the line before the block, the block's code) for every ```language block of a markdown file."""
    with open(path) as f:
        text = f.read()
    found = []
    for match in re.finditer(rf"(?m)^([^\n]*)\n```{language}\n(.*?)^```$", text, re.S):
        found.append((match.group(1), match.group(2)))
    return found


def example_code(path: str) -> str:
    """An example file's code without its module docstring."""
    with open(path) as f:
        source = f.read()
    tree = ast.parse(source)
    start = tree.body[1].lineno - 1 if ast.get_docstring(tree) else 0
    return "\n".join(source.splitlines()[start:]).strip() + "\n"


#: Every markdown file a user reads: the README (the front door), the guides in docs/, the firmware's README.
MARKDOWN = [os.path.join(ROOT, "README.md"),
            *sorted(os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")),
            os.path.join(ROOT, "micro", "README.md")]
PYTHON_BLOCKS = [(os.path.relpath(md, ROOT), i, before, code) for md in MARKDOWN
                 for i, (before, code) in enumerate(code_blocks(md, "python"))]


def run_python(code: str, cwd: str, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("markdown,index,before,code", PYTHON_BLOCKS,
                         ids=[f"{m}-{i}" for m, i, _, _ in PYTHON_BLOCKS])
def test_python_block_runs_as_printed(markdown, index, before, code, tmp_path):
    marker = MARKER.search(before)
    if marker:  # the block is an example's code: equal to it, and run by test_example_runs
        assert code.strip() + "\n" == example_code(os.path.join(ROOT, marker.group(1)))
        return
    if "the suite runs this block on two workers" in before:  # tests/test_distribute.py runs it, on two processes
        return
    out = run_python(code, str(tmp_path)).stdout
    if "TRAIN_ON_JAX" in code:  # trained on JAX, converted to int8 under TensorFlow (the backends' handover)
        assert "training on jax data-parallel over 2 devices" in out, out
        assert float(re.search(r"int8 accuracy ([\d.]+)", out).group(1)) >= 0.8, out
    if "fit_ram(model, 160_000" in code:  # the memory-split block: the numbers its comments state
        lines = out.splitlines()
        assert lines[:4] == ["138240", "73728", "(73728, 'expanded_conv')", "3"], out
        assert "block_1=3" in out
    if "fit_ram(model, 125_000" in code:  # patches below the split floor, bit-exact, emitted for the app
        # the plan predicted fastest within the budget, and the RAM the text beside the block states
        assert "patches 4x4" in out and "= 122,016 B RAM" in out and out.strip().endswith("True"), out
        assert (tmp_path / "micro_patched" / "model_patches.h").is_file()


def test_the_readme_is_a_front_door_and_the_site_builds_strictly(tmp_path):
    """The README stays short (the guides live in docs/), every guide is in the site's navigation, and
    `mkdocs build --strict` (the API reference from the docstrings included) gives no warning."""
    import yaml

    with open(os.path.join(ROOT, "README.md")) as f:
        assert len(f.read().splitlines()) <= 200
    with open(os.path.join(ROOT, "mkdocs.yml")) as f:
        nav = {list(entry.values())[0] for entry in yaml.safe_load(f)["nav"]}
    assert nav == {f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("FitResult", "Profile", "LayerProfile", "TFLiteResult", "CellSpec", "Board", "InvertedResidual"):
        assert re.search(rf'id="keras_mbv2\.[\w.]*\b{name}"', api), name  # its own entry, with its docstring


def test_every_python_block_is_checked():
    assert len(PYTHON_BLOCKS) >= 4
    assert sum(bool(MARKER.search(before)) for _, _, before, _ in PYTHON_BLOCKS) == 2


@pytest.mark.slow
def test_command_sequence_runs_as_printed(tmp_path):
    """The README's command-line block, line by line in an empty folder: every step exits 0 and feeds the next."""
    blocks = [code for md in MARKDOWN for before, code in code_blocks(md, "bash")
              if "the suite runs this block" in before]
    assert len(blocks) == 1
    outputs = {}
    for line in blocks[0].splitlines():
        command = line.split("  #")[0].strip()
        if not command:
            continue
        result = subprocess.run(shlex.split(command), cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        outputs[shlex.split(command)[1]] = outputs.get(shlex.split(command)[1], "") + result.stdout
    assert "runs    NOT YET" in outputs["micro"] and "splits  block_1=3" in outputs["micro"]
    assert "board   arduino-nano-33-ble: fits" in outputs["micro"]
    assert {"m96.keras", "m96_split.keras", "m.keras", "m_int8.tflite", "m_ptq.tflite", "micro96", "micro_out",
            "qat_run"} <= set(os.listdir(tmp_path))
    with open(tmp_path / "micro96" / "model_settings.h") as f:
        assert int(f.read().split("kTensorArenaSize = ")[1].split(";")[0]) <= 160_000
    import keras

    from keras_mbv2.models import memory_splits_of

    assert memory_splits_of(keras.models.load_model(tmp_path / "m96_split.keras"))["block_1"] == 3
    accuracy = float(re.search(r"QAT int8 accuracy ([\d.]+)", outputs["qat"]).group(1))
    assert accuracy > 0.5, outputs["qat"]


# search_for_a_board.py runs in tests/test_search.py, as a user runs it: stopped by Ctrl-C, then run again;
# train_on_processes.py in tests/test_processes.py, alone and as two processes
EXAMPLE_FILES = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py")
                       and f not in ("search_for_a_board.py", "train_on_processes.py"))


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_runs(name, tmp_path):
    with open(os.path.join(EXAMPLES, name)) as f:
        docstring = ast.get_docstring(ast.parse(f.read()))
    assert docstring and "Shows:" in docstring and f"python examples/{name}" in docstring
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^Epoch 1/\d+$", out, re.M), out[:2000]  # alive from the first epoch on (verbose=2)
    assert not NATIVE_LINE.search(result.stderr), result.stderr[-2000:]  # quiet: `import keras_mbv2` first
    # every accuracy it prints (Keras' own epoch lines print fractions, not percentages)
    accuracies = [float(v) / 100 for v in re.findall(r"(?:accuracy|\(Keras\)|\(LiteRT\)|\(TFLite Micro\))[^\n%]*?"
                                                     r"([\d.]+)%", out)]
    assert accuracies and min(accuracies) >= 0.5, out[-3000:]  # no result at chance level (10% or 20%)
    if name == "quantization_aware_training.py":  # the README's QAT block: QAT int8 loses at most a point
        acc = {k: float(v) / 100 for k, v in re.findall(r"^(.+?)\s{2,}([\d.]+)%$", out, re.M)}
        assert acc["QAT int8 (LiteRT)"] >= acc["float (Keras)"] - 0.01, out
        assert acc["QAT int8 (TFLite Micro)"] == acc["QAT int8 (LiteRT)"], out
    elif name == "own_network.py":  # one network written two ways: both train
        assert re.findall(r"reloaded outputs differ by 0\.0e\+00", out) and len(re.findall("test accuracy", out)) == 2
        assert "inverted_residual" in out  # the summary lists the blocks
        assert min(accuracies) >= 0.85 and len(set(re.findall(r"([\d,]+) params", out))) == 1, out[-1000:]
    elif name == "microcontroller.py":
        assert "board   arduino-nano-33-ble: fits" in out and "splits  block_1=" in out
        assert sorted(os.listdir(tmp_path)) == ["nano33"] and "model_data.cc" in os.listdir(tmp_path / "nano33")
    elif name == "pretrained_weights.py":  # the carried weights compute the same features, and help
        difference = float(re.search(r"features: ([\d.e+-]+)", out).group(1))
        assert difference <= 1e-5, out
        fine = float(re.search(r"fine-tuned from the pre-trained weights\s+test accuracy ([\d.]+)%", out).group(1))
        scratch = float(re.search(r"trained from scratch\s+test accuracy ([\d.]+)%", out).group(1))
        assert fine > scratch, out[-1000:]
    elif name == "image_folder.py":
        assert "classes ('digit_0', 'digit_1', 'digit_2', 'digit_3', 'digit_4')" in out
