// Runs the keras_mbv2 model with TensorFlow Lite Micro: int8 in, int8 scores out, every operator timed.
#ifndef KERAS_MBV2_MODEL_RUNNER_H_
#define KERAS_MBV2_MODEL_RUNNER_H_

#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/c/common.h"

// Builds the interpreter over a static arena of kTensorArenaSize bytes and allocates the tensors. Call once.
TfLiteStatus ModelRunnerInit();

// The model's int8 input (kInputSize values) and output (kCategoryCount scores) buffers.
int8_t* ModelInput();
const int8_t* ModelOutput();

// Patch-based models read their input a band of rows at a time (GetImageRow) during ModelRunnerInvoke: this
// names the image; ModelInput() is then not used.
void ModelRunnerSetImage(int index);

// Runs one inference on the current input; `ticks` receives its duration (PlatformTicks).
TfLiteStatus ModelRunnerInvoke(uint64_t* ticks);

// Bytes of the arena the interpreter uses (TFLM's arena_used_bytes()).
size_t ModelArenaUsedBytes();

// Prints the per-operator table of the last inference (patched: the patch model's operators summed over the
// patches, then the rest model's) and the ticks outside the operators.
void ModelRunnerPrintProfile();

#endif  // KERAS_MBV2_MODEL_RUNNER_H_
