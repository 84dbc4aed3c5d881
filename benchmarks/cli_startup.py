"""How fast the command line answers: `keras-mbv2 --help`, `--version` and a usage error, against importing Keras.

Run: python benchmarks/cli_startup.py [--repeats 5] [--before /path/to/an/older/checkout] [--out FILE.md]
Each command runs `--repeats` times, interleaved with the others (this machine is noisy: one run measures all of
them side by side); prints each one's median wall time and its ratio to `import keras_mbv2, keras` (what every
command paid before the parser stopped importing Keras and TensorFlow). With `--before`, also times
`keras-mbv2 --help` of that checkout (PYTHONPATH), the before-and-after pair.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def _time(argv: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, env=env, check=False, cwd=cwd)
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 2):  # 2: the usage error measured on purpose
        sys.exit(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", default=None, help="a checkout of an earlier keras_mbv2 to time its --help")
    parser.add_argument("--out", default=None, help="also write the table as markdown here")
    args = parser.parse_args()
    exe = shutil.which("keras-mbv2") or sys.exit("the keras-mbv2 console script is not installed")
    env = dict(os.environ)
    cases = {
        "keras-mbv2 --help": ([exe, "--help"], env),
        "keras-mbv2 --version": ([exe, "--version"], env),
        "keras-mbv2 build --width x (usage error)": ([exe, "build", "--width", "x", "--out", "m.keras"], env),
        # usage errors about files: checked before Keras and TensorFlow load
        "keras-mbv2 micro --tflite missing.tflite --out x": ([exe, "micro", "--tflite", "missing.tflite", "--out",
                                                             "x"], env),
        "keras-mbv2 train --data /nonexistent --out m.keras": ([exe, "train", "--data", "/nonexistent", "--out",
                                                               "m.keras"], env),
        "keras-mbv2 demo --out .": ([exe, "demo", "--out", "."], env),
        "python -c 'import keras_mbv2, keras'": ([sys.executable, "-c", "import keras_mbv2, keras"], env),
    }
    if args.before:
        cases["keras-mbv2 --help of --before"] = ([sys.executable, "-c", "from keras_mbv2.cli import main; main()",
                                                   "--help"], {**env, "PYTHONPATH": args.before})
    times: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as cwd:  # not the checkout: `python -c` would import keras_mbv2 from there
        for _ in range(args.repeats):
            for name, (argv, run_env) in cases.items():
                times[name].append(_time(argv, run_env, cwd))
    keras_import = statistics.median(times["python -c 'import keras_mbv2, keras'"])
    rows = ["| command | median wall time (s) | / `import keras_mbv2, keras` |", "| --- | --- | --- |"]
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(f"| `{name}` | {median:.3f} | {median / keras_import:.3f} |")
    text = "\n".join(["# How fast the command line answers", "", *rows, "",
                      f"{args.repeats} runs each, interleaved, one process at a time; {os.cpu_count()} CPUs. "
                      "Regenerate: `python benchmarks/cli_startup.py --out benchmarks/CLI_STARTUP.md`.", ""])
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
