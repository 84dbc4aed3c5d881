"""keras_mbv2: the MobileNetV2 paper's blocks and networks for Keras 3, quantized for microcontrollers.

Importing the package is cheap: its parts (and Keras, TensorFlow) load on first use. It also makes the first
import of TensorFlow keep its native start-up lines off the terminal (`keras_mbv2.logs`), so import keras_mbv2
before Keras; `KERAS_MBV2_VERBOSE=1` lets the lines through. Whenever Keras loads, before or after the package, the
blocks (`keras_mbv2.layers`) register with its serialization: `keras.models.load_model` reads a saved model of this
package's networks after a plain `import keras_mbv2`.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ._lazy import after_import as _after_import
from ._lazy import lazy_exports as _lazy_exports
from ._version import __version__
from .logs import quiet_tensorflow_import as _quiet_tensorflow_import

_quiet_tensorflow_import()

_EXPORTS = {
    **{name: ".models" for name in ("MobileNetV1", "MobileNetV2", "NASNet", "NASNetMobile", "ShuffleNetV1",
                                    "from_keras_application", "split_model")},
    "Profile": ".profiler", "profile": ".profiler", "draw": ".figures",
    # the subpackages and modules a user reaches as attributes (`keras_mbv2.micro.fit_ram`), loaded on first use
    **{name: f".{name}" for name in ("datasets", "layers", "micro", "models", "quantization", "search", "tflite",
                                     "profiler", "training", "distribute")},
}
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)


def _register_blocks() -> None:
    import importlib

    importlib.import_module(".layers", __name__)  # the blocks' classes register with Keras' serialization


# Once Keras loads, so does `keras_mbv2.layers`: `keras.models.load_model` then finds the blocks of a saved model
# after a plain `import keras_mbv2`, as it finds keras.applications' layers
_after_import("keras", _register_blocks)

__all__ = ["__version__", *sorted(_EXPORTS)]
