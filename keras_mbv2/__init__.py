"""keras_mbv2: the MobileNetV2 paper's blocks and networks for Keras 3, quantized for microcontrollers."""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from . import layers  # noqa: E402

__version__ = "0.1.0"
__all__ = ["layers"]
