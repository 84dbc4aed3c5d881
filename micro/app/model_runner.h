// Runs the keras_mbv2 model with TensorFlow Lite Micro: copy a float image in (quantized to int8),
// invoke, and read float class scores out (dequantized).
#ifndef KERAS_MBV2_MODEL_RUNNER_H_
#define KERAS_MBV2_MODEL_RUNNER_H_

#include "tensorflow/lite/c/common.h"

// Builds the interpreter over a static arena of kTensorArenaSize bytes. Call once.
TfLiteStatus ModelRunnerInit();

// image: kInputSize floats in the range the model was trained on ([0, 1] for keras_mbv2's digits).
// scores: kCategoryCount floats. Returns the index of the best class, or -1 on error.
int ModelRunnerClassify(const float* image, float* scores);

#endif  // KERAS_MBV2_MODEL_RUNNER_H_
