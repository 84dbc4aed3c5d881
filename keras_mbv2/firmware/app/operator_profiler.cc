#include "operator_profiler.h"

#include <cstdio>

#include "platform.h"

uint32_t OperatorProfiler::BeginEvent(const char* tag) {
  if (count_ >= kMaxEvents) return kMaxEvents;  // beyond the table: not recorded
  tags_[count_] = tag;
  start_[count_] = PlatformTicks();
  return static_cast<uint32_t>(count_++);
}

void OperatorProfiler::EndEvent(uint32_t event_handle) {
  if (event_handle < kMaxEvents) ticks_[event_handle] = PlatformTicks() - start_[event_handle];
}

void OperatorProfiler::Print() const {
  uint64_t total = 0;
  for (int i = 0; i < count_; ++i) total += ticks_[i];
  for (int i = 0; i < count_; ++i) {
    std::printf("profile: operator %d %s %llu\n", i, tags_[i], static_cast<unsigned long long>(ticks_[i]));
  }
  std::printf("profile: total %llu %s over %d operators\n", static_cast<unsigned long long>(total),
              PlatformTickUnit(), count_);
  std::fflush(stdout);
}
