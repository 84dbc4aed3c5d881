// Macros firmware/app expects (the Makefile passes them with -D); here for name="model".
#ifndef KERAS_MBV2_ARDUINO_CONFIG_H_
#define KERAS_MBV2_ARDUINO_CONFIG_H_
#define MODEL_NAME model
#define MODEL_DATA_HEADER "model_model_data.h"
#define MODEL_SETTINGS_HEADER "model_model_settings.h"
#define MODEL_OP_RESOLVER_HEADER "model_op_resolver.h"
#define MODEL_RESOLVER_TYPE ModelOpResolver
#define MODEL_REGISTER_OPS RegisterModelOps
#endif  // KERAS_MBV2_ARDUINO_CONFIG_H_
