"""Conversion to TFLite (full-int8 for microcontrollers, float as reference) and checks on .tflite bytes."""

from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np

TFLITE_IDENTIFIER = b"TFL3"


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
        model: a float Keras 3 model, its flat tf_keras twin, or a tfmot QAT model.
        representative_data: calibration images (array of shape (N, H, W, C) or an iterable of batches);
            needed for "int8". For a QAT model the ranges come from training; calibration only fills
            tensors QAT did not observe.
        quantize: "int8" (full integer: int8 input and output, TFLITE_BUILTINS_INT8 only; for a float model
            this is post-training quantization) or "float".

        schedule: True (default) keeps the converter's operator order unless a depth-first order needs
            less activation memory (see `keras_mbv2.quantization.schedule`), so a split block's slices run
            one after another on TFLM; False returns the converter's order as it is.
    """
    import keras
    import tensorflow as tf

    if quantize not in ("int8", "float"):
        raise ValueError(f"`quantize` must be 'int8' or 'float'. Received: quantize={quantize!r}")
    shape = _input_shape(model)
    if isinstance(model, keras.Model):
        # The converter freezes tf_keras variables but not Keras 3 ones: convert the flat tf_keras twin,
        # which is checked equal to the model in float.
        from .flatten import to_tf_keras

        model = to_tf_keras(model, batch_size=1)
    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec((1,) + shape, tf.float32))
    # The converter saves its trackable as a SavedModel; handing it the tf_keras model makes it serialise
    # every layer's traced calls (~90 s for a small NASNet). A bare module holding only the variables gives
    # byte-identical output in a fifth of the time.
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    if quantize == "int8":
        samples = _representative(representative_data, shape, num_calibration)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    from .schedule import schedule_operators  # TFLM runs operators in flatbuffer order: keep a lean one

    data = bytes(converter.convert())
    return schedule_operators(data) if schedule else data


def read_tflite(tflite: bytes | str | os.PathLike, name: str = "tflite") -> bytes:
    """The bytes of a .tflite model (bytes or a path), checked to be a TFLite flatbuffer."""
    if isinstance(tflite, (str, os.PathLike)):
        if not os.path.isfile(tflite):
            raise ValueError(f"`{name}` file does not exist. Received: {name}={os.fspath(tflite)!r}")
        with open(tflite, "rb") as f:
            data = f.read()
        label = repr(os.fspath(tflite))
    elif isinstance(tflite, (bytes, bytearray)):
        data, label = bytes(tflite), f"<{len(tflite)} bytes>"
    else:
        raise ValueError(f"`{name}` must be .tflite bytes or a path. Received: {name}={type(tflite).__name__}")
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(f"`{name}` is not a TFLite flatbuffer (no 'TFL3' identifier). Received: {name}={label}")
    try:
        model = parse_model(data)
        if not model.subgraphs:
            raise ValueError("no subgraphs")
    except Exception as exc:
        raise ValueError(f"`{name}` is a truncated or corrupt TFLite model ({exc}). Received: {name}={label}") from exc
    return data


def parse_model(data: bytes) -> Any:
    """The whole flatbuffer as LiteRT's generated object API (`ModelT`); raises on truncated data."""
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))


def operator_names(data: bytes) -> list[str]:
    """The builtin operator names a model uses, in the order of its operator-code table."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = parse_model(data).operatorCodes or []
    return [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), f"CUSTOM({c.customCode!r})") for c in codes]


def io_details(tflite: bytes) -> dict[str, Any]:
    """Input/output dtype, shape, scale and zero point, read with LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    return {
        "input_dtype": np.dtype(inp["dtype"]).name, "input_shape": tuple(int(d) for d in inp["shape"]),
        "input_scale": float(inp["quantization"][0]), "input_zero_point": int(inp["quantization"][1]),
        "output_dtype": np.dtype(out["dtype"]).name, "output_shape": tuple(int(d) for d in out["shape"]),
        "output_scale": float(out["quantization"][0]), "output_zero_point": int(out["quantization"][1]),
    }


def require_int8(tflite: bytes, name: str = "tflite") -> dict[str, Any]:
    """Raise unless the model is full-integer (int8 input and output), as microcontrollers need."""
    details = io_details(tflite)
    if details["input_dtype"] != "int8" or details["output_dtype"] != "int8":
        raise ValueError(
            f"`{name}` must be a full-int8 model (int8 input and output); it has {details['input_dtype']} input and "
            f"{details['output_dtype']} output. Convert with to_tflite(model, representative_data, quantize='int8')."
        )
    return details
