"""The blocks of the MobileNetV2 paper's Figures 3 and 4, as Keras 3 layers.

| Block | Paper figure |
| --- | --- |
| `ConvBNAct` | 3(a) regular convolution |
| `DepthwiseSeparable` | 3(b), 4(b) MobileNetV1; 3(c) with `linear_bottleneck=True` |
| `Bottleneck` | the classic wide -> narrow -> wide bottleneck that 3(c) and ShuffleNet start from |
| `InvertedResidual` | 3(d), 4(d) MobileNetV2 |
| `ChannelShuffle`, `ShuffleUnit` | 4(c) ShuffleNet |
| `NASNetNormalCell`, `NASNetReductionCell` | 4(a) NASNet-A |
"""

from ._base import Block, bottleneck_width, make_divisible, skip_rule
from .bottleneck import Bottleneck
from .conv import ConvBNAct
from .inverted_residual import InvertedResidual
from .nasnet_cells import NASNetNormalCell, NASNetReductionCell
from .separable import DepthwiseSeparable
from .shuffle import ChannelShuffle, ShuffleUnit

__all__ = [
    "Block",
    "Bottleneck",
    "ChannelShuffle",
    "ConvBNAct",
    "DepthwiseSeparable",
    "InvertedResidual",
    "NASNetNormalCell",
    "NASNetReductionCell",
    "ShuffleUnit",
    "bottleneck_width",
    "make_divisible",
    "skip_rule",
]
