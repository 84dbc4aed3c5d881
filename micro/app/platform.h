// What the application needs from the chip: a place to print, a clock, and a way to stop.
#ifndef KERAS_MBV2_PLATFORM_H_
#define KERAS_MBV2_PLATFORM_H_

#include <cstdint>

// Registers the TFLM debug-log callback (TFLM's cortex_m_generic DebugLog prints only through it) and starts
// the clock. The callback writes with stdio: semihosting on QEMU, your UART on a board (retarget _write).
void PlatformInit();

// A free-running tick counter: the DWT cycle counter on cores that have one and where it counts (M3, M4, M7,
// M33, M55), else SysTick at the core clock. 64-bit, so long runs do not wrap.
uint64_t PlatformTicks();

// "cycles (DWT)" or "SysTick ticks": what PlatformTicks counts.
const char* PlatformTickUnit();

// The end of a run over the embedded test images: exits through semihosting on QEMU; returns on a board.
void PlatformFinished(int code);

#endif  // KERAS_MBV2_PLATFORM_H_
