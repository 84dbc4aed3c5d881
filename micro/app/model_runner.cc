#include "model_runner.h"

#include <cmath>
#include <cstdint>

#include MODEL_DATA_HEADER
#include MODEL_OP_RESOLVER_HEADER
#include MODEL_SETTINGS_HEADER
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/schema/schema_generated.h"


namespace {
alignas(16) uint8_t tensor_arena[kTensorArenaSize];
tflite::MicroInterpreter* interpreter = nullptr;
}  // namespace

TfLiteStatus ModelRunnerInit() {
  const tflite::Model* model = tflite::GetModel(MODEL_DATA);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("Model schema %d, runtime supports %d", model->version(), TFLITE_SCHEMA_VERSION);
    return kTfLiteError;
  }
  static MODEL_RESOLVER_TYPE resolver;  // exactly the model's operators (generated <name>_op_resolver.h)
  if (MODEL_REGISTER_OPS(resolver) != kTfLiteOk) return kTfLiteError;
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena, kTensorArenaSize);
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed: kTensorArenaSize %d is too small", kTensorArenaSize);
    return kTfLiteError;
  }
  MicroPrintf("arena used: %d of %d bytes", static_cast<int>(interpreter->arena_used_bytes()), kTensorArenaSize);
  return kTfLiteOk;
}

int ModelRunnerClassify(const float* image, float* scores) {
  if (interpreter == nullptr) return -1;
  TfLiteTensor* input = interpreter->input(0);
  for (int i = 0; i < kInputSize; ++i) {
    const int q = static_cast<int>(std::lround(image[i] / kInputScale)) + kInputZeroPoint;
    input->data.int8[i] = static_cast<int8_t>(q < -128 ? -128 : (q > 127 ? 127 : q));
  }
  if (interpreter->Invoke() != kTfLiteOk) return -1;
  const TfLiteTensor* output = interpreter->output(0);
  int best = 0;
  for (int c = 0; c < kCategoryCount; ++c) {
    scores[c] = (output->data.int8[c] - kOutputZeroPoint) * kOutputScale;
    if (scores[c] > scores[best]) best = c;
  }
  return best;
}
