"""Quantization-aware training: Keras 3 model -> flat tf_keras graph -> tfmot QAT -> full-int8 TFLite.

tfmot quantizes only tf_keras (Keras 2) functional graphs of built-in layers, and Keras 3 has no QAT for
convolutions, so `quantize_aware` rebuilds the model as such a graph with the same weights (checked equal
in float) before quantizing. `to_tflite` converts (int8 or float). Running the result (`evaluate_tflite`,
`run_litert`, `run_tflm`, in a child process since both runtimes can abort) lives in `keras_mbv2.tflite` and is
re-exported here.
"""

from ..tflite import (
    TFLiteResult,
    evaluate_tflite,
    io_details,
    read_tflite,
    require_int8,
    run_isolated,
    run_litert,
    run_tflm,
)
from .export import to_tflite
from .flatten import to_tf_keras
from .qat import finished_model, fit_qat, quantize_aware, quantize_scope

__all__ = [
    "TFLiteResult", "evaluate_tflite", "fit_qat", "io_details", "quantize_aware", "quantize_scope", "read_tflite",
    "require_int8", "run_isolated", "run_litert", "run_tflm", "to_tf_keras", "to_tflite", "finished_model",
]
