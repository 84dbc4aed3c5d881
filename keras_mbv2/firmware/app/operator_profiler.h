// TFLM's profiler interface, timing every operator of an Invoke with the platform clock, printed as a table.
#ifndef KERAS_MBV2_OPERATOR_PROFILER_H_
#define KERAS_MBV2_OPERATOR_PROFILER_H_

#include <cstdint>

#include "tensorflow/lite/micro/micro_profiler_interface.h"

class OperatorProfiler : public tflite::MicroProfilerInterface {
 public:
  static constexpr int kMaxEvents = 512;

  uint32_t BeginEvent(const char* tag) override;
  void EndEvent(uint32_t event_handle) override;

  // Forget the events of the previous Invoke.
  void Reset() { count_ = 0; }
  // `profile: operator N TAG TICKS` per operator of the last Invoke, then the total.
  void Print() const;

 private:
  const char* tags_[kMaxEvents] = {};
  uint64_t start_[kMaxEvents] = {};
  uint64_t ticks_[kMaxEvents] = {};
  int count_ = 0;
};

#endif  // KERAS_MBV2_OPERATOR_PROFILER_H_
