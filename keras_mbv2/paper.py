"""Reference numbers from the papers, in one place (MobileNetV2 arXiv 1801.04381; ShuffleNet 1707.01083)."""

from __future__ import annotations

# MobileNetV2 paper Table 4 (ImageNet): top-1 %, params (millions), MAdds (millions).
TABLE4 = {
    "MobileNetV1": (70.6, 4.2, 575),
    "ShuffleNet (1.5)": (71.5, 3.4, 292),
    "ShuffleNet (x2)": (73.7, 5.4, 524),
    "NASNet-A": (74.0, 5.3, 564),
    "MobileNetV2": (72.0, 3.4, 300),
    "MobileNetV2 (1.4)": (74.7, 6.9, 585),
}

# MobileNetV2 paper Table 3: max channels / memory (Kb, 16-bit activations) at each resolution.
TABLE3 = {
    "MobileNetV1": {112: (64, 1600), 56: (128, 800), 28: (256, 400), 14: (512, 200), 7: (1024, 199)},
    "MobileNetV2": {112: (16, 400), 56: (32, 200), 28: (64, 100), 14: (160, 62), 7: (320, 32)},
    "ShuffleNet (2x, g=3)": {112: (32, 800), 56: (48, 300), 28: (400, 600), 14: (800, 310), 7: (1600, 156)},
}
TABLE3_MAX_KB = {"MobileNetV1": 1600, "MobileNetV2": 400, "ShuffleNet (2x, g=3)": 600}

# ShuffleNet Table 1: complexity (MFLOPs) of ShuffleNet 1x per number of groups.
SHUFFLENET_TABLE1_MFLOPS = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}
