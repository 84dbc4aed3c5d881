"""TensorFlow Lite Micro output: C arrays, model settings, op resolver, board checks, and fitting a RAM budget.

The arena measurement and the offline memory plan live in `keras_mbv2.tflite` and are re-exported here.
"""

from ..tflite import ArenaUse, arena_use, measure_arena, offline_plan, plan_offsets, tflite_macs
from .boards import BOARDS, Board, fit_problems
from .emitter import ARENA_MARGIN, TFLM_OPS, MicroReport, emit, parse_c_array, tensor_arena_size
from .firmware import AppImage, AppOutput, check_app_output, parse_app_output, profile_by_operator, read_test_images
from .fit import FitResult, fit_ram

__all__ = [
    "AppImage", "AppOutput", "check_app_output", "parse_app_output", "profile_by_operator", "read_test_images",
    "ARENA_MARGIN", "ArenaUse", "BOARDS", "Board", "FitResult", "MicroReport", "TFLM_OPS", "arena_use", "emit",
    "fit_problems", "fit_ram", "measure_arena", "offline_plan", "plan_offsets",
    "parse_c_array", "tensor_arena_size", "tflite_macs",
]
