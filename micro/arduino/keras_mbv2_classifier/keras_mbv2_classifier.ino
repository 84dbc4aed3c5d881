// Arduino sketch (Nano 33 BLE and other Mbed boards) for a keras_mbv2 model.
// 1. Install the Arduino_TensorFlowLite library (Library Manager, or the tflite-micro-arduino-examples repo).
// 2. Copy into this folder: model_runner.h/.cc and main_functions.h/.cc from firmware/app/, and the four
//    files keras-mbv2 micro wrote (emit with name="model": model_model_data.h/.cc, model_model_settings.h,
//    model_op_resolver.h).
// 3. Open this sketch and upload. arduino_config.h sets the macros the shared sources expect.
#include "arduino_config.h"
#include "main_functions.h"
