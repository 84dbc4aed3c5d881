#include "platform.h"

#include <cstdio>
#include <cstdlib>

#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include CMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE  // the core's registers (CMSIS), set by the Makefile

namespace {
volatile uint32_t systick_wraps = 0;
bool use_dwt = false;

void LogLine(const char* s) {
  std::fputs(s, stdout);
  std::fflush(stdout);
}

bool StartDwt() {
#if defined(DWT) && defined(DCB) && !defined(ARMCM0) && !defined(ARMCM0plus)
  DCB->DEMCR |= DCB_DEMCR_TRCENA_Msk;
#if defined(ARMCM7)
  DWT->LAR = 0xC5ACCE55;  // unlock the DWT on the Cortex-M7
#endif
  DWT->CYCCNT = 0;
  DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk;
  const uint32_t before = DWT->CYCCNT;
  for (volatile int i = 0; i < 100; ++i) {
  }
  return DWT->CYCCNT != before;  // QEMU does not emulate the DWT counter: it stays put there
#else
  return false;
#endif
}
}  // namespace

extern "C" void SysTick_Handler(void) { systick_wraps = systick_wraps + 1; }

void PlatformInit() {
  RegisterDebugLogCallback(LogLine);
  use_dwt = StartDwt();
  if (!use_dwt) {
    SysTick->LOAD = SysTick_LOAD_RELOAD_Msk;  // 2^24 - 1
    SysTick->VAL = 0;
    SysTick->CTRL = SysTick_CTRL_CLKSOURCE_Msk | SysTick_CTRL_TICKINT_Msk | SysTick_CTRL_ENABLE_Msk;
  }
}

uint64_t PlatformTicks() {
  if (use_dwt) {
    static uint32_t last = 0;
    static uint64_t high = 0;
    const uint32_t now = DWT->CYCCNT;
    if (now < last) high += 1ULL << 32;
    last = now;
    return high | now;
  }
  uint32_t wraps, value;
  do {  // read the wrap count and the down-counter consistently
    wraps = systick_wraps;
    value = SysTick->VAL;
  } while (wraps != systick_wraps);
  return (static_cast<uint64_t>(wraps) << 24) + (SysTick_LOAD_RELOAD_Msk - value);
}

const char* PlatformTickUnit() { return use_dwt ? "cycles (DWT)" : "SysTick ticks"; }

void PlatformFinished(int code) {
#if defined(KERAS_MBV2_SEMIHOSTING)
  std::exit(code);
#else
  (void)code;
#endif
}
