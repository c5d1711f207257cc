/* cobra-edge's ONNX Runtime custom ops, domain cobra_edge:
 *   SelectiveScan   x, dt, A, B, C, D, z, dt_bias, h -> y, h_out   (prefill; shapes in selective_scan.h)
 *   SelectiveStep   the same for one token, without the token axis: x, dt, z, y [b, d] and B, C [b, n] (the same
 *                   memory as [b, 1, d] and [b, 1, n], so the scan kernel runs it with l = 1)
 *   ConvStep        x, conv_state, weight, bias -> y, conv_state_out   (decode step's conv; conv_step.h)
 *   CausalConv      the same over l tokens: x [b, l, d] -> y [b, l, d]    (prefill's conv; conv_step.h)
 * All float32. ONNX Runtime loads this library through SessionOptions.register_custom_ops_library and calls
 * RegisterCustomOps; graph nodes of that domain and those names then run these kernels instead of the
 * model-local functions of the same names that the exported graphs carry as their portable bodies
 * (export/fused.py).
 *
 * This file is compiled into two libraries: with ort_cpu.cc (_cobra_kernels: the CPU provider's kernels) and with
 * ort_cuda.cc (_cobra_cuda: the CUDA provider's); it validates inputs and shapes and allocates outputs, the provider's
 * file runs the kernel (ort_run.h).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_step.h"
#include "ort_abi.h"
#include "ort_run.h"
#include "selective_scan.h"

namespace {

const char* const kDomain = "cobra_edge";
const char* const kScanInputs[] = {"x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h"};
enum { X, DT, A_, B_, C_, D_, Z, DT_BIAS, H, N_SCAN_INPUTS };
const char* const kConvInputs[] = {"x", "conv_state", "weight", "bias"};
enum { CX, CSTATE, CW, CBIAS, N_CONV_INPUTS };

struct Kernel;
typedef OrtStatus* (*ComputeFn)(const Kernel* k, OrtKernelContext* ctx);

/* an op of this library: ONNX Runtime's struct first, so the OrtCustomOp* it hands back is one of these */
struct OpDef {
  OrtCustomOp ort;
  const char* name;
  const char* const* inputs;
  size_t n_inputs;
  ComputeFn compute;
  bool tokens;            /* SelectiveScan: x, dt, B, C, z, y carry a token axis; SelectiveStep: they do not */
  const char* shapes_from; /* the inputs the others' expected shapes derive from, for error messages */
};

struct Kernel {
  const OrtApi* api;
  const OpDef* op;
  char node[128]; /* the graph node's name, for error messages (which layer) */
};

struct Tensor {
  int64_t dims[8];
  size_t rank;
  void* data;
};

/* an INVALID_ARGUMENT status naming the node (which layer): printf-style */
__attribute__((format(printf, 3, 4))) OrtStatus* fail(const OrtApi* api, const Kernel* k, const char* fmt, ...) {
  char what[384], msg[640]; /* node name (< 128) + what */
  va_list args;
  va_start(args, fmt);
  vsnprintf(what, sizeof what, fmt, args);
  va_end(args);
  snprintf(msg, sizeof msg, "cobra_edge.%s (node '%s'): %s", k->op->name, k->node, what);
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

/* the error for an input whose rank (or a dimension the others derive from) is wrong: "must be [b, d], got [..]" */
OrtStatus* bad_input(const OrtApi* api, const Kernel* k, int input, const Tensor& t, const char* symbols) {
  char got[96];
  shape_str(t.dims, t.rank, got, sizeof got);
  return fail(api, k, "input '%s' must be %s, got %s", k->op->inputs[input], symbols, got);
}

OrtStatus* check_shape(const OrtApi* api, const Kernel* k, int input, const Tensor& t, const int64_t* want,
                       size_t rank, const char* symbols) {
  bool ok = t.rank == rank;
  for (size_t i = 0; ok && i < rank; i++) ok = t.dims[i] == want[i];
  if (ok) return nullptr;
  char got[96], expected[96];
  shape_str(t.dims, t.rank, got, sizeof got);
  shape_str(want, rank, expected, sizeof expected);
  return fail(api, k, "input '%s' has shape %s, expected %s = %s (from %s)", k->op->inputs[input], got, symbols,
              expected, k->op->shapes_from);
}

/* every input of the op, as float32 tensors, or a status naming the one that is not */
OrtStatus* read_inputs(const Kernel* k, OrtKernelContext* ctx, Tensor* in) {
  const OrtApi* api = k->api;
  size_t count = 0;
  OrtStatus* st = ORT_FN(api, KernelContext_GetInputCount)(ctx, &count);
  if (st) return st;
  if (count != k->op->n_inputs) return fail(api, k, "%zu inputs expected, got %zu", k->op->n_inputs, count);
  for (size_t i = 0; i < count; i++) {
    const OrtValue* v = nullptr;
    if ((st = ORT_FN(api, KernelContext_GetInput)(ctx, i, &v))) return st;
    if (!v) return fail(api, k, "input '%s' is missing", k->op->inputs[i]);
    if ((st = read_tensor(api, v, &in[i]))) {
      OrtStatus* named = fail(api, k, "input '%s': %s", k->op->inputs[i], ORT_FN(api, GetErrorMessage)(st));
      ORT_FN(api, ReleaseStatus)(st);
      return named;
    }
  }
  return nullptr;
}

OrtStatus* output_data(const OrtApi* api, OrtKernelContext* ctx, size_t index, const int64_t* dims, size_t rank,
                       float** out) {
  OrtValue* v = nullptr;
  OrtStatus* st = ORT_FN(api, KernelContext_GetOutput)(ctx, index, dims, rank, &v);
  if (st) return st;
  void* data = nullptr;
  st = ORT_FN(api, GetTensorMutableData)(v, &data);
  *out = (float*)data;
  return st;
}

/* the provider's status, or its own error message as a status naming the node */
OrtStatus* ran(const OrtApi* api, const Kernel* k, OrtStatus* st, const char* err) {
  if (st || !err[0]) return st;
  return fail(api, k, "%s", err);
}

OrtStatus* compute_scan(const Kernel* k, OrtKernelContext* ctx) {
  const OrtApi* api = k->api;
  Tensor in[N_SCAN_INPUTS];
  OrtStatus* st = read_inputs(k, ctx, in);
  if (st) return st;
  const bool tokens = k->op->tokens;
  const size_t rank = tokens ? 3 : 2; /* of x, dt, B, C, z, y */
  if (in[X].rank != rank) return bad_input(api, k, X, in[X], tokens ? "[b, l, d]" : "[b, d]");
  if (in[A_].rank != 2) return bad_input(api, k, A_, in[A_], "[d, n]");
  const int64_t b = in[X].dims[0], l = tokens ? in[X].dims[1] : 1, d = in[X].dims[rank - 1], n = in[A_].dims[1];
  const int64_t bld[3] = {b, l, d}, bd[2] = {b, d}, dn[2] = {d, n}, bln[3] = {b, l, n}, bn[2] = {b, n};
  const int64_t dd[1] = {d}, bdn[3] = {b, d, n};
  const int64_t* per_d = tokens ? bld : bd;
  const int64_t* per_n = tokens ? bln : bn;
  const char* sym_d = tokens ? "[b, l, d]" : "[b, d]";
  const char* sym_n = tokens ? "[b, l, n]" : "[b, n]";
  if ((st = check_shape(api, k, DT, in[DT], per_d, rank, sym_d)) ||
      (st = check_shape(api, k, Z, in[Z], per_d, rank, sym_d)) ||
      (st = check_shape(api, k, A_, in[A_], dn, 2, "[d, n]")) ||
      (st = check_shape(api, k, B_, in[B_], per_n, rank, sym_n)) ||
      (st = check_shape(api, k, C_, in[C_], per_n, rank, sym_n)) ||
      (st = check_shape(api, k, D_, in[D_], dd, 1, "[d]")) ||
      (st = check_shape(api, k, DT_BIAS, in[DT_BIAS], dd, 1, "[d]")) ||
      (st = check_shape(api, k, H, in[H], bdn, 3, "[b, d, n]")))
    return st;
  if (n < 1 || n > COBRA_SCAN_MAX_STATE)
    return fail(api, k, "d_state %lld is outside 1..%d, which this kernel handles", (long long)n, COBRA_SCAN_MAX_STATE);
  CobraScanArgs args;
  if ((st = output_data(api, ctx, 0, per_d, rank, &args.y)) || (st = output_data(api, ctx, 1, bdn, 3, &args.h_out)))
    return st;
  args.b = b, args.l = l, args.d = d, args.n = n;
  args.x = (const float*)in[X].data, args.dt = (const float*)in[DT].data, args.A = (const float*)in[A_].data;
  args.B = (const float*)in[B_].data, args.C = (const float*)in[C_].data, args.D = (const float*)in[D_].data;
  args.z = (const float*)in[Z].data, args.dt_bias = (const float*)in[DT_BIAS].data;
  args.h0 = (const float*)in[H].data;
  char err[256] = "";
  return ran(api, k, cobra_run_scan(api, ctx, &args, err, sizeof err), err);
}

OrtStatus* compute_conv(const Kernel* k, OrtKernelContext* ctx) {
  const OrtApi* api = k->api;
  Tensor in[N_CONV_INPUTS];
  OrtStatus* st = read_inputs(k, ctx, in);
  if (st) return st;
  if (in[CX].rank != 2) return bad_input(api, k, CX, in[CX], "[b, d]");
  if (in[CW].rank != 2 || in[CW].dims[1] < 1) return bad_input(api, k, CW, in[CW], "[d, k] with k >= 1");
  const int64_t b = in[CX].dims[0], d = in[CX].dims[1], kk = in[CW].dims[1];
  const int64_t bdk[3] = {b, d, kk - 1}, dk[2] = {d, kk}, dd[1] = {d}, bd[2] = {b, d};
  if ((st = check_shape(api, k, CSTATE, in[CSTATE], bdk, 3, "[b, d, k - 1]")) ||
      (st = check_shape(api, k, CW, in[CW], dk, 2, "[d, k]")) ||
      (st = check_shape(api, k, CBIAS, in[CBIAS], dd, 1, "[d]")))
    return st;
  CobraConvStepArgs args;
  args.b = b, args.d = d, args.k = kk;
  args.x = (const float*)in[CX].data, args.state = (const float*)in[CSTATE].data;
  args.weight = (const float*)in[CW].data, args.bias = (const float*)in[CBIAS].data;
  if ((st = output_data(api, ctx, 0, bd, 2, &args.y)) || (st = output_data(api, ctx, 1, bdk, 3, &args.state_out)))
    return st;
  char err[256] = "";
  return ran(api, k, cobra_run_conv_step(api, ctx, &args, err, sizeof err), err);
}

OrtStatus* compute_causal_conv(const Kernel* k, OrtKernelContext* ctx) {
  const OrtApi* api = k->api;
  Tensor in[N_CONV_INPUTS];
  OrtStatus* st = read_inputs(k, ctx, in);
  if (st) return st;
  if (in[CX].rank != 3) return bad_input(api, k, CX, in[CX], "[b, l, d]");
  if (in[CW].rank != 2 || in[CW].dims[1] < 1 || in[CW].dims[1] > 9)
    return bad_input(api, k, CW, in[CW], "[d, k] with 1 <= k <= 9");
  const int64_t b = in[CX].dims[0], l = in[CX].dims[1], d = in[CX].dims[2], kk = in[CW].dims[1];
  const int64_t bdk[3] = {b, d, kk - 1}, dk[2] = {d, kk}, dd[1] = {d}, bld[3] = {b, l, d};
  if ((st = check_shape(api, k, CSTATE, in[CSTATE], bdk, 3, "[b, d, k - 1]")) ||
      (st = check_shape(api, k, CW, in[CW], dk, 2, "[d, k]")) ||
      (st = check_shape(api, k, CBIAS, in[CBIAS], dd, 1, "[d]")))
    return st;
  CobraCausalConvArgs args;
  args.b = b, args.l = l, args.d = d, args.k = kk;
  args.x = (const float*)in[CX].data, args.state = (const float*)in[CSTATE].data;
  args.weight = (const float*)in[CW].data, args.bias = (const float*)in[CBIAS].data;
  if ((st = output_data(api, ctx, 0, bld, 3, &args.y)) || (st = output_data(api, ctx, 1, bdk, 3, &args.state_out)))
    return st;
  char err[256] = "";
  return ran(api, k, cobra_run_causal_conv(api, ctx, &args, err, sizeof err), err);
}

OrtStatus* dispatch(void* kernel, OrtKernelContext* ctx) {
  const Kernel* k = (const Kernel*)kernel;
  return k->op->compute(k, ctx);
}

OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info, void** out) {
  Kernel* k = (Kernel*)calloc(1, sizeof(Kernel));
  if (!k) return ORT_FN(api, CreateStatus)(ORT_FAIL, "cobra_edge kernels: out of memory");
  k->api = api;
  k->op = (const OpDef*)op;
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
const char* op_name(const OrtCustomOp* op) { return ((const OpDef*)op)->name; }
const char* op_provider(const OrtCustomOp*) { return kCobraOrtProvider; }
int float_type(const OrtCustomOp*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
size_t input_count(const OrtCustomOp* op) { return ((const OpDef*)op)->n_inputs; }
size_t output_count(const OrtCustomOp*) { return 2; }
int required(const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; }
int default_memory(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
int one(const OrtCustomOp*) { return 1; }
int start_version(const OrtCustomOp*) { return 1; }
int end_version(const OrtCustomOp*) { return 1; }

OpDef make_op(const char* name, const char* const* inputs, size_t n_inputs, ComputeFn compute, bool tokens,
              const char* shapes_from) {
  OpDef def;
  memset(&def, 0, sizeof def);
  def.name = name;
  def.inputs = inputs;
  def.n_inputs = n_inputs;
  def.compute = compute;
  def.tokens = tokens;
  def.shapes_from = shapes_from;
  OrtCustomOp& op = def.ort;
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
  op.KernelComputeV2 = dispatch;
  op.InferOutputShapeFn = nullptr; /* shapes come from the model's value_info */
  op.GetStartVersion = start_version;
  op.GetEndVersion = end_version;
  return def;
}

const OpDef kOps[] = {
    make_op("SelectiveScan", kScanInputs, N_SCAN_INPUTS, compute_scan, true, "x [b, l, d] and A [d, n]"),
    make_op("SelectiveStep", kScanInputs, N_SCAN_INPUTS, compute_scan, false, "x [b, d] and A [d, n]"),
    make_op("ConvStep", kConvInputs, N_CONV_INPUTS, compute_conv, false, "x [b, d] and weight [d, k]"),
    make_op("CausalConv", kConvInputs, N_CONV_INPUTS, compute_causal_conv, true, "x [b, l, d] and weight [d, k]"),
};
/* one domain per process, shared by every session (ONNX Runtime keeps a pointer to it), created once even when
 * sessions are opened from several threads */
pthread_once_t g_once = PTHREAD_ONCE_INIT;
const OrtApi* g_api = nullptr;
OrtCustomOpDomain* g_domain = nullptr;
OrtStatus* g_domain_error = nullptr;

void create_domain() {
  if ((g_domain_error = ORT_FN(g_api, CreateCustomOpDomain)(kDomain, &g_domain))) return;
  for (const OpDef& op : kOps)
    if ((g_domain_error = ORT_FN(g_api, CustomOpDomain_Add)(g_domain, &op.ort))) return;
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
