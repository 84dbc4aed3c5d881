"""Quantization-aware training with tensorflow-model-optimization, resumable and distributable."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
import weakref
from typing import Any, Callable, Iterable

import keras
import numpy as np

from ..checks import check_positive_int, check_positive_number
from ..datasets import epoch_batches
from ..files import LOCK_FILE, check_checkpoint_folder, run_lock, write_file
from ..model_checks import check_model_and_data
from .flatten import ADVICE, tf_keras, to_tf_keras

RUN_FILE = "run.json"  # which model a QAT run folder belongs to


#: The Keras 3 model each QAT model `quantize_aware` created under a strategy was made from.
SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _scope(strategy: Any):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def quantize_aware(model: keras.Model, strategy: Any = None, check: bool = True) -> Any:
    """A tfmot QAT model (tf_keras) computing the same function as the Keras 3 `model`.

    The model is rebuilt as a flat tf_keras graph of built-in layers (see `flatten`), checked equal to the
    Keras 3 model in float within 1e-4, then wrapped by `tfmot.quantization.keras.quantize_model`, which
    inserts fake-quantization and folds Conv -> BatchNorm (-> ReLU6) patterns. Pass a `tf.distribute`
    strategy to create the variables under it (then train with `fit_qat(..., strategy=...)`); `to_tflite` converts
    it as it converts any QAT model (`export.outside_any_strategy`).
    """
    import tensorflow_model_optimization as tfmot

    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a Keras 3 functional model. Received: model={type(model).__name__}")
    with _scope(strategy):
        flat = to_tf_keras(model, check=check)
        try:
            qat = tfmot.quantization.keras.quantize_model(flat)
            if strategy is not None:  # what `to_tflite` rebuilds it from, outside the strategy
                SOURCES[qat] = model  # (not an attribute: tf_keras would track the Keras 3 model's variables)
            return qat
        except (RuntimeError, ValueError) as exc:
            unsupported = re.search(r"Layer (\S+?):<class '[\w.]*?(\w+)'> is not supported", str(exc))
            if unsupported:  # tfmot's registry has no QuantizeConfig for this built-in layer
                raise ValueError(f"layer {unsupported[1]!r} ({unsupported[2]}) is a layer tfmot does not quantize, so "
                                 f"{model.name!r} cannot train quantization-aware: {ADVICE}.") from exc
            raise ValueError(f"tfmot could not quantize the flat graph of {model.name!r}: {exc}") from exc


def finished_model(model: keras.Model, out_dir: str) -> Any:
    """The QAT model of `model` with the weights of the last epoch `out_dir`'s run finished, built outside any
    tf.distribute strategy: for conversion after distributed training, whose graph holds collective operations
    (CollectiveReduceV2) that the TFLite converter rejects, and whose variables a multi-worker process cannot read
    alone once the other workers have left (reading them is an all-reduce)."""
    done = epochs_done(out_dir)
    if not done:
        raise ValueError(f"`out_dir` has no finished epoch to take the weights of. Received: out_dir={out_dir!r}")
    plain = quantize_aware(model, check=False)
    plain.load_weights(os.path.join(out_dir, "checkpoints", f"epoch_{max(done) + 1:03d}.h5"))
    return plain


def epochs_done(out_dir: str) -> list[int]:
    """The epochs (0-based) a QAT run folder has finished, from its history.csv."""
    history_path = os.path.join(out_dir, "history.csv")
    if not os.path.exists(history_path):
        return []
    with open(history_path, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def model_fingerprint(qat_model: Any) -> dict[str, Any]:
    """Name, parameter count and a digest of every weight's shape in order: what a run folder must match (not the
    weight names, which tf_keras numbers differently for each model built in one process)."""
    shapes = [tuple(int(d) for d in w.shape) for w in qat_model.weights]
    digest = hashlib.sha256(repr(shapes).encode()).hexdigest()[:16]
    return {"model": qat_model.name, "params": int(qat_model.count_params()), "weights": digest}


def _check_run(out_dir: str, qat_model: Any) -> None:
    """Record the model in a new run folder, or refuse a run folder that belongs to another model."""
    mine = model_fingerprint(qat_model)
    path = os.path.join(out_dir, RUN_FILE)
    if os.path.exists(path):
        with open(path) as f:
            theirs = json.load(f)
        if theirs != mine:
            raise ValueError(
                f"`out_dir` holds the QAT run of another model ({theirs.get('model')!r}, {theirs.get('params', 0):,} "
                f"params; this one is {mine['model']!r}, {mine['params']:,} params): use a new folder for this "
                f"model. Received: out_dir={out_dir!r}"
            )
    elif os.path.isdir(out_dir) and set(os.listdir(out_dir)) - {LOCK_FILE}:
        raise ValueError(f"`out_dir` exists and is not a keras_mbv2 QAT run (no {RUN_FILE}). "
                         f"Received: out_dir={out_dir!r}")
    else:
        os.makedirs(out_dir, exist_ok=True)
        write_file(path, json.dumps(mine, indent=1) + "\n")


def fit_qat(
    qat_model: Any,
    x: np.ndarray,
    y: np.ndarray,
    out_dir: str,
    epochs: int = 3,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    loss: Any = "sparse_categorical_crossentropy",
    callbacks: Iterable[Any] = (),
    strategy: Any = None,
    verbose: int = 2,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> list[dict[str, float]]:
    """Fine-tune a QAT model like any Keras model, with a checkpoint per epoch and resume.

    `out_dir` receives `backup/` (tf_keras BackupAndRestore: weights, optimizer and epoch), a weights file
    per finished epoch in `checkpoints/`, and `history.csv` (one row per finished epoch). Started again with
    the same `out_dir` after being killed, training continues from the last finished epoch: no epoch is lost
    or repeated, and each epoch sees the batches it would have seen in a run never stopped (its order drawn from
    (`seed`, epoch), `datasets.epoch_batches`), so the resumed run ends with the same model, bit for bit (measured
    in the suite; a model with Dropout is the exception: tf_keras draws its masks from a random stream the backup does
    not hold, so they differ after the resume). Under a `strategy` (MirroredStrategy, MultiWorkerMirroredStrategy)
    the batch is split over its replicas. `callbacks` are tf_keras callbacks, run after the checkpointing ones.

    Multi-worker (`keras_mbv2.distribute`): every worker calls `fit_qat` with the same `out_dir`, which they all
    read (one machine, or storage they share); only the chief writes it and holds its lock. The others write their
    history to a temporary folder they remove, and tf_keras writes their checkpoint copies to temporary files it
    removes. A worker killed and started again (and the others, which stop when a peer is lost) resume together
    from the chief's backup of the last finished epoch.

    One run at a time: `out_dir` is locked while it trains (`files.run_lock`); a second run on it is refused at
    once, naming the holder, and the lock of a killed run is taken over (said through `log`).

    A run folder belongs to one model (`run.json` records it): a folder of another model is refused. When the
    folder has already finished `epochs` (or more), nothing is trained and the model is given the weights of the
    last finished epoch, so converting it gives the finished run's model.

    Returns the rows of `history.csv`.
    """
    check_checkpoint_folder(out_dir, "`out_dir`")
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    check_positive_number("learning_rate", learning_rate)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"`x` and `y` must be non-empty and of equal length. Received: {len(x)} and {len(y)}")
    check_model_and_data(qat_model, x, y if loss == "sparse_categorical_crossentropy" else None,
                         model_arg="`qat_model`")
    if not is_chief(strategy):  # another worker of a multi-worker run: its own files go to a folder it removes
        with tempfile.TemporaryDirectory(prefix=".kmbv2-worker-") as own:
            return _fit(qat_model, x, y, out_dir, epochs, batch_size, learning_rate, validation_data, loss,
                        callbacks, strategy, verbose, seed, own)
    with run_lock(out_dir, "`out_dir`", log=log):
        _check_run(out_dir, qat_model)
        return _fit(qat_model, x, y, out_dir, epochs, batch_size, learning_rate, validation_data, loss, callbacks,
                    strategy, verbose, seed, out_dir)


def is_chief(strategy: Any) -> bool:
    """True unless `strategy` is a multi-worker strategy and this process is not its chief (the worker that saves:
    task "chief", or worker 0 of a cluster without one)."""
    return strategy is None or bool(strategy.extended.should_checkpoint)


def _build_before_tracing(qat_model: Any, y: np.ndarray, strategy: Any = None) -> None:
    """Build a compiled tf_keras model's optimizer slots and its loss's and metrics' variables before `fit`: tf_keras,
    like Keras 3 on TensorFlow (`training.compile_classifier`), would create them while tracing the first training
    step and then trace the whole step again (MobileNetV2 0.35 at 32x32, QAT: the first fit of 64 images 35.1 s ->
    16.6 s, measured beside another run on 2 cores; MobileNetV1 0.25 on two replicas of a MirroredStrategy, 2 epochs
    of 64 images: 28.7 s -> 17.0 s, measured alone). Under a `strategy` the slots are built in its scope and the
    loss's and metrics' variables in a replica's context, as its replicas would build them (a metric's variables are
    summed over the replicas, which a cross-replica update cannot do). The metrics are reset: nothing is counted."""
    import tensorflow as tf

    with _scope(strategy):
        qat_model.optimizer.build(qat_model.trainable_variables)
    classes = qat_model.outputs[0].shape[-1]

    def build_loss_and_metrics() -> None:
        y_true, y_pred = tf.constant(y[:1]), tf.fill((1, classes), 1.0 / classes)
        qat_model.compiled_loss(y_true, y_pred)
        qat_model.compiled_metrics.update_state(y_true, y_pred)

    if strategy is None:
        build_loss_and_metrics()
    else:
        strategy.run(build_loss_and_metrics)
    qat_model.reset_metrics()


def _fit(qat_model: Any, x: np.ndarray, y: np.ndarray, out_dir: str, epochs: int, batch_size: int,
         learning_rate: float, validation_data: Any, loss: Any, callbacks: Iterable[Any], strategy: Any,
         verbose: int, seed: int, own_dir: str) -> list[dict[str, float]]:
    """Train in `out_dir`'s run; this process writes its history into `own_dir` (`out_dir` on the chief). Every
    worker reads the chief's history and backup, so all agree on the epochs done; tf_keras' BackupAndRestore and
    ModelCheckpoint write the other workers' copies to temporary files they remove."""
    tfk = tf_keras()
    if own_dir == out_dir:  # the chief's folders (tf_keras makes the other workers' temporary ones)
        os.makedirs(os.path.join(out_dir, "checkpoints"), exist_ok=True)
    history_path = os.path.join(own_dir, "history.csv")
    keras.utils.set_random_seed(seed)
    with _scope(strategy):
        qat_model.compile(optimizer=tfk.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])
    checkpointing = [
        tfk.callbacks.BackupAndRestore(os.path.join(out_dir, "backup"), save_freq="epoch", delete_checkpoint=False),
        tfk.callbacks.ModelCheckpoint(
            os.path.join(out_dir, "checkpoints", "epoch_{epoch:03d}.h5"), save_weights_only=True
        ),
        tfk.callbacks.CSVLogger(history_path, append=True),
    ]
    done = epochs_done(out_dir)  # the chief's: every worker takes the same decision
    if own_dir != out_dir and done:  # another worker resumes: its own history starts as the chief's
        shutil.copyfile(os.path.join(out_dir, "history.csv"), history_path)
    if len(done) < epochs:  # each epoch's order from (seed, epoch): a resumed run ends as one never stopped
        _build_before_tracing(qat_model, y, strategy)
        batches, steps = epoch_batches(x, y, batch_size, epochs, len(done), seed)
        qat_model.fit(
            batches, steps_per_epoch=steps, epochs=epochs, validation_data=validation_data,
            callbacks=checkpointing + list(callbacks), verbose=verbose,
        )
    else:  # finished: the weights of its last epoch (ModelCheckpoint numbers epochs from 1)
        qat_model.load_weights(os.path.join(out_dir, "checkpoints", f"epoch_{max(done) + 1:03d}.h5"))
    with open(history_path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", "NA")} for row in csv.DictReader(f)]


def quantize_scope():
    """tfmot's scope for loading a saved QAT model: `with quantize_scope(): tf_keras.models.load_model(p)`."""
    import tensorflow_model_optimization as tfmot

    return tfmot.quantization.keras.quantize_scope()
