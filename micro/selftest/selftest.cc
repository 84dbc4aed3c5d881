// Self-test firmware: links the generated model array (<stem>_data.cc, named by MODEL_DATA), checks the flatbuffer identifier and
// prints the CRC32 of the array over semihosting, so the host can compare it with the .tflite file.
// Built by micro/Makefile (target `selftest`), run with:
//   qemu-system-arm -M mps2-an386 -nographic -semihosting-config enable=on,target=native -kernel selftest.elf
#include <cstdint>
#include <cstdio>
#include <cstring>

#include MODEL_DATA_HEADER


static uint32_t crc32(const unsigned char* data, unsigned int size) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned int i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

int main() {
  const unsigned char* data = MODEL_DATA;
  const unsigned int size = MODEL_DATA_SIZE;
  const bool identifier_ok = size >= 8 && std::memcmp(data + 4, "TFL3", 4) == 0;
  const bool aligned = (reinterpret_cast<uintptr_t>(data) % 16) == 0;
  std::printf("keras_mbv2 selftest: size=%u crc32=%08lx identifier=%s aligned16=%s\n", size,
              static_cast<unsigned long>(crc32(data, size)), identifier_ok ? "TFL3" : "BAD",
              aligned ? "yes" : "no");
  return identifier_ok && aligned ? 0 : 1;
}
