// The Arduino-style entry points of the TFLM examples: setup() once, loop() forever.
#ifndef KERAS_MBV2_MAIN_FUNCTIONS_H_
#define KERAS_MBV2_MAIN_FUNCTIONS_H_

void setup();
void loop();

#endif  // KERAS_MBV2_MAIN_FUNCTIONS_H_
