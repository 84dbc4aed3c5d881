"""One interruption contract for every long command, as a user meets it: SIGINT (Ctrl-C) or SIGTERM at a given phase
stops the command within seconds, exit 130 / 143, with a last line that names only what exists, no lock or temporary
file left, and what finished kept: a QAT run's finished epochs are reused when the same command runs again (read from
its log: nothing trained twice) and it ends as an uninterrupted run. The search's stage-1 measurements and trials,
kept and reused over two interruptions: tests/test_search.py's example (the same `search` the command runs)."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest
from harness import SEARCH_MEASURED, signal_at

#: A small search (two input sizes of one row, one finalist), stopped after its first stage-1 measurement: the files
#: it keeps are that measurement (candidates.json) and the search's settings (search.json)
SEARCH = ["search", "--flash", "1048576", "--ram", "131072", "--widths", "0.35", "--sizes", "32,48", "--expansions",
          "6", "--finalists", "1", "--trial-epochs", "2", "--epochs", "2", "--qat-epochs", "1", "--out", "s"]


def _start(argv, cwd):
    return subprocess.Popen(["keras-mbv2", *argv], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _files(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, ds, fs in os.walk(folder) for f in fs)


# (the command, the phase's output line, the signal, the files the interrupted run leaves beside the inputs)
CASES = [
    (["train", "--data", "digits", "--width", "0.35", "--epochs", "3", "--out", "m.keras"], r"^epoch 1/3 ",
     signal.SIGTERM, []),
    (["demo", "--out", "d", "--quick"], r"^\[2/7\] float training", signal.SIGINT, []),
    (["figures", "--out", "f", "--quick"], r"^\[2/3\] figure4", signal.SIGTERM, []),
    (["micro", "--model", "m96.keras", "--fit-ram", "100000", "--data", "digits", "--out", "o"], r"^as built: arena",
     signal.SIGINT, []),
    (SEARCH, SEARCH_MEASURED.pattern, signal.SIGINT, ["s/candidates.json", "s/search.json"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv,phase,signum,left", CASES, ids=[" ".join(c[0][:1] + [c[2].name]) for c in CASES])
def test_a_signal_stops_the_command_within_seconds_and_leaves_only_what_exists(argv, phase, signum, left, tmp_path):
    inputs = []
    if "m96.keras" in argv:
        subprocess.run(["keras-mbv2", "build", "--width", "0.35", "--input-shape", "96x96x1", "--classes", "10",
                        "--out", "m96.keras"], cwd=tmp_path, check=True, capture_output=True)
        inputs = ["m96.keras"]
    code, out, err, seconds = signal_at(_start(argv, tmp_path), phase, signum)
    assert code == 128 + signum and seconds < 10, (code, seconds, err[-2000:])
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"keras-mbv2 {argv[0]}: interrupted"), last
    assert _files(tmp_path) == sorted(inputs + left), _files(tmp_path)  # no lock, no temporary file, no output


QAT = ["qat", "--model", "m.keras", "--epochs", "2", "--learning-rate", "3e-5"]


@pytest.mark.slow
def test_an_interrupted_qat_resumes_after_its_finished_epoch_and_ends_as_an_uninterrupted_run(tmp_path):
    """SIGINT after QAT's first epoch: exit 130, the run folder keeps that epoch (no lock, no --tflite); the same
    command again trains only the second epoch and writes the int8 model an uninterrupted run writes, byte for byte."""
    # MobileNetV2, not the smaller MobileNetV1: its Dropout draws other masks in a resumed run, and the int8 model
    # differs in a few bytes (measured with MobileNetV1 0.25)
    subprocess.run(["keras-mbv2", "train", "--data", "digits", "--width", "0.35", "--epochs", "2", "--out", "m.keras"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=600)
    whole = subprocess.run(["keras-mbv2", *QAT, "--run-dir", "whole", "--tflite", "whole.tflite"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]

    argv = [*QAT, "--run-dir", "run", "--tflite", "q.tflite"]
    code, out, err, seconds = signal_at(_start(argv, tmp_path), r"^epoch 1/2  \d+ s ", signal.SIGINT)
    assert code == 130 and seconds < 10, (code, seconds, err[-2000:])
    assert err.strip().splitlines()[-1] == ("keras-mbv2 qat: interrupted: 1 finished epoch is saved in run; run the "
                                            "same command again to resume (nothing was written to --tflite)")
    assert not os.path.exists(tmp_path / "q.tflite")
    left = _files(tmp_path / "run")
    assert "checkpoints/epoch_001.h5" in left and "history.csv" in left, left
    assert not [f for f in left if f.endswith(".lock") or "kmbv2-tmp" in f], left

    again = subprocess.run(["keras-mbv2", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    epochs = re.findall(r"^epoch (\d)/2  \d+ s ", again.stdout, re.M)  # each finished epoch's line
    assert epochs == ["2"], again.stdout[-3000:]  # the finished epoch is not trained again
    assert (tmp_path / "q.tflite").read_bytes() == (tmp_path / "whole.tflite").read_bytes()
