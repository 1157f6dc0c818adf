// Runtime dispatch of the fast matmul (gemma.cpp style): this file is compiled once
// per Highway target through foreach_target.h, each pass instantiating the kernels
// of matmul-inl.h in that target's namespace; the HWY_ONCE part below picks the best
// target the CPU supports at the first call.
//
// Targets: AVX-512 (AVX3; VNNI vpdpbusd when the CPU has AVX512-VNNI), AVX2, SSE4
// (the portable Highway code, as NEON runs it) on x86; NEON on Arm. Not compiled:
//  - AVX3_DL: Highway 1.0.3 builds it with the VEX 'avxvnni' flag, which Zen 4 lacks
//    (SIGILL risk); AVX3 + a run-time VNNI check covers those CPUs instead.
//  - SVE / RVV: their sizeless vectors cannot live in the register-tile arrays;
//    NEON serves Arm.
//  - SSSE3: no gain over the SSE4 code, one less compile pass.
#include "kernels/matmul.h"
#include "kernels/peak.h"

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS \
  (HWY_AVX3_DL | HWY_SSSE3 | HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/matmul-inl.h"

#if HWY_ONCE
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/ops.h"
#include "quant/types.h"

namespace jevons {

HWY_EXPORT(MatmulFast);
HWY_EXPORT(HasFastPath);
HWY_EXPORT(ReadsX8);
HWY_EXPORT(QuantizeActQ8);
HWY_EXPORT(QuantizeActQ8K);
HWY_EXPORT(PeakLoop);
HWY_EXPORT(AttentionHeadsFast);
HWY_EXPORT(SiluMulFast);

namespace {

KernelMode initial_mode() {
  const char* env = std::getenv("JEVONS_KERNELS");
  return env && std::strcmp(env, "reference") == 0 ? KernelMode::kReference : KernelMode::kFast;
}

std::atomic<KernelMode>& mode_flag() {
  static std::atomic<KernelMode> mode{initial_mode()};
  return mode;
}

std::atomic<int> vnni_override{-1};  // -1: detect, 0: off, 1: on (tests)

bool cpu_has_vnni() {
#if HWY_ARCH_X86 && (defined(__GNUC__) || defined(__clang__))
  static const bool has = __builtin_cpu_supports("avx512vnni") && std::getenv("JEVONS_NO_VNNI") == nullptr;
  return has;
#else
  return false;
#endif
}

bool use_vnni() {
  const int o = vnni_override.load(std::memory_order_relaxed);
  return o < 0 ? cpu_has_vnni() : o != 0;
}

std::atomic<bool> bf16_dot_off{false};  // tests: the FMA form on a CPU with AVX512-BF16

bool cpu_has_bf16_dot() {
#if HWY_ARCH_X86 && (defined(__GNUC__) || defined(__clang__))
  static const bool has = __builtin_cpu_supports("avx512bf16") && std::getenv("JEVONS_NO_BF16_DOT") == nullptr;
  return has;
#else
  return false;
#endif
}

bool bf16_dot_allowed() { return cpu_has_bf16_dot() && !bf16_dot_off.load(std::memory_order_relaxed); }

// Whether matmuls on BF16 weights run vdpbf16ps: only the AVX-512 (AVX3) kernels do.
bool use_bf16_dot() {
  if (!bf16_dot_allowed()) return false;
  const std::vector<int64_t> targets = kernel_targets();
  return !targets.empty() && targets.front() == HWY_AVX3;
}

}  // namespace

void set_kernel_mode(KernelMode mode) { mode_flag().store(mode, std::memory_order_relaxed); }
KernelMode kernel_mode() { return mode_flag().load(std::memory_order_relaxed); }

namespace kernels {

size_t prefetch_distance(int threads) {
  static const long long from_env = [] {
    const char* env = std::getenv("JEVONS_PREFETCH");
    return env && *env ? std::max(0LL, std::atoll(env)) : -1LL;
  }();
  static const bool avx512 = (hwy::SupportedTargets() & HWY_AVX3) != 0;
  if (from_env >= 0) return size_t(from_env);
  return threads <= 1 && avx512 ? 0 : 1536;
}

uint8_t* scratch(size_t bytes) {
  struct Buffer {
    std::unique_ptr<uint8_t[]> data;
    size_t size = 0;
  };
  thread_local Buffer buf;
  if (buf.size < bytes) {
    const size_t size = std::max(bytes + 64, buf.size * 3 / 2);
    buf.data.reset(new uint8_t[size + 64]);
    buf.size = size;
  }
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data.get());
  return reinterpret_cast<uint8_t*>((p + 63) & ~uintptr_t(63));
}

// Test hooks (declared in tests): the fast activation quantizers.
bool quantize_act_q8(const float* x, int64_t n, ActQ8* out) { return HWY_DYNAMIC_DISPATCH(QuantizeActQ8)(x, n, out); }
bool quantize_act_q8k(const float* x, int64_t n, ActQ8K* out) { return HWY_DYNAMIC_DISPATCH(QuantizeActQ8K)(x, n, out); }

void set_vnni_override(int mode) { vnni_override.store(mode, std::memory_order_relaxed); }
void set_bf16_dot_off(bool off) { bf16_dot_off.store(off, std::memory_order_relaxed); }

}  // namespace kernels

void matmul(const Tensor& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool) {
  if (n_tokens <= 0 || w.rows <= 0) return;
  if (kernel_mode() == KernelMode::kFast &&
      HWY_DYNAMIC_DISPATCH(MatmulFast)(w, x, n_tokens, y, pool, use_vnni(), bf16_dot_allowed()))
    return;
  matmul_reference(w, x, n_tokens, y, pool);
}

void attention_heads(const float* q, int n_heads, TensorType kv_type, const void* const* k_rows, int64_t k_offset,
                     const void* const* v_rows, int64_t v_offset, int64_t n_kv, int head_dim_k, int head_dim_v,
                     float scale, float* out) {
  attention_causal_block(q, 0, 1, n_heads, kv_type, k_rows, k_offset, v_rows, v_offset, n_kv, head_dim_k, head_dim_v, scale,
                         out, 0);
}

// Rows of the reference: F32 rows as they are; F16 / BF16 / Q8_0 rows converted by the
// type's reference conversion (the same values the fast kernel reads).
static std::vector<const float*> reference_rows(TensorType type, const void* const* rows, int64_t offset, int64_t n_rows,
                                                int dim, std::vector<float>& storage) {
  std::vector<const float*> out(static_cast<size_t>(n_rows));
  if (type == TensorType::F32) {
    for (int64_t j = 0; j < n_rows; ++j) out[size_t(j)] = static_cast<const float*>(rows[j]) + offset;
    return out;
  }
  storage.resize(size_t(n_rows) * size_t(dim));
  const TypeTraits& traits = type_traits(type);
  for (int64_t j = 0; j < n_rows; ++j) {
    float* dst = &storage[size_t(j) * size_t(dim)];
    traits.to_float(static_cast<const uint8_t*>(rows[j]) + row_bytes(type, offset), dst, dim);
    out[size_t(j)] = dst;
  }
  return out;
}

void attention_causal_block(const float* q, int64_t q_stride, int n_queries, int n_heads, TensorType kv_type,
                            const void* const* k_rows, int64_t k_offset, const void* const* v_rows, int64_t v_offset,
                            int64_t n_kv, int head_dim_k, int head_dim_v, float scale, float* out, int64_t out_stride) {
  if (kv_type != TensorType::F32 && kv_type != TensorType::F16 && kv_type != TensorType::BF16 && kv_type != TensorType::Q8_0)
    fail("attention: keys and values of type {} are not supported", type_name(kv_type));
  if (kernel_mode() == KernelMode::kFast &&
      HWY_DYNAMIC_DISPATCH(AttentionHeadsFast)(q, n_heads, kv_type, k_rows, k_offset, v_rows, v_offset, n_kv, head_dim_k,
                                               head_dim_v, scale, out, n_queries, q_stride, out_stride))
    return;
  const int64_t n_rows = n_kv + n_queries - 1;
  std::vector<float> k_store, v_store;
  const std::vector<const float*> kr = reference_rows(kv_type, k_rows, k_offset, n_rows, head_dim_k, k_store);
  const std::vector<const float*> vr = reference_rows(kv_type, v_rows, v_offset, n_rows, head_dim_v, v_store);
  for (int i = 0; i < n_queries; ++i)
    for (int h = 0; h < n_heads; ++h)
      attention_head_reference(q + i * q_stride + int64_t(h) * head_dim_k, kr.data(), 0, vr.data(), 0, n_kv + i, head_dim_k,
                               head_dim_v, scale, out + i * out_stride + int64_t(h) * head_dim_v);
}

void silu_mul(float* gate, const float* up, int64_t n) {
  if (kernel_mode() == KernelMode::kFast && HWY_DYNAMIC_DISPATCH(SiluMulFast)(gate, up, n)) return;
  silu_mul_reference(gate, up, n);
}

bool matmul_has_fast_path(TensorType type) { return HWY_DYNAMIC_DISPATCH(HasFastPath)(type); }
bool matmul_reads_x8(TensorType type) { return HWY_DYNAMIC_DISPATCH(ReadsX8)(type); }

bool matmul_uses_bf16_dot() { return use_bf16_dot(); }

std::vector<int64_t> kernel_targets() {
  std::vector<int64_t> out;
  const int64_t supported = hwy::SupportedTargets();
  for (int64_t t = 1; t > 0 && t <= HWY_TARGETS; t <<= 1)
    if ((t & HWY_TARGETS & supported) && t != HWY_SCALAR && t != HWY_EMU128) out.push_back(t);
  return out;
}

void force_kernel_target(int64_t target) { hwy::SetSupportedTargetsForTest(target); }

const char* kernel_target_name() {
  static std::string name;
  const auto targets = kernel_targets();
  const int64_t best = targets.empty() ? HWY_SCALAR : targets.front();
  name = hwy::TargetName(best);
#if HWY_ARCH_X86
  if (use_vnni()) name += best == HWY_AVX3 ? "+VNNI" : "+VNNI(emulated)";
  if (use_bf16_dot()) name += "+BF16";
#endif
  return name.c_str();
}

PeakKind peak_kind_for(TensorType weights) {
  switch (weights) {
    case TensorType::BF16: return use_bf16_dot() ? PeakKind::kBf16Dot : PeakKind::kF32Fma;
    case TensorType::F32: case TensorType::F16: return PeakKind::kF32Fma;
    default: return PeakKind::kInt8Dot;
  }
}

std::string peak_kind_name(PeakKind kind) {
  const char* what = kind == PeakKind::kInt8Dot ? "int8 dot" : kind == PeakKind::kBf16Dot ? "bf16 dot" : "f32 FMA";
  return std::string(what) + " (" + kernel_target_name() + ")";
}

double measure_compute_peak_gops(PeakKind kind, int n_threads, double seconds) {
  using clock = std::chrono::steady_clock;
  if (kind == PeakKind::kBf16Dot && !use_bf16_dot()) return 0.0;
  const int k = kind == PeakKind::kInt8Dot ? 0 : kind == PeakKind::kF32Fma ? 1 : 2;
  const bool vnni = use_vnni() && cpu_has_vnni();  // the AVX2 emulation of vpdpbusd is no peak
  double ops = 0;
  int64_t checksum = 0;
  if (!HWY_DYNAMIC_DISPATCH(PeakLoop)(k, 1, vnni, &ops, &checksum)) return 0.0;
  // Calibrate the step count on one thread, then time all threads together.
  int64_t iters = 1 << 16;
  for (;;) {
    const auto t0 = clock::now();
    HWY_DYNAMIC_DISPATCH(PeakLoop)(k, iters, vnni, &ops, &checksum);
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    if (dt > 0.02 || iters > (int64_t(1) << 40)) {
      iters = std::max<int64_t>(1, int64_t(double(iters) * seconds / std::max(dt, 1e-9)));
      break;
    }
    iters *= 4;
  }
  ThreadPool pool(std::max(1, n_threads));
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    std::vector<double> thread_ops(size_t(pool.size()), 0.0);
    const auto t0 = clock::now();
    pool.parallel_for(pool.size(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        int64_t sink = 0;
        HWY_DYNAMIC_DISPATCH(PeakLoop)(k, iters, vnni, &thread_ops[size_t(i)], &sink);
        if (sink == 42) thread_ops[size_t(i)] += 0.0;  // keeps the result observed
      }
    });
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    double total = 0;
    for (double o : thread_ops) total += o;
    best = std::max(best, total / dt / 1e9);
  }
  return best;
}

}  // namespace jevons
#endif  // HWY_ONCE
