/* Minimal Cortex-M startup for QEMU's mps2-an386 (Cortex-M4): a vector table at 0x0 whose reset handler enables
 * the FPU when the code was built for one (CPACR: full access to CP10 and CP11; a hard-float program stops at its
 * first floating-point instruction otherwise), then enters newlib's semihosting crt0 (_start, from
 * --specs=rdimon.specs), which zeroes .bss, sets up the heap and stack, calls main() and exits through
 * semihosting with main's return value. Used by the self-test and by `make run-app`. */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
void _start(void);
void Reset_Handler(void);
void SysTick_Handler(void);
#ifdef __cplusplus
}
#endif

#define SCB_CPACR (*(volatile uint32_t*)0xE000ED88u)

void Reset_Handler(void) {
#if defined(__ARM_FP)
  SCB_CPACR |= (0xFu << 20);
  __asm volatile("dsb");
  __asm volatile("isb");
#endif
  _start();
}

static void fault_handler(void) {
  for (;;) {
  }
}

/* The application's clock overrides this when it uses SysTick. */
__attribute__((weak)) void SysTick_Handler(void) {}

/* Initial stack pointer: top of the 4 MiB SSRAM1 at 0x0 (crt0 moves it where semihosting says). */
__attribute__((section(".vectors"), used)) const void* const vector_table[16] = {
    (void*)0x00400000, (void*)Reset_Handler, (void*)fault_handler, (void*)fault_handler,
    (void*)fault_handler, (void*)fault_handler, (void*)fault_handler, 0, 0, 0, 0,
    (void*)fault_handler, (void*)fault_handler, 0, (void*)fault_handler, (void*)SysTick_Handler,
};
