// TFLM's profiler interface, timing every operator of an Invoke with the platform clock, printed as a table. A model
// invoked several times per inference (the patch model, once per patch) adds each Invoke's ticks to the same
// operators', so its table is the sum over its invocations.
#ifndef KERAS_MBV2_OPERATOR_PROFILER_H_
#define KERAS_MBV2_OPERATOR_PROFILER_H_

#include <cstdint>

#include "tensorflow/lite/micro/micro_profiler_interface.h"

// Operators beyond KERAS_MBV2_PROFILE_OPERATORS of one model are not recorded: 12 bytes of RAM each.
#ifndef KERAS_MBV2_PROFILE_OPERATORS
#define KERAS_MBV2_PROFILE_OPERATORS 128
#endif

class OperatorProfiler : public tflite::MicroProfilerInterface {
 public:
  static constexpr int kMaxEvents = KERAS_MBV2_PROFILE_OPERATORS;

  uint32_t BeginEvent(const char* tag) override;
  void EndEvent(uint32_t event_handle) override;

  // Forget every recorded tick (before an inference).
  void Reset() {
    count_ = 0;
    next_ = 0;
    invokes_ = 0;
  }
  // Before each Invoke: its operators' ticks add to those of the previous Invokes since Reset.
  void StartInvoke() {
    next_ = 0;
    ++invokes_;
  }
  // The ticks of every operator since Reset.
  uint64_t Total() const;
  // `profile: <prefix>operator N TAG TICKS` per operator since Reset, then `profile: <prefix>total TICKS UNIT over
  // N operators` (and `x K invocations` when invoked more than once).
  void Print(const char* prefix) const;

 private:
  const char* tags_[kMaxEvents] = {};
  uint64_t ticks_[kMaxEvents] = {};
  uint64_t start_ = 0;  // TFLM's operator events do not nest: one start at a time
  int count_ = 0;    // operators seen since Reset
  int next_ = 0;     // the next operator of the current Invoke
  int invokes_ = 0;  // Invokes since Reset
};

#endif  // KERAS_MBV2_OPERATOR_PROFILER_H_
