#include "main_functions.h"

#include <cstdio>

#include MODEL_SETTINGS_HEADER
#ifdef MODEL_PATCHES_HEADER
#include MODEL_PATCHES_HEADER
#endif
#ifdef MODEL_SEGMENTS_HEADER
#include MODEL_SEGMENTS_HEADER
#endif
#include "image_provider.h"
#include "model_runner.h"
#include "platform.h"
#include "result_responder.h"

namespace {
bool ready = false;
int image = 0;
}  // namespace

void setup() {
  PlatformInit();
  ready = ModelRunnerInit() == kTfLiteOk;
  if (!ready) {
    std::printf("keras_mbv2 app: the model could not be set up (see above)\n");
    PlatformFinished(1);
    return;
  }
#ifdef KERAS_MBV2_SEGMENTED
  std::printf("keras_mbv2 app: arena used %u of %d bytes (kTensorArenaSize, every model in turn), %d images, "
              "clock: %s\n", static_cast<unsigned>(ModelArenaUsedBytes()), kTensorArenaSize, ImageCount(),
              PlatformTickUnit());
  std::printf("keras_mbv2 app: segmented, %d segments, boundary buffer %d bytes\n", kSegmentCount, kBoundaryBytes);
#endif
#if defined(KERAS_MBV2_PATCHED) && !defined(KERAS_MBV2_SEGMENTED)
#if KERAS_MBV2_SHARED_ARENA
  std::printf("keras_mbv2 app: arena used %u of %d bytes (kTensorArenaSize, shared by both models), %d images, "
              "clock: %s\n", static_cast<unsigned>(ModelArenaUsedBytes()), kTensorArenaSize, ImageCount(),
              PlatformTickUnit());
  const int stage_buffer = kStageRows * kStageCols * kStageChannels;
#else
  std::printf("keras_mbv2 app: arena used %u of %d bytes (kTensorArenaSize + kPatchArenaSize), %d images, "
              "clock: %s\n", static_cast<unsigned>(ModelArenaUsedBytes()), kTensorArenaSize + kPatchArenaSize,
              ImageCount(), PlatformTickUnit());
  const int stage_buffer = 0;
#endif
  std::printf("keras_mbv2 app: patch-based, %d x %d patches, input band %d rows = %d bytes (frame %d bytes), "
              "stage buffer %d bytes\n",
              kPatchRowCount, kPatchColCount, kPatchInput[0].size < kNumRows ? kPatchInput[0].size : kNumRows,
              (kPatchInput[0].size < kNumRows ? kPatchInput[0].size : kNumRows) * kNumCols * kNumChannels,
              kInputSize, stage_buffer);
#elif defined(KERAS_MBV2_PATCHED)
  std::printf("keras_mbv2 app: patch-based, %d x %d patches, input band %d rows = %d bytes (frame %d bytes), "
              "stage output in the boundary buffer\n",
              kPatchRowCount, kPatchColCount, kPatchInput[0].size < kNumRows ? kPatchInput[0].size : kNumRows,
              (kPatchInput[0].size < kNumRows ? kPatchInput[0].size : kNumRows) * kNumCols * kNumChannels,
              kInputSize);
#elif !defined(KERAS_MBV2_SEGMENTED)
  std::printf("keras_mbv2 app: arena used %u of %d bytes (kTensorArenaSize), %d images, clock: %s\n",
              static_cast<unsigned>(ModelArenaUsedBytes()), kTensorArenaSize, ImageCount(), PlatformTickUnit());
#endif
}

void loop() {
  if (!ready) return;
#if defined(KERAS_MBV2_PATCHED) || defined(KERAS_MBV2_SEGMENTED)
  ModelRunnerSetImage(image);  // the loop reads the image itself: a band of rows at a time, or into a segment
#else
  if (GetImage(image, ModelInput()) != kTfLiteOk) return;
#endif
  uint64_t ticks = 0;
  if (ModelRunnerInvoke(&ticks) != kTfLiteOk) {
    std::printf("keras_mbv2 app: Invoke failed on image %d\n", image);
    PlatformFinished(1);
    return;
  }
  RespondToResult(image, ImageLabel(image), ModelOutput(), kCategoryCount, ticks);
  if (image == 0) ModelRunnerPrintProfile();  // every operator's ticks, once
  ++image;
  if (ImageCount() > 0 && image == ImageCount()) {
    std::printf("keras_mbv2 app: done\n");
    PlatformFinished(0);
    image = 0;  // on a board: round again
  }
}
