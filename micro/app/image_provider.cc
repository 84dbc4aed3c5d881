#include "image_provider.h"

#include <cstring>

#include MODEL_SETTINGS_HEADER
#ifdef MODEL_TEST_IMAGES_HEADER
#include MODEL_TEST_IMAGES_HEADER
#endif

int ImageCount() {
#ifdef MODEL_TEST_IMAGES_HEADER
  return kNumTestImages;
#else
  return 0;
#endif
}

int ImageLabel(int index) {
#ifdef MODEL_TEST_IMAGES_HEADER
  if (index >= 0 && index < kNumTestImages) return g_test_labels[index];
#else
  (void)index;
#endif
  return -1;
}

TfLiteStatus GetImage(int index, int8_t* input) {
#ifdef MODEL_TEST_IMAGES_HEADER
  if (index < 0 || index >= kNumTestImages) return kTfLiteError;
  std::memcpy(input, g_test_images[index], kInputSize);
#else
  (void)index;
  std::memset(input, kInputZeroPoint, kInputSize);  // replace with your sensor
#endif
  return kTfLiteOk;
}

TfLiteStatus GetImageRow(int index, int row, int8_t* row_values) {
  const int size = kNumCols * kNumChannels;
  if (row < 0 || row >= kNumRows) return kTfLiteError;
#ifdef MODEL_TEST_IMAGES_HEADER
  if (index < 0 || index >= kNumTestImages) return kTfLiteError;
  std::memcpy(row_values, g_test_images[index] + row * size, size);
#else
  (void)index;
  std::memset(row_values, kInputZeroPoint, size);  // replace with your sensor's line
#endif
  return kTfLiteOk;
}
