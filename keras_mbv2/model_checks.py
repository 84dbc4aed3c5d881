"""Checks of a user's model against the data it is given, before any training or conversion starts.

A model the package did not build (keras.applications', a user's own) arrives with its own head and input: a
1000-class MobileNetV2 given the 10-class digits trains an epoch at chance and its int8 model then aborts LiteRT;
images of another size fail deep inside TensorFlow. `check_model_and_data` says so at once, in one message that
names the argument, what the model expects and what the data holds. `qat`, `fit_qat`, `to_tflite` and `fit_ram`
call it first.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def _functional(model: Any, model_arg: str) -> None:
    if type(model).__module__.startswith("tf_keras") and hasattr(model, "input_shape"):
        return  # a tfmot QAT model (tf_keras): functional by construction
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth") or not model.inputs:
        kind = type(model).__name__
        hint = (" (for a Sequential model, keras.Model(model.inputs, model.outputs) is the same model, functional)"
                if isinstance(model, keras.Sequential) else "")
        raise ValueError(
            f"{model_arg} must be a functional Keras model (keras.Model(inputs, outputs), keras.applications' or "
            f"keras_mbv2's builders): quantization and conversion walk its graph of layers{hint}. "
            f"Received: {model_arg}={kind}"
        )


def check_model_and_data(model: Any, x: Any, y: Any = None, classes: int | None = None,
                         model_arg: str = "`model`", data_arg: str = "`x`") -> None:
    """Raise ValueError (one message naming the argument) when `model` (Keras 3, or a tf_keras QAT model) cannot
    take the images `x` (and labels `y`):
    not a functional model; images of another shape than its input; values that are not finite numbers; labels
    that its output width does not cover, or, with `classes` given (the data set's), an output width other than
    `classes`.

    `model_arg`/`data_arg` are the names the message uses (the command line passes its flags).
    """
    _functional(model, model_arg)
    x = np.asarray(x)
    expected = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if expected is not None:
        if x.ndim != len(expected) + 1 or any(e is not None and e != g for e, g in zip(expected, x.shape[1:])):
            raise ValueError(
                f"{model_arg} takes images of shape {expected}, but {data_arg} holds {tuple(x.shape[1:])}: resize "
                f"the data, or build the model for its size. Received: {data_arg} of shape {tuple(x.shape)}")
    if x.size and not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{data_arg} must hold numbers. Received: {data_arg} of dtype {x.dtype}")
    if x.size and np.issubdtype(x.dtype, np.floating):  # integers are finite; no float copy of a large data set
        finite = np.isfinite(x)
        if not finite.all():
            raise ValueError(f"{data_arg} holds NaN or infinite values. Received: {data_arg} with "
                             f"{int(finite.size - np.count_nonzero(finite)):,} non-finite values")
    if y is None and classes is None:
        return
    outputs = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    if outputs is None:
        return
    labels = int(np.max(y)) + 1 if y is not None and len(y) else 0
    wanted = max(classes or 0, labels)
    # with the data's classes known, the head must match them; from labels alone, it must at least cover them
    if outputs != wanted if classes is not None else outputs < wanted:
        raise ValueError(
            f"{model_arg} outputs {outputs} classes, and {data_arg} has {wanted} (labels 0-{wanted - 1}): a classifier "
            f"trained on them needs {wanted} outputs. keras.applications: build it with classes={wanted} "
            f"(weights=None), or include_top=False and your own Dense({wanted}) head. "
            f"Received: {model_arg} with output shape {tuple(model.output_shape)}")
