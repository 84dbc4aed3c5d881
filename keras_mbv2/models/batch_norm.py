"""Batch-norm moving statistics: are they the data's, and how to make them so.

keras.applications builds its networks with batch-norm momentum 0.999, and so do our builders by default, for
weight compatibility. After a short training on a small data set (a few hundred steps) such moving statistics
have barely left their start (mean 0, variance 1), so the model is accurate in training mode and near chance
in inference mode, and so is every int8 model made from it (shared/DESIGN.md section 2: MobileNetV2 0.35 on the
digits, 15 epochs at 0.999, scored 10%).

- `stale_batch_norms(model, x)`: the batch norms whose moving statistics are far from the statistics of the
  data reaching them (measured on `x`, the model unchanged afterwards);
- `warn_if_stale_batch_norms(model, x)`: one warning line when most of them are (used by `to_tflite` and the
  command line);
- `recalibrate_batch_norms(model, x)`: set every batch norm's moving statistics to the average statistics of the
  data reaching it (the "BN re-estimation" of the literature; PyTorch's `update_bn`). Weights are unchanged.

The other cure is to train with a faster momentum (`bn_momentum=0.9`, which `keras-mbv2 train` and the demo
use); momentum is not a weight, so this keeps keras.applications weight compatibility.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import keras
import numpy as np

# A batch norm is stale when its moving variance is off by more than this factor, or its moving mean by more than
# this many standard deviations, for the median channel.
STALE_FACTOR = 4.0
# Warn when more than this fraction of the model's batch norms is stale.
STALE_FRACTION = 0.25


@dataclass(frozen=True)
class StaleBatchNorm:
    """One batch norm whose moving statistics do not describe the data reaching it (median over channels)."""

    path: str
    moving_variance: float
    data_variance: float
    mean_gap: float  # |moving mean - data mean| in data standard deviations


def batch_norms(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization in `model`, inside blocks too."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


@contextlib.contextmanager
def _momentum(norms: list[keras.layers.BatchNormalization]) -> Iterator[None]:
    saved = [bn.momentum for bn in norms]
    try:
        yield
    finally:
        for bn, m in zip(norms, saved):
            bn.momentum = m


def _batches(x: np.ndarray, batch_size: int) -> list[np.ndarray]:
    x = np.asarray(x, dtype="float32")
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"`x` must be a non-empty batch of images. Received: x with shape {x.shape}")
    return [x[i:i + batch_size] for i in range(0, len(x), batch_size)]


#: Each model's forward pass in training mode as one TensorFlow graph, traced with every batch norm's momentum 0
#: (`recalibrate_batch_norms(..., graph=True)` calls it only so), kept while the model lives: the graph's function
#: holds the model weakly, or the model (the dictionary's key) would never be freed.
_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forward(model: keras.Model, graph: bool) -> Callable[[np.ndarray], Any]:
    """`model(batch, training=True)`: eager, or (`graph` on TensorFlow) one traced graph kept for the model. JAX
    stays eager: it compiles each operation once per shape, and a jitted whole would need the distribution's
    shardings."""
    if not graph or keras.backend.backend() != "tensorflow":
        return lambda batch: model(batch, training=True)
    if model not in _GRAPHS:
        import tensorflow as tf

        held = weakref.ref(model)
        _GRAPHS[model] = tf.function(lambda batch: held()(batch, training=True), reduce_retracing=True)
    return _GRAPHS[model]


def recalibrate_batch_norms(model: keras.Model, x: np.ndarray, batch_size: int = 64,
                            graph: bool = False) -> keras.Model:
    """Set every batch norm's moving mean and variance to the average batch statistics of `x` flowing through
    the model (in training mode, as during training), batch by batch. Weights are unchanged; returns `model`.

    Each batch runs with momentum 0 (the moving statistics become that batch's) and the batches' statistics are
    averaged, as PyTorch's `update_bn` does (momentum None). `graph=True` (TensorFlow; for a caller that
    re-estimates the same model again and again, as `training.RecalibrateBatchNorms` does each epoch) runs the
    forward pass as one graph kept for the model: measured on MobileNetV2 0.35 at 32x32 and 256 images, 3.5 s the
    first call (tracing), 0.25 s each later one, against 1.1-1.3 s each eagerly."""
    norms = batch_norms(model)
    batches = _batches(x, batch_size)
    sums = [[np.zeros(bn.moving_mean.shape, "float64"), np.zeros(bn.moving_variance.shape, "float64")]
            for bn in norms]
    with _momentum(norms):
        for bn in norms:
            bn.momentum = 0.0
        forward = _forward(model, graph)
        for batch in batches:
            forward(batch)
            for total, bn in zip(sums, norms):
                total[0] += np.asarray(bn.moving_mean, dtype="float64")
                total[1] += np.asarray(bn.moving_variance, dtype="float64")
    for (mean, variance), bn in zip(sums, norms):
        bn.moving_mean.assign((mean / len(batches)).astype(bn.moving_mean.dtype))
        bn.moving_variance.assign((variance / len(batches)).astype(bn.moving_variance.dtype))
    return model


def stale_batch_norms(model: keras.Model, x: np.ndarray, max_images: int = 256) -> tuple[list[StaleBatchNorm], int]:
    """(the stale batch norms, how many batch norms the model has), measured on up to `max_images` of `x`.
    The model's moving statistics are restored afterwards."""
    norms = batch_norms(model)
    if not norms:
        return [], 0
    saved = [(bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()) for bn in norms]
    try:
        recalibrate_batch_norms(model, np.asarray(x)[:max_images], batch_size=max_images)
        data = [(np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)) for bn in norms]
    finally:
        for bn, (mean, variance) in zip(norms, saved):
            bn.moving_mean.assign(mean)
            bn.moving_variance.assign(variance)
    stale = []
    for bn, (mean, variance), (data_mean, data_variance) in zip(norms, saved, data):
        data_variance = np.maximum(data_variance, 1e-12)
        ratio = float(np.median(variance / data_variance))
        gap = float(np.median(np.abs(mean - data_mean) / np.sqrt(data_variance)))
        if not (1 / STALE_FACTOR <= ratio <= STALE_FACTOR) or gap > STALE_FACTOR:
            stale.append(StaleBatchNorm(bn.path, float(np.median(variance)), float(np.median(data_variance)), gap))
    return stale, len(norms)


def warn_if_stale_batch_norms(model: keras.Model, x: np.ndarray) -> list[StaleBatchNorm]:
    """Warn (one line) when more than a quarter of the model's batch norms have moving statistics far from the
    data's; returns the stale ones."""
    stale, total = stale_batch_norms(model, x)
    if total and len(stale) > STALE_FRACTION * total:
        worst = max(stale, key=lambda s: abs(np.log(s.moving_variance / s.data_variance)))
        warnings.warn(
            f"{len(stale)} of {total} batch norms of {model.name!r} have moving statistics far from the data's "
            f"(e.g. {worst.path}: moving variance {worst.moving_variance:.3g}, data {worst.data_variance:.3g}): the "
            "model will be near chance in inference mode and after conversion. It was trained too briefly for its "
            "bn_momentum; train with bn_momentum=0.9 or call "
            "keras_mbv2.models.recalibrate_batch_norms(model, x_train).",
            UserWarning, stacklevel=3,
        )
    return stale
