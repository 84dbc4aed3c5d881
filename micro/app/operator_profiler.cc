#include "operator_profiler.h"

#include <cstdio>

#include "platform.h"

uint32_t OperatorProfiler::BeginEvent(const char* tag) {
  const int event = next_++;
  if (event >= kMaxEvents) return kMaxEvents;  // beyond the table: not recorded
  if (event >= count_) {  // first seen in this Invoke
    tags_[event] = tag;
    ticks_[event] = 0;
    count_ = event + 1;
  }
  start_ = PlatformTicks();
  return static_cast<uint32_t>(event);
}

void OperatorProfiler::EndEvent(uint32_t event_handle) {
  if (event_handle < kMaxEvents) ticks_[event_handle] += PlatformTicks() - start_;
}

uint64_t OperatorProfiler::Total() const {
  uint64_t total = 0;
  for (int i = 0; i < count_; ++i) total += ticks_[i];
  return total;
}

void OperatorProfiler::Print(const char* prefix) const {
  for (int i = 0; i < count_; ++i) {
    std::printf("profile: %soperator %d %s %llu\n", prefix, i, tags_[i], static_cast<unsigned long long>(ticks_[i]));
  }
  std::printf("profile: %stotal %llu %s over %d operators", prefix, static_cast<unsigned long long>(Total()),
              PlatformTickUnit(), count_);
  if (invokes_ > 1) std::printf(" x %d invocations", invokes_);
  std::printf("\n");
  std::fflush(stdout);
}
