"""The four networks of the MobileNetV2 paper's Table 4, each one table decoded by one builder."""

from .applications import from_keras_application
from .batch_norm import recalibrate_batch_norms, stale_batch_norms
from .memory_split import memory_splits_of, plan_memory_splits, split_floor, split_model
from .mobilenet_v1 import MobileNetV1
from .mobilenet_v2 import MobileNetV2
from .nasnet import NASNet, NASNetMobile
from .shufflenet_v1 import ShuffleNetV1
from .weights import transfer_weights

__all__ = [
    "MobileNetV1", "MobileNetV2", "NASNet", "NASNetMobile", "ShuffleNetV1", "from_keras_application",
    "memory_splits_of", "plan_memory_splits", "recalibrate_batch_norms", "split_floor", "split_model",
    "stale_batch_norms", "transfer_weights",
]
