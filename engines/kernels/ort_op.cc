/* cobra_edge.SelectiveScan as an ONNX Runtime custom op (CPU). ONNX Runtime loads this library through
 * SessionOptions.register_custom_ops_library and calls RegisterCustomOps; a graph node of that domain and name
 * then runs the fused kernel of selective_scan.cc instead of the model-local function of the same name that the
 * exported prefill graph carries as its portable body (see export/fused.py).
 *
 * Inputs (float32): x, dt, A, B, C, D, z, dt_bias, h. Outputs (float32): y, h_out. Shapes in selective_scan.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ort_abi.h"
#include "selective_scan.h"

namespace {

const char* const kDomain = "cobra_edge";
const char* const kOpName = "SelectiveScan";
const char* const kInputs[] = {"x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h"};
enum { X, DT, A_, B_, C_, D_, Z, DT_BIAS, H, N_INPUTS };

struct Kernel {
  const OrtApi* api;
  char node[128]; /* the graph node's name, for error messages (which layer) */
};

struct Tensor {
  int64_t dims[8];
  size_t rank;
  void* data;
};

OrtStatus* fail(const OrtApi* api, const Kernel* k, const char* fmt, const char* detail) {
  char msg[512];
  char what[256];
  snprintf(what, sizeof what, fmt, detail);
  snprintf(msg, sizeof msg, "cobra_edge.SelectiveScan (node '%s'): %s", k->node, what);
  return ORT_FN(api, CreateStatus)(ORT_INVALID_ARGUMENT, msg);
}

OrtStatus* read_tensor(const OrtApi* api, const OrtValue* v, Tensor* t) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  OrtStatus* st = ORT_FN(api, GetTensorTypeAndShape)(v, &info);
  if (st) return st;
  int type = 0;
  if (!(st = ORT_FN(api, GetTensorElementType)(info, &type)) &&
      !(st = ORT_FN(api, GetDimensionsCount)(info, &t->rank))) {
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || t->rank > 8) {
      ORT_FN(api, ReleaseTensorTypeAndShapeInfo)(info);
      return ORT_FN(api, CreateStatus)(ORT_INVALID_ARGUMENT, "float32 tensor of rank <= 8 expected");
    }
    st = ORT_FN(api, GetDimensions)(info, t->dims, t->rank);
  }
  ORT_FN(api, ReleaseTensorTypeAndShapeInfo)(info);
  if (st) return st;
  return ORT_FN(api, GetTensorMutableData)(const_cast<OrtValue*>(v), &t->data);
}

/* "[2, 7, 128]" */
void shape_str(const int64_t* dims, size_t rank, char* out, size_t size) {
  size_t used = (size_t)snprintf(out, size, "[");
  for (size_t i = 0; i < rank && used < size; i++)
    used += (size_t)snprintf(out + used, size - used, i ? ", %lld" : "%lld", (long long)dims[i]);
  if (used < size) snprintf(out + used, size - used, "]");
}

OrtStatus* check_shape(const OrtApi* api, const Kernel* k, int input, const Tensor& t, const int64_t* want,
                       size_t rank, const char* symbols) {
  bool ok = t.rank == rank;
  for (size_t i = 0; ok && i < rank; i++) ok = t.dims[i] == want[i];
  if (ok) return nullptr;
  char got[96], expected[96], detail[256];
  shape_str(t.dims, t.rank, got, sizeof got);
  shape_str(want, rank, expected, sizeof expected);
  snprintf(detail, sizeof detail, "input '%s' has shape %s, expected %s = %s (from x [b, l, d] and A [d, n])",
           kInputs[input], got, symbols, expected);
  return fail(api, k, "%s", detail);
}

void run_task(void* args, size_t task) { cobra_selective_scan_task((const CobraScanArgs*)args, (int64_t)task); }

OrtStatus* compute(void* kernel, OrtKernelContext* ctx) {
  const Kernel* k = (const Kernel*)kernel;
  const OrtApi* api = k->api;
  size_t count = 0;
  OrtStatus* st = ORT_FN(api, KernelContext_GetInputCount)(ctx, &count);
  if (st) return st;
  if (count != N_INPUTS) {
    char n[32];
    snprintf(n, sizeof n, "%zu", count);
    return fail(api, k, "9 inputs expected (x, dt, A, B, C, D, z, dt_bias, h), got %s", n);
  }
  Tensor in[N_INPUTS];
  for (int i = 0; i < N_INPUTS; i++) {
    const OrtValue* v = nullptr;
    if ((st = ORT_FN(api, KernelContext_GetInput)(ctx, (size_t)i, &v))) return st;
    if (!v) return fail(api, k, "input '%s' is missing", kInputs[i]);
    if ((st = read_tensor(api, v, &in[i]))) {
      const char* why = ORT_FN(api, GetErrorMessage)(st);
      char detail[256];
      snprintf(detail, sizeof detail, "input '%s': %s", kInputs[i], why);
      ORT_FN(api, ReleaseStatus)(st);
      return fail(api, k, "%s", detail);
    }
  }
  if (in[X].rank != 3) return fail(api, k, "input 'x' must be [b, l, d], got rank %s", in[X].rank == 0 ? "0" : "!= 3");
  if (in[A_].rank != 2) return fail(api, k, "input 'A' must be [d, n]%s", "");
  const int64_t b = in[X].dims[0], l = in[X].dims[1], d = in[X].dims[2], n = in[A_].dims[1];
  const int64_t bld[3] = {b, l, d}, dn[2] = {d, n}, bln[3] = {b, l, n}, dd[1] = {d}, bdn[3] = {b, d, n};
  if ((st = check_shape(api, k, DT, in[DT], bld, 3, "[b, l, d]")) ||
      (st = check_shape(api, k, Z, in[Z], bld, 3, "[b, l, d]")) ||
      (st = check_shape(api, k, A_, in[A_], dn, 2, "[d, n]")) ||
      (st = check_shape(api, k, B_, in[B_], bln, 3, "[b, l, n]")) ||
      (st = check_shape(api, k, C_, in[C_], bln, 3, "[b, l, n]")) ||
      (st = check_shape(api, k, D_, in[D_], dd, 1, "[d]")) ||
      (st = check_shape(api, k, DT_BIAS, in[DT_BIAS], dd, 1, "[d]")) ||
      (st = check_shape(api, k, H, in[H], bdn, 3, "[b, d, n]")))
    return st;
  if (n < 1 || n > COBRA_SCAN_MAX_STATE) {
    char detail[64];
    snprintf(detail, sizeof detail, "%lld", (long long)n);
    return fail(api, k, "d_state %s is outside 1..64, which this kernel handles", detail);
  }
  OrtValue *y = nullptr, *h_out = nullptr;
  if ((st = ORT_FN(api, KernelContext_GetOutput)(ctx, 0, bld, 3, &y)) ||
      (st = ORT_FN(api, KernelContext_GetOutput)(ctx, 1, bdn, 3, &h_out)))
    return st;
  CobraScanArgs args;
  args.b = b, args.l = l, args.d = d, args.n = n;
  args.x = (const float*)in[X].data, args.dt = (const float*)in[DT].data, args.A = (const float*)in[A_].data;
  args.B = (const float*)in[B_].data, args.C = (const float*)in[C_].data, args.D = (const float*)in[D_].data;
  args.z = (const float*)in[Z].data, args.dt_bias = (const float*)in[DT_BIAS].data;
  args.h0 = (const float*)in[H].data;
  void* out = nullptr;
  if ((st = ORT_FN(api, GetTensorMutableData)(y, &out))) return st;
  args.y = (float*)out;
  if ((st = ORT_FN(api, GetTensorMutableData)(h_out, &out))) return st;
  args.h_out = (float*)out;
  const int64_t tasks = cobra_selective_scan_tasks(&args);
  if (tasks == 0) return nullptr;
  return ORT_FN(api, KernelContext_ParallelFor)(ctx, run_task, (size_t)tasks, 0, &args);
}

OrtStatus* create_kernel(const OrtCustomOp*, const OrtApi* api, const OrtKernelInfo* info, void** out) {
  Kernel* k = (Kernel*)calloc(1, sizeof(Kernel));
  if (!k) return ORT_FN(api, CreateStatus)(ORT_FAIL, "cobra_edge.SelectiveScan: out of memory");
  k->api = api;
  size_t size = sizeof k->node;
  OrtStatus* st = ORT_FN(api, KernelInfo_GetNodeName)(info, k->node, &size);
  if (st) { /* a name longer than the buffer: keep going without it */
    ORT_FN(api, ReleaseStatus)(st);
    strcpy(k->node, "?");
  }
  *out = k;
  return nullptr;
}

void* create_kernel_v1(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo*) { return nullptr; }
void compute_v1(void*, OrtKernelContext*) {}
void destroy_kernel(void* kernel) { free(kernel); }
const char* op_name(const OrtCustomOp*) { return kOpName; }
const char* op_provider(const OrtCustomOp*) { return "CPUExecutionProvider"; }
int float_type(const OrtCustomOp*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
size_t input_count(const OrtCustomOp*) { return N_INPUTS; }
size_t output_count(const OrtCustomOp*) { return 2; }
int required(const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; }
int default_memory(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
int one(const OrtCustomOp*) { return 1; }
int start_version(const OrtCustomOp*) { return 1; }
int end_version(const OrtCustomOp*) { return 1; }

OrtCustomOp make_op() {
  OrtCustomOp op;
  memset(&op, 0, sizeof op);
  op.version = COBRA_ORT_API_VERSION;
  op.CreateKernel = create_kernel_v1;
  op.GetName = op_name;
  op.GetExecutionProviderType = op_provider;
  op.GetInputType = float_type;
  op.GetInputTypeCount = input_count;
  op.GetOutputType = float_type;
  op.GetOutputTypeCount = output_count;
  op.KernelCompute = compute_v1;
  op.KernelDestroy = destroy_kernel;
  op.GetInputCharacteristic = required;
  op.GetOutputCharacteristic = required;
  op.GetInputMemoryType = default_memory;
  op.GetVariadicInputMinArity = one;
  op.GetVariadicInputHomogeneity = one;
  op.GetVariadicOutputMinArity = one;
  op.GetVariadicOutputHomogeneity = one;
  op.CreateKernelV2 = create_kernel;
  op.KernelComputeV2 = compute;
  op.InferOutputShapeFn = nullptr; /* shapes come from the model's value_info */
  op.GetStartVersion = start_version;
  op.GetEndVersion = end_version;
  return op;
}

const OrtCustomOp kOp = make_op();
/* one domain per process, shared by every session (ONNX Runtime keeps a pointer to it), created once even when
 * sessions are opened from several threads */
pthread_once_t g_once = PTHREAD_ONCE_INIT;
const OrtApi* g_api = nullptr;
OrtCustomOpDomain* g_domain = nullptr;
OrtStatus* g_domain_error = nullptr;

void create_domain() {
  if ((g_domain_error = ORT_FN(g_api, CreateCustomOpDomain)(kDomain, &g_domain))) return;
  g_domain_error = ORT_FN(g_api, CustomOpDomain_Add)(g_domain, &kOp);
}

}  // namespace

extern "C" COBRA_API OrtStatus* RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* base) {
  const OrtApi* api = base->GetApi(COBRA_ORT_API_VERSION);
  if (!api) {
    const OrtApi* oldest = base->GetApi(1);
    char msg[256];
    snprintf(msg, sizeof msg, "cobra-edge kernels need ONNX Runtime >= 1.17; this is %s", base->GetVersionString());
    return oldest ? ORT_FN(oldest, CreateStatus)(ORT_FAIL, msg) : nullptr;
  }
  const char* info = ORT_FN(api, GetBuildInfoString)();
  if (!info || strncmp(info, "ORT Build Info", 14) != 0)
    return ORT_FN(api, CreateStatus)(ORT_FAIL, "cobra-edge kernels: this ONNX Runtime's C API table is not laid out "
                                               "as expected (GetBuildInfoString); not registering");
  g_api = api;
  pthread_once(&g_once, create_domain);
  if (g_domain_error)
    return ORT_FN(api, CreateStatus)(ORT_FAIL, "cobra-edge kernels: could not create the cobra_edge op domain");
  return ORT_FN(api, AddCustomOpDomain)(options, g_domain);
}
