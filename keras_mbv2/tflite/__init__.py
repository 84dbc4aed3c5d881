"""TFLite below both `quantization/` and `micro/`: the flatbuffer, its operators and tensors, and the runtimes.

- `flatbuffer`: read and check a .tflite, parse it into LiteRT's object API and pack it back, operator names,
  multiply-adds, activation tensor sizes, input/output quantization;
- `schedule`: tensor lifetimes in an operator order, the activation peak, depth-first reordering;
- `memory_plan`: an offline memory plan stored in the model's `OfflineMemoryAllocation` metadata;
- `patches`: patch-based inference (MCUNetV2) on stock TFLM: a patch model for the early stage, a rest model,
  the plan, and the firmware's loop (`run_patched`) on the host runtime, bit-exact with the whole model;
- `segments`: segmented execution on stock TFLM: the model cut into segments that are allocated and run one at a
  time in one arena (only one segment's persistent data at a time), the cut planner, the loop on the host runtime;
- `runtime`: LiteRT (reference kernels) and the TensorFlow Lite Micro host runtime, each in a child process,
  accuracy evaluation, and TFLM's measured arena.
"""

from .flatbuffer import (
    TFLITE_IDENTIFIER,
    activation_sizes,
    io_details,
    operator_names,
    pack_model,
    parse_model,
    read_tflite,
    require_int8,
    strip_strings,
    tflite_macs,
)
from .memory_plan import offline_plan, plan_offsets, with_offline_plan, with_tightest_plan
from .patches import PatchedModel, PatchPlan, patch_model, run_patched
from .runtime import (
    Agreement,
    ArenaUse,
    TFLiteResult,
    arena_use,
    compare_outputs,
    evaluate_tflite,
    measure_arena,
    parse_arena_bytes,
    quantize_input,
    run_isolated,
    run_litert,
    run_tflm,
    shared_arena,
)
from .schedule import (
    activation_peak,
    depth_first_order,
    lifetimes,
    live_bytes_per_operator,
    reorder_operators,
    schedule_operators,
)
from .segments import SegmentedModel, SegmentPlan, segment_model, segment_plans

__all__ = [
    "Agreement", "ArenaUse", "PatchPlan", "PatchedModel", "SegmentPlan", "SegmentedModel", "TFLITE_IDENTIFIER",
    "TFLiteResult", "activation_peak", "activation_sizes", "arena_use", "compare_outputs", "depth_first_order",
    "evaluate_tflite", "io_details", "lifetimes", "live_bytes_per_operator", "measure_arena", "offline_plan",
    "operator_names", "pack_model", "parse_arena_bytes", "parse_model", "patch_model", "plan_offsets", "quantize_input",
    "read_tflite", "reorder_operators", "require_int8", "run_isolated", "run_litert", "run_patched", "run_tflm",
    "schedule_operators", "segment_model", "segment_plans", "shared_arena", "strip_strings", "tflite_macs",
    "with_offline_plan", "with_tightest_plan",
]
