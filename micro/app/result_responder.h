// What to do with a result, as in the TFLM examples' detection_responder: here, one line per image.
#ifndef KERAS_MBV2_RESULT_RESPONDER_H_
#define KERAS_MBV2_RESULT_RESPONDER_H_

#include <cstdint>

// Prints `image I: class C (its label) true T (its label) scores s0,s1,... ticks N UNIT`: the predicted class,
// the image's true class (`true -1 (unknown)` for a sensor's), and the raw int8 scores, so a host can compare them
// bit for bit with the TFLite Micro host runtime (keras_mbv2.micro.check_app_output).
void RespondToResult(int index, int true_class, const int8_t* scores, int count, uint64_t ticks);

#endif  // KERAS_MBV2_RESULT_RESPONDER_H_
