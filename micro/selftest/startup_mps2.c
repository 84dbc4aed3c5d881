/* Minimal Cortex-M startup for QEMU's mps2-an386 (Cortex-M4): a vector table at 0x0 whose reset entry is
 * newlib's semihosting crt0 (_start, from --specs=rdimon.specs), which zeroes .bss, sets up the heap and
 * stack through semihosting, calls main() and exits through semihosting with main's return value. */
#include <stdint.h>

#ifdef __cplusplus
extern "C" void _start(void);
#else
extern void _start(void);
#endif

static void fault_handler(void) {
  for (;;) {
  }
}

/* Initial stack pointer: top of the 4 MiB SSRAM1 at 0x0 (crt0 moves it where semihosting says). */
__attribute__((section(".vectors"), used)) const void* const vector_table[16] = {
    (void*)0x00400000, (void*)_start, (void*)fault_handler, (void*)fault_handler,
    (void*)fault_handler, (void*)fault_handler, (void*)fault_handler, 0, 0, 0, 0,
    (void*)fault_handler, (void*)fault_handler, 0, (void*)fault_handler, (void*)fault_handler,
};
