"""From a board and a data set to the most accurate model that fits it: `keras_mbv2.search.search`, the engine of
`keras-mbv2 search`.

Stage 1 (`fitting`) measures, on the TFLite Micro host runtime, which candidates of a grid of widths, input sizes
and expansions fit the board's flash and RAM, with channel splits and patch-based inference allowed; stage 2
(`trials`) trains the fitting candidates with the most multiply-adds for a short, equal number of epochs and picks
by validation accuracy; the winner is trained on, quantized (QAT), checked on TFLM and emitted (`finish`). The names
load on first use (`keras_mbv2._lazy`).
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **{name: ".run" for name in ("search", "SearchResult", "SearchDoesNotFit")},
    **{name: ".space" for name in ("Candidate", "SearchSpace", "Limits", "GRIDS", "QUICK_GRIDS", "DEFAULTS", "QUICK")},
    **{name: ".fitting" for name in ("Measurement", "Stage1", "choose_finalists")},
    "Trial": ".trials",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
