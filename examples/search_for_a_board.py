"""Search for a board: the most accurate MobileNetV2 of a small grid that fits a 128 KiB microcontroller.

Shows: `keras_mbv2.search.search` on explicit limits (1 MiB flash, 128 KiB RAM: after the code and application
reserves of `keras_mbv2.micro.boards`, 96 KiB for inference) and a grid of MobileNetV2 0.35 at three input sizes.
Stage 1 converts the candidates that decide and measures them on the TFLite Micro host runtime: 32x32 fits as
built, 48x48 only with channel splits (paper Section 5.1), 64x64 only with patch-based inference. Stage 2 trains
the two finalists for two epochs each and keeps the better on held-out validation images, trains it on, runs
quantization-aware training, checks the int8 model on TFLite Micro against LiteRT and writes the firmware project,
`report.md` (every candidate, measured or how its verdict follows) and `front.png` into `search_128k/`. Prints
each step, each epoch and the summary table. A board of the table and the default grid: `keras-mbv2 search --board
arduino-nano-33-ble --data digits --quick --out s` (5.5 min on 2 cores). 3.4-3.6 min on 2 cores (measured, a third
of it TensorFlow tracing each of the four models it trains), no download.

    python examples/search_for_a_board.py
"""

import keras_mbv2  # first: TensorFlow's native start-up lines stay off the terminal

# isort: split
from keras_mbv2.search import search

result = search(
    "search_128k",
    data="digits",  # or a folder of your images, one sub-folder per class
    flash=1024 * 1024,  # the chip's flash and RAM, as its datasheet gives them (or board="nucleo-f746zg")
    ram=128 * 1024,
    widths=(0.35,),
    sizes=(32, 48, 64),
    expansions=(6,),
    finalists=2,  # the fitting candidates with the most multiply-adds, trained for the same epochs
    trial_epochs=2,
    epochs=3,  # the winner's float epochs in all
    qat_epochs=1,
    budget_minutes=10,
)
print(result.table())  # the chosen model, its flash and RAM as emitted, accuracies, the best without splits
print(f"{keras_mbv2.__version__}: {', '.join(result.files)} in {result.out_dir}")
