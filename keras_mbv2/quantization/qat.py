"""Quantization-aware training with tensorflow-model-optimization, resumable and distributable."""

from __future__ import annotations

import contextlib
import csv
import os
from typing import Any, Iterable

import keras
import numpy as np

from .flatten import tf_keras, to_tf_keras


def _scope(strategy: Any):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def quantize_aware(model: keras.Model, strategy: Any = None, check: bool = True) -> Any:
    """A tfmot QAT model (tf_keras) computing the same function as the Keras 3 `model`.

    The model is rebuilt as a flat tf_keras graph of built-in layers (see `flatten`), checked equal to the
    Keras 3 model in float within 1e-5, then wrapped by `tfmot.quantization.keras.quantize_model`, which
    inserts fake-quantization and folds Conv -> BatchNorm (-> ReLU6) patterns. Pass a `tf.distribute`
    strategy to create the variables under it (then train with `fit_qat(..., strategy=...)`).
    """
    import tensorflow_model_optimization as tfmot

    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a Keras 3 functional model. Received: model={type(model).__name__}")
    with _scope(strategy):
        flat = to_tf_keras(model, check=check)
        try:
            return tfmot.quantization.keras.quantize_model(flat)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"tfmot could not quantize the flat graph of {model.name!r}: {exc}") from exc


def _epochs_done(history_path: str) -> list[int]:
    if not os.path.exists(history_path):
        return []
    with open(history_path, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


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
) -> list[dict[str, float]]:
    """Fine-tune a QAT model like any Keras model, with a checkpoint per epoch and resume.

    `out_dir` receives `backup/` (tf_keras BackupAndRestore: weights, optimizer and epoch), a weights file
    per finished epoch in `checkpoints/`, and `history.csv` (one row per finished epoch). Started again with
    the same `out_dir` after being killed, training continues from the last finished epoch: no epoch is lost
    or repeated. Under a `strategy` (MirroredStrategy, MultiWorkerMirroredStrategy) the batch is split over
    its replicas. `callbacks` are tf_keras callbacks, run after the checkpointing ones.

    Returns the rows of `history.csv`.
    """
    tfk = tf_keras()
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer. Received: epochs={epochs!r}")
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"`x` and `y` must be non-empty and of equal length. Received: {len(x)} and {len(y)}")
    os.makedirs(os.path.join(out_dir, "checkpoints"), exist_ok=True)
    history_path = os.path.join(out_dir, "history.csv")
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
    done = _epochs_done(history_path)
    if len(done) < epochs:
        qat_model.fit(
            x, y, batch_size=batch_size, epochs=epochs, validation_data=validation_data,
            callbacks=checkpointing + list(callbacks), verbose=verbose, shuffle=True,
        )
    with open(history_path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", "NA")} for row in csv.DictReader(f)]


def quantize_scope():
    """tfmot's scope for loading a saved QAT model: `with quantize_scope(): tf_keras.models.load_model(p)`."""
    import tensorflow_model_optimization as tfmot

    return tfmot.quantization.keras.quantize_scope()
