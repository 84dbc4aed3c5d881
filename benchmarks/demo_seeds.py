"""How much the demo's numbers vary from run to run: the default `keras-mbv2 demo` with seeds 0, 1 and 2.

Run: python benchmarks/demo_seeds.py [--seeds 0 1 2] [--out benchmarks/DEMO_SEEDS.md]
Writes a markdown table (each seed's accuracies, and the spread: best minus worst, in accuracy points). The
spread is what `keras_mbv2.demo.SEED_SPREAD` holds and what the demo's report rates differences against; the
README quotes the table. Also runs seed 0 twice to check that one seed gives one result. About 3 minutes a run
on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

import keras_mbv2  # noqa: F401 (first: TensorFlow's native start-up lines stay off the terminal)

# isort: split
import keras

from keras_mbv2.demo import DEFAULTS, run_demo
from keras_mbv2.files import write_file

STAGES = {"float": "float_accuracy", "PTQ int8": "ptq_accuracy", "QAT int8": "qat_accuracy",
          "QAT int8 on TFLM": "tflm_accuracy"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "DEMO_SEEDS.md"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run, seed in enumerate([args.seeds[0], *args.seeds]):
            print(f"seed {seed} (run {run + 1} of {len(args.seeds) + 1})", flush=True)
            result = run_demo(os.path.join(tmp, f"run{run}"), seed=seed, log=lambda m: None, **DEFAULTS)
            print(result.table(), flush=True)
            if run == 0:
                first = result
            else:
                results[seed] = result
    again = results[args.seeds[0]]
    same = all(getattr(first, a) == getattr(again, a) for a in STAGES.values()) and \
        first.tflm_agreement.differing == again.tflm_agreement.differing
    spread = {stage: 100 * (max(getattr(r, a) for r in results.values()) - min(getattr(r, a) for r in
                                                                                 results.values()))
              for stage, a in STAGES.items()}
    rows = ["| seed | " + " | ".join(STAGES) + " | run time |", "| --- |" + " --- |" * (len(STAGES) + 1)]
    for seed, r in results.items():
        rows.append(f"| {seed} | " + " | ".join(f"{getattr(r, a):.1%}" for a in STAGES.values())
                    + f" | {r.seconds:.0f} s |")
    rows.append("| spread (points) | " + " | ".join(f"{v:.1f}" for v in spread.values()) + " | |")
    text = "\n".join([
        "# The demo's run-to-run spread",
        "",
        f"`keras-mbv2 demo` with its defaults ({DEFAULTS['network']}, {DEFAULTS['image_size']}x"
        f"{DEFAULTS['image_size']}x1, {DEFAULTS['epochs']} float and {DEFAULTS['qat_epochs']} QAT epochs), "
        f"seeds {', '.join(map(str, args.seeds))}; {again.test_images} test images, so one image is "
        f"{100 / again.test_images:.2f} points. Spread = best minus worst. "
        f"Seed {args.seeds[0]} run twice: {'identical' if same else 'DIFFERENT'} accuracies.",
        "",
        *rows,
        "",
        f"Python {platform.python_version()}, Keras {keras.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs. Regenerate: `python benchmarks/demo_seeds.py`.",
        "",
    ])
    write_file(args.out, text.encode())
    print(text)
    print("SEED_SPREAD = {" + ", ".join(f'"{k}": {v:.1f}' for k, v in spread.items() if k != "QAT int8 on TFLM")
          + "}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
