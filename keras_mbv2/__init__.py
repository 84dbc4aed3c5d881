"""keras_mbv2: the MobileNetV2 paper's blocks and networks for Keras 3, quantized for microcontrollers."""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .logs import STARTUP as _STARTUP
from .logs import native_stderr_to as _native_stderr_to

# TensorFlow's native start-up lines (CUDA probing on machines without a GPU) are kept in logs.STARTUP;
# KERAS_MBV2_VERBOSE=1 lets them through.
with _native_stderr_to(_STARTUP):
    import keras as _keras  # noqa: F401 (imports the backend, TensorFlow by default, inside the capture)

from . import datasets, layers
from .figures import draw
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
    "MobileNetV1", "MobileNetV2", "NASNet", "NASNetMobile", "Profile", "ShuffleNetV1", "datasets", "draw",
    "from_keras_application", "layers", "profile", "split_model",
]
