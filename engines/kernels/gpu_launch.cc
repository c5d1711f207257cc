/* Host side of the GPU kernels (contract in gpu_launch.h): the CUDA driver through dlopen (cuda_abi.h), one loaded
 * module per CUDA context, launches with the grids the kernel headers define (the host harness, gpu_emu.cc, walks the
 * same grids). */
#include "gpu_launch.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_abi.h"
#include "gpu_kernels.h"

namespace {

__attribute__((format(printf, 3, 4))) int fail(char* err, size_t errlen, const char* fmt, ...) {
  if (err && errlen) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(err, errlen, fmt, args);
    va_end(args);
  }
  return -1;
}

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
CudaDriver g_cu;
bool g_loaded = false;
char g_load_error[256];

/* the driver's functions by their ABI names (cuda.h #defines some API names to _v2 symbols) */
bool load_driver_locked() {
  if (g_loaded) return true;
  if (g_load_error[0]) return false;
  void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(g_load_error, sizeof g_load_error, "the CUDA driver (libcuda.so.1) is not installed or not loadable: %s",
             dlerror());
    return false;
  }
  struct Sym {
    void** slot;
    const char* name;
  } syms[] = {
      {(void**)&g_cu.cuInit, "cuInit"},
      {(void**)&g_cu.cuGetErrorName, "cuGetErrorName"},
      {(void**)&g_cu.cuDeviceGet, "cuDeviceGet"},
      {(void**)&g_cu.cuDeviceGetAttribute, "cuDeviceGetAttribute"},
      {(void**)&g_cu.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"},
      {(void**)&g_cu.cuCtxGetCurrent, "cuCtxGetCurrent"},
      {(void**)&g_cu.cuCtxSetCurrent, "cuCtxSetCurrent"},
      {(void**)&g_cu.cuCtxSynchronize, "cuCtxSynchronize"},
      {(void**)&g_cu.cuModuleLoadData, "cuModuleLoadData"},
      {(void**)&g_cu.cuModuleGetFunction, "cuModuleGetFunction"},
      {(void**)&g_cu.cuLaunchKernel, "cuLaunchKernel"},
      {(void**)&g_cu.cuStreamSynchronize, "cuStreamSynchronize"},
      {(void**)&g_cu.cuMemAlloc, "cuMemAlloc_v2"},
      {(void**)&g_cu.cuMemFree, "cuMemFree_v2"},
      {(void**)&g_cu.cuMemcpy, "cuMemcpy"},
      {(void**)&g_cu.cuMemsetD8, "cuMemsetD8_v2"},
      {(void**)&g_cu.cuEventCreate, "cuEventCreate"},
      {(void**)&g_cu.cuEventRecord, "cuEventRecord"},
      {(void**)&g_cu.cuEventSynchronize, "cuEventSynchronize"},
      {(void**)&g_cu.cuEventElapsedTime, "cuEventElapsedTime"},
      {(void**)&g_cu.cuEventDestroy, "cuEventDestroy_v2"},
  };
  for (const Sym& s : syms) {
    *s.slot = dlsym(h, s.name);
    if (!*s.slot) {
      snprintf(g_load_error, sizeof g_load_error, "libcuda.so.1 lacks %s (driver too old for CUDA 12?)", s.name);
      return false;
    }
  }
  const CUresult r = g_cu.cuInit(0);
  if (r != CUDA_SUCCESS) {
    const char* name = "?";
    g_cu.cuGetErrorName(r, &name);
    snprintf(g_load_error, sizeof g_load_error, "cuInit failed: %s (no usable NVIDIA GPU?)", name);
    return false;
  }
  g_loaded = true;
  return true;
}

const CudaDriver* driver(char* err, size_t errlen) {
  pthread_mutex_lock(&g_lock);
  const bool ok = load_driver_locked();
  pthread_mutex_unlock(&g_lock);
  if (!ok) {
    fail(err, errlen, "%s", g_load_error);
    return nullptr;
  }
  return &g_cu;
}

int cu_fail(CUresult r, const char* what, char* err, size_t errlen) {
  const char* name = "?";
  if (g_loaded) g_cu.cuGetErrorName(r, &name);
  return fail(err, errlen, "%s failed: %s", what, name);
}

#define CU_CHECK(call, what)                                  \
  do {                                                        \
    const CUresult r_ = (call);                               \
    if (r_ != CUDA_SUCCESS) return cu_fail(r_, what, err, errlen); \
  } while (0)

/* the device code and, per context, its loaded module with every kernel looked up */
void* g_image = nullptr;
enum { kMaxContexts = 16 };
#define COBRA_COUNT(...) +1
enum { kScanFns = 0 COBRA_SCAN_KERNELS(COBRA_COUNT), kConvFns = 0 COBRA_CONV_KERNELS(COBRA_COUNT) };
#define COBRA_SCAN_NAME(TN, T, N) "cobra_scan_" #TN "_n" #N,
#define COBRA_CONV_NAME(TN, T, KN, K) "cobra_conv_" #TN "_k" #KN,
const char* const kScanNames[kScanFns] = {COBRA_SCAN_KERNELS(COBRA_SCAN_NAME)};
const char* const kConvNames[kConvFns] = {COBRA_CONV_KERNELS(COBRA_CONV_NAME)};

struct Module {
  CUcontext ctx;
  CUfunction scan[kScanFns], conv[kConvFns], finite;
};
Module g_modules[kMaxContexts];
int g_module_count = 0;

/* the module of the calling thread's current context, loaded there at first use */
const Module* module(char* err, size_t errlen) {
  const CudaDriver* cu = driver(err, errlen);
  if (!cu) return nullptr;
  CUcontext ctx = nullptr;
  if (cu->cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || !ctx) {
    fail(err, errlen, "no CUDA context is current on this thread (cobra_gpu_use_device first, or launch from a CUDA "
                      "execution provider's kernel)");
    return nullptr;
  }
  pthread_mutex_lock(&g_lock);
  const Module* found = nullptr;
  for (int i = 0; i < g_module_count && !found; i++)
    if (g_modules[i].ctx == ctx) found = &g_modules[i];
  if (!found) {
    if (!g_image) {
      fail(err, errlen, "no device code loaded: cobra_gpu_set_image was not called (engines/kernels/cuda.py does it)");
    } else if (g_module_count == kMaxContexts) {
      fail(err, errlen, "more than %d CUDA contexts", kMaxContexts);
    } else {
      Module m;
      memset(&m, 0, sizeof m);
      m.ctx = ctx;
      CUmodule mod = nullptr;
      CUresult r = cu->cuModuleLoadData(&mod, g_image);
      const char* what = "cuModuleLoadData (is the cubin built for this GPU's architecture?)";
      for (int i = 0; r == CUDA_SUCCESS && i < kScanFns; i++) r = cu->cuModuleGetFunction(&m.scan[i], mod, what = kScanNames[i]);
      for (int i = 0; r == CUDA_SUCCESS && i < kConvFns; i++) r = cu->cuModuleGetFunction(&m.conv[i], mod, what = kConvNames[i]);
      if (r == CUDA_SUCCESS) r = cu->cuModuleGetFunction(&m.finite, mod, what = "cobra_finite");
      if (r == CUDA_SUCCESS) {
        g_modules[g_module_count] = m;
        found = &g_modules[g_module_count++];
      } else {
        cu_fail(r, what, err, errlen);
      }
    }
  }
  pthread_mutex_unlock(&g_lock);
  return found;
}

int launch(CUfunction fn, const CobraLaunch& g, void* params, void* stream, const char* what, char* err, size_t errlen) {
  if (g.grid_x <= 0 || g.grid_y <= 0 || g.grid_z <= 0) return 0; /* nothing to do */
  if (g.grid_x > 0x7fffffff || g.grid_y > 65535 || g.grid_z > 65535)
    return fail(err, errlen, "%s: grid (%lld, %lld, %lld) exceeds CUDA's limits", what, (long long)g.grid_x,
                (long long)g.grid_y, (long long)g.grid_z);
  void* args[] = {params};
  CU_CHECK(g_cu.cuLaunchKernel(fn, (unsigned)g.grid_x, (unsigned)g.grid_y, (unsigned)g.grid_z, (unsigned)g.threads, 1,
                               1, 0, (CUstream)stream, args, nullptr),
           what);
  return 0;
}

/* index in kScanNames: f32 n8..n64, then f16 */
int scan_index(const ScanParams* p, int half) {
  const int bound = scan_state_bound(p->n);
  if (!bound) return -1;
  const int slot = bound == 8 ? 0 : bound == 16 ? 1 : bound == 32 ? 2 : 3;
  return (half ? 4 : 0) + slot;
}

}  // namespace

extern "C" int cobra_gpu_init(int device, char* err, size_t errlen) {
  const CudaDriver* cu = driver(err, errlen);
  if (!cu) return -1;
  CUdevice dev;
  CU_CHECK(cu->cuDeviceGet(&dev, device), "cuDeviceGet");
  return 0;
}

extern "C" int cobra_gpu_arch(int device, int* arch, char* err, size_t errlen) {
  const CudaDriver* cu = driver(err, errlen);
  if (!cu) return -1;
  CUdevice dev;
  int major = 0, minor = 0;
  CU_CHECK(cu->cuDeviceGet(&dev, device), "cuDeviceGet");
  CU_CHECK(cu->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "cuDeviceGetAttribute");
  CU_CHECK(cu->cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "cuDeviceGetAttribute");
  *arch = major * 10 + minor;
  return 0;
}

extern "C" int cobra_gpu_set_image(const void* image, size_t bytes, char* err, size_t errlen) {
  void* copy = malloc(bytes);
  if (!copy) return fail(err, errlen, "out of memory for a %zu-byte image", bytes);
  memcpy(copy, image, bytes);
  pthread_mutex_lock(&g_lock);
  const bool loaded = g_module_count > 0;
  if (!loaded) {
    free(g_image);
    g_image = copy;
  }
  pthread_mutex_unlock(&g_lock);
  if (loaded) {
    free(copy);
    return fail(err, errlen, "the device code is already loaded into a CUDA context; it cannot change in this process");
  }
  return 0;
}

namespace {
CUcontext g_primary[kMaxContexts]; /* per device ordinal, retained once for the process */
}

extern "C" int cobra_gpu_use_device(int device, char* err, size_t errlen) {
  const CudaDriver* cu = driver(err, errlen);
  if (!cu) return -1;
  if (device < 0 || device >= kMaxContexts) return fail(err, errlen, "device %d: 0..%d", device, kMaxContexts - 1);
  pthread_mutex_lock(&g_lock);
  CUresult r = CUDA_SUCCESS;
  const char* what = "cuDeviceGet";
  if (!g_primary[device]) {
    CUdevice dev;
    r = cu->cuDeviceGet(&dev, device);
    if (r == CUDA_SUCCESS) r = cu->cuDevicePrimaryCtxRetain(&g_primary[device], dev), what = "cuDevicePrimaryCtxRetain";
  }
  CUcontext ctx = g_primary[device];
  pthread_mutex_unlock(&g_lock);
  if (r != CUDA_SUCCESS) return cu_fail(r, what, err, errlen);
  CU_CHECK(cu->cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  return 0;
}

extern "C" int cobra_gpu_selective_scan(const ScanParams* p, int half, void* stream, char* err, size_t errlen) {
  const int which = scan_index(p, half);
  if (which < 0) return fail(err, errlen, "d_state %lld is outside 1..%d, which the GPU kernel handles", (long long)p->n,
                             SCAN_MAX_STATE);
  const Module* m = module(err, errlen);
  if (!m) return -1;
  ScanParams copy = *p;
  return launch(m->scan[which], scan_launch(copy), &copy, stream, kScanNames[which], err, errlen);
}

extern "C" int cobra_gpu_causal_conv(const ConvParams* p, int half, void* stream, char* err, size_t errlen) {
  if (p->k < 1 || p->k > CONV_MAX_KEEP + 1)
    return fail(err, errlen, "d_conv %lld is outside 1..%d, which the GPU kernel handles", (long long)p->k,
                CONV_MAX_KEEP + 1);
  const Module* m = module(err, errlen);
  if (!m) return -1;
  const int which = (half ? 2 : 0) + (p->k == 4 ? 0 : 1);
  ConvParams copy = *p;
  return launch(m->conv[which], conv_launch(copy), &copy, stream, kConvNames[which], err, errlen);
}

extern "C" int cobra_gpu_rows_nonfinite(const FiniteParams* p, void* stream, char* err, size_t errlen) {
  if (p->elem_size != 2 && p->elem_size != 4) return fail(err, errlen, "element size %lld: 2 or 4 bytes", (long long)p->elem_size);
  const Module* m = module(err, errlen);
  if (!m) return -1;
  if (cobra_gpu_zero((uint64_t)(uintptr_t)p->flags, (size_t)p->rows * sizeof(int), err, errlen)) return -1;
  FiniteParams copy = *p;
  if (launch(m->finite, finite_launch(copy), &copy, stream, "cobra_finite", err, errlen)) return -1;
  CU_CHECK(g_cu.cuStreamSynchronize((CUstream)stream), "cuStreamSynchronize");
  return 0;
}

extern "C" int cobra_gpu_run_layers(const ConvParams* convs, const ScanParams* scans, int layers, int half,
                                    void* stream, char* err, size_t errlen) {
  for (int i = 0; i < layers; i++)
    if (cobra_gpu_causal_conv(&convs[i], half, stream, err, errlen) ||
        cobra_gpu_selective_scan(&scans[i], half, stream, err, errlen))
      return -1;
  return 0;
}

extern "C" int cobra_gpu_alloc(size_t bytes, uint64_t* ptr, char* err, size_t errlen) {
  const CudaDriver* cu = driver(err, errlen);
  if (!cu) return -1;
  CUdeviceptr p = 0;
  CU_CHECK(cu->cuMemAlloc(&p, bytes ? bytes : 1), "cuMemAlloc");
  *ptr = p;
  return 0;
}

extern "C" int cobra_gpu_free(uint64_t ptr, char* err, size_t errlen) {
  const CudaDriver* cu = driver(err, errlen);
  if (!cu) return -1;
  CU_CHECK(cu->cuMemFree(ptr), "cuMemFree");
  return 0;
}

extern "C" int cobra_gpu_copy(uint64_t dst, uint64_t src, size_t bytes, char* err, size_t errlen) {
  const CudaDriver* cu = driver(err, errlen);
  if (!cu) return -1;
  if (bytes) CU_CHECK(cu->cuMemcpy(dst, src, bytes), "cuMemcpy");
  return 0;
}

extern "C" int cobra_gpu_zero(uint64_t dst, size_t bytes, char* err, size_t errlen) {
  const CudaDriver* cu = driver(err, errlen);
  if (!cu) return -1;
  if (bytes) CU_CHECK(cu->cuMemsetD8(dst, 0, bytes), "cuMemsetD8");
  return 0;
}

extern "C" int cobra_gpu_synchronize(char* err, size_t errlen) {
  const CudaDriver* cu = driver(err, errlen);
  if (!cu) return -1;
  CU_CHECK(cu->cuCtxSynchronize(), "cuCtxSynchronize");
  return 0;
}

namespace {
CUevent g_timer[2];
}

extern "C" int cobra_gpu_timer_start(char* err, size_t errlen) {
  const CudaDriver* cu = driver(err, errlen);
  if (!cu) return -1;
  for (CUevent& e : g_timer)
    if (!e) CU_CHECK(cu->cuEventCreate(&e, 0), "cuEventCreate");
  CU_CHECK(cu->cuEventRecord(g_timer[0], nullptr), "cuEventRecord");
  return 0;
}

extern "C" int cobra_gpu_timer_stop(float* ms, char* err, size_t errlen) {
  const CudaDriver* cu = driver(err, errlen);
  if (!cu) return -1;
  if (!g_timer[0]) return fail(err, errlen, "cobra_gpu_timer_stop without cobra_gpu_timer_start");
  CU_CHECK(cu->cuEventRecord(g_timer[1], nullptr), "cuEventRecord");
  CU_CHECK(cu->cuEventSynchronize(g_timer[1]), "cuEventSynchronize");
  CU_CHECK(cu->cuEventElapsedTime(ms, g_timer[0], g_timer[1]), "cuEventElapsedTime");
  return 0;
}
