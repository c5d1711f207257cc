/* The slice of the CUDA driver API (cuda.h) that the GPU launch code needs, declared here so that it builds with a
 * plain C++ compiler and no CUDA toolkit, like ort_abi.h for ONNX Runtime: the driver library (libcuda.so.1, which
 * the NVIDIA driver installs, JetPack included) is opened with dlopen at first use, and a machine without it gets an
 * error naming it instead of a library that fails to load.
 *
 * Signatures are those of cuda.h (CUDA 12; every one of them stable since CUDA 4, the _v2 names since 3.2).
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int CUresult; /* CUDA_SUCCESS = 0 */
typedef int CUdevice;
typedef struct CUctx_st* CUcontext;
typedef struct CUmod_st* CUmodule;
typedef struct CUfunc_st* CUfunction;
typedef struct CUstream_st* CUstream; /* the same object as the runtime API's cudaStream_t */
typedef struct CUevent_st* CUevent;
typedef unsigned long long CUdeviceptr;

enum { CUDA_SUCCESS = 0 };
enum { CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76 };

/* the functions, as a table filled by cobra_cuda_driver() (gpu_launch.cc) */
typedef struct CudaDriver {
  CUresult (*cuInit)(unsigned int flags);
  CUresult (*cuGetErrorName)(CUresult error, const char** name);
  CUresult (*cuDeviceGet)(CUdevice* device, int ordinal);
  CUresult (*cuDeviceGetAttribute)(int* value, int attribute, CUdevice device);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext* ctx, CUdevice device);
  CUresult (*cuCtxGetCurrent)(CUcontext* ctx);
  CUresult (*cuCtxSetCurrent)(CUcontext ctx);
  CUresult (*cuCtxSynchronize)(void);
  CUresult (*cuModuleLoadData)(CUmodule* module, const void* image);
  CUresult (*cuModuleGetFunction)(CUfunction* fn, CUmodule module, const char* name);
  CUresult (*cuLaunchKernel)(CUfunction fn, unsigned int grid_x, unsigned int grid_y, unsigned int grid_z,
                             unsigned int block_x, unsigned int block_y, unsigned int block_z, unsigned int shared_bytes,
                             CUstream stream, void** params, void** extra);
  CUresult (*cuStreamSynchronize)(CUstream stream);
  CUresult (*cuMemAlloc)(CUdeviceptr* ptr, size_t bytes);                       /* cuMemAlloc_v2 */
  CUresult (*cuMemFree)(CUdeviceptr ptr);                                       /* cuMemFree_v2 */
  CUresult (*cuMemcpy)(CUdeviceptr dst, CUdeviceptr src, size_t bytes);         /* unified addressing: any direction */
  CUresult (*cuMemsetD8)(CUdeviceptr dst, unsigned char value, size_t count);   /* cuMemsetD8_v2 */
  CUresult (*cuEventCreate)(CUevent* event, unsigned int flags);
  CUresult (*cuEventRecord)(CUevent event, CUstream stream);
  CUresult (*cuEventSynchronize)(CUevent event);
  CUresult (*cuEventElapsedTime)(float* ms, CUevent start, CUevent end);
  CUresult (*cuEventDestroy)(CUevent event);                                    /* cuEventDestroy_v2 */
} CudaDriver;

#ifdef __cplusplus
}
#endif
