// Bindings of the stateless ops (ops.h). Every entry point opens with its shape comment, then its
// checks: each failure names the argument and what was expected (DESIGN §4). Results are fresh
// tensors on the device of the op's tensors, which must all be on one device (DeviceError naming
// the first that is not on the first tensor's).
//
// Where the math runs:
//   adamwStep, quantizeFp8, groupedGemmFp8  on a cuda device, its CUDA kernels on the device
//       pointers (cuda/device_ops.h), enqueued on the device's stream without a wait; on the cpu,
//       native/cpu's
//   every other op  native/cpu's math. On a cuda device there is no device kernel yet: staged
//       through the host — the inputs are downloaded (HostInput, host_copy.h: one wait each) and the
//       results, computed on the host, are uploaded once to tensors on the inputs' device
//       (HostOutput). A cpu tensor is used in place.
// Every JavaScript value of a call is read before any tensor's bytes are taken (a getter may
// dispose a tensor; the host copies check liveness when they are made).
#include "ops.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "../core/shape.h"
#include "../cpu/adamw.h"
#include "../cpu/convert.h"
#include "../cpu/dispatch.h"
#include "../cpu/fp8.h"
#include "../cpu/grouped_gemm.h"
#include "../cpu/losses.h"
#include "../cpu/router.h"
#include "args.h"
#include "device_arg.h"
#if MOEKIT_HAVE_CUDA
#include "../cuda/device_ops.h"
#endif
#include "errors.h"
#include "host_copy.h"
#include "router_spec.h"
#include "tensor.h"

namespace moekit::addon {

namespace {

// ---- argument helpers --------------------------------------------------------------------------

std::string str(int64_t v) { return std::to_string(v); }

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

void expectArgs(const Napi::CallbackInfo& info, size_t count, const char* signature) {
  if (info.Length() != count)
    fail(ErrorKind::Argument, std::string(signature) + " takes " + str(int64_t(count)) +
                                  " arguments, got " + str(int64_t(info.Length())));
}

// `value` as a live tensor of `dtype` with `rank` dimensions; the caller checks the dimensions.
NativeTensor& tensorArg(const Napi::Value& value, const char* name, DType dtype, size_t rank) {
  NativeTensor& t = NativeTensor::unwrap(value, name);
  t.checkLive(name);  // DisposedError before any other complaint
  if (t.dtype() != dtype)
    fail(ErrorKind::DType, std::string(name) + " must be a " + dtypeName(dtype) + " tensor, got " +
                               dtypeName(t.dtype()));
  if (t.shape().size() != rank)
    fail(ErrorKind::Shape, std::string(name) + " must have " + str(int64_t(rank)) +
                               " dimensions, got shape " + shapeString(t.shape()));
  return t;
}

// As tensorArg, with null and undefined meaning "absent".
NativeTensor* optionalTensorArg(const Napi::Value& value, const char* name, DType dtype, size_t rank) {
  if (value.IsNull() || value.IsUndefined()) return nullptr;
  return &tensorArg(value, name, dtype, rank);
}

// t.shape[dim] must be `want`; `what` says where `want` comes from ("T = x.shape[0]").
void expectDim(const NativeTensor& t, const char* name, size_t dim, int64_t want, const std::string& what) {
  if (t.shape()[dim] != want)
    fail(ErrorKind::Shape, std::string(name) + " has shape " + shapeString(t.shape()) + ": dimension " +
                               str(int64_t(dim)) + " must equal " + what + " = " + str(want));
}

struct Operand {
  const NativeTensor* tensor;  // null: an absent optional tensor, skipped
  const char* name;
};

// The device of an op's tensors (the first operand's): every other present operand must be on it
// (DeviceError naming the first that is not).
int commonDevice(std::initializer_list<Operand> operands) {
  const Operand& first = *operands.begin();
  const int device = first.tensor->device();
  for (const Operand& o : operands)
    if (o.tensor && o.tensor->device() != device)
      fail(ErrorKind::Device, std::string(o.name) + " is on " + deviceName(o.tensor->device()) + ", " + first.name +
                                  " on " + deviceName(device) + ": every operand must be on one device");
  return device;
}

// An op that takes a device argument (`device`, read by readDevice): each operand must be on it.
void expectOnDevice(std::initializer_list<Operand> operands, const DeviceArg& device) {
  const int want = device.cuda ? device.index : -1;
  for (const Operand& o : operands)
    if (o.tensor->device() != want)
      fail(ErrorKind::Device, std::string(o.name) + " is on " + deviceName(o.tensor->device()) + ", but device is '" +
                                  deviceName(want) + "': every operand must be on the device the op runs on");
}

int readInt(const Napi::Value& value, const char* name, int64_t lo, int64_t hi) {
  const double d = readNumber(value, name);
  if (std::floor(d) != d || d < double(lo) || d > double(hi))
    fail(ErrorKind::Argument, std::string(name) + " must be an integer in [" + str(lo) + ", " + str(hi) +
                                  "], got " + describe(value));
  return int(d);
}

// An array of `length` integers ≥ `min` that sum to `sum` (`sumWhat` names it).
std::vector<int32_t> readSizes(const Napi::Value& value, const char* name, int64_t length, int min,
                               int64_t sum, const std::string& sumWhat) {
  if (!value.IsArray())
    fail(ErrorKind::Argument, std::string(name) + " must be an array of integers, got " + describe(value));
  Napi::Array array = value.As<Napi::Array>();
  if (int64_t(array.Length()) != length)
    fail(ErrorKind::Shape, std::string(name) + " must have " + str(length) + " entries, got " +
                               str(int64_t(array.Length())));
  std::vector<int32_t> sizes;
  int64_t total = 0;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const std::string entry = std::string(name) + "[" + str(i) + "]";
    sizes.push_back(readInt(array.Get(i), entry.c_str(), min, kMaxElements));
    total += sizes.back();
  }
  if (total != sum)
    fail(ErrorKind::Shape, std::string(name) + " must sum to " + sumWhat + " = " + str(sum) + ", got " + str(total));
  return sizes;
}

std::vector<double> toDouble(const HostInput& t, int64_t numel) { return std::vector<double>(t.f32(), t.f32() + numel); }

Napi::Object lossResult(Napi::Env env, double loss, const char* gradName, const std::vector<int64_t>& shape,
                        const std::vector<double>& grad, int device) {
  const Napi::Object gradient = tensorOf(env, DType::F32, shape, std::vector<float>(grad.begin(), grad.end()), device);
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", Napi::Number::New(env, loss));
  out.Set(gradName, gradient);
  return out;
}

// ---- permute / unpermute -----------------------------------------------------------------------

// permute(x f32 [T,H], experts i32 [T,k] (−1 = dropped slot), numExperts E)
//   → {output f32 [n,H], rowToken i32 [n], counts i32 [E]}: rows by expert, token order within.
Napi::Value permute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 3, "permute(x, experts, numExperts)");
    const NativeTensor& x = tensorArg(info[0], "x", DType::F32, 2);
    const NativeTensor& experts = tensorArg(info[1], "experts", DType::I32, 2);
    const int E = readInt(info[2], "numExperts", 1, kMaxElements);
    const int T = int(x.shape()[0]), H = int(x.shape()[1]), k = int(experts.shape()[1]);
    if (H < 1) fail(ErrorKind::Shape, "x has shape " + shapeString(x.shape()) + ": the hidden size must be at least 1");
    expectDim(experts, "experts", 0, T, "T = x.shape[0]");
    const int device = commonDevice({{&x, "x"}, {&experts, "experts"}});
    const HostInput e(experts, "experts");
    std::vector<int32_t> token, expert;
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < k; ++j) {
        const int32_t v = e.i32()[int64_t(t) * k + j];
        if (v < -1 || v >= E)
          fail(ErrorKind::Argument, "experts[" + str(t) + ", " + str(j) + "] must be in [-1, numExperts = " + str(E) +
                                        ") (-1 = dropped), got " + str(v));
        if (v < 0) continue;
        token.push_back(t);
        expert.push_back(v);
      }
    const int n = int(token.size());
    const cpu::PermutationPlan plan = cpu::planPermutation(T, E, n, token.data(), expert.data());
    const HostInput xHost(x, "x");
    HostOutput output(env, DType::F32, {n, H}, device);
    cpu::permuteRows(xHost.f32(), T, H, n, plan.rowToken.data(), output.f32());
    output.upload();
    const Napi::Object rowToken = tensorOf(env, DType::I32, {n}, plan.rowToken, device);
    const Napi::Object counts = tensorOf(env, DType::I32, {E}, plan.counts, device);
    Napi::Object out = Napi::Object::New(env);
    out.Set("output", output.handle());
    out.Set("rowToken", rowToken);
    out.Set("counts", counts);
    return out;
  });
}

// rowToken i32 [n] against n rows and T tokens; entries are range-checked by native/cpu.
const NativeTensor& rowTokenArg(const Napi::Value& value, int64_t n, const std::string& nWhat) {
  const NativeTensor& rowToken = tensorArg(value, "rowToken", DType::I32, 1);
  expectDim(rowToken, "rowToken", 0, n, nWhat);
  return rowToken;
}

// permuteBackward(dOutput f32 [n,H], rowToken i32 [n], tokens T) → dx f32 [T,H].
Napi::Value permuteBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 3, "permuteBackward(dOutput, rowToken, tokens)");
    const NativeTensor& dOutput = tensorArg(info[0], "dOutput", DType::F32, 2);
    const int n = int(dOutput.shape()[0]), H = int(dOutput.shape()[1]);
    const NativeTensor& rowToken = rowTokenArg(info[1], n, "n = dOutput.shape[0]");
    const int T = readInt(info[2], "tokens", 0, kMaxElements);
    if (H < 1) fail(ErrorKind::Shape, "dOutput has shape " + shapeString(dOutput.shape()) + ": the hidden size must be at least 1");
    if (int64_t(T) * H > kMaxElements) fail(ErrorKind::Shape, "tokens = " + str(T) + " rows of " + str(H) + " exceed the largest tensor");
    const int device = commonDevice({{&dOutput, "dOutput"}, {&rowToken, "rowToken"}});
    const HostInput d(dOutput, "dOutput"), rows(rowToken, "rowToken");
    HostOutput dx(env, DType::F32, {T, H}, device);
    cpu::permuteRowsBackward(d.f32(), n, H, rows.i32(), T, dx.f32());
    dx.upload();
    return dx.handle();
  });
}

// unpermute(rows f32 [n,H], rowToken i32 [n], weights f32 [n] | null, tokens T) → y f32 [T,H],
//   y[rowToken[r]] += weights[r] · rows[r] (weight 1 when null).
Napi::Value unpermute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 4, "unpermute(rows, rowToken, weights, tokens)");
    const NativeTensor& rows = tensorArg(info[0], "rows", DType::F32, 2);
    const int n = int(rows.shape()[0]), H = int(rows.shape()[1]);
    const NativeTensor& rowToken = rowTokenArg(info[1], n, "n = rows.shape[0]");
    const NativeTensor* weights = optionalTensorArg(info[2], "weights", DType::F32, 1);
    if (weights) expectDim(*weights, "weights", 0, n, "n = rows.shape[0]");
    const int T = readInt(info[3], "tokens", 0, kMaxElements);
    if (H < 1) fail(ErrorKind::Shape, "rows has shape " + shapeString(rows.shape()) + ": the hidden size must be at least 1");
    if (int64_t(T) * H > kMaxElements) fail(ErrorKind::Shape, "tokens = " + str(T) + " rows of " + str(H) + " exceed the largest tensor");
    const int device = commonDevice({{&rows, "rows"}, {&rowToken, "rowToken"}, {weights, "weights"}});
    const HostInput r(rows, "rows"), tokenOf(rowToken, "rowToken");
    const std::unique_ptr<HostInput> w = weights ? std::make_unique<HostInput>(*weights, "weights") : nullptr;
    HostOutput y(env, DType::F32, {T, H}, device);
    cpu::unpermuteRows(r.f32(), n, H, tokenOf.i32(), w ? w->f32() : nullptr, T, y.f32());
    y.upload();
    return y.handle();
  });
}

// unpermuteBackward(dOutput f32 [T,H], rowToken i32 [n], weights f32 [n] | null, rows f32 [n,H])
//   → {dRows f32 [n,H], dWeights f32 [n] | null (null when weights is null)}.
Napi::Value unpermuteBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 4, "unpermuteBackward(dOutput, rowToken, weights, rows)");
    const NativeTensor& dOutput = tensorArg(info[0], "dOutput", DType::F32, 2);
    const NativeTensor& rows = tensorArg(info[3], "rows", DType::F32, 2);
    const int T = int(dOutput.shape()[0]), H = int(dOutput.shape()[1]), n = int(rows.shape()[0]);
    expectDim(rows, "rows", 1, H, "H = dOutput.shape[1]");
    const NativeTensor& rowToken = rowTokenArg(info[1], n, "n = rows.shape[0]");
    const NativeTensor* weights = optionalTensorArg(info[2], "weights", DType::F32, 1);
    if (weights) expectDim(*weights, "weights", 0, n, "n = rows.shape[0]");
    if (H < 1) fail(ErrorKind::Shape, "dOutput has shape " + shapeString(dOutput.shape()) + ": the hidden size must be at least 1");
    const int device =
        commonDevice({{&dOutput, "dOutput"}, {&rowToken, "rowToken"}, {weights, "weights"}, {&rows, "rows"}});
    const HostInput d(dOutput, "dOutput"), tokenOf(rowToken, "rowToken"), r(rows, "rows");
    const std::unique_ptr<HostInput> w = weights ? std::make_unique<HostInput>(*weights, "weights") : nullptr;
    HostOutput dRows(env, DType::F32, {n, H}, device);
    const std::unique_ptr<HostOutput> dWeights = weights ? std::make_unique<HostOutput>(env, DType::F32, std::vector<int64_t>{n}, device) : nullptr;
    cpu::unpermuteRowsBackward(d.f32(), T, H, tokenOf.i32(), w ? w->f32() : nullptr, r.f32(), n, dRows.f32(),
                               dWeights ? dWeights->f32() : nullptr);
    dRows.upload();
    if (dWeights) dWeights->upload();
    // The result object is built after the work: setting a property can run JavaScript (a setter
    // on Object.prototype), which must not meet storage still in use.
    Napi::Object out = Napi::Object::New(env);
    out.Set("dRows", dRows.handle());
    out.Set("dWeights", dWeights ? Napi::Value(dWeights->handle()) : env.Null());
    return out;
  });
}

// ---- grouped GEMM ------------------------------------------------------------------------------

struct GemmArgs {
  const NativeTensor* a;
  const NativeTensor* w;
  std::vector<int32_t> groupSizes;
  int64_t m;
  int n, k, groups;
};

// a f32|bf16 [M,K], w [G,N,K] of a's dtype, groupSizes: G integers ≥ 0 summing to M.
GemmArgs gemmArgs(const Napi::Value& a, const Napi::Value& w, const Napi::Value& groupSizes) {
  GemmArgs g;
  const NativeTensor& at = NativeTensor::unwrap(a, "a");
  at.checkLive("a");
  const DType dtype = at.dtype() == DType::BF16 ? DType::BF16 : DType::F32;
  g.a = &tensorArg(a, "a", dtype, 2);
  g.w = &tensorArg(w, "w", dtype, 3);
  g.m = g.a->shape()[0];
  g.k = int(g.a->shape()[1]);
  g.groups = int(g.w->shape()[0]);
  g.n = int(g.w->shape()[1]);
  if (g.k < 1) fail(ErrorKind::Shape, "a has shape " + shapeString(g.a->shape()) + ": K = a.shape[1] must be at least 1");
  if (g.groups < 1 || g.n < 1)
    fail(ErrorKind::Shape, "w has shape " + shapeString(g.w->shape()) + ": G and N must be at least 1");
  expectDim(*g.w, "w", 2, g.k, "K = a.shape[1]");
  g.groupSizes = readSizes(groupSizes, "groupSizes", g.groups, 0, g.m, "M = a.shape[0]");
  if (g.m * g.n > kMaxElements) fail(ErrorKind::Shape, "the output [" + str(g.m) + ", " + str(g.n) + "] exceeds the largest tensor");
  return g;
}

// The f32 values of a gemm operand: its host bytes for f32, a widened copy in `widened` for bf16
// (exact: every bf16 value is an f32, and a bf16·bf16 product is exact in f32, so the f32 GEMM
// over the widened operands is the bf16 GEMM with f32 accumulation).
const float* gemmValues(const NativeTensor& t, const HostInput& host, std::vector<float>& widened) {
  if (t.dtype() == DType::F32) return host.f32();
  widened.resize(size_t(t.numel()));
  cpu::decodeToF32(host.data(), widened.data(), t.numel(), t.dtype());
  return widened.data();
}

// groupedGemm(a [M,K], w [G,N,K], groupSizes) → out f32 [M,N], out_g = a_g · w_gᵀ; a and w both
// f32 or both bf16.
Napi::Value groupedGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 3, "groupedGemm(a, w, groupSizes)");
    const GemmArgs g = gemmArgs(info[0], info[1], info[2]);
    const int device = commonDevice({{g.a, "a"}, {g.w, "w"}});
    const HostInput a(*g.a, "a"), w(*g.w, "w");
    HostOutput out(env, DType::F32, {g.m, g.n}, device);
    std::vector<float> aWide, wWide;
    cpu::groupedGemmNT(gemmValues(*g.a, a, aWide), gemmValues(*g.w, w, wWide), g.groupSizes.data(), g.groups, g.m,
                       g.n, g.k, out.f32());
    out.upload();
    return out.handle();
  });
}

// groupedGemmBackward(dOut f32 [M,N], a [M,K], w [G,N,K], groupSizes) → {da f32 [M,K], dw f32
// [G,N,K]} (f32 gradients for bf16 operands too: their values widened, as the forward reads them).
Napi::Value groupedGemmBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 4, "groupedGemmBackward(dOut, a, w, groupSizes)");
    const GemmArgs g = gemmArgs(info[1], info[2], info[3]);
    const NativeTensor& dOut = tensorArg(info[0], "dOut", DType::F32, 2);
    expectDim(dOut, "dOut", 0, g.m, "M = a.shape[0]");
    expectDim(dOut, "dOut", 1, g.n, "N = w.shape[1]");
    const int device = commonDevice({{&dOut, "dOut"}, {g.a, "a"}, {g.w, "w"}});
    const HostInput d(dOut, "dOut"), a(*g.a, "a"), w(*g.w, "w");
    HostOutput da(env, DType::F32, g.a->shape(), device);
    HostOutput dw(env, DType::F32, g.w->shape(), device);
    std::vector<float> aWide, wWide;
    cpu::groupedGemmNTBackward(d.f32(), gemmValues(*g.a, a, aWide), gemmValues(*g.w, w, wWide), g.groupSizes.data(),
                               g.groups, g.m, g.n, g.k, da.f32(), dw.f32());
    da.upload();
    dw.upload();
    Napi::Object out = Napi::Object::New(env);
    out.Set("da", da.handle());
    out.Set("dw", dw.handle());
    return out;
  });
}

// ---- FP8 (F1–F3; cpu/fp8.h) --------------------------------------------------------------------

Fp8Format readFp8Format(const Napi::Value& value, const char* name) {
  const std::string text = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  if (text == "e4m3") return Fp8Format::E4M3;
  if (text == "e5m2") return Fp8Format::E5M2;
  fail(ErrorKind::Argument, std::string(name) + " must be 'e4m3' or 'e5m2', got " +
                                (value.IsString() ? "\"" + text + "\"" : describe(value)));
}

DType fp8DType(Fp8Format format) { return format == Fp8Format::E4M3 ? DType::E4M3 : DType::E5M2; }

// `value` as a live e4m3 or e5m2 tensor with `rank` dimensions; its format goes to *format.
const NativeTensor& fp8TensorArg(const Napi::Value& value, const char* name, size_t rank, Fp8Format* format) {
  const NativeTensor& t = NativeTensor::unwrap(value, name);
  t.checkLive(name);
  if (t.dtype() != DType::E4M3 && t.dtype() != DType::E5M2)
    fail(ErrorKind::DType, std::string(name) + " must be an e4m3 or e5m2 tensor, got " + dtypeName(t.dtype()));
  *format = t.dtype() == DType::E4M3 ? Fp8Format::E4M3 : Fp8Format::E5M2;
  return tensorArg(value, name, t.dtype(), rank);
}

// quantizeFp8(x f32 [M,K] | [G,N,K], format 'e4m3' | 'e5m2', blockRows 1 | 128, device 'cpu' | 'cuda:N'
//   (x's)) → {q e4m3|e5m2 (the shape of x), scales f32 [(G,) ceil(rows/blockRows), ceil(K/128)]}:
//   blockRows × 128 blocks of each matrix, a partial last block where a size is not a multiple.
//   cuda: the kernel of cuda/quantize_fp8.h on the device (bit-equal to the cpu's).
Napi::Value quantizeFp8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 4, "quantizeFp8(x, format, blockRows, device)");
    const size_t rank = NativeTensor::unwrap(info[0], "x").shape().size();
    const NativeTensor& x = tensorArg(info[0], "x", DType::F32, rank);
    if (rank != 2 && rank != 3)
      fail(ErrorKind::Shape, "x must have 2 dimensions [M,K] or 3 [G,N,K], got shape " + shapeString(x.shape()));
    const Fp8Format format = readFp8Format(info[1], "format");
    const int blockRows = readInt(info[2], "blockRows", 1, kFp8Block);
    if (blockRows != 1 && blockRows != kFp8Block)
      fail(ErrorKind::Argument, "blockRows must be 1 or 128, got " + describe(info[2]));
    const int64_t matrices = rank == 3 ? x.shape()[0] : 1, rows = x.shape()[rank - 2], cols = x.shape()[rank - 1];
    std::vector<int64_t> scaleShape{fp8BlockCount(rows, blockRows), fp8BlockCount(cols)};
    if (rank == 3) scaleShape.insert(scaleShape.begin(), matrices);
    const DeviceArg device = readDevice(info[3], "device");  // without CUDA, 'cuda:N' threw here
    expectOnDevice({{&x, "x"}}, device);
    Napi::Object q, scales;
    NativeTensor* qt = NativeTensor::create(env, fp8DType(format), x.shape(), &q, x.device());
    NativeTensor* st = NativeTensor::create(env, DType::F32, scaleShape, &scales, x.device());
#if MOEKIT_HAVE_CUDA
    if (device.cuda) {
      cuda::quantizeFp8OnDevice(static_cast<const float*>(x.storageData("x")), matrices, rows, cols, blockRows, format,
                                static_cast<uint8_t*>(qt->storageData("q")), static_cast<float*>(st->storageData("scales")));
    }
#endif
    if (!device.cuda) {
      cpu::quantizeFp8Blocks(static_cast<const float*>(x.data("x")), matrices, rows, cols, blockRows, format,
                             static_cast<uint8_t*>(qt->data("q")), static_cast<float*>(st->data("scales")));
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("q", q);
    out.Set("scales", scales);
    return out;
  });
}

// groupedGemmFp8(a.q e4m3|e5m2 [M,K], a.scales f32 [M, ceil(K/128)], b.q e4m3|e5m2 [G,N,K],
//   b.scales f32 [G, ceil(N/128), ceil(K/128)], groupSizes: G integers ≥ 0 summing to M,
//   device 'cpu' | 'cuda:N' (the operands')) → out f32 [M,N] = Σ over K blocks of (a·sa)(b_g·sb)ᵀ
//   per group (F3). cuda: the tensor-core kernel of cuda/grouped_gemm_fp8.h on the device
//   (cuda/device_ops.h lays the operands out for it there); e4m3 operands only.
Napi::Value groupedGemmFp8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 6, "groupedGemmFp8(aq, aScales, bq, bScales, groupSizes, device)");
    Fp8Format aFormat, bFormat;
    const NativeTensor& aq = fp8TensorArg(info[0], "a.q", 2, &aFormat);
    const NativeTensor& bq = fp8TensorArg(info[2], "b.q", 3, &bFormat);
    const int64_t m = aq.shape()[0], k = aq.shape()[1], groups = bq.shape()[0], n = bq.shape()[1];
    if (k < 1) fail(ErrorKind::Shape, "a.q has shape " + shapeString(aq.shape()) + ": K = a.q.shape[1] must be at least 1");
    if (groups < 1 || n < 1)
      fail(ErrorKind::Shape, "b.q has shape " + shapeString(bq.shape()) + ": G and N must be at least 1");
    expectDim(bq, "b.q", 2, k, "K = a.q.shape[1]");
    const NativeTensor& aScales = tensorArg(info[1], "a.scales", DType::F32, 2);
    expectDim(aScales, "a.scales", 0, m, "M = a.q.shape[0]");
    expectDim(aScales, "a.scales", 1, fp8BlockCount(k), "ceil(K / 128)");
    const NativeTensor& bScales = tensorArg(info[3], "b.scales", DType::F32, 3);
    expectDim(bScales, "b.scales", 0, groups, "G = b.q.shape[0]");
    expectDim(bScales, "b.scales", 1, fp8BlockCount(n), "ceil(N / 128)");
    expectDim(bScales, "b.scales", 2, fp8BlockCount(k), "ceil(K / 128)");
    const std::vector<int32_t> groupSizes = readSizes(info[4], "groupSizes", groups, 0, m, "M = a.q.shape[0]");
    if (m * n > kMaxElements) fail(ErrorKind::Shape, "the output [" + str(m) + ", " + str(n) + "] exceeds the largest tensor");
    const DeviceArg device = readDevice(info[5], "device");  // without CUDA, 'cuda:N' threw here
    commonDevice({{&aq, "a.q"}, {&aScales, "a.scales"}, {&bq, "b.q"}, {&bScales, "b.scales"}});
    expectOnDevice({{&aq, "a.q"}}, device);
    if (device.cuda && (aFormat != Fp8Format::E4M3 || bFormat != Fp8Format::E4M3))
      fail(ErrorKind::DType, std::string(aFormat != Fp8Format::E4M3 ? "a.q" : "b.q") +
                                 ": the CUDA kernel multiplies e4m3 codes, got e5m2 (e5m2 runs on the cpu)");
    Napi::Object out;
    NativeTensor* ot = NativeTensor::create(env, DType::F32, {m, n}, &out, aq.device());
#if MOEKIT_HAVE_CUDA
    if (device.cuda) {
      cuda::groupedGemmFp8OnDevice(static_cast<const uint8_t*>(aq.storageData("a.q")),
                                   static_cast<const float*>(aScales.storageData("a.scales")),
                                   static_cast<const uint8_t*>(bq.storageData("b.q")),
                                   static_cast<const float*>(bScales.storageData("b.scales")), groupSizes, int(n), int(k),
                                   static_cast<float*>(ot->storageData("out")));
      return out;
    }
#endif
    cpu::groupedGemmFp8Reference(static_cast<const uint8_t*>(aq.data("a.q")), aFormat,
                                 static_cast<const float*>(aScales.data("a.scales")),
                                 static_cast<const uint8_t*>(bq.data("b.q")), bFormat,
                                 static_cast<const float*>(bScales.data("b.scales")), groupSizes.data(), int(groups), m,
                                 int(n), int(k), static_cast<float*>(ot->data("out")));
    return out;
  });
}

// ---- losses (L1, L4, L5) -----------------------------------------------------------------------

// loadBalance(probs f32 [T,E], counts i32 [E], topK, coeff, tokens) → {loss, dProbs f32 [T,E]}.
Napi::Value loadBalance(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 5, "loadBalance(probs, counts, topK, coeff, tokens)");
    const NativeTensor& probs = tensorArg(info[0], "probs", DType::F32, 2);
    const int T = int(probs.shape()[0]), E = int(probs.shape()[1]);
    const NativeTensor& counts = tensorArg(info[1], "counts", DType::I32, 1);
    expectDim(counts, "counts", 0, E, "E = probs.shape[1]");
    const int topK = readInt(info[2], "topK", 1, kMaxElements);
    const double coeff = readNumber(info[3], "coeff");
    const double tokens = readNumber(info[4], "tokens");
    if (tokens < 0) fail(ErrorKind::Argument, "tokens must be a number >= 0, got " + describe(info[4]));
    const int device = commonDevice({{&probs, "probs"}, {&counts, "counts"}});
    const HostInput c(counts, "counts");
    std::vector<int64_t> count(c.i32(), c.i32() + E);
    for (int e = 0; e < E; ++e)
      if (count[e] < 0) fail(ErrorKind::Argument, "counts[" + str(e) + "] must be >= 0, got " + str(count[e]));
    const std::vector<double> p = toDouble(HostInput(probs, "probs"), probs.numel());
    std::vector<double> grad(p.size());
    const double loss = cpu::loadBalance(p.data(), T, E, count.data(), tokens, topK, coeff, grad.data());
    return lossResult(env, loss, "dProbs", probs.shape(), grad, device);
  });
}

// zLoss(logits f32 [T,E] (−∞ = masked), coeff) → {loss, dLogits f32 [T,E]}.
Napi::Value zLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 2, "zLoss(logits, coeff)");
    const NativeTensor& logits = tensorArg(info[0], "logits", DType::F32, 2);
    const double coeff = readNumber(info[1], "coeff");
    const int T = int(logits.shape()[0]), E = int(logits.shape()[1]);
    const std::vector<double> l = toDouble(HostInput(logits, "logits"), logits.numel());
    for (size_t i = 0; i < l.size(); ++i)
      if (std::isnan(l[i]) || l[i] == INFINITY)
        fail(ErrorKind::Argument, "logits[" + str(int64_t(i) / E) + ", " + str(int64_t(i) % E) +
                                      "] must be finite or -Infinity (masked), got " + std::to_string(l[i]));
    std::vector<double> grad(l.size());
    const double loss = cpu::zLoss(l.data(), T, E, coeff, grad.data());
    return lossResult(env, loss, "dLogits", logits.shape(), grad, logits.device());
  });
}

// routerOrthogonality(weight f32 [E,H], coeff, mode 0 all | 1 perGroup | 2 crossGroup,
//   groupSizes: integers ≥ 1 summing to E) → {loss, dWeight f32 [E,H]}.
Napi::Value routerOrthogonality(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 4, "routerOrthogonality(weight, coeff, mode, groupSizes)");
    const NativeTensor& weight = tensorArg(info[0], "weight", DType::F32, 2);
    const int E = int(weight.shape()[0]), H = int(weight.shape()[1]);
    const double coeff = readNumber(info[1], "coeff");
    const OrthMode mode = OrthMode(readInt(info[2], "mode", 0, 2));
    if (!info[3].IsArray())
      fail(ErrorKind::Argument, "groupSizes must be an array of integers, got " + describe(info[3]));
    const int64_t groups = info[3].As<Napi::Array>().Length();
    const std::vector<int32_t> sizes = readSizes(info[3], "groupSizes", groups, 1, E, "E = weight.shape[0]");
    const std::vector<int> groupSizes(sizes.begin(), sizes.end());
    const std::vector<double> w = toDouble(HostInput(weight, "weight"), weight.numel());
    std::vector<double> grad(w.size());
    const double loss = cpu::routerOrthogonality(w.data(), E, H, groupSizes.data(), int(groups), mode, coeff, grad.data());
    return lossResult(env, loss, "dWeight", weight.shape(), grad, weight.device());
  });
}

// ---- AdamW -------------------------------------------------------------------------------------

// adamwStep(param, grad, m, v (f32, same shape, all on `device`), {lr, beta1, beta2, eps,
// weightDecay}, step ≥ 1, device 'cpu' | 'cuda:N'): updates param, m and v in place (cuda: the
// kernel of cuda/adamw.h on the device pointers, enqueued on the device's stream; no copy, no wait).
Napi::Value adamwStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 7, "adamwStep(param, grad, m, v, config, step, device)");
    NativeTensor& param = NativeTensor::unwrap(info[0], "param");
    const size_t rank = param.shape().size();
    tensorArg(info[0], "param", DType::F32, rank);
    const char* names[] = {"grad", "m", "v"};
    NativeTensor* others[3];
    for (int i = 0; i < 3; ++i) {
      others[i] = &tensorArg(info[1 + i], names[i], DType::F32, rank);
      if (others[i]->shape() != param.shape())
        fail(ErrorKind::Shape, std::string(names[i]) + " has shape " + shapeString(others[i]->shape()) +
                                   ", expected the shape of param " + shapeString(param.shape()));
    }
    if (!info[4].IsObject()) fail(ErrorKind::Argument, "config must be an object, got " + describe(info[4]));
    const Napi::Object c = info[4].As<Napi::Object>();
    cpu::AdamWConfig config;
    config.lr = readNumber(c.Get("lr"), "config.lr");
    config.beta1 = readNumber(c.Get("beta1"), "config.beta1");
    config.beta2 = readNumber(c.Get("beta2"), "config.beta2");
    config.eps = readNumber(c.Get("eps"), "config.eps");
    config.weightDecay = readNumber(c.Get("weightDecay"), "config.weightDecay");
    const int64_t step = int64_t(readSafeUint(info[5], "step"));
    cpu::checkAdamW(config, step);
    const DeviceArg device = readDevice(info[6], "device");  // without CUDA, 'cuda:N' threw here
    expectOnDevice({{&param, "param"}, {others[0], "grad"}, {others[1], "m"}, {others[2], "v"}}, device);
    // storageData checks each tensor alive again: the config's getters ran user code. The
    // parameter and the moments are written in place (their write counters move on).
    float* p = static_cast<float*>(param.writableStorageData("param"));
    const float* g = static_cast<const float*>(others[0]->storageData("grad"));
    float* m = static_cast<float*>(others[1]->writableStorageData("m"));
    float* v = static_cast<float*>(others[2]->writableStorageData("v"));
#if MOEKIT_HAVE_CUDA
    if (device.cuda) {
      cuda::adamwStepOnDevice(p, g, m, v, param.numel(), config, step);
      return env.Undefined();
    }
#endif
    cpu::adamwStep(p, g, m, v, param.numel(), config, step);
    return env.Undefined();
  });
}

// ---- route -------------------------------------------------------------------------------------

// One stateless routing: a fresh router (step 0, empty window) built from the flat spec of
// router_spec.h, forward in training mode on host copies of the tensors. Routing only: the spec's
// loss coefficients are ignored (losses.* compute those).
struct RouteRun {
  std::unique_ptr<cpu::Router> router;
  Routing routing;
  int T = 0, H = 0, E = 0;
  int device = -1;  // the tensors' device, where the results go
};

// route args: x f32 [T,H], weight f32 [E,H], spec, opts {bias f32 [E]?, load f32 [E]?,
// modality i32 [T]?}; `dWeights` (routeBackward's, checked by the caller) must be on their device.
RouteRun runRoute(const Napi::CallbackInfo& info, const NativeTensor* dWeights) {
  const NativeTensor& x = tensorArg(info[0], "x", DType::F32, 2);
  const NativeTensor& weight = tensorArg(info[1], "weight", DType::F32, 2);
  if (!info[2].IsObject()) fail(ErrorKind::Config, "spec must be an object, got " + describe(info[2]));
  RouterSpec spec = readRouterSpec(info[2].As<Napi::Object>());
  if (spec.type == RouterSpec::Type::ExpertChoice)
    fail(ErrorKind::Argument, "router.type 'expert-choice' selects tokens per expert (R9) and has no per-token "
                              "top-k result; use MoELayer for expert-choice routing");
  spec.balanceCoeff = spec.zCoeff = spec.orthCoeff = 0;
  RouteRun run;
  run.T = int(x.shape()[0]);
  run.H = int(x.shape()[1]);
  for (int size : spec.groupSizes) run.E += size;
  expectDim(x, "x", 1, spec.hidden, "spec.hidden");
  expectDim(weight, "weight", 0, run.E, "E (the experts of spec.groups)");
  expectDim(weight, "weight", 1, run.H, "H = x.shape[1]");
  if (!info[3].IsObject()) fail(ErrorKind::Argument, "opts must be an object, got " + describe(info[3]));
  const Napi::Object opts = info[3].As<Napi::Object>();
  const NativeTensor* bias = optionalTensorArg(opts.Get("bias"), "opts.bias", DType::F32, 1);
  const NativeTensor* load = optionalTensorArg(opts.Get("load"), "opts.load", DType::F32, 1);
  const NativeTensor* modality = optionalTensorArg(opts.Get("modality"), "opts.modality", DType::I32, 1);
  if (bias) expectDim(*bias, "opts.bias", 0, run.E, "E = weight.shape[0]");
  if (load) expectDim(*load, "opts.load", 0, run.E, "E = weight.shape[0]");
  if (modality) expectDim(*modality, "opts.modality", 0, run.T, "T = x.shape[0]");
  if (spec.useBias && !bias) fail(ErrorKind::Argument, "opts.bias: a [E] f32 tensor is required when router.bias is true (R4)");
  run.device = commonDevice({{&x, "x"}, {&weight, "weight"}, {bias, "opts.bias"}, {load, "opts.load"},
                             {modality, "opts.modality"}, {dWeights, "dWeights"}});
  // Copies: the router writes the load estimate (R10) and the caller's tensors stay as they were.
  std::vector<float> biasCopy, loadCopy;
  if (bias) {
    const HostInput b(*bias, "opts.bias");
    biasCopy.assign(b.f32(), b.f32() + run.E);
  }
  if (load) {
    const HostInput l(*load, "opts.load");
    loadCopy.assign(l.f32(), l.f32() + run.E);
  } else if (spec.type == RouterSpec::Type::Sampled) {
    loadCopy.assign(size_t(run.E), 1.0f / float(run.E));
  }
  const HostInput xHost(x, "x"), weightHost(weight, "weight");
  const std::unique_ptr<HostInput> modalityHost = modality ? std::make_unique<HostInput>(*modality, "opts.modality") : nullptr;
  const RouterParams params{weightHost.f32(), biasCopy.empty() ? nullptr : biasCopy.data(),
                            loadCopy.empty() ? nullptr : loadCopy.data()};
  run.router = std::make_unique<cpu::Router>(spec);
  run.router->forward(xHost.f32(), run.T, modalityHost ? modalityHost->i32() : nullptr, {}, params, run.routing, true);
  return run;
}

// route(x, weight, spec, opts) → {indices i32 [T,k], weights f32 [T,k], keep i32 [T,k],
//   counts i32 [E], accepted i32 [E]}.
Napi::Value route(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 4, "route(x, weight, spec, opts)");
    const RouteRun run = runRoute(info, nullptr);
    const Routing& r = run.routing;
    const std::pair<const char*, Napi::Object> results[] = {
        {"indices", tensorOf(env, DType::I32, {run.T, r.k}, r.indices, run.device)},
        {"weights", tensorOf(env, DType::F32, {run.T, r.k}, r.weights, run.device)},
        {"keep", tensorOf(env, DType::I32, {run.T, r.k}, r.keep, run.device)},
        {"counts", tensorOf(env, DType::I32, {run.E}, r.counts, run.device)},
        {"accepted", tensorOf(env, DType::I32, {run.E}, r.accepted, run.device)},
    };
    Napi::Object out = Napi::Object::New(env);
    for (const auto& [name, tensor] : results) out.Set(name, tensor);
    return out;
  });
}

// routeBackward(x, weight, spec, opts, dWeights f32 [T,k]) → {dx f32 [T,H], dWeight f32 [E,H]}:
// re-runs route, then the router's backward with dWeights at the kept slots (dropped slots
// contribute nothing).
Napi::Value routeBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expectArgs(info, 5, "routeBackward(x, weight, spec, opts, dWeights)");
    const NativeTensor& dWeights = tensorArg(info[4], "dWeights", DType::F32, 2);
    RouteRun run = runRoute(info, &dWeights);
    const Routing& r = run.routing;
    expectDim(dWeights, "dWeights", 0, run.T, "T = x.shape[0]");
    expectDim(dWeights, "dWeights", 1, r.k, "k = router.topK");
    const HostInput dw(dWeights, "dWeights");
    std::vector<float> dAssign;
    for (size_t slot = 0; slot < r.keep.size(); ++slot)
      if (r.keep[slot]) dAssign.push_back(dw.f32()[slot]);
    HostOutput dx(env, DType::F32, {run.T, run.H}, run.device);
    HostOutput dWeight(env, DType::F32, {run.E, run.H}, run.device);
    run.router->backward(dAssign.data(), dx.f32(), dWeight.f32());
    dx.upload();
    dWeight.upload();
    Napi::Object out = Napi::Object::New(env);
    out.Set("dx", dx.handle());
    out.Set("dWeight", dWeight.handle());
    return out;
  });
}

}  // namespace

void registerOps(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> functions[] = {
      {"permute", permute},
      {"permuteBackward", permuteBackward},
      {"unpermute", unpermute},
      {"unpermuteBackward", unpermuteBackward},
      {"groupedGemm", groupedGemm},
      {"groupedGemmBackward", groupedGemmBackward},
      {"quantizeFp8", quantizeFp8},
      {"groupedGemmFp8", groupedGemmFp8},
      {"loadBalance", loadBalance},
      {"zLoss", zLoss},
      {"routerOrthogonality", routerOrthogonality},
      {"adamwStep", adamwStep},
      {"route", route},
      {"routeBackward", routeBackward},
  };
  for (const auto& [name, callback] : functions) exports.Set(name, Napi::Function::New(env, callback, name));
}

}  // namespace moekit::addon
