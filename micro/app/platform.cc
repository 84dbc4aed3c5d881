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

#ifdef KERAS_MBV2_OWN_CRT0
extern "C" {
extern uint32_t __data_start__, __bss_end__, __ram_start__, __ram_end__;
void* _sbrk(int increment);
}

// What the app used of the linker script's RAM: everything static (.data, .bss: the arena and buffers), the heap
// (newlib's, for stdio), and the stack's peak: the deepest word below the stack that boards/startup.c painted and
// something overwrote since.
void ReportRam() {
  const uintptr_t ram = reinterpret_cast<uintptr_t>(&__ram_end__) - reinterpret_cast<uintptr_t>(&__ram_start__);
  const uintptr_t statics = reinterpret_cast<uintptr_t>(&__bss_end__) - reinterpret_cast<uintptr_t>(&__data_start__);
  const uint32_t* heap_top = static_cast<const uint32_t*>(_sbrk(0));
  const uint32_t* deepest = heap_top;
  while (deepest < &__ram_end__ && *deepest == 0xA5A5A5A5u) ++deepest;
  const uintptr_t heap = reinterpret_cast<uintptr_t>(heap_top) - reinterpret_cast<uintptr_t>(&__bss_end__);
  const uintptr_t stack = reinterpret_cast<uintptr_t>(&__ram_end__) - reinterpret_cast<uintptr_t>(deepest);
  std::printf("keras_mbv2 app: RAM %u bytes: static %u (.data + .bss), heap %u, stack peak %u, never used %u\n",
              static_cast<unsigned>(ram), static_cast<unsigned>(statics), static_cast<unsigned>(heap),
              static_cast<unsigned>(stack), static_cast<unsigned>(ram - statics - heap - stack));
  std::fflush(stdout);
}
#endif

void PlatformFinished(int code) {
#ifdef KERAS_MBV2_OWN_CRT0
  ReportRam();
#endif
#if defined(KERAS_MBV2_SEMIHOSTING)
  std::exit(code);
#else
  (void)code;
#endif
}
