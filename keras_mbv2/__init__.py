"""keras_mbv2: the MobileNetV2 paper's blocks and networks for Keras 3, quantized for microcontrollers."""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from . import datasets, layers
from .models import (
    MobileNetV1,
    MobileNetV2,
    NASNet,
    NASNetMobile,
    ShuffleNetV1,
    from_keras_application,
    split_model,
)
from .profiler import Profile, profile

__version__ = "0.1.0"
__all__ = [
    "MobileNetV1", "MobileNetV2", "NASNet", "NASNetMobile", "Profile", "ShuffleNetV1", "datasets",
    "from_keras_application", "layers", "profile", "split_model",
]
