"""Why training on a small image folder scored at chance, measured: batch-norm moving statistics against steps.

Run: python benchmarks/small_data.py  (writes benchmarks/SMALL_DATA.md; about 3 minutes on 2 cores)

A user's small folder (3 classes x 60 RGB images, `datasets.write_digits_folder`), split as the search splits it
(test 20%, then validation 20% of the rest: 115 training, 29 validation, 36 test images), MobileNetV2 0.35 @ 96,
t=6, Adam 2e-3, batch 32 (4 steps per epoch). After each epoch: training accuracy, validation accuracy in inference
mode with the moving statistics as training left them, and with them re-estimated from 256 training images
(`RecalibrateBatchNorms`, what the search, `train` and the winner now do), and how far the moving statistics are
from the data's (`stale_batch_norms`: the share of batch norms off by more than 4x in variance).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import keras
import numpy as np

import keras_mbv2 as K
from keras_mbv2.datasets import hold_out, load_image_folder, write_digits_folder
from keras_mbv2.models.batch_norm import batch_norms, recalibrate_batch_norms, stale_batch_norms
from keras_mbv2.training import compile_classifier

EPOCHS = 8


def curve(data, momentum: float, learning_rate: float = 2e-3, epochs: int = EPOCHS) -> list[tuple]:
    """One row per epoch: (epoch, steps, train acc, val acc as trained, stale share, val acc recalibrated)."""
    keras.utils.set_random_seed(0)
    x_tr, y_tr, x_val, y_val = data
    model = K.MobileNetV2(input_shape=x_tr.shape[1:], alpha=0.35, classes=3, weights=None, bn_momentum=momentum)
    compile_classifier(model, learning_rate)
    rows, steps = [], int(np.ceil(len(x_tr) / 32))
    for epoch in range(1, epochs + 1):
        history = model.fit(x_tr, y_tr, epochs=1, batch_size=32, verbose=0)
        as_trained = float(model.evaluate(x_val, y_val, verbose=0)[1])
        stale, total = stale_batch_norms(model, x_tr)
        saved = [(bn.moving_mean.numpy(), bn.moving_variance.numpy()) for bn in batch_norms(model)]
        recalibrate_batch_norms(model, x_tr[:256])
        recalibrated = float(model.evaluate(x_val, y_val, verbose=0)[1])
        for bn, (mean, variance) in zip(batch_norms(model), saved):  # training goes on as it would have
            bn.moving_mean.assign(mean)
            bn.moving_variance.assign(variance)
        rows.append((epoch, epoch * steps, float(history.history["accuracy"][-1]), as_trained, len(stale) / total,
                     recalibrated))
    return rows


def main() -> None:
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        split = load_image_folder(write_digits_folder(os.path.join(folder, "imgs"), 3, 60), image_size=96)
    data = hold_out(split.x_train, split.y_train, 0.2, 0)
    lines = [
        "# Training on a small image folder: batch-norm statistics against steps",
        "",
        "`python benchmarks/small_data.py` (this machine, 2 cores). " + __doc__.split("\n\n")[2].replace("\n", " "),
        "",
        "Moving statistics follow the data by `1 - momentum` per step, so after `s` steps `momentum**s` of their "
        "start (mean 0, variance 1) is left: at 0.9, 0.9**8 = 43% after a 2-epoch trial of 4 steps per epoch; at "
        "keras.applications' 0.999, 99%. Momentum changes only the moving statistics, not training (which "
        "normalizes by each batch's own), so the training columns of the first two tables are the same run.",
        "",
    ]
    for momentum, learning_rate in ((0.9, 2e-3), (0.999, 2e-3), (0.9, 5e-4)):
        lines += [f"## bn_momentum {momentum}, learning rate {learning_rate:g}", "",
                  "| epoch | steps | train acc | val acc, moving statistics as trained | stale batch norms | "
                  "val acc, re-estimated |", "|---:|---:|---:|---:|---:|---:|"]
        for epoch, steps, train, val, stale, recal in curve(data, momentum, learning_rate):
            lines.append(f"| {epoch} | {steps} | {train:.1%} | {val:.1%} | {stale:.0%} | {recal:.1%} |")
        lines.append("")
    lines.append(f"Measured in {time.monotonic() - start:.0f} s; 29 validation images: one image is 3.4 points.")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "SMALL_DATA.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
