"""How the package compiles a classifier for float training: one rule for the demo, `keras-mbv2 train` and the
figures' ablation.

Without a distribution strategy, Keras 3 on TensorFlow creates the optimizer's variables, and (Keras 3.15) the
compiled metrics' variables, while tracing the first training step, and then traces the whole step again: building
both before `fit` traces it once (MobileNetV2 0.35 at 32x32: 37 s -> 23 s before the first epoch ends with the
optimizer built, measured on 2 cores; with Keras 3.15.1 the first fit of 64 images took 35 s with the metrics'
retrace and 18 s without it, measured beside another run on 2 cores). XLA is left to Keras' "auto",
which turns it off on a machine with only CPUs, where XLA-compiled training steps of these depthwise networks
are slower.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

import keras
import numpy as np

#: Seconds between two step lines of `step_progress` within an epoch.
STEP_INTERVAL = 10.0


def reproducible(seed: int) -> None:
    """Seed Python, NumPy and the backend (`keras.utils.set_random_seed`) and, on TensorFlow, make its kernels
    deterministic (`tf.config.experimental.enable_op_determinism`: without it, multi-threaded kernels may sum in a
    varying order, so two runs with one seed can differ). Process-wide; the demo calls it before it builds
    anything."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def compile_classifier(model: keras.Model, learning_rate: float) -> keras.Model:
    """Compile `model` for integer labels (Adam, sparse categorical cross-entropy, accuracy) and build its
    optimizer and, on TensorFlow, its metrics (`build_before_tracing`), so the first training step is traced once.
    Returns the model."""
    model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return build_before_tracing(model)


def build_before_tracing(model: keras.Model) -> keras.Model:
    """Build a compiled model's optimizer and, on TensorFlow without a strategy, its compiled metrics, which Keras
    would otherwise create while tracing the first training step and then trace the whole step again (the module's
    docstring). For a model of `compile_classifier` and for a compiled model read back with
    `keras.models.load_model` before it trains on. The metrics are reset: nothing is counted. Returns the model."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    outputs = getattr(model, "outputs", None)  # a functional model's; a subclassed one builds them when traced
    if keras.backend.backend() == "tensorflow" and outputs:
        import tensorflow as tf

        if not tf.distribute.has_strategy():  # under a strategy Keras builds them itself, before tracing
            classes = outputs[0].shape[-1]
            model.compute_metrics(None, np.zeros((1,), "int32"), np.full((1, classes), 1 / classes, "float32"), None)
            model.reset_metrics()
    return model


def step_progress(base: type, epochs: int, log: Callable[[str], None], what: str = "epoch",
                  interval: float = STEP_INTERVAL) -> Any:
    """A callback (subclass of `base`: `keras.callbacks.Callback`, or tf_keras' for QAT) that says where training
    is within an epoch, for output that is not a terminal (a log file, CI), where Keras' progress bar would print a
    line every 50 ms: one line every `interval` seconds (`epoch 1/15  step 20/45  loss 1.2345  ~0:23 left in the
    epoch`), and one at the end of each epoch with its metrics. The first epoch of a model includes tracing it,
    so its first line comes when its first step has run. Each epoch's seconds are kept in `.times`."""

    class StepProgress(base):  # type: ignore[misc, valid-type]
        def on_train_begin(self, logs: Any = None) -> None:
            self.times: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch, self.start, self.last = epoch, time.monotonic(), time.monotonic()
            self.steps = (self.params or {}).get("steps")

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            now = time.monotonic()
            if now - self.last < interval:
                return
            self.last = now
            done = batch + 1
            line = f"{what} {self.epoch + 1}/{epochs}  step {done}" + (f"/{self.steps}" if self.steps else "")
            if logs and "loss" in logs:
                line += f"  loss {float(logs['loss']):.4f}"
            if self.steps:
                left = (now - self.start) / done * (self.steps - done)
                line += f"  ~{int(left) // 60}:{int(left) % 60:02d} left in the {what}"
            log(line)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.times.append(time.monotonic() - self.start)
            metrics = "  ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items())
            log(f"{what} {epoch + 1}/{epochs}  {self.times[-1]:.0f} s  {metrics}")

    return StepProgress()


def fit_progress(base: type, epochs: int, log: Callable[[str], None], quiet: bool = False,
                 stream: Any = None) -> tuple[int, list[Any]]:
    """(verbose, callbacks) for `fit`: Keras' progress bar on a terminal, `step_progress` lines otherwise, nothing
    when `quiet`."""
    if quiet:
        return 0, []
    stream = stream or sys.stdout
    if getattr(stream, "isatty", lambda: False)():
        return 1, []
    return 0, [step_progress(base, epochs, log)]


#: Images `RecalibrateBatchNorms` re-estimates the statistics on (a seeded sample of the training images).
RECALIBRATION_IMAGES = 256


class RecalibrateBatchNorms(keras.callbacks.Callback):
    """Re-estimate every batch norm's moving statistics from the training images before each validation inside
    `fit` (`on_test_begin`) and when training ends, so that inference mode, the validation score, the saved model
    and its int8 conversion all use the data's statistics (`models.batch_norm.recalibrate_batch_norms`).

    Why: the moving statistics follow the data at `1 - momentum` per step. A small folder (3 classes x 60 images:
    about 4 steps of 32 per epoch) gives a 2-epoch trial 8 steps, after which 0.9**8 = 43% of the start (mean 0,
    variance 1) is still in them at momentum 0.9, and 99% at keras.applications' 0.999: training accuracy is
    high and validation accuracy at chance (the search's trials on such a folder; benchmarks/SMALL_DATA.md).
    Weights are unchanged; only the moving statistics are set. `x` is sampled (seeded) to `max_images` images."""

    def __init__(self, x: Any, max_images: int = RECALIBRATION_IMAGES, seed: int = 0) -> None:
        super().__init__()
        import numpy as np

        x = np.asarray(x)
        if len(x) > max_images:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_images, replace=False))]
        self.x = x

    def _recalibrate(self) -> None:
        from .models.batch_norm import recalibrate_batch_norms

        # one graph pays from 4 epochs on (5 re-estimations; tracing costs about 3 eager ones)
        recalibrate_batch_norms(self.model, self.x, graph=(self.params or {}).get("epochs", 1) >= 4)

    def on_test_begin(self, logs: Any = None) -> None:
        """Before the validation inside `fit` (Keras 3 runs it through the same callbacks)."""
        self._recalibrate()

    def on_train_end(self, logs: Any = None) -> None:
        """The model `fit` leaves (and the caller saves or converts) carries the data's statistics."""
        self._recalibrate()


class EpochHistory(keras.callbacks.Callback):
    """Each finished epoch's loss and metrics in a .csv file, the columns of Keras' `CSVLogger` (`epoch`, then the
    logs' keys, sorted), but the file rewritten whole after every epoch under a temporary name and renamed into place
    (`files.write_file`): interrupted or killed at any moment it holds exactly the finished epochs, never a torn
    row. `keep_before`: a resumed run keeps the earlier run's rows of the epochs below it (0-based, as in the file)
    and continues the same file; rows at or after it (an epoch that is trained again) are dropped."""

    def __init__(self, path: str, keep_before: int = 0) -> None:
        super().__init__()
        import csv
        import os

        self.path = path
        self.rows: list[dict[str, str]] = []
        if keep_before > 0 and os.path.exists(path):
            with open(path, newline="") as f:
                self.rows = [row for row in csv.DictReader(f) if int(row["epoch"]) < keep_before]

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        """Add the epoch's row and write the whole file."""
        import csv
        import io

        from .files import write_file

        self.rows.append({"epoch": str(epoch), **{k: f"{float(v)}" for k, v in sorted((logs or {}).items())}})
        text = io.StringIO()
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        writer = csv.DictWriter(text, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_file(self.path, text.getvalue())


class KeepPreviousBackup(keras.callbacks.Callback):
    """Before Keras' `BackupAndRestore` (listed after this callback) replaces its backup at an epoch's end, the backup
    being replaced is copied to `previous/` in the same folder. Processes that train one model in lock step can then
    all resume at the same epoch even when one was lost between two processes' backups of one epoch: the one ahead
    steps back (`step_back_backup`). (Keras 3.5's `BackupAndRestore`, the oldest supported, has no
    `double_checkpoint`.)"""

    FILES = ("latest.weights.h5", "training_metadata.json")  # what Keras' BackupAndRestore writes

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        """Copy the backup about to be replaced (if any) to `previous/` (`_copy_backup`)."""
        import os

        if not all(os.path.exists(os.path.join(self.folder, name)) for name in self.FILES):
            return
        previous = os.path.join(self.folder, "previous")
        os.makedirs(previous, exist_ok=True)
        _copy_backup(self.folder, previous)


def _copy_backup(source: str, target: str) -> None:
    """Copy a `BackupAndRestore` backup from folder `source` to `target`: the target's metadata removed first and
    each file renamed into place, the metadata last, so that a process killed midway leaves no weights under another
    epoch's metadata."""
    import os
    import shutil

    metadata = os.path.join(target, KeepPreviousBackup.FILES[1])
    if os.path.exists(metadata):
        os.remove(metadata)
    for name in KeepPreviousBackup.FILES:  # weights, then the metadata that says which epoch they are
        shutil.copyfile(os.path.join(source, name), os.path.join(target, f".{name}.tmp"))
        os.replace(os.path.join(target, f".{name}.tmp"), os.path.join(target, name))


def backup_epoch(folder: str) -> int:
    """The epochs a `BackupAndRestore` folder has finished (0 when it holds no backup)."""
    import json
    import os

    path = os.path.join(folder, KeepPreviousBackup.FILES[1])
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return int(json.load(f)["epoch"])


def step_back_backup(folder: str, epoch: int) -> None:
    """Make the `BackupAndRestore` folder resume after `epoch` finished epochs: its own backup when that is it, the
    previous one (`KeepPreviousBackup`) when it is one behind, no backup at all for 0. Raises RuntimeError when the
    folder holds neither."""
    import os

    have = backup_epoch(folder)
    if have == epoch:
        return
    previous = os.path.join(folder, "previous")
    if epoch == 0:
        for name in KeepPreviousBackup.FILES:
            for path in (os.path.join(folder, name), os.path.join(previous, name)):
                if os.path.exists(path):
                    os.remove(path)
        return
    if backup_epoch(previous) != epoch:
        raise RuntimeError(f"{folder} holds the backups of epochs {have} and {backup_epoch(previous) or 'none'}, "
                           f"not of epoch {epoch}, where the other processes resume")
    _copy_backup(previous, folder)
