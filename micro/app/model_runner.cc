#include "model_runner.h"

#include <cstring>
#include <new>

#include MODEL_DATA_HEADER
#include MODEL_OP_RESOLVER_HEADER
#include MODEL_SETTINGS_HEADER
#ifdef MODEL_PATCHES_HEADER
#include MODEL_PATCHES_HEADER
#endif
#ifdef MODEL_SEGMENTS_HEADER
#include MODEL_SEGMENTS_HEADER
#endif
#include "image_provider.h"
#include "operator_profiler.h"
#include "platform.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
alignas(16) uint8_t tensor_arena[kTensorArenaSize];
tflite::MicroInterpreter* interpreter = nullptr;
OperatorProfiler profiler;
uint64_t last_ticks = 0;  // the last inference's, for the profile's time outside the operators
int image_index = 0;

const tflite::Model* LoadModel(const unsigned char* data) {
  const tflite::Model* model = tflite::GetModel(data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("Model schema %d, runtime supports %d", model->version(), TFLITE_SCHEMA_VERSION);
    return nullptr;
  }
  return model;
}

#ifdef KERAS_MBV2_PATCHED
// Patch-based inference (keras_mbv2.tflite.patches): the model array is the rest of the network, whose input is
// the stage output; the patch model computes that stage one patch at a time from the frame. The emitted scheme
// is the one that needs less RAM:
// - KERAS_MBV2_SHARED_ARENA 1: both interpreters share tensor_arena through one MicroAllocator (TFLM's
//   multi-tenant allocation): they never run at once, so their activations overlap. Each patch invocation
//   overwrites that shared area, the rest model's input included, so the patch outputs are assembled in the stage
//   buffer, copied into the rest model's input before it runs.
// - KERAS_MBV2_SHARED_ARENA 0: the patch model has its own arena, and the patch outputs go straight into the rest
//   model's input, which no patch invocation touches.
tflite::MicroInterpreter* patch_interpreter = nullptr;
OperatorProfiler patch_profiler;  // the patch model's operators, summed over the patches of one inference
#if defined(KERAS_MBV2_SEGMENTED)
// segmented: the patch outputs are assembled in the boundary buffer (below)
#elif KERAS_MBV2_SHARED_ARENA
int8_t stage_buffer[kStageRows * kStageCols * kStageChannels];
#else
alignas(16) uint8_t patch_arena[kPatchArenaSize];
#endif
// The frame is never whole in RAM: a ring of the kBandRows rows one row of patches reads, fetched in order.
constexpr int kRowValues = kNumCols * kNumChannels;
constexpr int kBandRows = kPatchInput[0].size < kNumRows ? kPatchInput[0].size : kNumRows;
int8_t band[kBandRows * kRowValues];

// The part [first, last) of the region of the patch whose output starts at `start` that lies inside the tensor.
struct Window {
  int first, last;
};
inline Window Inside(const PatchAxis& axis, int start) {
  const int from = axis.stride * start + axis.offset;  // the region's first position in the tensor
  const int before = from < 0 ? -from : 0;
  const int first = before < axis.size ? before : axis.size;
  const int last = from + axis.size > axis.full ? axis.full - from : axis.size;
  return {first, last > first ? last : first};  // empty (first == last) when the region lies wholly outside
}

// A mask as rows of memset: 0 outside, 1 inside, `channels` values a pixel. Written before every invocation: TFLM
// reuses an input's memory once its last reader ran (and the rest model, sharing the arena, overwrites it too).
void FillMask(int8_t* mask, int rows, int cols, int channels, Window y, Window x) {
  const int row_values = cols * channels;
  for (int r = 0; r < rows; ++r) {
    int8_t* row = mask + r * row_values;
    if (r < y.first || r >= y.last) {
      std::memset(row, 0, row_values);
      continue;
    }
    std::memset(row, 0, x.first * channels);
    std::memset(row + x.first * channels, 1, (x.last - x.first) * channels);
    std::memset(row + x.last * channels, 0, (cols - x.last) * channels);
  }
}

// Every patch through the patch model, each output written to its place in `stage` (the stage output).
TfLiteStatus RunPatches(int8_t* stage) {
  const PatchAxis& rows = kPatchInput[0];
  const PatchAxis& cols = kPatchInput[1];
  int next_row = 0;  // the next frame row to fetch into the band
  for (int py = 0; py < kPatchRowCount; ++py) {
    const int last = rows.stride * kPatchRowStarts[py] + rows.offset + rows.size;  // one past the rows needed
    for (; next_row < last && next_row < kNumRows; ++next_row) {
      if (GetImageRow(image_index, next_row, band + (next_row % kBandRows) * kRowValues) != kTfLiteOk) {
        return kTfLiteError;
      }
    }
    for (int px = 0; px < kPatchColCount; ++px) {
      const int oy = kPatchRowStarts[py], ox = kPatchColStarts[px];
      // the frame's region for this patch, the input zero point outside the image (the whole model's padding):
      // each row's inside columns in one copy from the band
      int8_t* in = patch_interpreter->input(0)->data.int8;
      const Window in_rows = Inside(rows, oy), in_cols = Inside(cols, ox);
      const int x0 = cols.stride * ox + cols.offset;
      const int patch_row = cols.size * kNumChannels;
      for (int r = 0; r < rows.size; ++r) {
        int8_t* to = in + r * patch_row;
        if (r < in_rows.first || r >= in_rows.last) {
          std::memset(to, kInputZeroPoint, patch_row);
          continue;
        }
        const int y = rows.stride * oy + rows.offset + r;
        std::memset(to, kInputZeroPoint, in_cols.first * kNumChannels);
        std::memcpy(to + in_cols.first * kNumChannels, band + (y % kBandRows) * kRowValues + (x0 + in_cols.first) *
                    kNumChannels, (in_cols.last - in_cols.first) * kNumChannels);
        std::memset(to + in_cols.last * kNumChannels, kInputZeroPoint, (cols.size - in_cols.last) * kNumChannels);
      }
      // each intermediate tensor's border: 1 inside, 0 where the whole model reads padding
      for (int m = 0; m < kPatchMaskCount; ++m) {
        const PatchAxis& my = kPatchMasks[m][0];
        const PatchAxis& mx = kPatchMasks[m][1];
        FillMask(patch_interpreter->input(1 + m)->data.int8, my.size, mx.size, kPatchMaskChannels[m],
                 Inside(my, oy), Inside(mx, ox));
      }
      patch_profiler.StartInvoke();
      if (patch_interpreter->Invoke() != kTfLiteOk) return kTfLiteError;
      const int8_t* out = patch_interpreter->output(0)->data.int8;
      for (int r = 0; r < kPatchOutRows; ++r) {
        std::memcpy(stage + ((oy + r) * kStageCols + ox) * kStageChannels, out + r * kPatchOutCols * kStageChannels,
                    kPatchOutCols * kStageChannels);
      }
    }
  }
  return kTfLiteOk;
}

#ifndef KERAS_MBV2_SEGMENTED
TfLiteStatus InvokePatches() {
#if KERAS_MBV2_SHARED_ARENA
  if (RunPatches(stage_buffer) != kTfLiteOk) return kTfLiteError;
  std::memcpy(interpreter->input(0)->data.int8, stage_buffer, sizeof(stage_buffer));
#else
  if (RunPatches(interpreter->input(0)->data.int8) != kTfLiteOk) return kTfLiteError;
#endif
  profiler.StartInvoke();
  return interpreter->Invoke();
}
#endif
#endif

#ifdef KERAS_MBV2_SEGMENTED
// Segmented execution (keras_mbv2.tflite.segments): every model runs in tensor_arena in turn, its interpreter made
// (placement new), allocated, invoked and destroyed each inference, so only one model's persistent data exists at a
// time; the tensors that cross from one segment to the next wait in the boundary buffer.
alignas(16) int8_t boundary[kBoundaryBytes];
alignas(tflite::MicroInterpreter) uint8_t interpreter_storage[sizeof(tflite::MicroInterpreter)];
const tflite::Model* segment_models[kSegmentCount] = {};
tflite::MicroOpResolver* segment_resolver = nullptr;
uint64_t allocate_ticks = 0;  // the last inference's AllocateTensors calls, for the profile
uint64_t allocate_each[kSegmentCount + 1] = {};  // each model's: the segments', then the patch model's
size_t largest_arena = 0;     // the largest arena_used_bytes() of every model, measured at setup
#ifdef KERAS_MBV2_PATCHED
const tflite::Model* patch_model = nullptr;
#endif

// The model's interpreter in the one arena, allocated; nullptr (and its error printed) when allocation fails.
// `segment`: which model, for the error (-1: the patch model).
tflite::MicroInterpreter* MakeInterpreter(const tflite::Model* model, OperatorProfiler* model_profiler,
                                          int segment) {
  const uint64_t start = PlatformTicks();
  auto* made = new (interpreter_storage) tflite::MicroInterpreter(model, *segment_resolver, tensor_arena,
                                                                 kTensorArenaSize, nullptr, model_profiler);
  const TfLiteStatus status = made->AllocateTensors();
  const uint64_t ticks = PlatformTicks() - start;
  allocate_ticks += ticks;
  allocate_each[segment < 0 ? kSegmentCount : segment] = ticks;
  if (status != kTfLiteOk) {
    if (segment < 0) {
      MicroPrintf("AllocateTensors failed: kTensorArenaSize %d is too small for the patch model", kTensorArenaSize);
    } else {
      MicroPrintf("AllocateTensors failed: kTensorArenaSize %d is too small for segment %d", kTensorArenaSize,
                  segment);
    }
    made->~MicroInterpreter();
    return nullptr;
  }
  return made;
}

// Copies a tensor's bytes, after checking its size is the one the plan was written for.
bool CopyChecked(void* to, const void* from, const TfLiteTensor* tensor, int bytes, int segment) {
  if (tensor == nullptr || static_cast<int>(tensor->bytes) != bytes) {
    MicroPrintf("segment %d: a tensor of %d bytes expected, the model has %d", segment, bytes,
                tensor == nullptr ? -1 : static_cast<int>(tensor->bytes));
    return false;
  }
  std::memcpy(to, from, bytes);
  return true;
}

TfLiteStatus InvokeSegments() {
  allocate_ticks = 0;
#ifdef KERAS_MBV2_PATCHED
  patch_interpreter = MakeInterpreter(patch_model, &patch_profiler, -1);
  if (patch_interpreter == nullptr) return kTfLiteError;
  const TfLiteStatus patches = RunPatches(boundary);  // the stage output, at the buffer's front
  patch_interpreter->~MicroInterpreter();
  patch_interpreter = nullptr;
  if (patches != kTfLiteOk) return kTfLiteError;
#endif
  profiler.StartInvoke();  // one table for the whole model: the segments' operators numbered on
  for (int i = 0; i < kSegmentCount; ++i) {
    tflite::MicroInterpreter* segment = MakeInterpreter(segment_models[i], &profiler, i);
    if (segment == nullptr) return kTfLiteError;
    bool ok = true;
    for (int j = 0; ok && j < kSegmentInputCount[i]; ++j) {
      const SegmentSpan& in = kSegmentInputs[i][j];
      TfLiteTensor* tensor = segment->input(j);
      if (in.offset < 0) {  // the frame, straight into the first segment's input
        ok = tensor != nullptr && static_cast<int>(tensor->bytes) == kInputSize &&
             GetImage(image_index, tensor->data.int8) == kTfLiteOk;
      } else {
        ok = CopyChecked(tensor->data.int8, boundary + in.offset, tensor, in.bytes, i);
      }
    }
    ok = ok && segment->Invoke() == kTfLiteOk;
    for (int m = 0; ok && m < kSegmentMoveCount[i]; ++m) {
      const SegmentMove& move = kSegmentMoves[i][m];
      std::memmove(boundary + move.to, boundary + move.from, move.bytes);
    }
    for (int j = 0; ok && j < kSegmentOutputCount[i]; ++j) {
      const SegmentSpan& out = kSegmentOutputs[i][j];
      if (out.offset >= 0) ok = CopyChecked(boundary + out.offset, segment->output(j)->data.int8,
                                            segment->output(j), out.bytes, i);
    }
    segment->~MicroInterpreter();
    if (!ok) return kTfLiteError;
  }
  return kTfLiteOk;
}
#endif
}  // namespace

TfLiteStatus ModelRunnerInit() {
  const tflite::Model* model = LoadModel(MODEL_DATA);
  if (model == nullptr) return kTfLiteError;
  static MODEL_RESOLVER_TYPE resolver;  // exactly the model's operators (generated <name>_op_resolver.h)
  if (MODEL_REGISTER_OPS(resolver) != kTfLiteOk) return kTfLiteError;
#ifdef KERAS_MBV2_SEGMENTED
  // every model allocated once now, so that a too small arena is reported before the first image
  segment_resolver = &resolver;
#ifdef KERAS_MBV2_PATCHED
  patch_model = LoadModel(MODEL_PATCH_DATA);
  if (patch_model == nullptr) return kTfLiteError;
  tflite::MicroInterpreter* made = MakeInterpreter(patch_model, nullptr, -1);
  if (made == nullptr) return kTfLiteError;
  largest_arena = made->arena_used_bytes();
  made->~MicroInterpreter();
#endif
  for (int i = 0; i < kSegmentCount; ++i) {
    segment_models[i] = LoadModel(kSegmentModels[i]);
    if (segment_models[i] == nullptr) return kTfLiteError;
    tflite::MicroInterpreter* segment = MakeInterpreter(segment_models[i], nullptr, i);
    if (segment == nullptr) return kTfLiteError;
    if (segment->arena_used_bytes() > largest_arena) largest_arena = segment->arena_used_bytes();
    std::printf("keras_mbv2 app: segment %d arena used %u bytes\n", i, static_cast<unsigned>(segment->arena_used_bytes()));
    segment->~MicroInterpreter();
  }
  (void)model;
  return kTfLiteOk;
#endif
#if defined(KERAS_MBV2_PATCHED) && KERAS_MBV2_SHARED_ARENA
  const tflite::Model* patch_model = LoadModel(MODEL_PATCH_DATA);
  if (patch_model == nullptr) return kTfLiteError;
  tflite::MicroAllocator* allocator = tflite::MicroAllocator::Create(tensor_arena, kTensorArenaSize);
  if (allocator == nullptr) return kTfLiteError;
  static tflite::MicroInterpreter static_interpreter(model, resolver, allocator, nullptr, &profiler);
  static tflite::MicroInterpreter static_patch_interpreter(patch_model, resolver, allocator, nullptr,
                                                           &patch_profiler);
  patch_interpreter = &static_patch_interpreter;
#else
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena, kTensorArenaSize,
                                                     nullptr, &profiler);
#endif
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed: kTensorArenaSize %d is too small", kTensorArenaSize);
    return kTfLiteError;
  }
#if defined(KERAS_MBV2_PATCHED) && KERAS_MBV2_SHARED_ARENA
  if (patch_interpreter->AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed: kTensorArenaSize %d is too small for both models", kTensorArenaSize);
    return kTfLiteError;
  }
#elif defined(KERAS_MBV2_PATCHED)
  const tflite::Model* patch_model = LoadModel(MODEL_PATCH_DATA);
  if (patch_model == nullptr) return kTfLiteError;
  static tflite::MicroInterpreter static_patch_interpreter(patch_model, resolver, patch_arena, kPatchArenaSize,
                                                           nullptr, &patch_profiler);
  patch_interpreter = &static_patch_interpreter;
  if (patch_interpreter->AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed: kPatchArenaSize %d is too small", kPatchArenaSize);
    return kTfLiteError;
  }
#endif
  return kTfLiteOk;
}

#if defined(KERAS_MBV2_PATCHED) || defined(KERAS_MBV2_SEGMENTED)
int8_t* ModelInput() { return nullptr; }
#else
int8_t* ModelInput() { return interpreter->input(0)->data.int8; }
#endif
void ModelRunnerSetImage(int index) { image_index = index; }

#ifdef KERAS_MBV2_SEGMENTED
const int8_t* ModelOutput() { return boundary + kModelOutputOffset; }  // copied out of the last segment
#else
const int8_t* ModelOutput() { return interpreter->output(0)->data.int8; }
#endif

TfLiteStatus ModelRunnerInvoke(uint64_t* ticks) {
  profiler.Reset();
#ifdef KERAS_MBV2_PATCHED
  patch_profiler.Reset();
#endif
#ifdef KERAS_MBV2_SEGMENTED
  const uint64_t start = PlatformTicks();
  const TfLiteStatus status = InvokeSegments();
#elif defined(KERAS_MBV2_PATCHED)
  const uint64_t start = PlatformTicks();
  const TfLiteStatus status = InvokePatches();
#else
  const uint64_t start = PlatformTicks();
  profiler.StartInvoke();
  const TfLiteStatus status = interpreter->Invoke();
#endif
  *ticks = last_ticks = PlatformTicks() - start;
  return status;
}

size_t ModelArenaUsedBytes() {
#if defined(KERAS_MBV2_SEGMENTED)
  return largest_arena;  // every model in turn: the largest
#elif defined(KERAS_MBV2_PATCHED) && !KERAS_MBV2_SHARED_ARENA
  return interpreter->arena_used_bytes() + patch_interpreter->arena_used_bytes();
#else
  return interpreter->arena_used_bytes();  // with a shared arena, the one allocator's
#endif
}

void ModelRunnerPrintProfile() {
  uint64_t operators = profiler.Total();
#ifdef KERAS_MBV2_PATCHED
  patch_profiler.Print("patch ");
  operators += patch_profiler.Total();
#endif
  profiler.Print("");
#ifdef KERAS_MBV2_SEGMENTED
#ifdef KERAS_MBV2_PATCHED
  constexpr int kModels = kSegmentCount + 1;
#else
  constexpr int kModels = kSegmentCount;
#endif
  // AllocateTensors of every model, each inference (part of the time outside the operators)
  for (int i = 0; i < kModels; ++i) {
    std::printf("profile: allocate %s %d %llu\n", i < kSegmentCount ? "segment" : "patch model", i,
                static_cast<unsigned long long>(allocate_each[i]));
  }
  std::printf("profile: allocate %llu %s over %d models\n", static_cast<unsigned long long>(allocate_ticks),
              PlatformTickUnit(), kModels);
#endif
  // the rest of the inference: TFLM's own work per Invoke and, patched, the loop's band fetches, copies and masks
  std::printf("profile: outside the operators %llu %s\n",
              static_cast<unsigned long long>(last_ticks > operators ? last_ticks - operators : 0),
              PlatformTickUnit());
  std::fflush(stdout);
}
