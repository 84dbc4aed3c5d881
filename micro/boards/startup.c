/* Minimal Cortex-M startup for every QEMU board of the Makefile (mps2-an386, mps2-an500, mps2-an505, mps3-an547,
 * netduinoplus2), each with its linker script beside this file:
 * a vector table where the board's linker script puts it, whose reset handler copies .data from flash where the
 * script keeps it there (netduinoplus2), enables the FPU when the code was built for one (CPACR: full access to
 * CP10 and CP11; a hard-float program stops at its first floating-point instruction otherwise), then enters
 * newlib's semihosting crt0 (_start, from --specs=rdimon.specs), which zeroes .bss, sets up the heap and stack,
 * calls main() and exits through semihosting with main's return value. Used by the self-test and by
 * `make app` / `make run-app` for a QEMU board. */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
void _start(void);
void Reset_Handler(void);
extern uint32_t __stack; /* the linker script's top of RAM */
/* .data's initial values where the linker script keeps them (flash) and where it runs (RAM); the scripts whose
 * whole image is in RAM give equal addresses (weak: a script may leave them out), and nothing is copied. */
extern uint32_t __data_load__ __attribute__((weak));
extern uint32_t __data_start__ __attribute__((weak));
extern uint32_t __data_end__ __attribute__((weak));
void SysTick_Handler(void);
#ifdef __cplusplus
}
#endif

#define SCB_CPACR (*(volatile uint32_t*)0xE000ED88u)

#ifdef KERAS_MBV2_OWN_CRT0
/* The stack stays where the linker script put it (__stack, the vector table's initial SP): newlib's semihosting crt0
 * would move it to the top of the RAM region QEMU knows (mps2-an386: 0x21ffffec, outside a 64 KiB part's RAM), so
 * boards/ram64k.ld links with -nostartfiles and this does crt0's work: .bss zeroed, the semihosting handles opened,
 * the constructors run, main called, exit with its value. */
#ifdef __cplusplus
extern "C" {
#endif
extern uint32_t __bss_start__, __bss_end__;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
extern void exit(int);
/* what crti.o, crtn.o and crtbegin.o (left out with crt0 by -nostartfiles) would define */
void _init(void) {}
void _fini(void) {}
void* __dso_handle = 0;
#ifdef __cplusplus
}
#endif
#endif

void Reset_Handler(void) {
  if (&__data_load__ != &__data_start__) {
    for (uint32_t *src = &__data_load__, *dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  }
#if defined(__ARM_FP)
  SCB_CPACR |= (0xFu << 20);
  __asm volatile("dsb");
  __asm volatile("isb");
#endif
#ifdef KERAS_MBV2_OWN_CRT0
  for (uint32_t* p = &__bss_start__; p < &__bss_end__;) *p++ = 0;
  /* every word between .bss and the stack painted, for the app's report of the stack's peak (platform.cc) */
  uint32_t* sp;
  __asm volatile("mov %0, sp" : "=r"(sp));
  for (uint32_t* p = &__bss_end__; p < sp - 16;) *p++ = 0xA5A5A5A5u;
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
#else
  _start();
#endif
}

static void fault_handler(void) {
  for (;;) {
  }
}

/* The application's clock overrides this when it uses SysTick. */
__attribute__((weak)) void SysTick_Handler(void) {}

/* Initial stack pointer: the top of RAM, from the board's linker script (crt0 moves it where semihosting says). */
__attribute__((section(".vectors"), used)) const void* const vector_table[16] = {
    (void*)&__stack, (void*)Reset_Handler, (void*)fault_handler, (void*)fault_handler,
    (void*)fault_handler, (void*)fault_handler, (void*)fault_handler, 0, 0, 0, 0,
    (void*)fault_handler, (void*)fault_handler, 0, (void*)fault_handler, (void*)SysTick_Handler,
};
