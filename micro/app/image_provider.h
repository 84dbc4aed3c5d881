// Where the model's input comes from, as in the TFLM examples' image_provider.
#ifndef KERAS_MBV2_IMAGE_PROVIDER_H_
#define KERAS_MBV2_IMAGE_PROVIDER_H_

#include <cstdint>

#include "tensorflow/lite/c/common.h"

// How many images GetImage serves before the run is finished: the test images `keras-mbv2 micro
// --test-images N` embedded (<stem>_test_images.cc), or 0 for "no end" (a sensor).
int ImageCount();

// Fills `input` (kInputSize int8 values, already quantized with kInputScale / kInputZeroPoint) with image
// `index`. With embedded test images it copies one; without, this is where your sensor goes: replace the body
// (camera, microphone) and quantize each float value v as round(v / kInputScale) + kInputZeroPoint.
TfLiteStatus GetImage(int index, int8_t* input);

// Fills `row_values` (kNumCols * kNumChannels int8 values) with row `row` of image `index`: how a patch-based
// model reads its input, a band of rows at a time, so the whole frame never has to be in RAM (a camera that
// delivers lines, or images in flash). Same quantization as GetImage.
TfLiteStatus GetImageRow(int index, int row, int8_t* row_values);

// The true class of image `index` where it is known (the embedded test images' labels), else -1.
int ImageLabel(int index);

#endif  // KERAS_MBV2_IMAGE_PROVIDER_H_
