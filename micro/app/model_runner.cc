#include "model_runner.h"

#include MODEL_DATA_HEADER
#include MODEL_OP_RESOLVER_HEADER
#include MODEL_SETTINGS_HEADER
#include "operator_profiler.h"
#include "platform.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
alignas(16) uint8_t tensor_arena[kTensorArenaSize];
tflite::MicroInterpreter* interpreter = nullptr;
OperatorProfiler profiler;
}  // namespace

TfLiteStatus ModelRunnerInit() {
  const tflite::Model* model = tflite::GetModel(MODEL_DATA);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("Model schema %d, runtime supports %d", model->version(), TFLITE_SCHEMA_VERSION);
    return kTfLiteError;
  }
  static MODEL_RESOLVER_TYPE resolver;  // exactly the model's operators (generated <name>_op_resolver.h)
  if (MODEL_REGISTER_OPS(resolver) != kTfLiteOk) return kTfLiteError;
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena, kTensorArenaSize,
                                                     nullptr, &profiler);
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed: kTensorArenaSize %d is too small", kTensorArenaSize);
    return kTfLiteError;
  }
  return kTfLiteOk;
}

int8_t* ModelInput() { return interpreter->input(0)->data.int8; }

const int8_t* ModelOutput() { return interpreter->output(0)->data.int8; }

TfLiteStatus ModelRunnerInvoke(uint64_t* ticks) {
  profiler.Reset();
  const uint64_t start = PlatformTicks();
  const TfLiteStatus status = interpreter->Invoke();
  *ticks = PlatformTicks() - start;
  return status;
}

size_t ModelArenaUsedBytes() { return interpreter->arena_used_bytes(); }

void ModelRunnerPrintProfile() { profiler.Print(); }
