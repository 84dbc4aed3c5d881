"""Two QAT workers against one process, on one machine: `keras-mbv2 qat --multi-worker` (two worker processes,
TF_CONFIG on 127.0.0.1) and `keras-mbv2 qat` (one process), the same float model, data and settings.

Run: python benchmarks/multi_worker.py [--epochs 3] [--out benchmarks/MULTI_WORKER.md]
Writes a markdown table: seconds per QAT epoch (the mean of the epochs after the first, which traces), the throughput
ratio, and both int8 accuracies. On one 2-core machine the two workers share the cores, so the ratio measures the
overhead of the strategy (all-reduce over gRPC, two processes), not a speed-up: a real cluster runs one worker per
host. About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import keras_mbv2 as K

# isort: split
import keras

from keras_mbv2.datasets import load_digits
from keras_mbv2.distribute import free_ports
from keras_mbv2.files import write_file
from keras_mbv2.training import compile_classifier, reproducible


def epoch_seconds(text: str) -> list[float]:
    """The seconds of each epoch line (`epoch 2/3  13 s  ...`) a qat run printed."""
    return [float(v) for v in re.findall(r"^epoch \d+/\d+\s+(\d+) s", text, re.M)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "MULTI_WORKER.md"))
    args = parser.parse_args()
    exe = shutil.which("keras-mbv2")
    with tempfile.TemporaryDirectory() as tmp:
        reproducible(0)
        d = load_digits(32)
        model = compile_classifier(K.MobileNetV1((32, 32, 1), alpha=0.25, classes=10, bn_momentum=0.9), 2e-3)
        model.fit(d.x_train, d.y_train, epochs=8, batch_size=32, verbose=0)
        float_accuracy = float(model.evaluate(d.x_test, d.y_test, verbose=0)[1])
        model.save(os.path.join(tmp, "m.keras"))
        qat = ["qat", "--model", "m.keras", "--epochs", str(args.epochs)]
        start = time.perf_counter()
        one = subprocess.run([exe, *qat, "--run-dir", "one", "--tflite", "one.tflite"], cwd=tmp, capture_output=True,
                             text=True, check=True).stdout
        one_wall = time.perf_counter() - start
        ports = free_ports(2)
        start = time.perf_counter()
        workers = [subprocess.Popen(
            [exe, *qat, "--run-dir", "two", "--tflite", "two.tflite", "--multi-worker"], cwd=tmp,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                                        "task": {"type": "worker", "index": i}})})
            for i in range(2)]
        two = [w.communicate(timeout=1800)[0] for w in workers]
        two_wall = time.perf_counter() - start
        assert all(w.returncode == 0 for w in workers), two
    accuracy = {name: float(re.search(r"QAT int8 accuracy ([\d.]+)", text).group(1))
                for name, text in (("one", one), ("two", two[0]))}
    per_epoch = {name: sum(epoch_seconds(text)[1:]) / max(1, len(epoch_seconds(text)) - 1)
                 for name, text in (("one", one), ("two", two[0]))}
    images = len(d.y_train)
    ratio = per_epoch["one"] / per_epoch["two"]
    points = 100 * (accuracy["two"] - accuracy["one"])
    e1, e2, a1, a2 = per_epoch["one"], per_epoch["two"], accuracy["one"], accuracy["two"]
    text = f"""# Two QAT workers against one process, on one machine

`python benchmarks/multi_worker.py` on this machine ({os.cpu_count()} cores, {platform.machine()}), TensorFlow
{__import__('tensorflow').__version__}, Keras {keras.__version__}: MobileNetV1 0.25 at 32x32 on the digits
({images} training images), float {float_accuracy:.1%} after 8 epochs, then {args.epochs} QAT epochs at batch 32
(global: 16 per worker with two), the same commands but `--multi-worker` and TF_CONFIG.

| | one process | two workers (`--multi-worker`) | ratio |
| --- | ---: | ---: | ---: |
| seconds per QAT epoch (after the first) | {e1:.1f} | {e2:.1f} | {ratio:.2f}x throughput |
| whole command, start-up and conversion included | {one_wall:.0f} s | {two_wall:.0f} s | |
| QAT int8 test accuracy (LiteRT) | {a1:.1%} | {a2:.1%} | {points:+.1f} points |

On one 2-core machine the two workers share the same two cores, so the ratio is the overhead of the strategy
(gradients all-reduced over gRPC after every step, two processes, each batch split in two), not a speed-up. A real
cluster runs one worker per host, each with its own cores or accelerator, the same TF_CONFIG pattern with each
host's address, and the run folder on storage every worker reads (a shared filesystem): throughput then grows with
the workers as long as a step's compute outweighs its all-reduce.
"""
    write_file(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
