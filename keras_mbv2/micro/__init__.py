"""TensorFlow Lite Micro output: C arrays, model settings, op resolver, arena and board checks."""

from .boards import BOARDS, Board, fit_problems
from .emitter import ARENA_MARGIN, TFLM_OPS, MicroReport, emit, measure_arena, parse_c_array, tflite_macs

__all__ = [
    "ARENA_MARGIN", "BOARDS", "Board", "MicroReport", "TFLM_OPS", "emit", "fit_problems", "measure_arena",
    "parse_c_array", "tflite_macs",
]
