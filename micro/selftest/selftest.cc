// Self-test firmware: links the generated model array (<stem>_data.cc, named by MODEL_DATA) and, for a patch-based
// model, the patch model's array (<stem>_patches.cc), checks each flatbuffer identifier and alignment and prints
// each array's CRC32 over semihosting, so the host can compare them with the .tflite files.
// Built by micro/Makefile (target `selftest`), run with:
//   qemu-system-arm -M mps2-an386 -nographic -semihosting-config enable=on,target=native -kernel selftest.elf
#include <cstdint>
#include <cstdio>
#include <cstring>

#include MODEL_DATA_HEADER
#ifdef MODEL_PATCHES_HEADER
#include MODEL_PATCHES_HEADER  // a patch-based model: the patch model's array is checked too
#endif


static uint32_t crc32(const unsigned char* data, unsigned int size) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned int i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// Checks one array and prints its line; true when it is a 16-byte-aligned TFLite flatbuffer.
static bool Check(const char* what, const unsigned char* data, unsigned int size) {
  const bool identifier_ok = size >= 8 && std::memcmp(data + 4, "TFL3", 4) == 0;
  const bool aligned = (reinterpret_cast<uintptr_t>(data) % 16) == 0;
  std::printf("keras_mbv2 selftest: %ssize=%u crc32=%08lx identifier=%s aligned16=%s\n", what, size,
              static_cast<unsigned long>(crc32(data, size)), identifier_ok ? "TFL3" : "BAD",
              aligned ? "yes" : "no");
  return identifier_ok && aligned;
}

int main() {
  bool ok = Check("", MODEL_DATA, MODEL_DATA_SIZE);
#ifdef MODEL_PATCHES_HEADER
  ok = Check("patch model ", MODEL_PATCH_DATA, MODEL_PATCH_DATA_SIZE) && ok;
#endif
  return ok ? 0 : 1;
}
