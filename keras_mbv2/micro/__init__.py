"""TensorFlow Lite Micro output: C arrays, model settings, op resolver, arena and board checks."""

from .boards import BOARDS, Board, fit_problems
from .emitter import (
    ARENA_MARGIN, TFLM_OPS, ArenaUse, MicroReport, arena_use, emit, measure_arena, parse_c_array, tensor_arena_size,
    tflite_macs,
)
from .fit import FitResult, fit_ram
from .memory_plan import offline_plan, plan_offsets

__all__ = [
    "ARENA_MARGIN", "ArenaUse", "BOARDS", "Board", "FitResult", "MicroReport", "TFLM_OPS", "arena_use", "emit",
    "fit_problems", "fit_ram", "measure_arena", "offline_plan", "plan_offsets",
    "parse_c_array", "tensor_arena_size", "tflite_macs",
]
