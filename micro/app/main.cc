// Bare-metal entry point: the board's startup code calls main(); setup() once, then loop() forever (the TFLM
// examples' Arduino-style structure).
#include "main_functions.h"

int main(int argc, char* argv[]) {
  (void)argc;
  (void)argv;
  setup();
  while (true) {
    loop();
  }
}
