"""Conversion to TFLite: full-int8 for microcontrollers, float as the reference."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import warnings
from typing import Any, Iterable

import numpy as np

from ..checks import check_positive_int
from ..logs import native_stderr_to
from ..models.batch_norm import warn_if_stale_batch_norms
from ..tflite.flatbuffer import with_serving_signature


def _input_shape(model: Any) -> tuple[int, ...]:
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"The model input needs a static shape for export. Received input shape: {shape}")
    return shape


def _representative(data: Any, shape: tuple[int, ...], limit: int) -> list[np.ndarray]:
    if data is None:
        raise ValueError("Full-integer conversion needs calibration images. Received: representative_data=None")
    if isinstance(data, np.ndarray):
        if data.shape[1:] != shape:
            raise ValueError(
                f"representative_data must have shape (N, *{shape}). Received: shape {data.shape}"
            )
        data = [data]
    samples = []
    for item in data:
        x = np.asarray(item[0] if isinstance(item, (tuple, list)) else item, dtype="float32")
        x = x.reshape((-1,) + shape) if x.shape[-len(shape):] == shape else x
        if x.shape[1:] != shape:
            raise ValueError(
                f"representative_data items must have shape {shape} or (N, *{shape}). Received: shape {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError("representative_data holds NaN or infinite values: calibration needs real images.")
        samples.extend(x[i:i + 1] for i in range(len(x)))
        if len(samples) >= limit:
            break
    if not samples:
        raise ValueError("`representative_data` is empty: full-integer conversion needs calibration images.")
    return samples[:limit]


def to_tflite(
    model: Any,
    representative_data: Iterable[Any] | np.ndarray | None = None,
    quantize: str = "int8",
    num_calibration: int = 200,
    schedule: bool = True,
) -> bytes:
    """Convert a Keras 3 or tf_keras (QAT) model to TFLite with a static batch of 1.

    Args:
        model: a float Keras 3 model, its flat tf_keras twin, or a tfmot QAT model (trained under a tf.distribute
            strategy too: `outside_any_strategy`; under MultiWorkerMirroredStrategy every worker calls it).
        representative_data: calibration images (array of shape (N, H, W, C) or an iterable of batches);
            needed for "int8". For a QAT model the ranges come from training; calibration only fills
            tensors QAT did not observe.
        quantize: "int8" (full integer: int8 input and output, TFLITE_BUILTINS_INT8 only; for a float model
            this is post-training quantization) or "float".

        schedule: True (default) keeps the converter's operator order unless a depth-first order needs
            less activation memory (see `keras_mbv2.tflite.schedule`), so a split block's slices run
            one after another on TFLM; False returns the converter's order as it is.
    """
    import keras
    import tensorflow as tf

    if quantize not in ("int8", "float"):
        raise ValueError(f"`quantize` must be 'int8' or 'float'. Received: quantize={quantize!r}")
    check_positive_int("num_calibration", num_calibration)
    if not (isinstance(model, keras.Model) or type(model).__module__.startswith("tf_keras")):
        raise ValueError(f"`model` must be a Keras 3 or tf_keras (QAT) model. Received: model={type(model).__name__}")
    model = outside_any_strategy(model)
    shape = _input_shape(model)
    keras_model = model if isinstance(model, keras.Model) else None
    saved_model = None
    if isinstance(model, keras.Model):
        # The converter freezes tf_keras variables but not Keras 3 ones: convert the flat tf_keras twin,
        # which is checked equal to the model in float.
        from .flatten import NotQuantizable, to_tf_keras

        try:
            model = to_tf_keras(model, batch_size=1)
        except NotQuantizable:  # a layer without a tf_keras twin (keras.applications' MobileNetV3: hard_silu, ...)
            saved_model = tempfile.mkdtemp(prefix="keras-mbv2-export-")
    try:
        if saved_model is not None:
            _export_saved_model(keras_model, shape, saved_model)
            converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        else:
            fn = tf.function(lambda x: model(x, training=False))
            concrete = fn.get_concrete_function(tf.TensorSpec((1,) + shape, tf.float32))
            holder = tf.Module()  # the trackable the converter asks for: the variables alone, not the tf_keras model
            holder.model_variables = list(model.variables)
            converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
            # The frozen graph straight to TFLite, not first lowered to a SavedModel: a third of the time for a QAT
            # MobileNetV2 (9.5 s -> 3.2 s) and the same model (measured: without tensor names, what a board stores,
            # byte-identical, float and QAT), but without the signature the SavedModel path writes, which
            # `with_serving_signature` adds back.
            converter.experimental_lower_to_saved_model = False
            data = _convert(converter, keras_model, representative_data, shape, quantize, num_calibration, schedule)
            return with_serving_signature(data)
        return _convert(converter, keras_model, representative_data, shape, quantize, num_calibration, schedule)
    finally:
        if saved_model is not None:
            shutil.rmtree(saved_model, ignore_errors=True)


def outside_any_strategy(model: Any) -> Any:
    """A tf_keras (QAT) model created under a tf.distribute strategy (MirroredStrategy, MultiWorkerMirroredStrategy)
    rebuilt outside it, with its weights: what `to_tflite` converts. The converter rejects the distributed graph's
    collective operations (CollectiveReduceV2); the copy has none. Other models are returned as they are.

    Under MultiWorkerMirroredStrategy, reading the weights is itself collective (measured: a chief reading them
    alone after the other worker exited failed in CollectiveReduceV2, now one RuntimeError saying so): every worker
    calls `to_tflite`, as every worker called `fit_qat`. Each gets an int8 model; they differ only in the input's
    range, which each worker observed on its own data: keep the chief's (the one its checkpoints hold).
    `quantization.finished_model` converts a run folder's last epoch once the workers have left."""
    strategy = getattr(model, "_distribution_strategy", None)
    if strategy is None:
        return model
    from .qat import SOURCES, quantize_aware

    source = SOURCES.get(model)
    if source is None:
        raise ValueError("`model` was created under a tf.distribute strategy by other code than "
                         "keras_mbv2.quantization.quantize_aware, so it cannot be rebuilt outside it for the "
                         "converter: build it with quantize_aware(model, strategy=...), or convert "
                         "keras_mbv2.quantization.finished_model(float_model, run_folder). "
                         f"Received: a model under {type(strategy).__name__}")
    import tensorflow as tf

    try:
        weights = model.get_weights()  # collective under a multi-worker strategy: every worker reads together
    except tf.errors.OpError as exc:
        raise RuntimeError(f"reading the weights of a model trained under {type(strategy).__name__} is collective: "
                           "call to_tflite on every worker, as fit_qat was, while all are running; once workers have "
                           "left, convert keras_mbv2.quantization.finished_model(float_model, run_folder) instead "
                           f"({' '.join(str(exc).split())[:200]})") from None
    plain = quantize_aware(source, check=False)  # built the same way, outside the strategy: the same weight order
    plain.set_weights(weights)
    return plain


def _export_saved_model(model: Any, shape: tuple[int, ...], path: str) -> None:
    """Keras 3's own SavedModel export of `model` at batch 1 (`keras.export.ExportArchive`): for a model whose
    layers have no tf_keras twin. The TFLite converter freezes its variables and fuses what TFLite fuses
    (HARD_SWISH, LOGISTIC + MUL for swish)."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec((1,) + shape, tf.float32)])
    with native_stderr_to([]), contextlib.redirect_stdout(io.StringIO()):  # it prints the endpoints it wrote
        archive.write_out(path)


def _convert(converter: Any, keras_model: Any, representative_data: Any, shape: tuple[int, ...], quantize: str,
             num_calibration: int, schedule: bool) -> bytes:
    """Set `converter` up for `quantize` and convert (`to_tflite`'s last step)."""
    import tensorflow as tf

    if quantize == "int8":
        samples = _representative(representative_data, shape, num_calibration)
        if keras_model is not None:  # post-training quantization keeps the moving statistics as they are
            warn_if_stale_batch_norms(keras_model, np.concatenate(samples))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    from ..tflite.schedule import schedule_operators  # TFLM runs operators in flatbuffer order: keep a lean one

    with native_stderr_to([]), warnings.catch_warnings():  # the converter prints its settings from C++ on every call
        # the frozen-graph path asks for the int8 input's range up front; the calibration sets it
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected", UserWarning)
        data = bytes(converter.convert())
    return schedule_operators(data) if schedule else data
