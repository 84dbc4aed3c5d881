"""Stage 2 of the search: which of the fitting candidates is best, by training.

The finalists (the fitting candidates with the most multiply-adds, `fitting.choose_finalists`) each train for the
same short number of epochs on the training split less a held-out validation split, and are ranked by validation
accuracy (the test split is never used to choose). The winner goes on training from where its trial stopped, its
optimizer included. Every finished trial and every finished epoch of the final training is saved in the run
folder, so that a run stopped by Ctrl-C continues where it was when started again: nothing is trained twice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from ..files import write_file
from .space import Candidate

Log = Callable[[str], None]
#: A QAT epoch costs about this many float epochs of the same model (fake quantization; measured on 2 cores:
#: MobileNetV2 0.35 @ 128, 24 s against 9 s).
QAT_EPOCH_COST = 2.5


def reseed(seed: int, *what: object) -> None:
    """Seed every random stream (`training.reproducible`) from the run's `seed` and `what` alone (a stage, a
    candidate, the epochs it has finished): each trial, each extension of one and the winner's training then start
    from the same initial weights and draw the same batches whether what came before them ran in this process or
    was read back from an earlier run's folder, so that a search stopped and run again trains the model an
    uninterrupted one does."""
    from ..training import reproducible

    reproducible(zlib.crc32(repr((seed, *what)).encode()))


#: z of the two-sided 95% interval `interval` gives.
Z95 = 1.959964


def interval(accuracy: float, images: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of an accuracy measured on `images` images: where the true
    accuracy lies, given that each image is right or wrong (a binomial count). 10 of 29 right: 19.9% to 52.7%."""
    if images <= 0:
        return 0.0, 1.0
    n, p = images, accuracy
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Trial:
    """One finalist's short training: its validation accuracy after `epochs` epochs on `val_images` held-out
    images, and what it cost."""

    candidate: Candidate
    epochs: int
    val_accuracy: float
    val_loss: float
    seconds: float  # training time, tracing included
    seconds_per_epoch: float  # the epochs after the first (without tracing), or the first when it is the only one
    val_images: int = 0  # 0: a record written before the count was kept

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% interval of `val_accuracy` on `val_images` images (`interval`)."""
        return interval(self.val_accuracy, self.val_images)

    def describe(self) -> str:
        """`34.5% (10 of 29, 95% interval 19.9% to 52.7%)`."""
        if not self.val_images:
            return f"{self.val_accuracy:.1%}"
        low, high = self.interval
        return (f"{self.val_accuracy:.1%} ({round(self.val_accuracy * self.val_images)} of {self.val_images}, 95% "
                f"interval {low:.1%} to {high:.1%})")

    def at_chance(self, classes: int) -> bool:
        """True when guessing (1 / `classes`) lies within the interval: not shown to have learned anything."""
        return self.interval[0] <= 1 / classes

    def to_json(self) -> dict[str, Any]:
        """Plain data for `trials/<key>.json`."""
        data = asdict(self)
        data["candidate"] = asdict(self.candidate)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Trial":
        """Inverse of `to_json`."""
        return cls(**{**data, "candidate": Candidate(**data["candidate"])})


def within_noise(a: Trial, b: Trial) -> bool:
    """True when two trials' 95% intervals overlap: their difference is within what the validation images can
    tell apart."""
    (a_low, a_high), (b_low, b_high) = a.interval, b.interval
    return a_low <= b_high and b_low <= a_high


@dataclass
class Clock:
    """The training budget: seconds from `start`, for every trial and the final training of one run."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    @property
    def left(self) -> float:
        """Seconds left (negative when over)."""
        return self.seconds - (time.monotonic() - self.start)

    def describe(self) -> str:
        """`12:34 left of the budget`."""
        left = max(0, int(self.left))
        return f"{left // 60}:{left % 60:02d} left of the budget"


def progress_callback(what: str, epochs: int, clock: Clock, log: Log) -> Any:
    """`training.step_progress` for a search's training: its lines name the candidate and the budget left; each
    epoch's seconds are in `.times`."""
    import keras

    from ..training import step_progress

    return step_progress(keras.callbacks.Callback, epochs, lambda line: log(f"    {what}: {line} ({clock.describe()})"))


def epoch_time(times: list[float]) -> float:
    """Seconds per epoch without the first epoch's tracing, when there is a later epoch."""
    return float(np.mean(times[1:])) if len(times) > 1 else float(times[0]) if times else 0.0


def run_trial(candidate: Candidate, data: Any, classes: int, channels: int, epochs: int, folder: str,
              clock: Clock, log: Log, callbacks: list[Any], index: str = "", seed: int = 0) -> Trial:
    """Train `candidate` for `epochs` epochs on `data.x_train` (validation: `data.x_val`), save the model (its
    optimizer included) as `folder/<key>.keras` and the result as `folder/<key>.json`; a trial already saved there is
    read back instead of trained again. Seeded from `seed` and the candidate (`reseed`)."""
    import keras

    from ..files import atomic_write
    from ..training import RecalibrateBatchNorms, build_before_tracing, compile_classifier

    record = os.path.join(folder, f"{candidate.key}.json")
    if os.path.exists(record):
        with open(record) as f:
            trial = Trial.from_json(json.load(f))
        log(f"  {index}{candidate.label}: trained in an earlier run: validation accuracy {trial.describe()}")
        return trial
    start = time.monotonic()
    # the last finished epoch of an interrupted run, apart from the finished trials' records (`folder/*.json`)
    partial = os.path.join(folder, "unfinished", f"{candidate.key}.keras")
    os.makedirs(os.path.dirname(partial), exist_ok=True)
    done = _partial_epochs(partial)
    reseed(seed, "trial", candidate.key, done)
    if done:
        model = build_before_tracing(keras.models.load_model(partial))
        log(f"  {index}{candidate.label}: resuming its trial after epoch {done} (saved in an earlier run)")
    else:
        model = candidate.build(channels, classes)
        compile_classifier(model, 2e-3)
        log(f"  {index}{candidate.label}: {model.count_params():,} params, {epochs} epoch{'s' if epochs > 1 else ''} "
            f"({clock.describe()})")
    progress = progress_callback(candidate.label, epochs, clock, log)
    if done < epochs:
        history = model.fit(data.x_train, data.y_train, epochs=epochs, initial_epoch=done, batch_size=32, verbose=0,
                            validation_data=(data.x_val, data.y_val),
                            callbacks=[RecalibrateBatchNorms(data.x_train), save_each_epoch(partial), progress,
                                       *callbacks]).history
        if not np.isfinite(history["loss"][-1]):
            raise RuntimeError(f"the trial of {candidate.label} diverged (loss {history['loss'][-1]})")
    else:  # every epoch finished in the earlier run (saved with its re-estimated statistics); only its record is due
        loss, accuracy = model.evaluate(data.x_val, data.y_val, verbose=0)[:2]
        history = {"val_accuracy": [accuracy], "val_loss": [loss]}
    trial = Trial(candidate, epochs, float(history["val_accuracy"][-1]), float(history["val_loss"][-1]),
                  time.monotonic() - start, epoch_time(progress.times), len(data.y_val))
    atomic_write(os.path.join(folder, f"{candidate.key}.keras"), model.save, ".keras")
    write_file(record, json.dumps(trial.to_json(), indent=1) + "\n")
    for path in (partial, partial + ".json"):  # the finished trial replaces its per-epoch save
        if os.path.exists(path):
            os.remove(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(partial))  # when no other trial is unfinished
    return trial


def save_each_epoch(path: str) -> Any:
    """A callback that saves the model (its optimizer included) to `path` after every epoch, with the number of
    epochs finished in `path.json`: what an interrupted run resumes from (`_partial_epochs`)."""
    import keras

    from ..files import atomic_write

    class SaveEachEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            atomic_write(path, self.model.save, ".keras")
            write_file(path + ".json", json.dumps({"epochs": epoch + 1}) + "\n")

    return SaveEachEpoch()


def _partial_epochs(path: str) -> int:
    """Epochs finished by the model saved at `path` by `save_each_epoch` (0: none saved)."""
    try:
        with open(path + ".json") as f:
            return int(json.load(f)["epochs"]) if os.path.isfile(path) else 0
    except (OSError, ValueError, KeyError):
        return 0


def extend_trial(trial: Trial, data: Any, more: int, folder: str, clock: Clock, log: Log, callbacks: list[Any],
                 index: str = "", seed: int = 0) -> Trial:
    """Train a saved trial `more` epochs on from where it stopped (its optimizer included), when the finalists were
    too close to tell apart; saves the model and the record again. Seeded from `seed`, the candidate and its epochs
    (`reseed`)."""
    import keras

    from ..files import atomic_write
    from ..training import RecalibrateBatchNorms, build_before_tracing

    target = trial.epochs + more
    reseed(seed, "extend", trial.candidate.key, trial.epochs)
    model = build_before_tracing(keras.models.load_model(os.path.join(folder, f"{trial.candidate.key}.keras")))
    log(f"  {index}{trial.candidate.label}: {more} epoch{'s' if more > 1 else ''} more, to {target} "
        f"({clock.describe()})")
    start = time.monotonic()
    progress = progress_callback(trial.candidate.label, target, clock, log)
    history = model.fit(data.x_train, data.y_train, epochs=target, initial_epoch=trial.epochs, batch_size=32,
                        verbose=0, validation_data=(data.x_val, data.y_val),
                        callbacks=[RecalibrateBatchNorms(data.x_train), progress, *callbacks])
    if not np.isfinite(history.history["loss"][-1]):
        raise RuntimeError(f"the trial of {trial.candidate.label} diverged (loss {history.history['loss'][-1]})")
    longer = Trial(trial.candidate, target, float(history.history["val_accuracy"][-1]),
                   float(history.history["val_loss"][-1]), trial.seconds + time.monotonic() - start,
                   trial.seconds_per_epoch, len(data.y_val))
    atomic_write(os.path.join(folder, f"{trial.candidate.key}.keras"), model.save, ".keras")
    write_file(os.path.join(folder, f"{trial.candidate.key}.json"), json.dumps(longer.to_json(), indent=1) + "\n")
    return longer


def winner(trials: list[Trial], macs: dict[Candidate, int]) -> Trial:
    """The trial with the best validation accuracy; ties go to the candidate with more multiply-adds."""
    return max(trials, key=lambda t: (round(t.val_accuracy, 6), macs[t.candidate]))


def train_final(trial: Trial, data: Any, epochs: int, trials_folder: str, folder: str, clock: Clock, log: Log,
                callbacks: list[Any], reserve: float, seed: int = 0) -> tuple[Any, int]:
    """Train the winner on from its trial to `epochs` epochs in all, saving the model after every epoch as
    `folder/epoch_<n>.keras` and resuming from the last one saved. Stops early (after an epoch) when the budget
    left falls below `reserve` seconds (kept for QAT). Seeded from `seed`, the candidate and the epochs done
    (`reseed`). Returns (model, epochs trained in all)."""
    import keras

    from ..files import atomic_write
    from ..training import RecalibrateBatchNorms, build_before_tracing

    os.makedirs(folder, exist_ok=True)
    saved = sorted(int(f[6:9]) for f in os.listdir(folder) if f.startswith("epoch_") and f.endswith(".keras"))
    done = saved[-1] if saved else trial.epochs
    reseed(seed, "final", trial.candidate.key, done)
    path = os.path.join(folder, f"epoch_{done:03d}.keras") if saved else os.path.join(
        trials_folder, f"{trial.candidate.key}.keras")
    model = keras.models.load_model(path)
    if done >= epochs:
        log(f"  {trial.candidate.label}: its {done} epochs are trained already (its trial, or an earlier run)")
        return model, done
    build_before_tracing(model)
    if saved:
        log(f"  resuming after epoch {done} (saved in an earlier run)")

    class SaveEachEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            atomic_write(os.path.join(folder, f"epoch_{epoch + 1:03d}.keras"), self.model.save, ".keras")
            if clock.left < reserve and epoch + 1 < epochs:
                log(f"    the budget keeps {reserve / 60:.1f} min for quantization-aware training: float training "
                    f"stops after epoch {epoch + 1} of {epochs}")
                self.model.stop_training = True

    if clock.left < reserve:
        log(f"  no time left for more float epochs ({clock.describe()}): keeping the trial's {done}")
        return model, done
    history = model.fit(data.x_train, data.y_train, epochs=epochs, initial_epoch=done, batch_size=32, verbose=0,
                        validation_data=(data.x_val, data.y_val),
                        callbacks=[RecalibrateBatchNorms(data.x_train), SaveEachEpoch(),
                                   progress_callback(trial.candidate.label, epochs, clock, log), *callbacks])
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise RuntimeError(f"training {trial.candidate.label} diverged (loss {losses[-1]})")
    return model, done + len(losses)
