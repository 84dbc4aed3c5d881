#include "main_functions.h"

#include MODEL_SETTINGS_HEADER
#include "model_runner.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace {
bool ready = false;
float image[kInputSize];
float scores[kCategoryCount];

// Replace with your sensor: fill `image` with kNumRows x kNumCols x kNumChannels floats.
void GetImage(float* out) {
  for (int i = 0; i < kInputSize; ++i) out[i] = 0.0f;
}
}  // namespace

void setup() { ready = ModelRunnerInit() == kTfLiteOk; }

void loop() {
  if (!ready) return;
  GetImage(image);
  const int best = ModelRunnerClassify(image, scores);
  if (best >= 0) {
    MicroPrintf("class %d score %d/1000", best, static_cast<int>(scores[best] * 1000));
  }
}
