"""TensorFlow Lite Micro output: C arrays, model settings, op resolver, board checks, and fitting a RAM budget.

The arena measurement and the offline memory plan live in `keras_mbv2.tflite` and are re-exported here. The names
load on first use (`keras_mbv2._lazy`): the command line reads the boards table without loading Keras.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **{name: "..tflite" for name in ("ArenaUse", "arena_use", "measure_arena", "offline_plan", "plan_offsets",
                                      "tflite_macs")},
    **{name: ".boards" for name in ("BOARDS", "Board", "fit_problems")},
    **{name: ".emitter" for name in ("ARENA_MARGIN", "TFLM_OPS", "MicroReport", "emit", "parse_c_array",
                                      "tensor_arena_size")},
    **{name: ".firmware" for name in ("AppImage", "AppOutput", "check_app_output", "parse_app_output",
                                       "profile_by_operator", "read_test_images")},
    "FitResult": ".fit", "fit_ram": ".fit", "firmware_dir": ".project", "write_project": ".project",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
