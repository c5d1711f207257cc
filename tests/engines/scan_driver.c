/* Runs engines/kernels' selective scan on arrays from a file, for tests that build the kernel for another
 * architecture and run it under an emulator (tests/engines/test_kernels.py::test_aarch64_build_...).
 *   scan_driver IN OUT
 * IN: int64 b, l, d, n, then float32 x, dt, A, B, C, D, z, dt_bias, h (shapes in selective_scan.h)
 * OUT: float32 y, h_out */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "selective_scan.h"

static float* read_floats(FILE* f, size_t count) {
  float* p = (float*)malloc(count * sizeof(float) + 1);
  if (!p || fread(p, sizeof(float), count, f) != count) {
    fprintf(stderr, "scan_driver: short input\n");
    exit(2);
  }
  return p;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: scan_driver IN OUT\n");
    return 2;
  }
  FILE* in = fopen(argv[1], "rb");
  int64_t dims[4];
  if (!in || fread(dims, sizeof(int64_t), 4, in) != 4) {
    fprintf(stderr, "scan_driver: cannot read %s\n", argv[1]);
    return 2;
  }
  const size_t b = (size_t)dims[0], l = (size_t)dims[1], d = (size_t)dims[2], n = (size_t)dims[3];
  CobraScanArgs a = {dims[0], dims[1], dims[2], dims[3]};
  a.x = read_floats(in, b * l * d);
  a.dt = read_floats(in, b * l * d);
  a.A = read_floats(in, d * n);
  a.B = read_floats(in, b * l * n);
  a.C = read_floats(in, b * l * n);
  a.D = read_floats(in, d);
  a.z = read_floats(in, b * l * d);
  a.dt_bias = read_floats(in, d);
  a.h0 = read_floats(in, b * d * n);
  fclose(in);
  a.y = (float*)malloc(b * l * d * sizeof(float) + 1);
  a.h_out = (float*)malloc(b * d * n * sizeof(float) + 1);
  if (cobra_selective_scan(&a) != 0) {
    fprintf(stderr, "scan_driver: d_state out of range\n");
    return 3;
  }
  FILE* out = fopen(argv[2], "wb");
  if (!out || fwrite(a.y, sizeof(float), b * l * d, out) != b * l * d ||
      fwrite(a.h_out, sizeof(float), b * d * n, out) != b * d * n) {
    fprintf(stderr, "scan_driver: cannot write %s\n", argv[2]);
    return 2;
  }
  fclose(out);
  printf("%s\n", cobra_kernel_isa());
  return 0;
}
