#include "result_responder.h"

#include <cstdio>

#include MODEL_SETTINGS_HEADER
#include "platform.h"

void RespondToResult(int index, int true_class, const int8_t* scores, int count, uint64_t ticks) {
  int best = 0;
  for (int c = 1; c < count; ++c) {
    if (scores[c] > scores[best]) best = c;
  }
  const bool known = true_class >= 0 && true_class < count;
  std::printf("image %d: class %d (%s) true %d (%s) scores ", index, best, kCategoryLabels[best],
              known ? true_class : -1, known ? kCategoryLabels[true_class] : "unknown");
  for (int c = 0; c < count; ++c) std::printf(c ? ",%d" : "%d", scores[c]);
  std::printf(" ticks %llu %s\n", static_cast<unsigned long long>(ticks), PlatformTickUnit());
  std::fflush(stdout);
}
