"""What the memory techniques buy a board-first search: `keras_mbv2.search` on three boards, with channel splits
and patches allowed and without them, side by side.

Run: python benchmarks/search_boards.py [--out benchmarks/SEARCH.md]
     python benchmarks/search_boards.py --segments   (the same searches with segments on too: rows printed)
Boards: arduino-nano-33-ble (256 KiB RAM, 1 MiB flash), nucleo-f746zg (320 KiB, 1 MiB) and a chip of 128 KiB RAM
and 1 MiB flash. Each search runs on the digits with the same grid (MobileNetV2, widths 0.35 and 0.5, input sizes
32 to 160, expansions 4 and 6) and the quick training settings (2 finalists, 2 trial epochs, 4 epochs, 1 QAT
epoch), seed 0. Writes a markdown table: the chosen model, its multiply-adds, device RAM and flash as emitted
(measured on the TFLite Micro host runtime), its float and int8 test accuracies, and the time. About 40 minutes
on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import keras_mbv2  # noqa: F401 (first: TensorFlow's native start-up lines stay off the terminal)

# isort: split
import keras

from keras_mbv2.files import write_file
from keras_mbv2.search import QUICK, SearchDoesNotFit, search

BOARDS = [("arduino-nano-33-ble", dict(board="arduino-nano-33-ble")),
          ("nucleo-f746zg", dict(board="nucleo-f746zg")),
          ("128 KiB RAM, 1 MiB flash", dict(flash=1024 * 1024, ram=128 * 1024))]
GRID = dict(widths=(0.35, 0.5), sizes=(32, 64, 96, 128, 160), expansions=(4, 6))
SETTINGS = {k: v for k, v in QUICK.items() if k != "budget_minutes"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "SEARCH.md"))
    parser.add_argument("--segments", action="store_true",
                        help="only the searches with segments on too (`segments=True`), their rows printed for "
                        "SEARCH.md's segments section; --out is not written")
    args = parser.parse_args()
    rows = []
    runs = [("splits + patches + segments", True, True)] if args.segments else [
        ("splits + patches", True, False), ("as built only", False, False)]
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, limits) in enumerate(BOARDS):
            for j, (label, techniques, segments) in enumerate(runs):
                print(f"{name}, {label} ({len(runs) * k + j + 1} of {len(runs) * len(BOARDS)})", flush=True)
                start = time.perf_counter()
                try:
                    r = search(os.path.join(tmp, f"{k}-{j}"), data="digits", memory_techniques=techniques,
                               segments=segments, budget_minutes=60, log=lambda m: None, **limits, **GRID,
                               **SETTINGS)
                except SearchDoesNotFit as exc:
                    rows.append((name, label, "nothing in the grid fits", "", "", "", "", "", "",
                                 f"{time.perf_counter() - start:.0f} s"))
                    print(f"  {exc}", flush=True)
                    continue
                c, b = r.chosen, r.as_built_best
                plain = "" if not techniques else "none" if b is None else (
                    f"{b.candidate.label}: {b.macs:,} (chosen / this: {c.macs / b.macs:.2f}x)")
                rows.append((name, label, c.candidate.label, c.technique, f"{c.macs:,}", plain, f"{r.ram_bytes:,}",
                             f"{r.flash_bytes:,}", f"{r.float_test_accuracy:.1%} / {r.tflm_test_accuracy:.1%}",
                             f"{r.seconds:.0f} s"))
                print(r.table(), flush=True)
    header = ["board", "search", "chosen", "plan", "MACs", "largest fitting as built, its MACs",
              "RAM B (TFLM, emitted)", "flash B (array)", "float / int8 on TFLM (test)", "time"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    if args.segments:
        print("\n".join(table))
        return 0
    text = f"""# Board-first search: what channel splits and patches buy

`python benchmarks/search_boards.py` on this machine ({os.cpu_count()} cores, {platform.machine()}), TensorFlow
{__import__('tensorflow').__version__}, Keras {keras.__version__}, Python {sys.version.split()[0]}. Each search:
the digits, MobileNetV2 widths {GRID['widths']}, input sizes {GRID['sizes']}, expansions {GRID['expansions']};
{SETTINGS['finalists']} finalists, {SETTINGS['trial_epochs']} trial epochs, {SETTINGS['epochs']} epochs for the
winner, {SETTINGS['qat_epochs']} QAT epoch, seed 0. RAM and flash are the emitted firmware's (arena(s) + margin, stage
buffer and input band; the model array(s)), measured on the TFLite Micro host runtime; every candidate called
fitting was measured there. "As built only" is the same search with splits and patches turned off
(`memory_techniques=False`, `--no-memory-techniques`).

{chr(10).join(table)}
"""
    write_file(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
