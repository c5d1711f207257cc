/* The slice of ONNX Runtime's C ABI (onnxruntime_c_api.h) that a custom-op library needs, declared here so the
 * kernels build with nothing but a C++ compiler: the ONNX Runtime wheel ships no headers.
 *
 * OrtApi is a table of function pointers that only ever grows at its end; a function's position in it is fixed
 * forever, so we address the functions we call by position. Positions below are those of the published header
 * (API version 17 and later: KernelContext_ParallelFor arrived in 1.17, so 17 is the version we ask for).
 * RegisterCustomOps checks one late position (GetBuildInfoString) against the string ONNX Runtime returns before
 * anything else is called, so a misread table fails registration with a message instead of crashing.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COBRA_ORT_API_VERSION 17u

typedef struct OrtStatus OrtStatus;
typedef struct OrtApi OrtApi; /* opaque: indexed with ORT_FN below */
typedef struct OrtValue OrtValue;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtKernelContext OrtKernelContext;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtShapeInferContext OrtShapeInferContext;

typedef struct OrtApiBase {
  const OrtApi* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)(void);
} OrtApiBase;

enum { ORT_OK = 0, ORT_FAIL = 1, ORT_INVALID_ARGUMENT = 2 };
enum { ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT = 1 };
enum { INPUT_OUTPUT_REQUIRED = 0 };
enum { OrtMemTypeDefault = 0 };

/* OrtCustomOp, field for field (the 'version' field tells ONNX Runtime how many of them it may read) */
typedef struct OrtCustomOp {
  uint32_t version;
  void* (*CreateKernel)(const struct OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info);
  const char* (*GetName)(const struct OrtCustomOp* op);
  const char* (*GetExecutionProviderType)(const struct OrtCustomOp* op);
  int (*GetInputType)(const struct OrtCustomOp* op, size_t index);
  size_t (*GetInputTypeCount)(const struct OrtCustomOp* op);
  int (*GetOutputType)(const struct OrtCustomOp* op, size_t index);
  size_t (*GetOutputTypeCount)(const struct OrtCustomOp* op);
  void (*KernelCompute)(void* op_kernel, OrtKernelContext* context);
  void (*KernelDestroy)(void* op_kernel);
  int (*GetInputCharacteristic)(const struct OrtCustomOp* op, size_t index);
  int (*GetOutputCharacteristic)(const struct OrtCustomOp* op, size_t index);
  int (*GetInputMemoryType)(const struct OrtCustomOp* op, size_t index);
  int (*GetVariadicInputMinArity)(const struct OrtCustomOp* op);
  int (*GetVariadicInputHomogeneity)(const struct OrtCustomOp* op);
  int (*GetVariadicOutputMinArity)(const struct OrtCustomOp* op);
  int (*GetVariadicOutputHomogeneity)(const struct OrtCustomOp* op);
  OrtStatus* (*CreateKernelV2)(const struct OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info,
                               void** kernel);
  OrtStatus* (*KernelComputeV2)(void* op_kernel, OrtKernelContext* context);
  OrtStatus* (*InferOutputShapeFn)(const struct OrtCustomOp* op, OrtShapeInferContext* ctx);
  int (*GetStartVersion)(const struct OrtCustomOp* op);
  int (*GetEndVersion)(const struct OrtCustomOp* op);
} OrtCustomOp;

/* positions in OrtApi */
enum {
  ORT_CreateStatus = 0,
  ORT_GetErrorMessage = 2,
  ORT_CreateCustomOpDomain = 26,
  ORT_CustomOpDomain_Add = 27,
  ORT_AddCustomOpDomain = 28,
  ORT_GetTensorMutableData = 51,
  ORT_GetTensorElementType = 60,
  ORT_GetDimensionsCount = 61,
  ORT_GetDimensions = 62,
  ORT_GetTensorTypeAndShape = 65,
  ORT_KernelContext_GetInputCount = 88,
  ORT_KernelContext_GetInput = 90,
  ORT_KernelContext_GetOutput = 91,
  ORT_ReleaseStatus = 93,
  ORT_ReleaseTensorTypeAndShapeInfo = 99,
  ORT_KernelContext_GetGPUComputeStream = 193,
  ORT_KernelInfo_GetNodeName = 244,
  ORT_GetBuildInfoString = 254,
  ORT_KernelContext_ParallelFor = 274,
};

typedef OrtStatus* (*OrtFn_CreateStatus)(int code, const char* msg);
typedef const char* (*OrtFn_GetErrorMessage)(const OrtStatus* status);
typedef OrtStatus* (*OrtFn_CreateCustomOpDomain)(const char* domain, OrtCustomOpDomain** out);
typedef OrtStatus* (*OrtFn_CustomOpDomain_Add)(OrtCustomOpDomain* domain, const OrtCustomOp* op);
typedef OrtStatus* (*OrtFn_AddCustomOpDomain)(OrtSessionOptions* options, OrtCustomOpDomain* domain);
typedef OrtStatus* (*OrtFn_GetTensorMutableData)(OrtValue* value, void** out);
typedef OrtStatus* (*OrtFn_GetTensorElementType)(const OrtTensorTypeAndShapeInfo* info, int* out);
typedef OrtStatus* (*OrtFn_GetDimensionsCount)(const OrtTensorTypeAndShapeInfo* info, size_t* out);
typedef OrtStatus* (*OrtFn_GetDimensions)(const OrtTensorTypeAndShapeInfo* info, int64_t* dims, size_t n);
typedef OrtStatus* (*OrtFn_GetTensorTypeAndShape)(const OrtValue* value, OrtTensorTypeAndShapeInfo** out);
typedef OrtStatus* (*OrtFn_KernelContext_GetInputCount)(const OrtKernelContext* ctx, size_t* out);
typedef OrtStatus* (*OrtFn_KernelContext_GetInput)(const OrtKernelContext* ctx, size_t index, const OrtValue** out);
typedef OrtStatus* (*OrtFn_KernelContext_GetOutput)(OrtKernelContext* ctx, size_t index, const int64_t* dims,
                                                    size_t n, OrtValue** out);
typedef void (*OrtFn_ReleaseStatus)(OrtStatus* status);
typedef void (*OrtFn_ReleaseTensorTypeAndShapeInfo)(OrtTensorTypeAndShapeInfo* info);
typedef OrtStatus* (*OrtFn_KernelContext_GetGPUComputeStream)(const OrtKernelContext* ctx, void** stream);
typedef OrtStatus* (*OrtFn_KernelInfo_GetNodeName)(const OrtKernelInfo* info, char* out, size_t* size);
typedef const char* (*OrtFn_GetBuildInfoString)(void);
typedef OrtStatus* (*OrtFn_KernelContext_ParallelFor)(const OrtKernelContext* ctx, void (*fn)(void*, size_t),
                                                      size_t total, size_t num_batch, void* user);

#define ORT_FN(api, name) ((OrtFn_##name)(((void* const*)(api))[ORT_##name]))

#ifdef __cplusplus
}
#endif
