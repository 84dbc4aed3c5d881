"""The four networks of the MobileNetV2 paper's Table 4, each one table decoded by one builder.

The names load on first use (`keras_mbv2._lazy`): `keras_mbv2.models.networks`, the table of networks by name,
is read by the command line before Keras is needed.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "from_keras_application": ".applications", "recalibrate_batch_norms": ".batch_norm",
    "stale_batch_norms": ".batch_norm", "memory_splits_of": ".memory_split", "plan_memory_splits": ".memory_split",
    "split_floor": ".memory_split", "split_model": ".memory_split", "MobileNetV1": ".mobilenet_v1",
    "MobileNetV2": ".mobilenet_v2", "NASNet": ".nasnet", "NASNetMobile": ".nasnet", "ShuffleNetV1": ".shufflenet_v1",
    "transfer_weights": ".weights",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
