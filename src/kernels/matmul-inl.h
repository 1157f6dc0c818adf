// Per-target matmul kernels (Google Highway). matmul.cc includes this file once
// per instruction set through hwy/foreach_target.h; HWY_NAMESPACE is that target's
// namespace (N_AVX2, N_AVX3, N_SSE4, N_NEON, ...).
//
// Vectors are capped at 32 bytes: one 32-element quant block is one int8 vector on
// AVX2/AVX-512 (kSub = 1) and two on 128-bit targets (kSub = 2). On Zen 4 512-bit
// integer ops issue as two 256-bit halves, so 256-bit vectors lose no throughput
// there, and AVX-512 still brings 32 registers and (when the CPU has it) VNNI.
//
// Integer dot products: weights are decoded to *unsigned* codes (Q4_0: 0..15, Q5_0:
// 0..31, Q4_K: 0..15, Q6_K: 0..63) and multiplied with signed int8 activations by
// u8 x i8 instructions (pmaddubsw + pmaddwd on AVX2 / SSE, vpdpbusd with VNNI); the
// code offset (8, 16, 32) is removed exactly in integer arithmetic through the
// activation block sums. Pair sums stay below 2 * 63 * 127 < 32767, so pmaddubsw
// never saturates. Q8_0 weights are signed: sign trick on AVX2, offset 128 with VNNI.
//
// The SSE4 target deliberately runs the portable code (Highway ops only, no raw
// intrinsics): it is what NEON and other 128-bit targets compile, and testing SSE4 on
// x86 keeps that path tested.

#if defined(JEVONS_KERNELS_MATMUL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef JEVONS_KERNELS_MATMUL_INL_H_
#undef JEVONS_KERNELS_MATMUL_INL_H_
#else
#define JEVONS_KERNELS_MATMUL_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "core/float16.h"
#include "quant/tensor.h"
#include "core/thread_pool.h"
#include "kernels/matmul_internal.h"
#include "quant/blocks.h"

HWY_BEFORE_NAMESPACE();
namespace jevons {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#undef JEVONS_MM_ENABLED
#undef JEVONS_MM_X86
#if HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128
#define JEVONS_MM_ENABLED 0  // fallback targets: the reference path does the work
#else
#define JEVONS_MM_ENABLED 1
#endif
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define JEVONS_MM_X86 1  // 256-bit x86: raw intrinsics where Highway 1.0 has no op
#else
#define JEVONS_MM_X86 0
#endif

#if JEVONS_MM_ENABLED

using kernels::ActQ8;
using kernels::ActQ8K;

using D8 = hn::CappedTag<int8_t, 32>;
using DU8 = hn::CappedTag<uint8_t, 32>;
using D16 = hn::Repartition<int16_t, D8>;
using D32 = hn::Repartition<int32_t, D8>;
using DF = hn::Repartition<float, D8>;
using V8 = hn::Vec<D8>;
using VU8 = hn::Vec<DU8>;
using V32 = hn::Vec<D32>;
using VF = hn::Vec<DF>;
constexpr size_t kL8 = hn::MaxLanes(D8());
constexpr size_t kSub = 32 / kL8;  // int8 vectors per 32 elements
static_assert(kL8 == 16 || kL8 == 32, "kernels assume 128- or 256-bit int8 vectors");
constexpr size_t kLF = hn::MaxLanes(DF());

// Register tiles for prefill: R rows x T tokens, per kernel family (16 vector registers
// on AVX2 / SSE, 32 on AVX-512 and NEON). On x86 the quantized kernels take one row and
// eight tokens: the row's decoded codes stay in registers while the activations come
// from L1 as memory operands, and the accumulators never spill.
// Decode (one token) always streams one row after the other: consecutive rows are
// consecutive in memory, so the weights are read as one linear stream that the hardware
// prefetchers follow (several interleaved rows cut single-core bandwidth to a third).
// Repacked weights (TileX8) take 8 rows and kX8T tokens: 8 accumulators, 8 int sums.
// Float tiles on AVX2: 2 rows x 3 tokens (12 accumulators, two chains each) loads each
// token's activations once per 2 rows; 1 x 4 read them once per row from L2 (wide rows
// do not fit L1) and ran 20-25% slower (bench/ matmul/bf16).
// Repacked floats (TileX8Float): kX8FloatG groups of 8 rows x kX8FloatT tokens of
// accumulators for one of the 4 chains at a time. On AVX-512 4 x 6 (24 accumulators,
// 10 loads per 24 vdpbf16ps): BF16 prefill of tinyllama ran 69 tok/s on Zen 4, 3 x 8
// and 6 x 4 alike, 2 x 12 (14 loads) 59.
#if HWY_TARGET <= HWY_AVX3
constexpr size_t kQuantR = 1, kQuantT = 8, kFloatR = 2, kFloatT = 4, kX8T = 8, kX8FloatG = 4, kX8FloatT = 6;
#elif JEVONS_MM_X86
constexpr size_t kQuantR = 1, kQuantT = 8, kFloatR = 2, kFloatT = 3, kX8T = 4, kX8FloatG = 2, kX8FloatT = 6;
#else
constexpr size_t kQuantR = 4, kQuantT = 2, kFloatR = 2, kFloatT = 4;
#endif
// Tokens per row sweep: every row of the thread's range passes over their activations
// (at most this many bytes), so each weight comes from DRAM once per block. A block the
// size of L2 (256 KiB: 30 tokens of a 4096-column BF16 matmul) re-streamed the weights
// every 30 tokens and left BF16 prefill waiting on memory: at 4 MiB the activations
// stay in L3, a tile's weights in L2, and the BF16 matmul (4096 x 4096, 512 tokens) ran
// 137 -> 177 GOP/s on Zen 4, Q8_0 222 -> 281 (bench/ matmul/...-x8). Q4_K and Q6_K keep
// the L2-sized block: for Q4_K (4.5-bit weights, so little to re-stream) the larger one
// measured no better, the matmul 3-8% slower; repacked Q6_K 12-26% slower.
constexpr size_t kActBlockBytes = size_t(4) << 20, kActBlockBytesQ8K = size_t(256) << 10;

// f(integral_constant<0>), ..., f(integral_constant<N-1>): an unrolled loop whose index
// is a constant from the start, so that GCC keeps register-tile arrays in registers
// (a plain loop is unrolled only after the pass that would have done so).
template <size_t N, class F, size_t... I>
HWY_INLINE void ForEachIndexImpl(F&& f, std::index_sequence<I...>) {
  (f(std::integral_constant<size_t, I>{}), ...);
}
template <size_t N, class F>
HWY_INLINE void ForEachIndex(F&& f) {
  ForEachIndexImpl<N>(f, std::make_index_sequence<N>{});
}

HWY_INLINE float F16ToF32(uint16_t h) {
#if JEVONS_MM_X86
  return _cvtsh_ss(h);
#else
  return fp16_to_float(h);
#endif
}

HWY_INLINE float ReduceSum(VF v) { return hn::GetLane(hn::SumOfLanes(DF(), v)); }

// Software prefetch of the weight stream dist bytes ahead (TileArgs::prefetch; 0: none):
// several rows are streamed at once, and K-quant blocks are read end (scales) before
// start (codes), which the hardware prefetchers follow poorly.
template <size_t kBytes>
HWY_INLINE void PrefetchAhead(const void* p, size_t dist) {
  const char* c = static_cast<const char*>(p) + dist;
  if (dist)
    for (size_t o = 0; o < kBytes; o += 64) __builtin_prefetch(c + o, 0, 3);
}

// A prefetch into L2 that the compiler keeps: GCC deletes a loop whose body is only
// __builtin_prefetch (it has no side effects, so the loop counts as empty).
HWY_INLINE void PrefetchL2(const void* p) {
#if HWY_ARCH_X86
  asm volatile("prefetcht1 %0" : : "m"(*static_cast<const char*>(p)));
#elif HWY_ARCH_ARM_A64
  asm volatile("prfm pldl2keep, %a0" : : "p"(p));
#else
  __builtin_prefetch(p, 0, 2);
#endif
}

// Makes v look modified to the compiler (no instruction emitted), so that work on it
// cannot be hoisted out of a timing loop, nor reassociated with later work.
template <class V>
HWY_INLINE void Opaque(V& v) {
#if HWY_ARCH_X86
  asm volatile("" : "+v"(v.raw));
#elif HWY_ARCH_ARM
  asm volatile("" : "+w"(v.raw));
#else
  asm volatile("" : : "r"(&v) : "memory");
#endif
}

// ------------------------------------------------------------------ int8 dot products

// acc + a * b summed over groups of 4 bytes (u8 x i8). Exact as long as pairs of
// products fit in int16 (always true for the codes used here).
template <bool kVnni>
HWY_INLINE V32 DotU8I8(V32 acc, VU8 a, V8 b) {
#if JEVONS_MM_X86
  if constexpr (kVnni) {
#if HWY_TARGET <= HWY_AVX3
    __m256i r = acc.raw;
    // EVEX-encoded on purpose: Zen 4 has AVX512-VNNI but not the VEX AVX-VNNI form.
    asm("%{evex%} vpdpbusd %2, %1, %0" : "+v"(r) : "v"(a.raw), "v"(b.raw));
    return V32{r};
#else
    // AVX2: an exact emulation of vpdpbusd, used only when tests force the VNNI code
    // paths (set_vnni_override) to check their logic on machines without AVX-512.
    // Even and odd bytes widened to int16 in place: each 32-bit lane sums exactly its own
    // 4 bytes, as vpdpbusd does (the repacked kernels keep one row per lane).
    const __m256i a_even = _mm256_and_si256(a.raw, _mm256_set1_epi16(0xFF)), a_odd = _mm256_srli_epi16(a.raw, 8);
    const __m256i b_even = _mm256_srai_epi16(_mm256_slli_epi16(b.raw, 8), 8), b_odd = _mm256_srai_epi16(b.raw, 8);
    return V32{_mm256_add_epi32(acc.raw, _mm256_add_epi32(_mm256_madd_epi16(a_even, b_even), _mm256_madd_epi16(a_odd, b_odd)))};
#endif
  } else {
    const __m256i p = _mm256_maddubs_epi16(a.raw, b.raw);
    return V32{_mm256_add_epi32(acc.raw, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))};
  }
#else
  const hn::Half<DU8> du8h;
  const hn::Half<D8> d8h;
  const hn::Rebind<int16_t, hn::Half<D8>> d16;
  const D32 d32;
  const auto a0 = hn::PromoteTo(d16, hn::LowerHalf(du8h, a));
  const auto a1 = hn::PromoteTo(d16, hn::UpperHalf(du8h, a));
  const auto b0 = hn::PromoteTo(d16, hn::LowerHalf(d8h, b));
  const auto b1 = hn::PromoteTo(d16, hn::UpperHalf(d8h, b));
  auto s1 = hn::Zero(d32);
  acc = hn::ReorderWidenMulAccumulate(d32, a0, b0, acc, s1);
  acc = hn::ReorderWidenMulAccumulate(d32, a1, b1, acc, s1);
  return hn::Add(acc, s1);
#endif
}

// acc + a * b summed over groups (i8 x i8), exact for |b| <= 127.
HWY_INLINE V32 DotI8I8(V32 acc, V8 a, V8 b) {
#if JEVONS_MM_X86
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a.raw, a.raw), _mm256_sign_epi8(b.raw, a.raw));
  return V32{_mm256_add_epi32(acc.raw, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))};
#else
  const hn::Half<D8> d8h;
  const hn::Rebind<int16_t, hn::Half<D8>> d16;
  const D32 d32;
  auto s1 = hn::Zero(d32);
  acc = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LowerHalf(d8h, a)),
                                      hn::PromoteTo(d16, hn::LowerHalf(d8h, b)), acc, s1);
  acc = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::UpperHalf(d8h, a)),
                                      hn::PromoteTo(d16, hn::UpperHalf(d8h, b)), acc, s1);
  return hn::Add(acc, s1);
#endif
}

// acc + sc_lo * (a . b over the chunk's elements 0..15) + sc_hi * (elements 16..31), for
// one 32-element chunk held as kSub vectors. kSame: sc_lo == sc_hi.
template <bool kVnni, bool kSame>
HWY_INLINE V32 DotChunkScaled(V32 acc, const VU8* a, const V8* b, int sc_lo, int sc_hi) {
  const D32 d32;
#if JEVONS_MM_X86
  if constexpr (kVnni) {
    const V32 dot = DotU8I8<true>(hn::Zero(d32), a[0], b[0]);
    V32 sc;
    if constexpr (kSame) sc = hn::Set(d32, sc_lo);
    else sc = hn::Combine(d32, hn::Set(hn::Half<D32>(), sc_hi), hn::Set(hn::Half<D32>(), sc_lo));
    return hn::Add(acc, hn::Mul(dot, sc));
  } else {
    __m256i sc;
    if constexpr (kSame) sc = _mm256_set1_epi16(int16_t(sc_lo));
    else sc = _mm256_set_m128i(_mm_set1_epi16(int16_t(sc_hi)), _mm_set1_epi16(int16_t(sc_lo)));
    const __m256i p = _mm256_maddubs_epi16(a[0].raw, b[0].raw);
    return V32{_mm256_add_epi32(acc.raw, _mm256_madd_epi16(p, sc))};
  }
#else
  acc = hn::Add(acc, hn::Mul(DotU8I8<kVnni>(hn::Zero(d32), a[0], b[0]), hn::Set(d32, sc_lo)));
  return hn::Add(acc, hn::Mul(DotU8I8<kVnni>(hn::Zero(d32), a[1], b[1]), hn::Set(d32, sc_hi)));
#endif
}

// ------------------------------------------------------------------ activation quantization

// x[0..n) -> n/32 ActQ8 blocks, bit-identical to ggml's x86 quantize_row_q8_0/_q8_1.
HWY_NOINLINE void QuantizeRowQ8(const float* HWY_RESTRICT x, int64_t n, ActQ8* HWY_RESTRICT out) {
  const DF df;
  const D32 d32;
  const hn::Rebind<int8_t, DF> d8q;
  constexpr size_t kV = 32 / kLF;
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    VF v[kV];
    VF amax = hn::Zero(df);
    for (size_t i = 0; i < kV; ++i) {
      v[i] = hn::LoadU(df, x + i * kLF);
      amax = hn::Max(amax, hn::Abs(v[i]));
    }
    const float maxv = hn::GetLane(hn::MaxOfLanes(df, amax));
    const float d = maxv / 127.0f;
    const float id = maxv != 0.0f ? 127.0f / maxv : 0.0f;
    const VF mul = hn::Set(df, id);
    V32 sum = hn::Zero(d32);
    ActQ8& o = out[b];
    for (size_t i = 0; i < kV; ++i) {
      const V32 q = hn::NearestInt(hn::Mul(v[i], mul));
      sum = hn::Add(sum, q);
      hn::StoreU(hn::DemoteTo(d8q, q), d8q, o.qs + i * kLF);
    }
    const int32_t s = hn::GetLane(hn::SumOfLanes(d32, sum));
    o.d = fp16_to_float(float_to_fp16(d));
    o.sum = s;
    o.s = fp16_to_float(float_to_fp16(d * float(s)));
    o.offset_sum = 0;
  }
}

// x[0..n) -> n/256 ActQ8K blocks, bit-identical to ggml's quantize_row_q8_K_ref.
HWY_NOINLINE void QuantizeRowQ8K(const float* HWY_RESTRICT x, int64_t n, ActQ8K* HWY_RESTRICT out) {
  const DF df;
  const hn::Rebind<int8_t, DF> d8q;
  for (int64_t b = 0; b < n / 256; ++b, x += 256) {
    ActQ8K& o = out[b];
    VF amax = hn::Zero(df);
    for (size_t i = 0; i < 256; i += kLF) amax = hn::Max(amax, hn::Abs(hn::LoadU(df, x + i)));
    const float maxabs = hn::GetLane(hn::MaxOfLanes(df, amax));
    if (maxabs == 0.0f) {
      std::memset(&o, 0, sizeof o);
      continue;
    }
    float max = 0.0f;  // the first element of largest magnitude, with its sign
    for (int i = 0; i < 256; ++i)
      if (std::fabs(x[i]) == maxabs) {
        max = x[i];
        break;
      }
    const float iscale = -127.0f / max;
    const VF mul = hn::Set(df, iscale);
    const auto lim = hn::Set(hn::Rebind<int32_t, DF>(), 127);
    for (size_t i = 0; i < 256; i += kLF)
      hn::StoreU(hn::DemoteTo(d8q, hn::Min(hn::NearestInt(hn::Mul(hn::LoadU(df, x + i), mul)), lim)), d8q, o.qs + i);
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += o.qs[16 * g + i];
      o.bsums[g] = int16_t(s);
    }
    for (int g = 0; g < 8; ++g) o.bsums32[g] = int16_t(o.bsums[2 * g] + o.bsums[2 * g + 1]);
    o.d = 1.0f / iscale;
    o.pad[0] = o.pad[1] = o.pad[2] = 0;
  }
}

// ------------------------------------------------------------------ weight decoders (32-blocks)

// 16 bytes of nibbles -> codes 0..15 of elements 0..31 (low nibbles first).
HWY_INLINE void LoadNibbles32(const uint8_t* p, VU8* q) {
  const DU8 du8;
  if constexpr (kSub == 1) {
    const hn::Half<DU8> dh;
    const hn::Repartition<uint16_t, decltype(dh)> dh16;
    const auto raw = hn::LoadU(dh, p);
    const auto high = hn::BitCast(dh, hn::ShiftRight<4>(hn::BitCast(dh16, raw)));  // masked below
    q[0] = hn::And(hn::Combine(du8, high, raw), hn::Set(du8, 0x0F));
  } else {
    const auto raw = hn::LoadU(du8, p);
    q[0] = hn::And(raw, hn::Set(du8, 0x0F));
    q[1] = hn::ShiftRight<4>(raw);
  }
}

// The 32 fifth bits of Q5 blocks -> 16 where set, 0 elsewhere.
HWY_INLINE void LoadHighBits32(const uint8_t* qh, VU8* hb) {
  alignas(32) static constexpr uint8_t kIdx[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                   2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
  alignas(32) static constexpr uint8_t kBit[32] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128,
                                                   1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const DU8 du8;
  uint32_t h;
  std::memcpy(&h, qh, 4);
  const VU8 bytes = hn::BitCast(du8, hn::Set(hn::Repartition<uint32_t, DU8>(), h));
  for (size_t s = 0; s < kSub; ++s) {
    const VU8 sel = hn::TableLookupBytes(bytes, hn::Load(du8, kIdx + s * kL8));
    const VU8 bit = hn::Load(du8, kBit + s * kL8);
    hb[s] = hn::IfThenElseZero(hn::Eq(hn::And(sel, bit), bit), hn::Set(du8, 16));
  }
}

#if JEVONS_MM_X86
// Two consecutive 32-blocks at once (x86, 256-bit): lane half 0 holds block b, half 1
// block b+1; `lo` = elements 0..15 of each, `hi` = elements 16..31. Halves the
// per-block overhead (scale conversion, int->float, FMA) of the one-block loop.
HWY_INLINE void NibblesPair(const uint8_t* q0, const uint8_t* q1, __m256i& lo, __m256i& hi) {
  const __m256i raw = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(q1), reinterpret_cast<const __m128i*>(q0));
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  lo = _mm256_and_si256(raw, m4);
  hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
}

// Fifth bits of two Q5 blocks -> 16 where set, in the lo/hi layout of NibblesPair.
HWY_INLINE void HighBitsPair(const uint8_t* qh0, const uint8_t* qh1, __m256i& hlo, __m256i& hhi) {
  uint32_t h0, h1;
  std::memcpy(&h0, qh0, 4);
  std::memcpy(&h1, qh1, 4);
  const __m256i h = _mm256_set_m128i(_mm_set1_epi32(int(h1)), _mm_set1_epi32(int(h0)));
  const __m256i idx_lo = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m256i idx_hi = _mm256_add_epi8(idx_lo, _mm256_set1_epi8(2));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  const __m256i sixteen = _mm256_set1_epi8(16);
  hlo = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(h, idx_lo), bit), bit), sixteen);
  hhi = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(h, idx_hi), bit), bit), sixteen);
}

// Four activation bytes at p in every 32-bit lane: what the repacked (x8) tiles multiply
// each row's 4 code bytes with.
HWY_INLINE __m256i Broadcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// [f(a) x4 | f(b) x4] from two fp16 values.
HWY_INLINE __m256 F16Pair(uint16_t a, uint16_t b) {
  const __m256 f = _mm256_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(a), b, 4));
  return _mm256_shuffle_ps(f, f, 0);
}
#endif

// Each decoder: kOffset (code - kOffset is the signed value), kMin (has an additive
// min), Decode() -> unsigned codes, Scale() and Min().
struct DecQ4_0 {
  using Block = BlockQ4_0;
  static constexpr int kOffset = 8;
  static constexpr bool kMin = false, kSigned = false;
  static HWY_INLINE void Decode(const Block& b, VU8* q) { LoadNibbles32(b.qs, q); }
  static HWY_INLINE float Scale(const Block& b) { return F16ToF32(b.d); }
  static HWY_INLINE float Min(const Block&) { return 0.0f; }
#if JEVONS_MM_X86
  static HWY_INLINE void DecodePair(const Block& b0, const Block& b1, __m256i& lo, __m256i& hi) {
    NibblesPair(b0.qs, b1.qs, lo, hi);
  }
#endif
};
struct DecQ4_1 {
  using Block = BlockQ4_1;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = true, kSigned = false;
  static HWY_INLINE void Decode(const Block& b, VU8* q) { LoadNibbles32(b.qs, q); }
  static HWY_INLINE float Scale(const Block& b) { return F16ToF32(b.d); }
  static HWY_INLINE float Min(const Block& b) { return F16ToF32(b.m); }
#if JEVONS_MM_X86
  static HWY_INLINE void DecodePair(const Block& b0, const Block& b1, __m256i& lo, __m256i& hi) {
    NibblesPair(b0.qs, b1.qs, lo, hi);
  }
#endif
};
struct DecQ5_0 {
  using Block = BlockQ5_0;
  static constexpr int kOffset = 16;
  static constexpr bool kMin = false, kSigned = false;
  static HWY_INLINE void Decode(const Block& b, VU8* q) {
    VU8 hb[kSub];
    LoadNibbles32(b.qs, q);
    LoadHighBits32(b.qh, hb);
    for (size_t s = 0; s < kSub; ++s) q[s] = hn::Or(q[s], hb[s]);
  }
  static HWY_INLINE float Scale(const Block& b) { return F16ToF32(b.d); }
  static HWY_INLINE float Min(const Block&) { return 0.0f; }
#if JEVONS_MM_X86
  static HWY_INLINE void DecodePair(const Block& b0, const Block& b1, __m256i& lo, __m256i& hi) {
    __m256i hlo, hhi;
    NibblesPair(b0.qs, b1.qs, lo, hi);
    HighBitsPair(b0.qh, b1.qh, hlo, hhi);
    lo = _mm256_or_si256(lo, hlo);
    hi = _mm256_or_si256(hi, hhi);
  }
#endif
};
struct DecQ5_1 {
  using Block = BlockQ5_1;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = true, kSigned = false;
  static HWY_INLINE void Decode(const Block& b, VU8* q) {
    VU8 hb[kSub];
    LoadNibbles32(b.qs, q);
    LoadHighBits32(b.qh, hb);
    for (size_t s = 0; s < kSub; ++s) q[s] = hn::Or(q[s], hb[s]);
  }
  static HWY_INLINE float Scale(const Block& b) { return F16ToF32(b.d); }
  static HWY_INLINE float Min(const Block& b) { return F16ToF32(b.m); }
#if JEVONS_MM_X86
  static HWY_INLINE void DecodePair(const Block& b0, const Block& b1, __m256i& lo, __m256i& hi) {
    __m256i hlo, hhi;
    NibblesPair(b0.qs, b1.qs, lo, hi);
    HighBitsPair(b0.qh, b1.qh, hlo, hhi);
    lo = _mm256_or_si256(lo, hlo);
    hi = _mm256_or_si256(hi, hhi);
  }
#endif
};
struct DecQ8_0 {
  using Block = BlockQ8_0;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = false, kSigned = true;
  static HWY_INLINE void DecodeSigned(const Block& b, V8* w) {
    for (size_t s = 0; s < kSub; ++s) w[s] = hn::LoadU(D8(), b.qs + s * kL8);
  }
  static HWY_INLINE float Scale(const Block& b) { return F16ToF32(b.d); }
  static HWY_INLINE float Min(const Block&) { return 0.0f; }
#if JEVONS_MM_X86
  // Signed codes in the lo/hi layout of NibblesPair.
  static HWY_INLINE void DecodePair(const Block& b0, const Block& b1, __m256i& lo, __m256i& hi) {
    lo = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(b1.qs), reinterpret_cast<const __m128i*>(b0.qs));
    hi = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(b1.qs + 16),
                             reinterpret_cast<const __m128i*>(b0.qs + 16));
  }
#endif
};

// ------------------------------------------------------------------ tiles

#if JEVONS_MM_X86
// The fp16 scales of two blocks as F16Pair does, or the decoder's own (MXFP4's E8M0).
template <class Dec>
HWY_INLINE __m256 ScalePairOf(const typename Dec::Block& b0, const typename Dec::Block& b1) {
  if constexpr (requires { Dec::ScalePair(b0, b1); }) return Dec::ScalePair(b0, b1);
  else return F16Pair(b0.d, b1.d);
}
#endif

// Arguments of one tile: R rows starting at w, T tokens starting at act / y.
template <class Act>
struct TileArgs {
  const uint8_t* w;      // first row of the tile
  size_t w_stride;       // bytes per weight row
  const Act* act;        // first token's activations
  size_t act_stride;     // Act elements per token
  size_t nb;             // blocks (or floats for float types) per row
  float* y;              // y[t * y_stride + r]
  size_t y_stride;
  size_t rows_per_w = 1;  // output rows per w_stride step (8 for a repacked group)
  size_t prefetch = 0;    // software prefetch distance in bytes (ParallelRows sets it)
};

// The table-level and ternary types' decoders and tile.
#include "kernels/matmul_levels-inl.h"

// Legacy 32-element block types x ActQ8, in portable Highway code: the kernel of the
// 128-bit targets (SSE4, NEON). x86 AVX2 / AVX-512 use TileQ32Pairs below.
template <class Dec, size_t R, size_t T, bool kVnni>
HWY_NOINLINE void TileQ32(const TileArgs<ActQ8>& a) {
  using Block = typename Dec::Block;
  const DF df;
  const D8 d8;
  const DU8 du8;
  const D32 d32;
  constexpr int kOff = Dec::kSigned ? (kVnni ? 128 : 0) : Dec::kOffset;
  VF acc[R][T];
  float macc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) {
      acc[r][t] = hn::Zero(df);
      macc[r][t] = 0.0f;
    }
  const auto lane0 = hn::FirstN(d32, 1);
  const Block* rows[R];
  for (size_t r = 0; r < R; ++r) rows[r] = reinterpret_cast<const Block*>(a.w + r * a.w_stride);

  for (size_t b = 0; b < a.nb; ++b) {
    VU8 q[R][kSub];
    V8 qs[R][kSub];  // signed weights (Q8_0 without VNNI)
    float dw[R], mw[R];
    for (size_t r = 0; r < R; ++r) {
      const Block& blk = rows[r][b];
      PrefetchAhead<sizeof(Block)>(&blk, a.prefetch);
      dw[r] = Dec::Scale(blk);
      mw[r] = Dec::Min(blk);
      if constexpr (Dec::kSigned) {
        Dec::DecodeSigned(blk, qs[r]);
        if constexpr (kVnni)
          for (size_t s = 0; s < kSub; ++s) q[r][s] = hn::Xor(hn::BitCast(du8, qs[r][s]), hn::Set(du8, 0x80));
      } else {
        Dec::Decode(blk, q[r]);
      }
    }
    for (size_t t = 0; t < T; ++t) {
      const ActQ8& x = a.act[t * a.act_stride + b];
      V8 xq[kSub];
      for (size_t s = 0; s < kSub; ++s) xq[s] = hn::LoadU(d8, x.qs + s * kL8);
      const V32 init = kOff ? hn::IfThenElseZero(lane0, hn::Set(d32, -kOff * x.sum)) : hn::Zero(d32);
      const VF vdx = hn::Set(df, x.d);
      for (size_t r = 0; r < R; ++r) {
        V32 i = init;
        for (size_t s = 0; s < kSub; ++s) {
          if constexpr (Dec::kSigned && !kVnni) i = DotI8I8(i, qs[r][s], xq[s]);
          else i = DotU8I8<kVnni>(i, q[r][s], xq[s]);
        }
        acc[r][t] = hn::MulAdd(hn::ConvertTo(df, i), hn::Mul(hn::Set(df, dw[r]), vdx), acc[r][t]);
        if constexpr (Dec::kMin) macc[r][t] += mw[r] * x.s;
      }
    }
  }
  for (size_t t = 0; t < T; ++t)
    for (size_t r = 0; r < R; ++r) a.y[t * a.y_stride + r] = ReduceSum(acc[r][t]) + macc[r][t];
}

#if JEVONS_MM_X86
// x86 layout of the activations for the 32-block types: two consecutive ActQ8 blocks
// interleaved like NibblesPair (lo = elements 0..15 of each block, hi = 16..31), with
// every per-block term the dot product needs already broadcast, so that the tile's inner
// loop is pure vector work on memory operands. A row with an odd number of blocks ends
// in a pair whose second half is zero.
struct ActQ8Pair {
  int8_t lo[32];
  int8_t hi[32];
  int32_t init[8];  // -offset * sum(qs) of block 0 in lane 0, of block 1 in lane 4
  float d[8];       // d of block 0 in lanes 0..3, of block 1 in lanes 4..7
  float s4[8];      // s / 4 likewise: the 4 lanes of a block sum to the Q4_1 / Q5_1 min term
};
static_assert(sizeof(ActQ8Pair) == 160);

// nb ActQ8 blocks of one token -> (nb + 1) / 2 pairs; code_offset as in TileQ32Pairs.
HWY_INLINE void PairActQ8(const ActQ8* x, size_t nb, int code_offset, ActQ8Pair* out) {
  for (size_t p = 0; p < (nb + 1) / 2; ++p) {
    ActQ8Pair& o = out[p];
    std::memset(&o, 0, sizeof o);
    for (size_t h = 0; h < 2 && 2 * p + h < nb; ++h) {
      const ActQ8& b = x[2 * p + h];
      std::memcpy(o.lo + 16 * h, b.qs, 16);
      std::memcpy(o.hi + 16 * h, b.qs + 16, 16);
      o.init[4 * h] = -code_offset * b.sum;
      for (size_t l = 0; l < 4; ++l) {
        o.d[4 * h + l] = b.d;
        o.s4[4 * h + l] = b.s * 0.25f;
      }
    }
  }
}

// The 32-block types on x86, two blocks per step (halves the per-block scale work of a
// one-block loop). Unsigned codes: pmaddubsw on codes x activations (or vpdpbusd);
// Q8_0 without VNNI: the sign trick (|w| x sign(x, w)). Odd block counts: the last step
// reads its block twice, against the zero second half of the last activation pair.
template <class Dec, size_t R, size_t T, bool kVnni>
HWY_NOINLINE void TileQ32Pairs(const TileArgs<ActQ8Pair>& a) {
  using Block = typename Dec::Block;
  constexpr bool kSignTrick = Dec::kSigned && !kVnni;
  // Every tile shape sums each (row, token) in the same order, so a token's result does
  // not depend on the batch it is computed in.
  __m256 acc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  const Block* rows[R];
  for (size_t r = 0; r < R; ++r) rows[r] = reinterpret_cast<const Block*>(a.w + r * a.w_stride);
  const size_t nb = a.nb;  // blocks per row (the activations hold (nb + 1) / 2 pairs)
  const __m256i ones = _mm256_set1_epi16(1);
  // Blocks b and b + 1 (b itself again when b + 1 is past the row's end).
  auto step = [&](size_t b) HWY_ATTR {
    const size_t b1 = b + 1 < nb ? b + 1 : b;
    __m256i lo[R], hi[R];
    __m256 dw2[R], mw2[R];
    for (size_t r = 0; r < R; ++r) {
      const Block& blk0 = rows[r][b];
      const Block& blk1 = rows[r][b1];
      PrefetchAhead<2 * sizeof(Block)>(&blk0, a.prefetch);
      Dec::DecodePair(blk0, blk1, lo[r], hi[r]);
      if constexpr (Dec::kSigned && kVnni) {  // offset-128 codes for vpdpbusd
        lo[r] = _mm256_xor_si256(lo[r], _mm256_set1_epi8(char(0x80)));
        hi[r] = _mm256_xor_si256(hi[r], _mm256_set1_epi8(char(0x80)));
      }
      dw2[r] = ScalePairOf<Dec>(blk0, blk1);
      if constexpr (Dec::kMin) mw2[r] = F16Pair(blk0.m, blk1.m);
    }
    const ActQ8Pair* xp = a.act + b / 2;
    ForEachIndex<T>([&](auto t) HWY_ATTR {
      const ActQ8Pair& x = xp[t * a.act_stride];
      const __m256i xlo = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.lo));
      const __m256i xhi = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.hi));
      const __m256i init = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.init));
      const __m256 dx2 = _mm256_load_ps(x.d);
      ForEachIndex<R>([&](auto r) HWY_ATTR {
        __m256i i;
        if constexpr (kVnni) {
          i = DotU8I8<true>(DotU8I8<true>(V32{init}, VU8{lo[r]}, V8{xlo}), VU8{hi[r]}, V8{xhi}).raw;
        } else if constexpr (kSignTrick) {
          // Pair sums up to 2 * 128 * 127 fill int16: widen each half before adding.
          const __m256i plo = _mm256_maddubs_epi16(_mm256_sign_epi8(lo[r], lo[r]), _mm256_sign_epi8(xlo, lo[r]));
          const __m256i phi = _mm256_maddubs_epi16(_mm256_sign_epi8(hi[r], hi[r]), _mm256_sign_epi8(xhi, hi[r]));
          i = _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
        } else {
          // Pair sums <= 2 * 31 * 127 per pmaddubsw lane: two of them still fit int16.
          const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo[r], xlo), _mm256_maddubs_epi16(hi[r], xhi));
          i = _mm256_add_epi32(_mm256_madd_epi16(p, ones), init);
        }
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(dw2[r], dx2), acc[r][t]);
        if constexpr (Dec::kMin) acc[r][t] = _mm256_fmadd_ps(mw2[r], _mm256_load_ps(x.s4), acc[r][t]);
      });
    });
  };
  for (size_t b = 0; b < nb; b += 2) step(b);
  for (size_t t = 0; t < T; ++t)
    for (size_t r = 0; r < R; ++r) a.y[t * a.y_stride + r] = ReduceSum(VF{acc[r][t]});
}

// Repacked Q4_0 / Q5_0 / Q8_0 (x8 layout, kernels/repack.h): one tile is a group of 8
// rows x T tokens, one row per 32-bit lane, so each (row, token) ends as one lane of one
// accumulator: no horizontal sums, and one vcvtph2ps per block for the 8 row scales.
// For each 4-byte chunk of the codes, every lane multiplies its row's 4 codes with the
// same 4 activation bytes (broadcast from L1). Q4_0 without VNNI adds a whole block's
// pmaddubsw results in int16 (8 pair sums of at most 2 * 15 * 128 = 3840 each stay
// below 32767) and widens once per block: 9 multiply instructions per 256 products;
// Q5_0 (codes to 31) widens per chunk, or per block in two chains of 4 at decode. Q5_0's
// 5th bits come from its transposed qh chunk (FifthBit). Q8_0 without VNNI: the sign
// trick, widened per chunk. The code offset (Q4_0: 8; Q5_0: 16; Q8_0 with VNNI: 128) is
// removed with the activation's offset_sum. Every tile shape sums a (row, token) block
// by block in the same order (batch invariance). (Broadcast4, above, feeds them the
// activations.)

// (qh >> bit & 1) << 4 in each byte: a 5th code bit (Q5_0, Q5_K) from bytes of bit flags.
template <int bit>
HWY_INLINE __m256i FifthBit(__m256i qh) {
  const __m256i m10 = _mm256_set1_epi8(0x10);
  if constexpr (bit < 4) return _mm256_and_si256(_mm256_slli_epi16(qh, 4 - bit), m10);
  else if constexpr (bit > 4) return _mm256_and_si256(_mm256_srli_epi16(qh, bit - 4), m10);
  else return _mm256_and_si256(qh, m10);
}

template <class Dec, size_t R, size_t T, bool kVnni>
HWY_NOINLINE void TileX8(const TileArgs<ActQ8>& a) {
  static_assert(R == 1, "a repacked tile is one group of 8 rows");
  // kQ8: int8 codes; kLevels: IQ4_NL's nibbles, mapped to signed levels by a byte shuffle;
  // kNib: Q4_0 / Q5_0's unsigned codes.
  constexpr bool kQ8 = std::is_same_v<Dec, DecQ8_0>, kLevels = std::is_same_v<Dec, DecIQ4_NL>;
  constexpr bool kNib = !Dec::kSigned, kQ5 = std::is_same_v<Dec, DecQ5_0>;
  // MXFP4: nibbles shuffled to offset codes 0..24 (matmul_levels-inl.h), one E8M0 byte of
  // scale per row; codes above 15 need Q5_0's int32 sums (kWide) instead of int16 ones.
  constexpr bool kMx = std::is_same_v<Dec, DecMXFP4>, kWide = kQ5 || kMx;
  constexpr size_t kChunks = kQ8 ? 8 : 4;  // 4-byte chunks of a row's codes per block
  constexpr size_t kBlockBytes = 8 * sizeof(typename Dec::Block);
  constexpr size_t kCodesAt = kMx ? 8 : 2 * 8 + (kQ5 ? 32 : 0);  // after d[8] or e[8] (and Q5_0's qh chunk)
  constexpr bool kOffset = kNib || kVnni;
  // Decode with VNNI: Q4_0's high nibbles in place (16x, at most 240 as vpdpbusd's
  // unsigned operand), one op instead of two; their sum is scaled back exactly by a
  // shift once per block.
  constexpr bool kHighInPlace = kNib && !kWide && kVnni && T == 1;
  __m256 acc[T];
  ForEachIndex<T>([&](auto t) HWY_ATTR { acc[t] = _mm256_setzero_ps(); });
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (size_t b = 0; b < a.nb; ++b) {
    const uint8_t* g = a.w + b * kBlockBytes;
    PrefetchAhead<kBlockBytes>(g, a.prefetch);
    __m256 dw;
    if constexpr (kMx) dw = E8m0HalfX8(g);
    else dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    const __m256i* qs = reinterpret_cast<const __m256i*>(g + kCodesAt);
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kQ5) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 2 * 8));
    const ActQ8* x = a.act + b;
    __m256i isum[T], isum_hi = _mm256_setzero_si256();
    ForEachIndex<T>([&](auto t) HWY_ATTR { isum[t] = _mm256_setzero_si256(); });
    ForEachIndex<kChunks>([&](auto j) HWY_ATTR {
      __m256i raw = _mm256_loadu_si256(qs + j);
      if constexpr (kNib && kVnni && T == 1) {
        // One load per chunk: GCC would fold it into both of the ops below (two loads),
        // and the load ports bound this loop (in cache, 1 thread, Zen 4: 38 -> 41 GB/s).
        V32 r{raw};
        Opaque(r);
        raw = r.raw;
      }
      if constexpr (kLevels) {
        // Signed levels: offset 128 with VNNI (removed exactly in int32 through offset_sum,
        // one row per lane), else the sign trick; pairs of products need int32 sums.
        const __m256i table = _mm256_load_si256(reinterpret_cast<const __m256i*>(LevelTable<kIq4nlLevels>::bytes));
        __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(raw, m4));
        __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
        if constexpr (kVnni) {
          lo = _mm256_xor_si256(lo, _mm256_set1_epi8(char(0x80)));
          hi = _mm256_xor_si256(hi, _mm256_set1_epi8(char(0x80)));
        }
        const __m256i mlo = _mm256_sign_epi8(lo, lo), mhi = _mm256_sign_epi8(hi, hi);
        ForEachIndex<T>([&](auto t) HWY_ATTR {
          const int8_t* xq = x[t * a.act_stride].qs;
          const __m256i xlo = Broadcast4(xq + 4 * j), xhi = Broadcast4(xq + 16 + 4 * j);
          if constexpr (kVnni) {
            isum[t] = DotU8I8<true>(DotU8I8<true>(V32{isum[t]}, VU8{lo}, V8{xlo}), VU8{hi}, V8{xhi}).raw;
          } else {
            const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(mlo, _mm256_sign_epi8(xlo, lo)), ones);
            const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(mhi, _mm256_sign_epi8(xhi, hi)), ones);
            isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(plo, phi));
          }
        });
      } else if constexpr (kNib) {
        __m256i lo = _mm256_and_si256(raw, m4);
        __m256i hi = kHighInPlace ? _mm256_andnot_si256(m4, raw) : _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        if constexpr (kMx) {
          const __m256i table = _mm256_load_si256(reinterpret_cast<const __m256i*>(LevelTable<kMxfp4Codes>::bytes));
          lo = _mm256_shuffle_epi8(table, lo);
          hi = _mm256_shuffle_epi8(table, hi);
        }
        if constexpr (kQ5) {  // transposed qh: bit j of byte i for element 4j + i, bit 4 + j for 16 + 4j + i
          lo = _mm256_or_si256(lo, FifthBit<int(j)>(qh));
          hi = _mm256_or_si256(hi, FifthBit<int(4 + j)>(qh));
        }
        ForEachIndex<T>([&](auto t) HWY_ATTR {
          const int8_t* xq = x[t * a.act_stride].qs;
          const __m256i xlo = Broadcast4(xq + 4 * j), xhi = Broadcast4(xq + 16 + 4 * j);
          if constexpr (kVnni && T == 1) {
            // Decode: two chains of 4 vpdpbusd per block, not one of 8 (exact int32 sums).
            isum[t] = DotU8I8<true>(V32{isum[t]}, VU8{lo}, V8{xlo}).raw;
            isum_hi = DotU8I8<true>(V32{isum_hi}, VU8{hi}, V8{xhi}).raw;
          } else if constexpr (kVnni) {
            isum[t] = DotU8I8<true>(DotU8I8<true>(V32{isum[t]}, VU8{lo}, V8{xlo}), VU8{hi}, V8{xhi}).raw;
          } else if constexpr (T == 1) {
            // Decode: the low and high nibbles' products in two chains, not one of 8
            // dependent adds (from L2/L3: 23 -> 27 GB/s; from DRAM within the noise).
            V32 slo{_mm256_add_epi16(isum[t], _mm256_maddubs_epi16(lo, xlo))};
            V32 shi{_mm256_add_epi16(isum_hi, _mm256_maddubs_epi16(hi, xhi))};
            Opaque(slo), Opaque(shi);
            isum[t] = slo.raw, isum_hi = shi.raw;
          } else {
            const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
            V32 sum{kWide ? _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, ones)) : _mm256_add_epi16(isum[t], p)};
            Opaque(sum);  // else GCC regroups the block's sums into a tree and spills
            isum[t] = sum.raw;
          }
        });
      } else if constexpr (kVnni) {
        const __m256i u = _mm256_xor_si256(raw, _mm256_set1_epi8(char(0x80)));  // offset-128 codes
        ForEachIndex<T>([&](auto t) HWY_ATTR {
          isum[t] = DotU8I8<true>(V32{isum[t]}, VU8{u}, V8{Broadcast4(x[t * a.act_stride].qs + 4 * j)}).raw;
        });
      } else {
        const __m256i mag = _mm256_sign_epi8(raw, raw);
        ForEachIndex<T>([&](auto t) HWY_ATTR {
          const __m256i sx = _mm256_sign_epi8(Broadcast4(x[t * a.act_stride].qs + 4 * j), raw);
          isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(mag, sx), ones));
        });
      }
    });
    ForEachIndex<T>([&](auto t) HWY_ATTR {
      const ActQ8& xt = x[t * a.act_stride];
      __m256i i = isum[t];
      if constexpr (kNib && !kVnni && T == 1) {
        if constexpr (kWide) i = _mm256_add_epi32(_mm256_madd_epi16(i, ones), _mm256_madd_epi16(isum_hi, ones));
        else i = _mm256_madd_epi16(_mm256_add_epi16(i, isum_hi), ones);  // exact: |sum| <= 30720
      } else if constexpr (kNib && !kVnni && !kWide) {
        i = _mm256_madd_epi16(i, ones);
      } else if constexpr (kNib && kVnni && T == 1) {
        i = _mm256_add_epi32(i, kHighInPlace ? _mm256_srai_epi32(isum_hi, 4) : isum_hi);
      }
      if constexpr (kOffset) i = _mm256_add_epi32(i, _mm256_set1_epi32(xt.offset_sum));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(dw, _mm256_set1_ps(xt.d)), acc[t]);
    });
  }
  ForEachIndex<T>([&](auto t) HWY_ATTR { _mm256_storeu_ps(a.y + t * a.y_stride, acc[t]); });
}

// vpshufb control (both 128-bit halves alike): byte k of each 32-bit lane into the low
// byte of both int16 halves of the lane (kInt32 = false: a pmaddwd factor) or into the
// low byte of the lane (kInt32: a vpmulld factor); the other bytes zero.
template <int k, bool kInt32>
HWY_INLINE __m256i SpreadByteOfLanes() {
  constexpr int z = 0x80;
  auto lane = [](int i) { return (4 * i + k) | (kInt32 ? z : 4 * i + k) << 16 | z << 8 | z << 24; };
  return _mm256_setr_epi32(lane(0), lane(1), lane(2), lane(3), lane(0), lane(1), lane(2), lane(3));
}
// Bytes 2p and 2p+1 of each 32-bit lane as its two int16 halves (a pair of mins).
template <int p>
HWY_INLINE __m256i PairOfLanes() {
  constexpr int z = 0x80;
  auto lane = [](int i) { return (4 * i + 2 * p) | z << 8 | (4 * i + 2 * p + 1) << 16 | z << 24; };
  return _mm256_setr_epi32(lane(0), lane(1), lane(2), lane(3), lane(0), lane(1), lane(2), lane(3));
}

// Repacked Q4_K or Q5_K (x8 layout) x Q8_K: a group of 8 rows x T tokens, one row per
// lane as in TileX8. The 6-bit scales and mins of the 8 rows are unpacked together (the
// steps of unpack_scale_min_k4, one row per lane). Sub-block j's 32 codes are the low
// (even j) or high (odd j) nibbles of chunks 8(j/2) .. 8(j/2)+7, Q5_K's with bit j of
// its qh chunks 0..7 above them; their pmaddubsw results add up in int16 (Q4_K: 8 x 2 x
// 15 x 128 = 30720 < 32767; Q5_K, codes to 31: 4 chunks at a time) and one pmaddwd
// applies the sub-block scale (VNNI: vpdpbusd sums, then vpmulld). The mins: sum_j m_j *
// bsums32_j, a pmaddwd per pair of sub-blocks. Every tile shape sums a (row, token) in
// the same order.
template <class Block, size_t R, size_t T, bool kVnni>
HWY_NOINLINE HWY_FLATTEN void TileX8Q4_5_K(const TileArgs<ActQ8K>& a) {
  static_assert(R == 1, "a repacked tile is one group of 8 rows");
  constexpr bool kQ5 = std::is_same_v<Block, BlockQ5_K>;
  constexpr size_t kGroupBytes = 8 * sizeof(Block);
  // After d[8], dmin[8]: 3 scale chunks, Q5_K's 8 qh chunks, the code chunks.
  constexpr size_t kScalesAt = 2 * 2 * 8, kQhAt = kScalesAt + 3 * 32, kCodesAt = kQhAt + (kQ5 ? 8 * 32 : 0);
  __m256 acc[T];
  ForEachIndex<T>([&](auto t) HWY_ATTR { acc[t] = _mm256_setzero_ps(); });
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i k6 = _mm256_set1_epi8(0x3F), k4 = _mm256_set1_epi8(0x0F), k2 = _mm256_set1_epi8(0x03);
  for (size_t b = 0; b < a.nb; ++b) {
    const uint8_t* g = a.w + b * kGroupBytes;
    PrefetchAhead<kGroupBytes>(g, a.prefetch);
    const ActQ8K* x = a.act + b;
    const __m256i* u = reinterpret_cast<const __m256i*>(g + kScalesAt);
    const __m256i* qh = reinterpret_cast<const __m256i*>(g + kQhAt);
    const __m256i u0 = _mm256_loadu_si256(u), u1 = _mm256_loadu_si256(u + 1), u2 = _mm256_loadu_si256(u + 2);
    // Lane r of sc[0] holds row r's scales of sub-blocks 0..3, sc[1] of 4..7; mn likewise.
    const __m256i sc[2] = {
        _mm256_and_si256(u0, k6),
        _mm256_or_si256(_mm256_and_si256(u2, k4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), k2), 4))};
    const __m256i mn[2] = {
        _mm256_and_si256(u1, k6),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), k4),
                        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), k2), 4))};
    __m256i isum[T];
    ForEachIndex<T>([&](auto t) HWY_ATTR { isum[t] = _mm256_setzero_si256(); });
    if constexpr (kVnni && T == 1) {
      // Decode: each chunk loaded once for both of its sub-blocks (the load ports bound
      // this loop). Q4_K keeps the high nibbles in place (16x, at most 240 as vpdpbusd's
      // unsigned operand) and scales their sum back by an exact shift. (Q5_K's 5th bits
      // as 8 bit planes, each in place against its sub-block's activations, took 2 ops
      // per 32 bits where merging them into the codes takes 7, but twice the vpdpbusd:
      // 28 against 37 GB/s in cache.) Integer sums in another order, so the same results
      // as the loop below.
      ForEachIndex<4>([&](auto p) HWY_ATTR {
        const __m256i* qs = reinterpret_cast<const __m256i*>(g + kCodesAt) + 8 * p;
        const int8_t* xq = x->qs + 64 * p;
        __m256i even = _mm256_setzero_si256(), odd = even;
        ForEachIndex<8>([&](auto c) HWY_ATTR {
          V32 q{_mm256_loadu_si256(qs + c)};
          Opaque(q);
          __m256i lo = _mm256_and_si256(q.raw, m4), hi;
          if constexpr (kQ5) {
            const __m256i h = _mm256_loadu_si256(qh + c);
            lo = _mm256_or_si256(lo, FifthBit<int(2 * p)>(h));
            hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q.raw, 4), m4), FifthBit<int(2 * p + 1)>(h));
          } else {
            hi = _mm256_andnot_si256(m4, q.raw);
          }
          even = DotU8I8<true>(V32{even}, VU8{lo}, V8{Broadcast4(xq + 4 * c)}).raw;
          odd = DotU8I8<true>(V32{odd}, VU8{hi}, V8{Broadcast4(xq + 32 + 4 * c)}).raw;
        });
        if constexpr (!kQ5) odd = _mm256_srai_epi32(odd, 4);
        const __m256i s_even = _mm256_shuffle_epi8(sc[p / 2], SpreadByteOfLanes<int(2 * p % 4), true>());
        const __m256i s_odd = _mm256_shuffle_epi8(sc[p / 2], SpreadByteOfLanes<int((2 * p + 1) % 4), true>());
        V32 sum{_mm256_add_epi32(_mm256_add_epi32(isum[0], _mm256_mullo_epi32(even, s_even)), _mm256_mullo_epi32(odd, s_odd))};
        Opaque(sum);
        isum[0] = sum.raw;
      });
    } else {
      ForEachIndex<8>([&](auto j) HWY_ATTR {
        const __m256i* qs = reinterpret_cast<const __m256i*>(g + kCodesAt) + 8 * (j / 2);
        const __m256i s = _mm256_shuffle_epi8(sc[j / 4], SpreadByteOfLanes<int(j % 4), kVnni>());
        __m256i ssum[T];
        ForEachIndex<T>([&](auto t) HWY_ATTR { ssum[t] = _mm256_setzero_si256(); });
        // Without VNNI the int16 sums widen through the scale's pmaddwd (Q5_K: every 4 chunks).
        auto add_scaled = [&](auto t) HWY_ATTR {
          V32 sum{_mm256_add_epi32(isum[t], kVnni ? _mm256_mullo_epi32(ssum[t], s) : _mm256_madd_epi16(ssum[t], s))};
          Opaque(sum);  // likewise: else the 8 sub-block products wait on the stack for a tree
          isum[t] = sum.raw;
        };
        ForEachIndex<8>([&](auto c) HWY_ATTR {
          __m256i q = _mm256_loadu_si256(qs + c);
          if constexpr (j % 2 == 1) q = _mm256_srli_epi16(q, 4);
          q = _mm256_and_si256(q, m4);
          if constexpr (kQ5) q = _mm256_or_si256(q, FifthBit<int(j)>(_mm256_loadu_si256(qh + c)));
          ForEachIndex<T>([&](auto t) HWY_ATTR {
            const __m256i xb = Broadcast4(x[t * a.act_stride].qs + 32 * j + 4 * c);
            if constexpr (kVnni) {
              ssum[t] = DotU8I8<true>(V32{ssum[t]}, VU8{q}, V8{xb}).raw;
            } else {
              V32 sum{_mm256_add_epi16(ssum[t], _mm256_maddubs_epi16(q, xb))};
              Opaque(sum);  // keeps the sums a chain (see TileX8)
              ssum[t] = sum.raw;
            }
          });
          if constexpr (kQ5 && !kVnni && c == 3) {
            ForEachIndex<T>([&](auto t) HWY_ATTR {
              add_scaled(t);
              ssum[t] = _mm256_setzero_si256();
            });
          }
        });
        ForEachIndex<T>(add_scaled);
      });
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
    const __m256i mp[4] = {_mm256_shuffle_epi8(mn[0], PairOfLanes<0>()), _mm256_shuffle_epi8(mn[0], PairOfLanes<1>()),
                           _mm256_shuffle_epi8(mn[1], PairOfLanes<0>()), _mm256_shuffle_epi8(mn[1], PairOfLanes<1>())};
    ForEachIndex<T>([&](auto t) HWY_ATTR {
      const ActQ8K& xt = x[t * a.act_stride];
      __m256i ms = _mm256_madd_epi16(mp[0], Broadcast4(xt.bsums32));
      for (size_t i = 1; i < 4; ++i) ms = _mm256_add_epi32(ms, _mm256_madd_epi16(mp[i], Broadcast4(xt.bsums32 + 2 * i)));
      const __m256 dx = _mm256_set1_ps(xt.d);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, dx), acc[t]);
      acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dmin, dx), acc[t]);
    });
  }
  ForEachIndex<T>([&](auto t) HWY_ATTR { _mm256_storeu_ps(a.y + t * a.y_stride, acc[t]); });
}

// Repacked Q2_K, Q3_K and Q6_K ("sixteens": x8 layout, chunks in the order read here,
// kernels/repack.h): each cuts a block into 16 sub-blocks of 16 with a small integer
// scale each, element 128h + 32k + l (h < 2, k < 4, l < 32) in sub-block
// s = 8h + 2k + l / 16, and stores each element's low bits in the "crumb" or nibble
// arrays that byte l % 4 of chunk (l / 4) reaches. Their chunk groups (Q2_K: pairs,
// Q3_K, Q6_K: triples) are read in passes p (Q6_K: p = 2h + half, for k < 4; Q2_K,
// Q3_K: p = half, for h < 2 and k < 4), group 4p + c4 holding bytes
// l = 16 half + 4 c4 .. +3 of the arrays that pass reads.
template <class Block>
struct X8Sixteens;

// Bits 2k, 2k + 1 of each byte (a crumb, blocks.h) times 2^at.
template <int k, int at>
HWY_INLINE __m256i CrumbAt(__m256i v) {
  if constexpr (2 * k > at) v = _mm256_srli_epi16(v, 2 * k - at);
  else if constexpr (2 * k < at) v = _mm256_slli_epi16(v, at - 2 * k);
  return _mm256_and_si256(v, _mm256_set1_epi8(char(3 << at)));
}
// Decode takes 2-bit codes of k < 3 where they are (times 4^k; Q3_K's with their third
// bit above them: at most 7 x 16): one shift fewer per code than taking them to bit 0
// (prefill, which decodes each code once for 8 tokens, does that).
constexpr int CrumbCodeShift(size_t i) { return i % 4 < 3 ? int(2 * (i % 4)) : 4; }

template <>
struct X8Sixteens<BlockQ6_K> {
  // Triple (h, half, c4): the ql chunks of elements 128h + 32k + l for k = 0, 2 (low
  // nibbles, high nibbles) and k = 1, 3, then the qh chunk (2 bits each, k-th pair).
  static constexpr size_t kHalves = 1, kScaleChunks = 4, kGroupChunks = 3, kPerPass = 4;
  static constexpr bool kMins = false;
  static constexpr int kOffsetShift = 5;  // a code is q + 32
  static constexpr size_t sub_block(size_t p, size_t i) { return 8 * (p / 2) + 2 * i + p % 2; }
  static constexpr int code_shift(size_t) { return 0; }
  static HWY_INLINE void scales(const __m256i* c, __m256i sc[4]) {
    for (size_t j = 0; j < 4; ++j) sc[j] = _mm256_loadu_si256(c + j);
  }
  template <size_t p, size_t k, int>
  static HWY_INLINE __m256i codes(__m256i ql0, __m256i ql1, __m256i qh) {
    __m256i ql = k % 2 ? ql1 : ql0;
    if constexpr (k >= 2) ql = _mm256_srli_epi16(ql, 4);
    if constexpr (k < 2) qh = _mm256_slli_epi16(qh, int(4 - 2 * k));
    else if constexpr (k == 3) qh = _mm256_srli_epi16(qh, 2);
    return _mm256_or_si256(_mm256_and_si256(ql, _mm256_set1_epi8(0x0F)), _mm256_and_si256(qh, _mm256_set1_epi8(0x30)));
  }
};
template <>
struct X8Sixteens<BlockQ3_K> {
  // Triple (half, c4): the qs chunks (2 bits each, k-th pair) of h = 0 and h = 1, then
  // the hmask chunk (bit 4h + k). Scales: the 12 packed bytes as 3 chunks.
  static constexpr size_t kHalves = 1, kScaleChunks = 3, kGroupChunks = 3, kPerPass = 8;
  static constexpr bool kMins = false;
  static constexpr int kOffsetShift = 2;  // a code is q + 4
  static constexpr size_t sub_block(size_t p, size_t i) { return 8 * (i / 4) + 2 * (i % 4) + p; }
  // The 16 6-bit scales of the 8 rows as Q6_K keeps them (int8, sub-block s in byte
  // s % 4 of sc[s / 4]): low nibbles from bytes 0..7, high 2 bits from bytes 8..11.
  static HWY_INLINE void scales(const __m256i* c, __m256i sc[4]) {
    const __m256i lo = _mm256_loadu_si256(c), mid = _mm256_loadu_si256(c + 1), hi = _mm256_loadu_si256(c + 2);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), m32 = _mm256_set1_epi8(32);
    auto make = [&](__m256i low4, __m256i high2) HWY_ATTR {
      return _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(low4, m4), _mm256_and_si256(high2, m30)), m32);
    };
    sc[0] = make(lo, _mm256_slli_epi16(hi, 4));
    sc[1] = make(mid, _mm256_slli_epi16(hi, 2));
    sc[2] = make(_mm256_srli_epi16(lo, 4), hi);
    sc[3] = make(_mm256_srli_epi16(mid, 4), _mm256_srli_epi16(hi, 2));
  }
  static constexpr int code_shift(size_t i) { return CrumbCodeShift(i); }
  template <size_t p, size_t i, int at>  // codes times 2^at
  static HWY_INLINE __m256i codes(__m256i qs0, __m256i qs1, __m256i hm) {
    constexpr int h = int(i / 4), k = int(i % 4), bit = 4 * h + k;  // hmask bit, to at + 2
    if constexpr (bit > at + 2) hm = _mm256_srli_epi16(hm, bit - at - 2);
    else if constexpr (bit < at + 2) hm = _mm256_slli_epi16(hm, at + 2 - bit);
    return _mm256_or_si256(CrumbAt<k, at>(h ? qs1 : qs0), _mm256_and_si256(hm, _mm256_set1_epi8(char(4 << at))));
  }
};
template <>
struct X8Sixteens<BlockQ2_K> {
  // Pair (half, c4): the qs chunks (2 bits each, k-th pair) of h = 0 and h = 1. Scales:
  // one byte per sub-block, the scale in its low nibble and the min in its high one.
  static constexpr size_t kHalves = 2, kScaleChunks = 4, kGroupChunks = 2, kPerPass = 8;
  static constexpr bool kMins = true;
  static constexpr int kOffsetShift = 0;  // unused: codes are q, the mins apart
  static constexpr size_t sub_block(size_t p, size_t i) { return 8 * (i / 4) + 2 * (i % 4) + p; }
  static HWY_INLINE void scales(const __m256i* c, __m256i sc[4]) {
    for (size_t j = 0; j < 4; ++j) sc[j] = _mm256_and_si256(_mm256_loadu_si256(c + j), _mm256_set1_epi8(0x0F));
  }
  static HWY_INLINE void mins(const __m256i* c, __m256i mn[4]) {
    for (size_t j = 0; j < 4; ++j)
      mn[j] = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256(c + j), 4), _mm256_set1_epi8(0x0F));
  }
  static constexpr int code_shift(size_t i) { return CrumbCodeShift(i); }
  template <size_t p, size_t i, int at>  // codes times 2^at
  static HWY_INLINE __m256i codes(__m256i qs0, __m256i qs1, __m256i) {
    return CrumbAt<int(i % 4), at>(i / 4 ? qs1 : qs0);
  }
};

// A group of 8 rows x T tokens of any of them, one row per lane as in TileX8. Each
// sub-block's 4 chunks add up in int32 (Q3_K, Q6_K: from -offset * bsums[s]), and one
// vpmulld applies its scale; Q2_K's mins: sum_s m_s * bsums[s], a pmaddwd per pair of
// sub-blocks, times dmin. Every tile shape sums a (row, token) in the same order.
template <class Block, size_t R, size_t T, bool kVnni>
HWY_NOINLINE HWY_FLATTEN void TileX8Sixteens(const TileArgs<ActQ8K>& a) {
  static_assert(R == 1, "a repacked tile is one group of 8 rows");
  using L = X8Sixteens<Block>;
  constexpr size_t kGroupBytes = 8 * sizeof(Block), kPasses = 16 / L::kPerPass;
  __m256 acc[T];
  ForEachIndex<T>([&](auto t) HWY_ATTR { acc[t] = _mm256_setzero_ps(); });
  for (size_t b = 0; b < a.nb; ++b) {
    const uint8_t* g = a.w + b * kGroupBytes;
    PrefetchAhead<kGroupBytes>(g, a.prefetch);
    const ActQ8K* x = a.act + b;
    const __m256i* chunks = reinterpret_cast<const __m256i*>(g + 2 * 8 * L::kHalves);  // after d[8] (dmin[8])
    __m256i sc[4];
    L::scales(chunks, sc);
    auto group = [&](size_t p, size_t c4) { return chunks + L::kScaleChunks + L::kGroupChunks * (4 * p + c4); };
    // A group's chunks (Q2_K's pairs: a third of zeros, unused).
    auto load_group = [&](size_t p, size_t c4, __m256i& u0, __m256i& u1, __m256i& u2) HWY_ATTR {
      const __m256i* u = group(p, c4);
      u0 = _mm256_loadu_si256(u), u1 = _mm256_loadu_si256(u + 1);
      u2 = L::kGroupChunks == 3 ? _mm256_loadu_si256(u + 2) : _mm256_setzero_si256();
    };
    auto scale = [&](auto s) HWY_ATTR {  // sub-block s's scales of the 8 rows, as int32
      return _mm256_srai_epi32(_mm256_slli_epi32(sc[s / 4], int(24 - 8 * (s % 4))), 24);
    };
    // The activation bytes for sub-block s's chunk c4 (elements 128h + 32k + 16 half + 4 c4 ..).
    auto xq = [&](size_t t, size_t s, size_t c4) { return x[t * a.act_stride].qs + 16 * s + 4 * c4; };
    // Token t's -offset * bsums[s] in every lane, sub-block s's starting value: one
    // broadcast load and one pmaddwd (with pairs (-offset, 0)); times 2^shift for codes
    // taken in place (code_shift). Q2_K's codes have no offset.
    auto start = [&](size_t t, size_t s, int shift) HWY_ATTR {
      if constexpr (L::kMins) return _mm256_setzero_si256();
      const __m256i neg_offset = _mm256_set1_epi32(-(1 << (L::kOffsetShift + shift)) & 0xFFFF);
      return _mm256_madd_epi16(_mm256_set1_epi16(x[t * a.act_stride].bsums[s]), neg_offset);
    };
    auto unshift = [&](__m256i ssum, int shift) HWY_ATTR { return shift ? _mm256_srai_epi32(ssum, shift) : ssum; };
    __m256i isum[T];
    ForEachIndex<T>([&](auto t) HWY_ATTR { isum[t] = _mm256_setzero_si256(); });
    auto add_scaled = [&](size_t t, __m256i ssum, __m256i scv) HWY_ATTR {
      V32 sum{_mm256_add_epi32(isum[t], _mm256_mullo_epi32(ssum, scv))};
      Opaque(sum);  // a chain, as in TileX8Q4_K
      isum[t] = sum.raw;
    };
    ForEachIndex<kPasses>([&](auto p) HWY_ATTR {
      if constexpr (T == 1) {
        // Decode: each chunk group loaded once for the pass's sub-blocks, in memory order.
        __m256i ssum[L::kPerPass];
        ForEachIndex<L::kPerPass>([&](auto i) HWY_ATTR { ssum[i] = start(0, L::sub_block(p, i), L::code_shift(i)); });
        ForEachIndex<4>([&](auto c4) HWY_ATTR {
          __m256i u0, u1, u2;
          load_group(p, c4, u0, u1, u2);
          ForEachIndex<L::kPerPass>([&](auto i) HWY_ATTR {
            const __m256i q = L::template codes<p, i, L::code_shift(i)>(u0, u1, u2);
            ssum[i] = DotU8I8<kVnni>(V32{ssum[i]}, VU8{q}, V8{Broadcast4(xq(0, L::sub_block(p, i), c4))}).raw;
          });
        });
        ForEachIndex<L::kPerPass>([&](auto i) HWY_ATTR {
          add_scaled(0, unshift(ssum[i], L::code_shift(i)), scale(std::integral_constant<size_t, L::sub_block(p, i)>{}));
        });
      } else {
        // Prefill: one sub-block at a time for all T tokens (T accumulators).
        ForEachIndex<L::kPerPass>([&](auto i) HWY_ATTR {
          constexpr size_t s = L::sub_block(p, i);
          __m256i ssum[T];
          ForEachIndex<T>([&](auto t) HWY_ATTR { ssum[t] = start(t, s, 0); });
          ForEachIndex<4>([&](auto c4) HWY_ATTR {
            __m256i u0, u1, u2;
            load_group(p, c4, u0, u1, u2);
            const __m256i q = L::template codes<p, i, 0>(u0, u1, u2);
            ForEachIndex<T>([&](auto t) HWY_ATTR {
              ssum[t] = DotU8I8<kVnni>(V32{ssum[t]}, VU8{q}, V8{Broadcast4(xq(t, s, c4))}).raw;
            });
          });
          const __m256i scv = scale(std::integral_constant<size_t, s>{});
          ForEachIndex<T>([&](auto t) HWY_ATTR { add_scaled(t, ssum[t], scv); });
        });
      }
    });
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    __m256i mp[8];  // Q2_K: the mins of sub-blocks 2q, 2q + 1 as the int16 halves of mp[q]
    __m256 dmin = _mm256_setzero_ps();
    if constexpr (L::kMins) {
      __m256i mn[4];
      L::mins(chunks, mn);
      for (size_t j = 0; j < 4; ++j) {
        mp[2 * j] = _mm256_shuffle_epi8(mn[j], PairOfLanes<0>());
        mp[2 * j + 1] = _mm256_shuffle_epi8(mn[j], PairOfLanes<1>());
      }
      dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
    }
    ForEachIndex<T>([&](auto t) HWY_ATTR {
      const ActQ8K& xt = x[t * a.act_stride];
      const __m256 dx = _mm256_set1_ps(xt.d);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, dx), acc[t]);
      if constexpr (L::kMins) {
        __m256i ms = _mm256_madd_epi16(mp[0], Broadcast4(xt.bsums));
        for (size_t q = 1; q < 8; ++q) ms = _mm256_add_epi32(ms, _mm256_madd_epi16(mp[q], Broadcast4(xt.bsums + 2 * q)));
        acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dmin, dx), acc[t]);
      }
    });
  }
  ForEachIndex<T>([&](auto t) HWY_ATTR { _mm256_storeu_ps(a.y + t * a.y_stride, acc[t]); });
}
#endif  // JEVONS_MM_X86

// Q4_K / Q5_K scale packing -> sc[0..7], m[0..7] (bytes), as unpack_scale_min_k4.
HWY_INLINE void UnpackScalesK4(const uint8_t* scales, uint8_t* sc, uint8_t* m) {
  constexpr uint32_t kMask1 = 0x3f3f3f3f, kMask2 = 0x0f0f0f0f, kMask3 = 0x03030303;
  uint32_t u[3];
  std::memcpy(u, scales, 12);
  const uint32_t sc_lo = u[0] & kMask1;                                       // sc 0..3
  const uint32_t m_lo = u[1] & kMask1;                                        // m 0..3
  const uint32_t sc_hi = (u[2] & kMask2) | (((u[0] >> 6) & kMask3) << 4);     // sc 4..7
  const uint32_t m_hi = ((u[2] >> 4) & kMask2) | (((u[1] >> 6) & kMask3) << 4);  // m 4..7
  std::memcpy(sc, &sc_lo, 4);
  std::memcpy(sc + 4, &sc_hi, 4);
  std::memcpy(m, &m_lo, 4);
  std::memcpy(m + 4, &m_hi, 4);
}

// Q4_K or Q5_K x Q8_K. Q5_K: each code's 5th bit (bit j of qh byte l for element 32j + l)
// above its nibble.
template <class Block, size_t R, size_t T, bool kVnni>
HWY_NOINLINE void TileQ4_5_K(const TileArgs<ActQ8K>& a) {
  constexpr bool kQ5 = std::is_same_v<Block, BlockQ5_K>;
  const DF df;
  const D8 d8;
  const DU8 du8;
  const D32 d32;
  VF acc[R][T];
  float macc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) {
      acc[r][t] = hn::Zero(df);
      macc[r][t] = 0.0f;
    }
  const Block* rows[R];
  for (size_t r = 0; r < R; ++r) rows[r] = reinterpret_cast<const Block*>(a.w + r * a.w_stride);
  const VU8 m4 = hn::Set(du8, 0x0F);
#if JEVONS_MM_X86
  if constexpr (!kVnni) {
    // Scales broadcast by byte shuffles, mins through pmaddwd (llama.cpp's approach).
    alignas(32) static constexpr uint8_t kShuf[8][32] = {
#define JEVONS_SHUF(j) {2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, \
                        2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, \
                        2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, \
                        2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1}
        JEVONS_SHUF(0), JEVONS_SHUF(1), JEVONS_SHUF(2), JEVONS_SHUF(3),
        JEVONS_SHUF(4), JEVONS_SHUF(5), JEVONS_SHUF(6), JEVONS_SHUF(7)};
#undef JEVONS_SHUF
    const __m256i m4r = _mm256_set1_epi8(0x0F), m10 = _mm256_set1_epi8(0x10);
    for (size_t b = 0; b < a.nb; ++b) {
      __m256i sc16[R];
      __m128i mn16[R];
      float dw[R], dmin[R];
      for (size_t r = 0; r < R; ++r) {
        const Block& blk = rows[r][b];
        PrefetchAhead<sizeof(Block)>(&blk, a.prefetch);
        dw[r] = F16ToF32(blk.d);
        dmin[r] = F16ToF32(blk.dmin);
        alignas(16) uint8_t sc[8], mn[8];
        UnpackScalesK4(blk.scales, sc, mn);
        sc16[r] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc))));
        mn16[r] = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn)));
      }
      __m256i isum[R][T];
      for (size_t r = 0; r < R; ++r)
        for (size_t t = 0; t < T; ++t) isum[r][t] = _mm256_setzero_si256();
      __m256i qh[R];  // Q5_K: shifted right 2 bits per g, so that bits 0, 1 are sub-blocks 2g, 2g + 1's
      if constexpr (kQ5)
        for (size_t r = 0; r < R; ++r) qh[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r][b].qh));
      for (size_t g = 0; g < 4; ++g) {
        __m256i qlo[R], qhi[R], slo[R], shi[R];
        const __m256i sh_lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(kShuf[2 * g]));
        const __m256i sh_hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(kShuf[2 * g + 1]));
        for (size_t r = 0; r < R; ++r) {
          const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r][b].qs + 32 * g));
          qlo[r] = _mm256_and_si256(raw, m4r);
          qhi[r] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4r);
          if constexpr (kQ5) {
            qlo[r] = _mm256_or_si256(qlo[r], _mm256_and_si256(_mm256_slli_epi16(qh[r], 4), m10));
            qhi[r] = _mm256_or_si256(qhi[r], _mm256_and_si256(_mm256_slli_epi16(qh[r], 3), m10));
            qh[r] = _mm256_srli_epi16(qh[r], 2);
          }
          slo[r] = _mm256_shuffle_epi8(sc16[r], sh_lo);
          shi[r] = _mm256_shuffle_epi8(sc16[r], sh_hi);
        }
        for (size_t t = 0; t < T; ++t) {
          const ActQ8K& x = a.act[t * a.act_stride + b];
          const __m256i xlo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 64 * g));
          const __m256i xhi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 64 * g + 32));
          for (size_t r = 0; r < R; ++r) {
            const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(qlo[r], xlo), slo[r]);
            const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(qhi[r], xhi), shi[r]);
            isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_add_epi32(plo, phi));
          }
        }
      }
      for (size_t t = 0; t < T; ++t) {
        const ActQ8K& x = a.act[t * a.act_stride + b];
        const __m128i bs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.bsums32));
        for (size_t r = 0; r < R; ++r) {
          const __m256i ms = _mm256_zextsi128_si256(_mm_madd_epi16(mn16[r], bs));
          __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_set1_ps(dw[r] * x.d), acc[r][t].raw);
          acc[r][t] = VF{_mm256_fmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(-dmin[r] * x.d), v)};
        }
      }
    }
    for (size_t t = 0; t < T; ++t)
      for (size_t r = 0; r < R; ++r) a.y[t * a.y_stride + r] = ReduceSum(acc[r][t]);
    return;
  }
#endif

  for (size_t b = 0; b < a.nb; ++b) {
    alignas(16) uint8_t sc[R][8], mn[R][8];
    float dw[R], dmin[R];
    for (size_t r = 0; r < R; ++r) {
      const Block& blk = rows[r][b];
      PrefetchAhead<sizeof(Block)>(&blk, a.prefetch);
      dw[r] = F16ToF32(blk.d);
      dmin[r] = F16ToF32(blk.dmin);
      UnpackScalesK4(blk.scales, sc[r], mn[r]);
    }
    V32 isum[R][T];
    for (size_t r = 0; r < R; ++r)
      for (size_t t = 0; t < T; ++t) isum[r][t] = hn::Zero(d32);
    for (size_t g = 0; g < 4; ++g) {  // 64 elements: chunk 2g (low nibbles), 2g+1 (high)
      VU8 qlo[R][kSub], qhi[R][kSub];
      for (size_t r = 0; r < R; ++r)
        for (size_t s = 0; s < kSub; ++s) {
          const VU8 raw = hn::LoadU(du8, rows[r][b].qs + 32 * g + s * kL8);
          qlo[r][s] = hn::And(raw, m4);
          qhi[r][s] = hn::ShiftRight<4>(raw);
          if constexpr (kQ5) {
            const VU8 h = hn::ShiftRightSame(hn::LoadU(du8, rows[r][b].qh + s * kL8), int(2 * g));
            qlo[r][s] = hn::Or(qlo[r][s], hn::ShiftLeft<4>(hn::And(h, hn::Set(du8, 1))));
            qhi[r][s] = hn::Or(qhi[r][s], hn::ShiftLeft<4>(hn::And(hn::ShiftRight<1>(h), hn::Set(du8, 1))));
          }
        }
      for (size_t t = 0; t < T; ++t) {
        const ActQ8K& x = a.act[t * a.act_stride + b];
        V8 xlo[kSub], xhi[kSub];
        for (size_t s = 0; s < kSub; ++s) {
          xlo[s] = hn::LoadU(d8, x.qs + 64 * g + s * kL8);
          xhi[s] = hn::LoadU(d8, x.qs + 64 * g + 32 + s * kL8);
        }
        for (size_t r = 0; r < R; ++r) {
          isum[r][t] = DotChunkScaled<kVnni, true>(isum[r][t], qlo[r], xlo, sc[r][2 * g], sc[r][2 * g]);
          isum[r][t] = DotChunkScaled<kVnni, true>(isum[r][t], qhi[r], xhi, sc[r][2 * g + 1], sc[r][2 * g + 1]);
        }
      }
    }
    for (size_t t = 0; t < T; ++t) {
      const ActQ8K& x = a.act[t * a.act_stride + b];
      for (size_t r = 0; r < R; ++r) {
        int ms = 0;
        for (int j = 0; j < 8; ++j) ms += int(mn[r][j]) * x.bsums32[j];
        acc[r][t] = hn::MulAdd(hn::ConvertTo(df, isum[r][t]), hn::Set(df, dw[r] * x.d), acc[r][t]);
        macc[r][t] += dmin[r] * x.d * float(ms);
      }
    }
  }
  for (size_t t = 0; t < T; ++t)
    for (size_t r = 0; r < R; ++r) a.y[t * a.y_stride + r] = ReduceSum(acc[r][t]) - macc[r][t];
}

// The arrays of 2-bit fields in the crumb layout (blocks.h: Q6_K's high bits, Q2_K's
// and Q3_K's low ones) and the sub-block scales of Q2_K, Q3_K and Q6_K.
HWY_INLINE const uint8_t* Crumbs(const BlockQ6_K& b) { return b.qh; }
HWY_INLINE const uint8_t* Crumbs(const BlockQ3_K& b) { return b.qs; }
HWY_INLINE const uint8_t* Crumbs(const BlockQ2_K& b) { return b.qs; }
HWY_INLINE int8_t SubBlockScale(const BlockQ6_K& b, int s) { return b.scales[s]; }
HWY_INLINE int8_t SubBlockScale(const BlockQ3_K& b, int s) { return int8_t(unpack_scale_q3_k(b.scales, s)); }
HWY_INLINE int8_t SubBlockScale(const BlockQ2_K& b, int s) { return int8_t(b.scales[s] & 0xF); }

// Q2_K, Q3_K or Q6_K x Q8_K (Q2_K: codes are q, its 2 bits in the crumb layout, and
// each sub-block has a min; Q3_K: q + 4, its low 2 bits in the crumb layout and the
// third from hmask; Q6_K: q + 32, 4 + 2 bits). All have 16 sub-blocks of 16 with an
// integer scale each.
template <class Block, size_t R, size_t T, bool kVnni>
HWY_NOINLINE void TileSixteens(const TileArgs<ActQ8K>& a) {
  constexpr bool kQ6 = std::is_same_v<Block, BlockQ6_K>, kQ2 = std::is_same_v<Block, BlockQ2_K>;
  constexpr int kOffset = kQ6 ? 32 : kQ2 ? 0 : 4;
  const DF df;
  const D8 d8;
  const DU8 du8;
  const D32 d32;
  VF acc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) acc[r][t] = hn::Zero(df);
  const Block* rows[R];
  for (size_t r = 0; r < R; ++r) rows[r] = reinterpret_cast<const Block*>(a.w + r * a.w_stride);
  const VU8 m4 = hn::Set(du8, 0x0F), m3 = hn::Set(du8, 0x03);
  const auto lane0 = hn::FirstN(d32, 1);
#if JEVONS_MM_X86
  if constexpr (kQ6 && !kVnni) {
    // Sub-block scales broadcast by byte shuffles: chunk j needs [sc[2j] x8 | sc[2j+1] x8]
    // as int16; the source is the 128-bit half holding them, in both lanes.
    alignas(32) static constexpr uint8_t kShuf[4][32] = {
#define JEVONS_SHUF(j) {4 * j, 4 * j + 1, 4 * j, 4 * j + 1, 4 * j, 4 * j + 1, 4 * j, 4 * j + 1, \
                        4 * j, 4 * j + 1, 4 * j, 4 * j + 1, 4 * j, 4 * j + 1, 4 * j, 4 * j + 1, \
                        4 * j + 2, 4 * j + 3, 4 * j + 2, 4 * j + 3, 4 * j + 2, 4 * j + 3, 4 * j + 2, 4 * j + 3, \
                        4 * j + 2, 4 * j + 3, 4 * j + 2, 4 * j + 3, 4 * j + 2, 4 * j + 3, 4 * j + 2, 4 * j + 3}
        JEVONS_SHUF(0), JEVONS_SHUF(1), JEVONS_SHUF(2), JEVONS_SHUF(3)};
#undef JEVONS_SHUF
    const __m256i m4r = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    for (size_t b = 0; b < a.nb; ++b) {
      __m256i sc_all[R], sc_half[R][2];
      float dw[R];
      for (size_t r = 0; r < R; ++r) {
        const BlockQ6_K& blk = rows[r][b];
        PrefetchAhead<sizeof(BlockQ6_K)>(&blk, a.prefetch);
        dw[r] = F16ToF32(blk.d);
        sc_all[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales)));
        sc_half[r][0] = _mm256_permute2x128_si256(sc_all[r], sc_all[r], 0x00);
        sc_half[r][1] = _mm256_permute2x128_si256(sc_all[r], sc_all[r], 0x11);
      }
      // Codes are q + 32: start every sum at -32 * sum_s sc[s] * bsums[s] (exact).
      __m256i isum[R][T];
      for (size_t t = 0; t < T; ++t) {
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.act[t * a.act_stride + b].bsums));
        for (size_t r = 0; r < R; ++r)
          isum[r][t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc_all[r], bs), 5));
      }
      for (size_t h = 0; h < 2; ++h) {
        __m256i q[R][4], scv[R][4];
        for (size_t r = 0; r < R; ++r) {
          const BlockQ6_K& blk = rows[r][b];
          const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * h));
          const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * h + 32));
          const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * h));
          q[r][0] = _mm256_or_si256(_mm256_and_si256(ql0, m4r), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
          q[r][1] = _mm256_or_si256(_mm256_and_si256(ql1, m4r), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
          q[r][2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4r), _mm256_and_si256(qh, m30));
          q[r][3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4r),
                                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
          for (size_t k = 0; k < 4; ++k)
            scv[r][k] = _mm256_shuffle_epi8(sc_half[r][h],
                                            _mm256_load_si256(reinterpret_cast<const __m256i*>(kShuf[k])));
        }
        for (size_t t = 0; t < T; ++t) {
          const int8_t* xq = a.act[t * a.act_stride + b].qs + 128 * h;
          for (size_t k = 0; k < 4; ++k) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * k));
            for (size_t r = 0; r < R; ++r)
              isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[r][k], x), scv[r][k]));
          }
        }
      }
      for (size_t t = 0; t < T; ++t) {
        const ActQ8K& x = a.act[t * a.act_stride + b];
        for (size_t r = 0; r < R; ++r)
          acc[r][t] = VF{_mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_set1_ps(dw[r] * x.d), acc[r][t].raw)};
      }
    }
    for (size_t t = 0; t < T; ++t)
      for (size_t r = 0; r < R; ++r) a.y[t * a.y_stride + r] = ReduceSum(acc[r][t]);
    return;
  }
#endif

  float macc[R][T] = {};  // Q2_K: sum of dmin * d_x * sum_s m_s * bsums[s]
  for (size_t b = 0; b < a.nb; ++b) {
    float dw[R];
    int8_t sc[R][16];  // the sub-block scales
    V32 isum[R][T];
    for (size_t r = 0; r < R; ++r) {
      const Block& blk = rows[r][b];
      PrefetchAhead<sizeof(Block)>(&blk, a.prefetch);
      dw[r] = F16ToF32(blk.d);
      for (int s = 0; s < 16; ++s) sc[r][s] = SubBlockScale(blk, s);
      if constexpr (kQ2) {
        const float dmin = F16ToF32(blk.dmin);
        for (size_t t = 0; t < T; ++t) {
          const ActQ8K& x = a.act[t * a.act_stride + b];
          int ms = 0;
          for (int s = 0; s < 16; ++s) ms += int(blk.scales[s] >> 4) * x.bsums[s];
          macc[r][t] += dmin * x.d * float(ms);
        }
      }
    }
    // Start every sum at -offset * sum_s sc[s] * bsums[s] (exact).
    for (size_t t = 0; t < T; ++t) {
      const ActQ8K& x = a.act[t * a.act_stride + b];
      for (size_t r = 0; r < R; ++r) {
        int corr = 0;
        for (int s = 0; s < 16; ++s) corr += int(sc[r][s]) * x.bsums[s];
        isum[r][t] = hn::IfThenElseZero(lane0, hn::Set(d32, -kOffset * corr));
      }
    }
    ForEachIndex<2>([&](auto h) HWY_ATTR {
      ForEachIndex<4>([&](auto k) HWY_ATTR {  // chunk j = 4h + k: elements 128h + 32k .. +31
        constexpr size_t j = 4 * h + k;
        VU8 q[R][kSub];
        for (size_t r = 0; r < R; ++r) {
          const Block& blk = rows[r][b];
          for (size_t s = 0; s < kSub; ++s) {
            // The k-th 2-bit field of each byte: Q6_K's high bits, Q3_K's low ones.
            const VU8 crumbs = hn::LoadU(du8, Crumbs(blk) + 32 * h + s * kL8);
            const VU8 crumb = k == 3 ? hn::ShiftRight<6>(crumbs) : hn::And(hn::ShiftRight<2 * k>(crumbs), m3);
            if constexpr (kQ6) {
              const VU8 ql = hn::LoadU(du8, blk.ql + 64 * h + 32 * (k & 1) + s * kL8);
              q[r][s] = hn::Or(k < 2 ? hn::And(ql, m4) : hn::ShiftRight<4>(ql), hn::ShiftLeft<4>(crumb));
            } else if constexpr (kQ2) {
              q[r][s] = crumb;
            } else {  // hmask bit 4h + k of each byte as bit 2
              const VU8 third = hn::And(hn::ShiftRight<4 * h + k>(hn::LoadU(du8, blk.hmask + s * kL8)), hn::Set(du8, 1));
              q[r][s] = hn::Or(crumb, hn::ShiftLeft<2>(third));
            }
          }
        }
        for (size_t t = 0; t < T; ++t) {
          const ActQ8K& x = a.act[t * a.act_stride + b];
          V8 xq[kSub];
          for (size_t s = 0; s < kSub; ++s) xq[s] = hn::LoadU(d8, x.qs + 32 * j + s * kL8);
          for (size_t r = 0; r < R; ++r)
            isum[r][t] = DotChunkScaled<kVnni, false>(isum[r][t], q[r], xq, sc[r][2 * j], sc[r][2 * j + 1]);
        }
      });
    });
    for (size_t t = 0; t < T; ++t) {
      const ActQ8K& x = a.act[t * a.act_stride + b];
      for (size_t r = 0; r < R; ++r)
        acc[r][t] = hn::MulAdd(hn::ConvertTo(df, isum[r][t]), hn::Set(df, dw[r] * x.d), acc[r][t]);
    }
  }
  for (size_t t = 0; t < T; ++t)
    for (size_t r = 0; r < R; ++r) a.y[t * a.y_stride + r] = ReduceSum(acc[r][t]) - macc[r][t];
}

// Float weights (F32 / F16 / BF16) x f32 activations; nb = columns.
template <class WT>
HWY_INLINE VF LoadWeightsF(const WT* p) {
  const DF df;
  if constexpr (std::is_same_v<WT, float>) {
    return hn::LoadU(df, p);
  } else if constexpr (std::is_same_v<WT, hwy::float16_t>) {
    return hn::PromoteTo(df, hn::LoadU(hn::Rebind<hwy::float16_t, DF>(), p));
  } else {
    return hn::PromoteTo(df, hn::LoadU(hn::Rebind<hwy::bfloat16_t, DF>(), p));
  }
}

template <class WT>
HWY_INLINE float WeightToF32(const WT* p) {
  if constexpr (std::is_same_v<WT, float>) {
    return *p;
  } else if constexpr (std::is_same_v<WT, hwy::float16_t>) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return fp16_to_float(h);
  } else {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return bf16_to_float(h);
  }
}

template <class WT, size_t R, size_t T>
HWY_NOINLINE void TileFloat(const TileArgs<float>& a) {
  const DF df;
  const size_t cols = a.nb;
  const WT* rows[R];
  for (size_t r = 0; r < R; ++r) rows[r] = reinterpret_cast<const WT*>(a.w + r * a.w_stride);
  // Two chains per (row, token), over alternate vectors of columns: with one, every
  // FMA of a decode (1 x 1 tile) would wait for the previous one's result. Every tile
  // shape sums in this same order, so a token's result does not depend on the batch
  // it is computed in (the server's batched streams equal unbatched runs).
  VF acc[2][R][T];
  for (size_t h = 0; h < 2; ++h)
    for (size_t r = 0; r < R; ++r)
      for (size_t t = 0; t < T; ++t) acc[h][r][t] = hn::Zero(df);
  auto step = [&](size_t c, auto h) HWY_ATTR {
    VF w[R];
    for (size_t r = 0; r < R; ++r) w[r] = LoadWeightsF(rows[r] + c);
    for (size_t t = 0; t < T; ++t) {
      const VF x = hn::LoadU(df, a.act + t * a.act_stride + c);
      for (size_t r = 0; r < R; ++r) acc[h][r][t] = hn::MulAdd(w[r], x, acc[h][r][t]);
    }
  };
  size_t c = 0;
  for (; c + 2 * kLF <= cols; c += 2 * kLF) {
    step(c, std::integral_constant<size_t, 0>{});
    step(c + kLF, std::integral_constant<size_t, 1>{});
  }
  if (c + kLF <= cols) {
    step(c, std::integral_constant<size_t, 0>{});
    c += kLF;
  }
  for (size_t t = 0; t < T; ++t)
    for (size_t r = 0; r < R; ++r) {
      float s = ReduceSum(hn::Add(acc[0][r][t], acc[1][r][t]));
      for (size_t cc = c; cc < cols; ++cc) s += WeightToF32(rows[r] + cc) * a.act[t * a.act_stride + cc];
      a.y[t * a.y_stride + r] = s;
    }
}

#if JEVONS_MM_X86
// Repacked F16 and BF16 (x8 layouts, kernels/repack.h). A unit is what one weight vector
// holds for the 8 rows of a group, one row per lane, so there are no horizontal sums:
//  - F16: a column, 8 values widened to f32; each token's x[t][c] is broadcast (a plain
//    load on x86) and FMA'd.
//  - BF16 with AVX512-BF16: a pair of columns (2p, 2p+1), row r's two values in its
//    32-bit lane. vdpbf16ps multiplies it with a broadcast pair of bf16 activations and
//    adds both products to the lane (odd column first, each rounded once, denormals
//    flushed): 16 multiply-adds per instruction, twice an FMA's.
//  - BF16 without it: a column again, shifted out of its pair, and FMA'd as F16's.
// An odd last BF16 column comes after the pairs. Every tile shape sums a (row, token) in
// one order: unit u into chain u % kX8Chains in increasing u, a last column into the
// next chain, then (chain 0 + chain 1) + (chain 2 + chain 3). Batch invariance rests on
// it.
constexpr size_t kX8Chains = 4;

// Units(cols) units per row, then AddLastColumn for a column left over. Load(group, u, k)
// gets the unit's chain k (u % kX8Chains) as a constant.
struct F16Columns {
  using Act = float;
  static constexpr size_t kCols = 1;  // columns per unit
  static size_t Units(size_t cols) { return cols; }
  template <class K>
  static HWY_INLINE VF Load(const uint8_t* group, size_t u, K) {
    return LoadWeightsF(reinterpret_cast<const hwy::float16_t*>(group) + 8 * u);
  }
  static HWY_INLINE VF MulAdd(VF w, const Act* x, size_t u, VF acc) { return hn::MulAdd(w, hn::Set(DF(), x[u]), acc); }
  static HWY_INLINE VF AddLastColumn(const uint8_t*, const Act*, size_t, VF acc) { return acc; }
};

// The odd last column of BF16 pairs: 8 values after the pairs, FMA'd with x (f32).
HWY_INLINE VF AddLastBf16Column(const uint8_t* group, size_t cols, float x, VF acc) {
  if (cols % 2 == 0) return acc;
  const hwy::bfloat16_t* w = reinterpret_cast<const hwy::bfloat16_t*>(group) + 8 * (cols - 1);
  return hn::MulAdd(LoadWeightsF(w), hn::Set(DF(), x), acc);
}

// BF16 pairs read one column at a time, with FMAs (CPUs without AVX512-BF16): column c
// is the high (odd c) or low halves of pair c / 2's lanes, shifted into f32. The same
// order as F16's columns, so the same result as the plain column layout.
struct Bf16Columns {
  using Act = float;
  static constexpr size_t kCols = 1;
  static size_t Units(size_t cols) { return cols / 2 * 2; }
  template <class K>
  static HWY_INLINE VF Load(const uint8_t* group, size_t u, K) {
    const D32 d32;
    const V32 bits = hn::LoadU(d32, reinterpret_cast<const int32_t*>(group) + 8 * (u / 2));
    // Two shifts for the high halves rather than an And: no mask held in a register.
    return hn::BitCast(DF(), hn::ShiftLeft<16>(K::value % 2 ? hn::ShiftRight<16>(bits) : bits));
  }
  static HWY_INLINE VF MulAdd(VF w, const Act* x, size_t u, VF acc) { return hn::MulAdd(w, hn::Set(DF(), x[u]), acc); }
  static HWY_INLINE VF AddLastColumn(const uint8_t* group, const Act* x, size_t cols, VF acc) {
    return cols % 2 ? AddLastBf16Column(group, cols, x[cols - 1], acc) : acc;
  }
};

#if HWY_TARGET <= HWY_AVX3
// acc += w . x per 32-bit lane, over its two bf16 (AVX512-BF16; Highway 1.0 has no op).
HWY_INLINE VF DotBf16(VF acc, VF w, VF x) {
  asm("vdpbf16ps %2, %1, %0" : "+v"(acc.raw) : "v"(w.raw), "v"(x.raw));
  return acc;
}

// BF16 pairs through vdpbf16ps, with the activations as bf16: a unit is a pair.
struct Bf16Pairs {
  using Act = uint16_t;
  static constexpr size_t kCols = 2;
  static size_t Units(size_t cols) { return cols / 2; }
  template <class K>
  static HWY_INLINE VF Load(const uint8_t* group, size_t u, K) {
    return hn::LoadU(DF(), reinterpret_cast<const float*>(group) + 8 * u);
  }
  static HWY_INLINE VF MulAdd(VF w, const Act* x, size_t u, VF acc) {
    float pair;
    std::memcpy(&pair, x + 2 * u, 4);
    return DotBf16(acc, w, hn::Set(DF(), pair));  // vbroadcastss: the two bf16 in every lane
  }
  static HWY_INLINE VF AddLastColumn(const uint8_t* group, const Act* x, size_t cols, VF acc) {
    return cols % 2 ? AddLastBf16Column(group, cols, bf16_to_float(x[cols - 1]), acc) : acc;
  }
};
#endif

HWY_INLINE void StoreChainSums(const VF (&part)[kX8Chains], float* y) {
  hn::StoreU(hn::Add(hn::Add(part[0], part[1]), hn::Add(part[2], part[3])), DF(), y);
}

// One group x T tokens with the chains side by side (TileX8Float uses it for single
// tokens: decode): one chain's FMAs would wait on each other.
template <class Unit, size_t T>
HWY_NOINLINE void TileX8FloatChainsTogether(const TileArgs<typename Unit::Act>& a) {
  const DF df;
  const size_t cols = a.nb, units = Unit::Units(cols);
  constexpr size_t kUnitBytes = 8 * Unit::kCols * 2;
  VF acc[T][kX8Chains];
  ForEachIndex<T>([&](auto t) HWY_ATTR { ForEachIndex<kX8Chains>([&](auto k) HWY_ATTR { acc[t][k] = hn::Zero(df); }); });
  auto unit = [&](size_t u, auto k) HWY_ATTR {
    const VF w = Unit::Load(a.w, u, k);
    ForEachIndex<T>([&](auto t) HWY_ATTR { acc[t][k] = Unit::MulAdd(w, a.act + t * a.act_stride, u, acc[t][k]); });
  };
  size_t u = 0;
  for (; u + kX8Chains <= units; u += kX8Chains) {
    PrefetchAhead<kX8Chains * kUnitBytes>(a.w + kUnitBytes * u, a.prefetch);
    ForEachIndex<kX8Chains>([&](auto k) HWY_ATTR { unit(u + k, k); });
  }
  ForEachIndex<kX8Chains - 1>([&](auto k) HWY_ATTR {
    if (u + k < units) unit(u + k, k);
  });
  const size_t last = units % kX8Chains;
  ForEachIndex<T>([&](auto t) HWY_ATTR {
    acc[t][last] = Unit::AddLastColumn(a.w, a.act + t * a.act_stride, cols, acc[t][last]);
    StoreChainSums(acc[t], a.y + t * a.y_stride);
  });
}

// G groups x T tokens (prefill), one chain at a time over blocks of columns: G * T
// accumulators for one chain fit the registers where four chains would not, and each
// loaded weight unit and broadcast activation then feeds T and G multiply-adds: on
// AVX2, 25 instructions per 12 FMAs instead of 44 for the chains side by side over 3
// tokens, whose limit was the rate of instructions, not of FMAs. A block's four passes
// (every 4th unit each) find its weights and activations in L1; the chains' partial
// sums wait in memory between blocks.
template <class Unit, size_t G, size_t T>
HWY_NOINLINE void TileX8FloatChainByChain(const TileArgs<typename Unit::Act>& a) {
  const DF df;
  constexpr size_t kBlockUnits = 256 / Unit::kCols;
  const size_t cols = a.nb, units = Unit::Units(cols);
  const uint8_t* w[G];
  const typename Unit::Act* x[T];
  ForEachIndex<G>([&](auto g) HWY_ATTR { w[g] = a.w + g * a.w_stride; });
  ForEachIndex<T>([&](auto t) HWY_ATTR { x[t] = a.act + t * a.act_stride; });
  HWY_ALIGN float part[kX8Chains][G][T][8] = {};
  for (size_t u0 = 0; u0 < units; u0 += kBlockUnits) {
    const size_t u1 = std::min(units, u0 + kBlockUnits);
    ForEachIndex<kX8Chains>([&](auto k) HWY_ATTR {
      VF acc[G][T];
      ForEachIndex<G>([&](auto g) HWY_ATTR {
        ForEachIndex<T>([&](auto t) HWY_ATTR { acc[g][t] = hn::Load(df, part[k][g][t]); });
      });
      for (size_t u = u0 + k; u < u1; u += kX8Chains) {
        VF wu[G];
        ForEachIndex<G>([&](auto g) HWY_ATTR { wu[g] = Unit::Load(w[g], u, k); });
        ForEachIndex<T>([&](auto t) HWY_ATTR {
          ForEachIndex<G>([&](auto g) HWY_ATTR { acc[g][t] = Unit::MulAdd(wu[g], x[t], u, acc[g][t]); });
        });
      }
      ForEachIndex<G>([&](auto g) HWY_ATTR {
        ForEachIndex<T>([&](auto t) HWY_ATTR { hn::Store(acc[g][t], df, part[k][g][t]); });
      });
    });
  }
  const size_t last = units % kX8Chains;
  ForEachIndex<G>([&](auto g) HWY_ATTR {
    ForEachIndex<T>([&](auto t) HWY_ATTR {
      VF chains[kX8Chains] = {hn::Load(df, part[0][g][t]), hn::Load(df, part[1][g][t]),
                              hn::Load(df, part[2][g][t]), hn::Load(df, part[3][g][t])};
      chains[last] = Unit::AddLastColumn(w[g], x[t], cols, chains[last]);
      StoreChainSums(chains, a.y + t * a.y_stride + 8 * g);
    });
  });
}

template <class Unit, size_t G, size_t T>
HWY_INLINE void TileX8Float(const TileArgs<typename Unit::Act>& a) {
  if constexpr (T > 1) {
    TileX8FloatChainByChain<Unit, G, T>(a);
  } else {
    for (size_t g = 0; g < G; ++g) {
      TileArgs<typename Unit::Act> one = a;
      one.w += g * a.w_stride;
      one.y += 8 * g;
      TileX8FloatChainsTogether<Unit, T>(one);
    }
  }
}
#endif  // JEVONS_MM_X86

// ------------------------------------------------------------------ driver

// Tokens [t, t_end) of rows r.. in tiles of T tokens, then T/2, ..., 4, 3, 2, 1: a few
// tokens (speculative verification, a handful of streams) cost one pass per tile size,
// not one per token. Every tile shape sums in the same order (batch invariance).
template <size_t R, size_t T, class TileFn, class ArgsFn>
HWY_INLINE void RunTokenTiles(int64_t r, int64_t& t, int64_t t_end, const TileFn& tile, const ArgsFn& args) {
  for (; t + int64_t(T) <= t_end; t += int64_t(T)) tile.template operator()<R, T>(args(r, t));
  // Down by one from 4 (3 tokens: one pass, not two), by halves above.
  if constexpr (T > 1) RunTokenTiles<R, (T <= 4 ? T - 1 : T / 2)>(r, t, t_end, tile, args);
}

// Runs tile<R, T> over rows [r_begin, r_end) x all tokens, in token blocks whose
// activations stay in cache; remainders go through smaller instantiations (1 row, and
// T/2, T/4, ... tokens).
template <size_t R, size_t T, size_t kBlockBytes, bool kNarrowFew, class Act, class TileFn>
HWY_INLINE void RunRows(const TileArgs<Act>& base, int64_t r_begin, int64_t r_end, int64_t n_tokens,
                        const TileFn& tile) {
  auto args = [&](int64_t r, int64_t t) {
    TileArgs<Act> a = base;
    a.w = base.w + size_t(r) * base.w_stride;
    a.act = base.act + size_t(t) * base.act_stride;
    a.y = base.y + size_t(t) * base.y_stride + size_t(r) * base.rows_per_w;
    return a;
  };
  if (n_tokens == 1) {
    for (int64_t r = r_begin; r < r_end; ++r) tile.template operator()<1, 1>(args(r, 0));
    return;
  }
  if (kNarrowFew && n_tokens < int64_t(T)) {  // a few tokens: rows one at a time (see ParallelRows)
    for (int64_t r = r_begin; r < r_end; ++r) {
      int64_t t = 0;
      RunTokenTiles<1, T>(r, t, n_tokens, tile, args);
    }
    return;
  }
  const size_t token_bytes = std::max<size_t>(1, base.act_stride * sizeof(Act));
  const int64_t token_block = int64_t(std::max<size_t>(T, kBlockBytes / token_bytes / T * T));
  for (int64_t t_blk = 0; t_blk < n_tokens; t_blk += token_block) {
    const int64_t t_end = std::min(n_tokens, t_blk + token_block);
    int64_t r = r_begin;
    for (; r + int64_t(R) <= r_end; r += R) {
      int64_t t = t_blk;
      RunTokenTiles<R, T>(r, t, t_end, tile, args);
    }
    for (; r < r_end; ++r) {
      int64_t t = t_blk;
      RunTokenTiles<1, T>(r, t, t_end, tile, args);
    }
  }
}

// Splits the rows over the pool (contiguous chunks of whole R-row tiles) and runs them.
// kNarrowFew: fewer than T tokens run 1-row tiles (TileFloat: 2 rows x 2 tokens streamed
// F32 weights at half the speed of 1 x 2 on Zen 4, bench/ verify/f32).
template <size_t R, size_t T, size_t kBlockBytes = kActBlockBytes, bool kNarrowFew = false, class Act, class TileFn>
void ParallelRows(const TileArgs<Act>& base_args, int64_t rows, int64_t n_tokens, ThreadPool* pool, const TileFn& tile) {
  const int64_t groups = (rows + int64_t(R) - 1) / int64_t(R);
  TileArgs<Act> base = base_args;
  base.prefetch = kernels::prefetch_distance(pool ? pool->size() : 1);
  struct Ctx {
    const TileArgs<Act>* base;
    int64_t rows, n_tokens;
    const TileFn* tile;
  } ctx{&base, rows, n_tokens, &tile};
  const Ctx* c = &ctx;
  auto body = [c](int64_t g0, int64_t g1) {
    RunRows<R, T, kBlockBytes, kNarrowFew>(*c->base, g0 * int64_t(R), std::min(c->rows, g1 * int64_t(R)), c->n_tokens, *c->tile);
  };
  // Pieces of an eighth of a thread's share: a thread slowed by its neighbours on the
  // host hands the end of its rows to the other threads instead of making them wait.
  if (pool && pool->size() > 1 && groups > 1)
    pool->parallel_for_stealing(groups, std::max<int64_t>(1, groups / (8 * pool->size())), body);
  else body(0, groups);
}

// Quantizes every token's activation row with fn(token) (in parallel for batches).
template <class Fn>
void ForTokens(int64_t n_tokens, ThreadPool* pool, const Fn& fn) {
  if (pool && pool->size() > 1 && n_tokens >= 4) {
    const Fn* f = &fn;
    pool->parallel_for(n_tokens, [f](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) (*f)(t);
    });
  } else {
    for (int64_t t = 0; t < n_tokens; ++t) fn(t);
  }
}

// bf16_dot: BF16 weights through vdpbf16ps (AVX-512 targets whose CPU has AVX512-BF16).
template <bool kVnni>
bool MatmulImpl(const Tensor& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool, bool bf16_dot) {
  const int64_t cols = w.cols, rows = w.rows;
  auto q8_path = [&](auto dec) -> bool {
    using Dec = decltype(dec);
    const int64_t nb = cols / 32;
#if JEVONS_MM_X86
    constexpr int kOff = Dec::kSigned ? (kVnni ? 128 : 0) : Dec::kOffset;
    const int64_t np = (nb + 1) / 2;
    constexpr bool kHasX8 = std::is_same_v<Dec, DecQ4_0> || std::is_same_v<Dec, DecQ5_0> || std::is_same_v<Dec, DecQ8_0> ||
                            std::is_same_v<Dec, DecIQ4_NL> || std::is_same_v<Dec, DecMXFP4>;
    const int64_t x8_rows = kHasX8 && w.packed ? w.packed_rows : 0;  // the rest reads w.data
    const bool tail = x8_rows < rows;
    uint8_t* buf = kernels::scratch(size_t(n_tokens) * (size_t(np) * sizeof(ActQ8Pair) + size_t(nb) * sizeof(ActQ8)));
    ActQ8Pair* pairs = reinterpret_cast<ActQ8Pair*>(buf);
    ActQ8* act = reinterpret_cast<ActQ8*>(pairs + n_tokens * np);
    ForTokens(n_tokens, pool, [&](int64_t t) {
      ActQ8* xt = act + t * nb;
      QuantizeRowQ8(x + t * cols, cols, xt);
      if (x8_rows)
        for (int64_t b = 0; b < nb; ++b) xt[b].offset_sum = -kOff * xt[b].sum;
      if (tail) PairActQ8(xt, size_t(nb), kOff, pairs + t * np);
    });
    if constexpr (kHasX8) {
      if (x8_rows) {
        const TileArgs<ActQ8> base{w.packed, 8 * w.row_bytes(), act, size_t(nb), size_t(nb), y, size_t(rows), 8};
        ParallelRows<1, kX8T>(base, x8_rows / 8, n_tokens, pool, []<size_t R, size_t T>(const TileArgs<ActQ8>& a) {
          TileX8<Dec, R, T, kVnni>(a);
        });
      }
    }
    if (tail) {
      const TileArgs<ActQ8Pair> base{w.row(x8_rows), w.row_bytes(), pairs, size_t(np), size_t(nb), y + x8_rows, size_t(rows)};
      ParallelRows<kQuantR, kQuantT>(base, rows - x8_rows, n_tokens, pool,
                                     []<size_t R, size_t T>(const TileArgs<ActQ8Pair>& a) {
                                       TileQ32Pairs<Dec, R, T, kVnni>(a);
                                     });
    }
#else
    ActQ8* act = reinterpret_cast<ActQ8*>(kernels::scratch(size_t(n_tokens * nb) * sizeof(ActQ8)));
    ForTokens(n_tokens, pool, [&](int64_t t) { QuantizeRowQ8(x + t * cols, cols, act + t * nb); });
    const TileArgs<ActQ8> base{w.data, w.row_bytes(), act, size_t(nb), size_t(nb), y, size_t(rows)};
    ParallelRows<kQuantR, kQuantT>(base, rows, n_tokens, pool,
                                   []<size_t R, size_t T>(const TileArgs<ActQ8>& a) { TileQ32<Dec, R, T, kVnni>(a); });
#endif
    return true;
  };
  auto q8k_path = [&](auto block) -> bool {
    using Block = decltype(block);
    constexpr bool kSixteens = std::is_same_v<Block, BlockQ6_K> || std::is_same_v<Block, BlockQ3_K> || std::is_same_v<Block, BlockQ2_K>;
    const int64_t nb = cols / 256;
    ActQ8K* act = reinterpret_cast<ActQ8K*>(kernels::scratch(size_t(n_tokens * nb) * sizeof(ActQ8K)));
    ForTokens(n_tokens, pool, [&](int64_t t) { QuantizeRowQ8K(x + t * cols, cols, act + t * nb); });
    int64_t x8_rows = 0;  // rows read from w.packed; the rest read w.data
#if JEVONS_MM_X86
    x8_rows = w.packed ? w.packed_rows : 0;
    if (x8_rows) {
      const TileArgs<ActQ8K> base{w.packed, 8 * w.row_bytes(), act, size_t(nb), size_t(nb), y, size_t(rows), 8};
      ParallelRows<1, kX8T, kActBlockBytesQ8K>(base, x8_rows / 8, n_tokens, pool, []<size_t R, size_t T>(const TileArgs<ActQ8K>& a) {
        if constexpr (kSixteens) TileX8Sixteens<Block, R, T, kVnni>(a);
        else TileX8Q4_5_K<Block, R, T, kVnni>(a);
      });
    }
#endif
    if (x8_rows == rows) return true;
    const TileArgs<ActQ8K> base{w.row(x8_rows), w.row_bytes(), act, size_t(nb), size_t(nb), y + x8_rows, size_t(rows)};
    ParallelRows<kQuantR, kQuantT, kActBlockBytesQ8K>(base, rows - x8_rows, n_tokens, pool, []<size_t R, size_t T>(const TileArgs<ActQ8K>& a) {
      if constexpr (kSixteens) TileSixteens<Block, R, T, kVnni>(a);
      else TileQ4_5_K<Block, R, T, kVnni>(a);
    });
    return true;
  };
  // Float weights: rows [0, x8_float_rows) from the repacked groups (x8(tile args) runs
  // them), the rest from w.data, with f32 activations act.
  const int64_t x8_float_rows = JEVONS_MM_X86 && w.packed ? w.packed_rows : 0;
  auto float_path = [&](auto wt, const float* act, const auto& x8) -> bool {
    using WT = decltype(wt);
    if (x8_float_rows) x8(TileArgs<float>{w.packed, 8 * w.row_bytes(), act, size_t(cols), size_t(cols), y, size_t(rows), 8});
    if (x8_float_rows == rows) return true;
    const TileArgs<float> base{w.row(x8_float_rows), w.row_bytes(), act, size_t(cols), size_t(cols), y + x8_float_rows, size_t(rows)};
    ParallelRows<kFloatR, kFloatT, kActBlockBytes, true>(base, rows - x8_float_rows, n_tokens, pool,
                                   []<size_t R, size_t T>(const TileArgs<float>& a) { TileFloat<WT, R, T>(a); });
    return true;
  };
#if JEVONS_MM_X86
  auto run_x8 = [&](auto unit, const TileArgs<typename decltype(unit)::Act>& base) {
    using Unit = decltype(unit);
    ParallelRows<kX8FloatG, kX8FloatT>(base, x8_float_rows / 8, n_tokens, pool,
                                       []<size_t R, size_t T>(const TileArgs<typename Unit::Act>& a) {
                                         TileX8Float<Unit, R, T>(a);
                                       });
  };
#endif
  // Repacked BF16 rows (BF16 weights, or F16 ones rounded at load): activations rounded
  // to bf16 (nearest even), as llama.cpp's CPU backend does for bf16 weights: as f32
  // values, and as bf16 for vdpbf16ps. Rows past the repacked ones read w.data as WT.
  auto bf16_path = [&](auto wt) -> bool {
    const bool dot = bf16_dot && x8_float_rows;
    const size_t n = size_t(n_tokens * cols);
    uint8_t* buf = kernels::scratch(n * (sizeof(float) + (dot ? 2 : 0)));
    float* xr = reinterpret_cast<float*>(buf);
    uint16_t* xb = reinterpret_cast<uint16_t*>(xr + n);
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = float_to_bf16(x[i]);
      xr[i] = bf16_to_float(h);
      if (dot) xb[i] = h;
    }
    return float_path(wt, xr, [&](const TileArgs<float>& a) {
#if JEVONS_MM_X86
      if (!dot) return run_x8(Bf16Columns{}, a);
#if HWY_TARGET <= HWY_AVX3
      run_x8(Bf16Pairs{}, TileArgs<uint16_t>{a.w, a.w_stride, xb, a.act_stride, a.nb, a.y, a.y_stride, 8});
#endif
#endif
    });
  };
  // IQ4_XS, TQ1_0, TQ2_0 (matmul_levels-inl.h): no repacked layout.
  auto levels256_path = [&](auto dec) -> bool {
    using Dec = decltype(dec);
    const int64_t nb = cols / 256;
    ActQ8K* act = reinterpret_cast<ActQ8K*>(kernels::scratch(size_t(n_tokens * nb) * sizeof(ActQ8K)));
    ForTokens(n_tokens, pool, [&](int64_t t) { QuantizeRowQ8K(x + t * cols, cols, act + t * nb); });
    int64_t x8_rows = 0;  // IQ4_XS: rows read from w.packed; the rest read w.data
#if JEVONS_MM_X86
    if constexpr (std::is_same_v<Dec, DecIQ4_XS>) {
      x8_rows = w.packed ? w.packed_rows : 0;
      if (x8_rows) {
        const TileArgs<ActQ8K> base{w.packed, 8 * w.row_bytes(), act, size_t(nb), size_t(nb), y, size_t(rows), 8};
        ParallelRows<1, kX8T, kActBlockBytesQ8K>(base, x8_rows / 8, n_tokens, pool, []<size_t R, size_t T>(const TileArgs<ActQ8K>& a) {
          TileX8IQ4_XS<R, T, kVnni>(a);
        });
      }
    }
#endif
    if (x8_rows == rows) return true;
    const TileArgs<ActQ8K> base{w.row(x8_rows), w.row_bytes(), act, size_t(nb), size_t(nb), y + x8_rows, size_t(rows)};
    ParallelRows<1, kQuantT, kActBlockBytesQ8K>(base, rows - x8_rows, n_tokens, pool, []<size_t R, size_t T>(const TileArgs<ActQ8K>& a) {
      TileLevels256<Dec, R, T>(a);
    });
    return true;
  };
  switch (w.type) {
    case TensorType::Q4_0: return q8_path(DecQ4_0{});
    case TensorType::Q4_1: return q8_path(DecQ4_1{});
    case TensorType::Q5_0: return q8_path(DecQ5_0{});
    case TensorType::Q5_1: return q8_path(DecQ5_1{});
    case TensorType::Q8_0: return q8_path(DecQ8_0{});
    case TensorType::IQ4_NL: return q8_path(DecIQ4_NL{});
    case TensorType::MXFP4: return q8_path(DecMXFP4{});
    case TensorType::IQ4_XS: return levels256_path(DecIQ4_XS{});
    case TensorType::TQ1_0: return levels256_path(DecTQ1_0{});
    case TensorType::TQ2_0: return levels256_path(DecTQ2_0{});
    case TensorType::Q2_K: return q8k_path(BlockQ2_K{});
    case TensorType::Q3_K: return q8k_path(BlockQ3_K{});
    case TensorType::Q4_K: return q8k_path(BlockQ4_K{});
    case TensorType::Q5_K: return q8k_path(BlockQ5_K{});
    case TensorType::Q6_K: return q8k_path(BlockQ6_K{});
    case TensorType::F32: return float_path(float{}, x, [](const TileArgs<float>&) {});
    case TensorType::F16:
      if (x8_float_rows && w.packed_as_bf16) return bf16_path(hwy::float16_t{});
      return float_path(hwy::float16_t{}, x, [&](const TileArgs<float>& a) {
#if JEVONS_MM_X86
        run_x8(F16Columns{}, a);
#endif
      });
    case TensorType::BF16: return bf16_path(hwy::bfloat16_t{});
    default: return false;
  }
}

// ------------------------------------------------------------------ attention

// Keys and values are rows of T (float, or the KV cache's F16 / BF16, widened as loaded).
template <class T>
HWY_INLINE float DotF32(const float* HWY_RESTRICT a, const T* HWY_RESTRICT b, size_t n) {
  const DF df;
  VF s0 = hn::Zero(df), s1 = hn::Zero(df);
  size_t i = 0;
  for (; i + 2 * kLF <= n; i += 2 * kLF) {
    s0 = hn::MulAdd(hn::LoadU(df, a + i), LoadWeightsF(b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(df, a + i + kLF), LoadWeightsF(b + i + kLF), s1);
  }
  for (; i + kLF <= n; i += kLF) s0 = hn::MulAdd(hn::LoadU(df, a + i), LoadWeightsF(b + i), s0);
  float s = ReduceSum(hn::Add(s0, s1));
  for (; i < n; ++i) s += a[i] * WeightToF32(b + i);
  return s;
}

// The scores of 8 keys: 8 independent FMA chains share each load of q, and on x86 one
// transposing reduction (hadd, then the two 128-bit halves added) turns the 8
// accumulators into the 8 sums, instead of a horizontal sum per key.
template <class T>
HWY_INLINE void Dot8F32(const float* HWY_RESTRICT q, const T* const* k, size_t n, float* HWY_RESTRICT out) {
  const DF df;
  VF a[8];
  ForEachIndex<8>([&](auto i) HWY_ATTR { a[i] = hn::Zero(df); });
  size_t d = 0;
  for (; d + kLF <= n; d += kLF) {
    const VF qv = hn::LoadU(df, q + d);
    ForEachIndex<8>([&](auto i) HWY_ATTR { a[i] = hn::MulAdd(qv, LoadWeightsF(k[i] + d), a[i]); });
  }
#if JEVONS_MM_X86
  const __m256 h01 = _mm256_hadd_ps(_mm256_hadd_ps(a[0].raw, a[1].raw), _mm256_hadd_ps(a[2].raw, a[3].raw));
  const __m256 h45 = _mm256_hadd_ps(_mm256_hadd_ps(a[4].raw, a[5].raw), _mm256_hadd_ps(a[6].raw, a[7].raw));
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_permute2f128_ps(h01, h45, 0x20), _mm256_permute2f128_ps(h01, h45, 0x31)));
#else
  ForEachIndex<8>([&](auto i) HWY_ATTR { out[i] = ReduceSum(a[i]); });
#endif
  for (; d < n; ++d)
    for (size_t i = 0; i < 8; ++i) out[i] += q[d] * WeightToF32(k[i] + d);
}

// acc[0..dv) = acc * c + sum_{j < n} p[j] * v_j: 8 vectors of acc stay in registers
// while every value row of the chunk adds to them (no store and reload per key).
template <class T>
HWY_INLINE void AccumulateValuesF32(float* HWY_RESTRICT acc, float c, const float* HWY_RESTRICT p,
                                    const void* const* v_rows_any, int64_t v_offset, int64_t n, size_t dv) {
  auto v_rows = [v_rows_any](int64_t j) { return static_cast<const T*>(v_rows_any[j]); };
  const DF df;
  const VF vc = hn::Set(df, c);
  size_t d = 0;
  for (; d + 8 * kLF <= dv; d += 8 * kLF) {
    VF a[8];
    ForEachIndex<8>([&](auto i) HWY_ATTR { a[i] = hn::Mul(vc, hn::LoadU(df, acc + d + i * kLF)); });
    for (int64_t j = 0; j < n; ++j) {
      const VF pj = hn::Set(df, p[j]);
      const T* v = v_rows(j) + v_offset + d;
      ForEachIndex<8>([&](auto i) HWY_ATTR { a[i] = hn::MulAdd(pj, LoadWeightsF(v + i * kLF), a[i]); });
    }
    ForEachIndex<8>([&](auto i) HWY_ATTR { hn::StoreU(a[i], df, acc + d + i * kLF); });
  }
  for (; d + kLF <= dv; d += kLF) {
    VF a = hn::Mul(vc, hn::LoadU(df, acc + d));
    for (int64_t j = 0; j < n; ++j) a = hn::MulAdd(hn::Set(df, p[j]), LoadWeightsF(v_rows(j) + v_offset + d), a);
    hn::StoreU(a, df, acc + d);
  }
  for (; d < dv; ++d) {
    float a = acc[d] * c;
    for (int64_t j = 0; j < n; ++j) a += p[j] * WeightToF32(v_rows(j) + v_offset + d);
    acc[d] = a;
  }
}

// n elements of a Q8_0 KV row (blocks of an f16 scale and 32 int8, quant/blocks.h) as
// f32: d * q, as the reference dequantization computes them.
HWY_INLINE void WidenQ8_0Row(const uint8_t* HWY_RESTRICT src, size_t n, float* HWY_RESTRICT dst) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const hn::Rebind<int8_t, DF> d8;
  for (size_t b = 0; b < n / 32; ++b) {
    const uint8_t* block = src + b * 34;
    uint16_t h;
    std::memcpy(&h, block, 2);
    const VF d = hn::Set(df, fp16_to_float(h));
    const int8_t* q = reinterpret_cast<const int8_t*>(block + 2);
    for (size_t i = 0; i < 32; i += kLF)
      hn::StoreU(hn::Mul(d, hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, q + i)))), df, dst + b * 32 + i);
  }
}

// n elements of a KV row (F16 or BF16) widened to f32.
template <class T>
HWY_INLINE void WidenRow(const T* HWY_RESTRICT src, size_t n, float* HWY_RESTRICT dst) {
  const DF df;
  size_t i = 0;
  for (; i + kLF <= n; i += kLF) hn::StoreU(LoadWeightsF(src + i), df, dst + i);
  for (; i < n; ++i) dst[i] = WeightToF32(src + i);
}

// ------------------------------------------------------------------ compute peaks

// The arithmetic ceilings prefill is measured against: `iters` steps of independent
// accumulator chains, each step one vector of the instruction sequence the kernels use.
// Returns a checksum (keeps the loop alive) and sets *ops to the operations done
// (multiply and add counted separately).
// One step of the int8 peak: vpdpbusd with VNNI; on AVX2 vpmaddubsw + vpaddw (the int16
// sums the repacked Q4_0 kernel keeps per block: its multiplies are pmaddubsw but for a
// pmaddwd per 256 products); on other targets the portable dot product.
template <bool kVnni>
HWY_INLINE V32 PeakInt8Step(V32 acc, VU8 a, V8 b) {
#if JEVONS_MM_X86
  if constexpr (!kVnni) return V32{_mm256_add_epi16(acc.raw, _mm256_maddubs_epi16(a.raw, b.raw))};
#endif
  return DotU8I8<kVnni>(acc, a, b);
}

template <bool kVnni>
HWY_INLINE int64_t PeakInt8Chains(int64_t iters) {
  // 8 products per step, a_i x b_j, every operand pair distinct (shared ones would let
  // the compiler compute one product for all), b_j opaque each step so the products
  // stay in the loop. Named variables, not arrays, and on AVX2 few enough of them (10
  // live vectors) that GCC keeps all in registers: 6 chains of one product each spilled
  // three accumulators to the stack every step and read 15-30% low on Zen 3.
  const D32 d32;
  const VU8 a0 = hn::Set(DU8(), 3), a1 = hn::Set(DU8(), 4), a2 = hn::Set(DU8(), 5), a3 = hn::Set(DU8(), 6);
  V8 b0 = hn::Set(D8(), 7), b1 = hn::Set(D8(), 9);
  // vpdpbusd (latency 4-5, two per cycle) needs 8 independent chains; pmaddubsw + paddw
  // has a 1-cycle chain, so two products per accumulator keep the registers down.
  V32 c0 = hn::Zero(d32), c1 = c0, c2 = c0, c3 = c0, e0 = c0, e1 = c0, e2 = c0, e3 = c0;
  for (int64_t i = 0; i < iters; ++i) {
    if constexpr (kVnni) {
      c0 = PeakInt8Step<kVnni>(c0, a0, b0), e0 = PeakInt8Step<kVnni>(e0, a0, b1);
      c1 = PeakInt8Step<kVnni>(c1, a1, b0), e1 = PeakInt8Step<kVnni>(e1, a1, b1);
      c2 = PeakInt8Step<kVnni>(c2, a2, b0), e2 = PeakInt8Step<kVnni>(e2, a2, b1);
      c3 = PeakInt8Step<kVnni>(c3, a3, b0), e3 = PeakInt8Step<kVnni>(e3, a3, b1);
    } else {
      c0 = PeakInt8Step<kVnni>(PeakInt8Step<kVnni>(c0, a0, b0), a0, b1);
      c1 = PeakInt8Step<kVnni>(PeakInt8Step<kVnni>(c1, a1, b0), a1, b1);
      c2 = PeakInt8Step<kVnni>(PeakInt8Step<kVnni>(c2, a2, b0), a2, b1);
      c3 = PeakInt8Step<kVnni>(PeakInt8Step<kVnni>(c3, a3, b0), a3, b1);
    }
    Opaque(b0), Opaque(b1);
  }
  const V32 sum = hn::Add(hn::Add(hn::Add(c0, c1), hn::Add(c2, c3)), hn::Add(hn::Add(e0, e1), hn::Add(e2, e3)));
  return hn::GetLane(hn::SumOfLanes(d32, sum));
}

HWY_NOINLINE int64_t PeakInt8Loop(int64_t iters, bool vnni, double* ops) {
  *ops = 2.0 * 8 * double(kL8) * double(iters);  // 8 products of an int8 vector per step
#if JEVONS_MM_X86
  if (vnni) return PeakInt8Chains<true>(iters);
#endif
  return PeakInt8Chains<false>(iters);
}

HWY_NOINLINE int64_t PeakF32Loop(int64_t iters, double* ops) {
  const DF df;
  const VF a = hn::Set(df, 1.0000001f);
  VF b = hn::Set(df, 0.999999f);
  VF acc[8];
  for (auto& v : acc) v = hn::Zero(df);
  for (int64_t i = 0; i < iters; ++i) {
    for (auto& v : acc) v = hn::MulAdd(a, b, v);
    Opaque(b);
  }
  VF sum = acc[0];
  for (size_t k = 1; k < 8; ++k) sum = hn::Add(sum, acc[k]);
  *ops = 2.0 * 8 * double(kLF) * double(iters);
  return int64_t(ReduceSum(sum));
}

// 12 chains of vdpbf16ps: its latency (6 cycles on Zen 4) times two per cycle. No
// operations (0) on targets below AVX-512.
HWY_NOINLINE int64_t PeakBf16Loop(int64_t iters, double* ops) {
  *ops = 0;
#if HWY_TARGET <= HWY_AVX3
  const DF df;
  VF a = hn::Set(df, 1.0f), b = hn::Set(df, 1.0f);
  VF acc[12];
  for (auto& v : acc) v = hn::Zero(df);
  for (int64_t i = 0; i < iters; ++i) {
    ForEachIndex<12>([&](auto k) HWY_ATTR { acc[k] = DotBf16(acc[k], a, b); });
    Opaque(b);
  }
  VF sum = acc[0];
  for (size_t k = 1; k < 12; ++k) sum = hn::Add(sum, acc[k]);
  *ops = 2.0 * 2 * 12 * double(kLF) * double(iters);  // two products per f32 lane
  return int64_t(ReduceSum(sum));
#else
  (void)iters;
  return 0;
#endif
}

#endif  // JEVONS_MM_ENABLED

// Online softmax (Milakov & Gimelshein 2018): one pass over the keys and values, the
// running maximum m rescaling the sums when it grows. Keys go in chunks small enough
// that a chunk's key and value rows stay in L1 while every head of the group uses them
// (GQA: the heads of a group share their keys and values). With several heads the
// chunk's slices are first copied next to each other, 16 KiB of them: cache rows lie a
// power of two apart, so in place their same offsets share a few L1 sets and evict each
// other (8 KiB chunks in place ran about a third slower than packed 16 KiB ones in
// bench/ attention, and 16 KiB in place slower still). One head of one query (nothing to
// share) reads the rows in place, 8 KiB at a time. Per head and chunk: the scores (8 keys
// at a time), their exponentials as vectors (Highway's Exp), then the chunk's values
// added with one rescale.
// Several queries (a causal block: query i attends to keys [0, n_kv + i)) share each
// packed chunk; the chunk size depends on the group alone, so every (query, head) sums
// exactly as it would alone (same chunks, same order): a token's output does not depend
// on the block it is computed in.
HWY_NOINLINE bool AttentionHeadsFast(const float* q, int n_heads, TensorType kv_type, const void* const* k_rows_any,
                                     int64_t k_offset, const void* const* v_rows_any, int64_t v_offset, int64_t n_kv,
                                     int head_dim_k, int head_dim_v, float scale, float* out, int n_queries,
                                     int64_t q_stride, int64_t out_stride) {
#if !JEVONS_MM_ENABLED
  return false;
#else
  // Rows are read in place in their stored type (F16 / BF16 widened as they are loaded),
  // or packed: copied as f32 next to each other, widened once per chunk for all queries.
  const bool widen = kv_type != TensorType::F32;
  // Bytes of n elements of the rows' type (Q8_0: whole blocks of 32 in 34 bytes).
  auto bytes_of = [kv_type](int64_t n) -> size_t {
    if (kv_type == TensorType::F32) return size_t(n) * 4;
    if (kv_type == TensorType::Q8_0) return size_t(n / 32) * 34;
    return size_t(n) * 2;
  };
  const size_t k_row_bytes = bytes_of(head_dim_k), v_row_bytes = bytes_of(head_dim_v);
  const size_t k_offset_bytes = bytes_of(k_offset), v_offset_bytes = bytes_of(v_offset);
  auto f32 = [](const void* row) { return static_cast<const float*>(row); };  // an F32 row (or a packed one)
  // Calls fn with a null pointer of the rows' element type.
  auto with_type = [](TensorType t, const auto& fn) HWY_ATTR {
    if (t == TensorType::F32) fn(static_cast<const float*>(nullptr));
    else if (t == TensorType::F16) fn(static_cast<const hwy::float16_t*>(nullptr));
    else fn(static_cast<const hwy::bfloat16_t*>(nullptr));
  };
  auto widen_row = [&](const void* row, size_t offset_bytes, int dim, float* dst) {
    const uint8_t* p = static_cast<const uint8_t*>(row) + offset_bytes;
    if (kv_type == TensorType::F16) WidenRow(reinterpret_cast<const hwy::float16_t*>(p), size_t(dim), dst);
    else if (kv_type == TensorType::BF16) WidenRow(reinterpret_cast<const hwy::bfloat16_t*>(p), size_t(dim), dst);
    else WidenQ8_0Row(p, size_t(dim), dst);
  };
  // Packing pays for its copy when several queries share the chunk (prefill), or when
  // the rows lie scattered (in place, rows a power of two apart would evict each other
  // from L1). The paged cache keeps a head's rows in runs of 16 (head-major blocks): one
  // query reads them in place.
  // Widened rows whose dims leave scalar tails are always packed: the compiler may
  // contract the typed and the f32 tails differently, and a causal block must sum
  // exactly as its queries do alone (real head dims are whole vectors: 64, 128, 576).
  // Q8_0 rows are always packed (dequantized once per chunk).
  const bool pack_tails = kv_type == TensorType::Q8_0 ||
                          (widen && (size_t(head_dim_k) % kLF != 0 || size_t(head_dim_v) % kLF != 0));
  const bool may_pack = n_heads * n_queries > 1 || pack_tails;
  constexpr int64_t kMaxChunk = 64;
  const int64_t chunk_bytes = n_heads > 1 ? 16 << 10 : 8 << 10;  // by the group alone: the chunks fix the sums' order
  const int64_t chunk = std::clamp<int64_t>(chunk_bytes / (int64_t(head_dim_k + head_dim_v) * 4) / 8 * 8, 8, kMaxChunk);
  const DF df;
  const size_t dv = size_t(head_dim_v);
  const int n_rows = n_heads * n_queries;  // (query, head) pairs, row r = query r / n_heads
  const size_t acc_floats = (size_t(n_rows) * (dv + 2) + 15) / 16 * 16;  // keeps what follows 64-byte aligned
  const size_t prob_floats = size_t(n_rows) * size_t(kMaxChunk + 16);      // a row's chunk of scores, then its rescale
  const size_t pack_floats = may_pack ? size_t(chunk) * size_t(head_dim_k + head_dim_v) : 0;
  float* acc = reinterpret_cast<float*>(kernels::scratch((acc_floats + prob_floats + pack_floats) * sizeof(float)));
  float* m = acc + size_t(n_rows) * dv;  // running maximum per row
  float* l = m + n_rows;                 // running sum of exponentials per row
  float* probs = acc + acc_floats;       // row r's scores (then exponentials) at r * (kMaxChunk + 16)
  float* kbuf = may_pack ? probs + prob_floats : nullptr;  // the chunk's packed keys, then values
  float* vbuf = may_pack ? kbuf + size_t(chunk) * size_t(head_dim_k) : nullptr;
  std::fill(acc, acc + size_t(n_rows) * dv, 0.0f);
  std::fill(m, m + n_rows, -INFINITY);
  std::fill(l, l + n_rows, 0.0f);
  const void* kp[kMaxChunk];
  const void* vp[kMaxChunk];
  const int64_t n_kv_last = n_kv + n_queries - 1;
  const VF vscale = hn::Set(df, scale);
  for (int64_t j0 = 0; j0 < n_kv_last; j0 += chunk) {
    const int64_t n_chunk = std::min(chunk, n_kv_last - j0);
    const void* const* kr = k_rows_any + j0;
    const void* const* vr = v_rows_any + j0;
    int64_t ko = k_offset, vo = v_offset;
    bool pack = (may_pack && n_queries > 1) || pack_tails;
    if (may_pack && !pack) {
      int64_t breaks = 0;  // rows that do not follow the previous one in memory
      auto at = [](const void* row) { return static_cast<const uint8_t*>(row); };
      for (int64_t j = 1; j < n_chunk; ++j)
        breaks += (at(kr[j]) != at(kr[j - 1]) + k_row_bytes) + (at(vr[j]) != at(vr[j - 1]) + v_row_bytes);
      pack = breaks * 4 > n_chunk;  // runs shorter than 8 rows on average
    }
    if (pack) {
      for (int64_t j = 0; j < n_chunk; ++j) {
        float* kj = kbuf + size_t(j) * size_t(head_dim_k);
        float* vj = vbuf + size_t(j) * dv;
        if (widen) {
          widen_row(k_rows_any[j0 + j], k_offset_bytes, head_dim_k, kj);
          widen_row(v_rows_any[j0 + j], v_offset_bytes, head_dim_v, vj);
        } else {
          std::copy_n(f32(k_rows_any[j0 + j]) + k_offset, head_dim_k, kj);
          std::copy_n(f32(v_rows_any[j0 + j]) + v_offset, head_dim_v, vj);
        }
        kp[j] = kj, vp[j] = vj;
      }
      kr = kp, vr = vp, ko = 0, vo = 0;
    }
    const TensorType row_type = pack ? TensorType::F32 : kv_type;
    // Every row goes through a step before the next step starts (scores, softmax, values):
    // two passes over the rows to spread the next chunk's prefetches over.
    auto keys_of = [&](int r) { return std::min(chunk, n_kv + r / n_heads - j0); };  // <= 0: past its last key
    // The next chunk's rows into L2, spread over the 2 n_rows steps below (a burst of
    // prefetches would stall on the core's miss buffers). From DRAM, the paged cache's
    // rows come in 4-8 KiB pieces far apart, each a fresh stream for the hardware
    // prefetchers: without this the cores wait on memory at every piece (decode deep into
    // a context read the cache at about a quarter of the bandwidth).
    auto prefetch_next = [&](int part) {
      const int parts = 2 * n_rows;
      const int64_t next = j0 + chunk, n_next = std::min(chunk, n_kv_last - next);
      if (n_next <= 0) return;
      for (int64_t j = next + n_next * part / parts, j_end = next + n_next * (part + 1) / parts; j < j_end; ++j) {
        const uint8_t* kb = static_cast<const uint8_t*>(k_rows_any[j]) + k_offset_bytes;
        const uint8_t* vb = static_cast<const uint8_t*>(v_rows_any[j]) + v_offset_bytes;
        for (size_t o = 0; o < k_row_bytes; o += 64) PrefetchL2(kb + o);
        for (size_t o = 0; o < v_row_bytes; o += 64) PrefetchL2(vb + o);
      }
    };
    // 1. Scaled scores, padded with -inf to whole vectors (exp -> 0, unused).
    for (int r = 0; r < n_rows; ++r) {
      prefetch_next(r);
      const int64_t n = keys_of(r);
      if (n <= 0) continue;
      float* p = probs + size_t(r) * size_t(kMaxChunk + 16);
      const float* qh = q + (r / n_heads) * q_stride + (r % n_heads) * head_dim_k;
      with_type(row_type, [&](auto tag) HWY_ATTR {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
        int64_t j = 0;
        for (; j + 8 <= n; j += 8) {
          const T* k[8];
          for (int i = 0; i < 8; ++i) k[i] = static_cast<const T*>(kr[j + i]) + ko;
          Dot8F32(qh, k, size_t(head_dim_k), p + j);
        }
        for (; j < n; ++j) p[j] = DotF32(qh, static_cast<const T*>(kr[j]) + ko, size_t(head_dim_k));
      });
      const int64_t padded = (n + int64_t(kLF) - 1) / int64_t(kLF) * int64_t(kLF);  // <= kMaxChunk
      std::fill(p + n, p + padded, -INFINITY);
      for (int64_t j = 0; j < padded; j += int64_t(kLF)) hn::Store(hn::Mul(hn::Load(df, p + j), vscale), df, p + j);
    }
    // 2. The online softmax: the running maximum (rescaling what was summed under the
    // previous one by c, kept after the row's scores), the exponentials and their sum.
    for (int r = 0; r < n_rows; ++r) {
      const int64_t n = keys_of(r);
      if (n <= 0) continue;
      float* p = probs + size_t(r) * size_t(kMaxChunk + 16);
      const int64_t padded = (n + int64_t(kLF) - 1) / int64_t(kLF) * int64_t(kLF);
      VF vmax = hn::Set(df, -INFINITY);
      for (int64_t j = 0; j < padded; j += int64_t(kLF)) vmax = hn::Max(vmax, hn::Load(df, p + j));
      const float chunk_max = hn::GetLane(hn::MaxOfLanes(df, vmax));
      float c = 1.0f;
      if (chunk_max > m[r]) {
        c = std::exp(m[r] - chunk_max);  // exp(-inf) = 0 for the first chunk
        l[r] *= c;
        m[r] = chunk_max;
      }
      p[kMaxChunk] = c;
      const VF vm = hn::Set(df, m[r]);
      VF vsum = hn::Zero(df);
      for (int64_t j = 0; j < padded; j += int64_t(kLF)) {
        const VF e = hn::Exp(df, hn::Sub(hn::Load(df, p + j), vm));
        hn::Store(e, df, p + j);
        vsum = hn::Add(vsum, e);
      }
      l[r] += ReduceSum(vsum);
    }
    // 3. The values, weighted by the exponentials.
    for (int r = 0; r < n_rows; ++r) {
      prefetch_next(n_rows + r);
      const int64_t n = keys_of(r);
      if (n <= 0) continue;
      const float* p = probs + size_t(r) * size_t(kMaxChunk + 16);
      with_type(row_type, [&](auto tag) HWY_ATTR {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
        AccumulateValuesF32<T>(acc + size_t(r) * dv, p[kMaxChunk], p, vr, vo, n, dv);
      });
    }
  }
  for (int r = 0; r < n_rows; ++r) {
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    float* o = out + (r / n_heads) * out_stride + (r % n_heads) * int64_t(dv);
    for (size_t d = 0; d < dv; ++d) o[d] = acc[size_t(r) * dv + d] * inv;
  }
  return true;
#endif
}

// gate[i] = silu(gate[i]) * up[i] with Highway's Exp (1 ulp). -x is capped at 88 (Exp's
// valid range ends near 104): exp(88) = 1.7e38 already makes silu(x) = x / (1 + e^-x)
// as small as the reference's -0 to within 1e-36.
HWY_NOINLINE bool SiluMulFast(float* HWY_RESTRICT gate, const float* HWY_RESTRICT up, int64_t n) {
#if !JEVONS_MM_ENABLED
  return false;
#else
  const DF df;
  const VF one = hn::Set(df, 1.0f), cap = hn::Set(df, 88.0f);
  auto silu_mul = [&](VF g, VF u) HWY_ATTR {
    const VF e = hn::Exp(df, hn::Min(hn::Neg(g), cap));
    return hn::Mul(hn::Div(g, hn::Add(one, e)), u);
  };
  int64_t i = 0;
  for (; i + int64_t(kLF) <= n; i += int64_t(kLF))
    hn::StoreU(silu_mul(hn::LoadU(df, gate + i), hn::LoadU(df, up + i)), df, gate + i);
  if (i < n) {
    HWY_ALIGN float g[kLF] = {}, u[kLF] = {};
    std::copy(gate + i, gate + n, g);
    std::copy(up + i, up + n, u);
    hn::Store(silu_mul(hn::Load(df, g), hn::Load(df, u)), df, g);
    std::copy(g, g + (n - i), gate + i);
  }
  return true;
#endif
}

// The per-target entry point: false when this target has no kernel for w.type.
// use_vnni: use the VNNI code paths (the CPU has AVX512-VNNI, or a test forces them).
// use_bf16_dot: the CPU has AVX512-BF16 (only AVX-512 targets use it).
HWY_NOINLINE bool MatmulFast(const Tensor& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool,
                             bool use_vnni, bool use_bf16_dot) {
#if !JEVONS_MM_ENABLED
  return false;
#else
  const bool bf16_dot = HWY_TARGET <= HWY_AVX3 && use_bf16_dot;
#if JEVONS_MM_X86  // AVX-512: vpdpbusd; AVX2: its emulation (tests only, see matmul.cc)
  if (use_vnni) return MatmulImpl<true>(w, x, n_tokens, y, pool, bf16_dot);
#endif
  return MatmulImpl<false>(w, x, n_tokens, y, pool, bf16_dot);
#endif
}

HWY_NOINLINE bool HasFastPath(TensorType t) {
#if !JEVONS_MM_ENABLED
  return false;
#else
  switch (t) {
    case TensorType::Q4_0: case TensorType::Q4_1: case TensorType::Q5_0: case TensorType::Q5_1:
    case TensorType::Q8_0: case TensorType::Q2_K: case TensorType::Q3_K: case TensorType::Q4_K: case TensorType::Q5_K:
    case TensorType::Q6_K: case TensorType::F32:
    case TensorType::F16: case TensorType::BF16:
    case TensorType::IQ4_NL: case TensorType::MXFP4: case TensorType::IQ4_XS: case TensorType::TQ1_0: case TensorType::TQ2_0:
      return true;
    default:
      return false;
  }
#endif
}

HWY_NOINLINE bool ReadsX8(TensorType t) {
#if JEVONS_MM_X86
  return t == TensorType::Q4_0 || t == TensorType::Q5_0 || t == TensorType::Q8_0 || t == TensorType::IQ4_NL ||
         t == TensorType::MXFP4 || t == TensorType::IQ4_XS || t == TensorType::Q2_K ||
         t == TensorType::Q3_K || t == TensorType::Q4_K || t == TensorType::Q5_K || t == TensorType::Q6_K ||
         t == TensorType::BF16 || t == TensorType::F16;
#else
  (void)t;
  return false;
#endif
}

// kind: 0 = int8 dot, 1 = f32 FMA, 2 = bf16 dot. False on targets without kernels.
HWY_NOINLINE bool PeakLoop(int kind, int64_t iters, bool use_vnni, double* ops, int64_t* checksum) {
#if !JEVONS_MM_ENABLED
  return false;
#else
  *checksum = kind == 0 ? PeakInt8Loop(iters, use_vnni, ops) : kind == 1 ? PeakF32Loop(iters, ops) : PeakBf16Loop(iters, ops);
  return true;
#endif
}

// Test hooks: the activation quantizers, to check them against the references.
HWY_NOINLINE bool QuantizeActQ8(const float* x, int64_t n, kernels::ActQ8* out) {
#if !JEVONS_MM_ENABLED
  return false;
#else
  QuantizeRowQ8(x, n, out);
  return true;
#endif
}
HWY_NOINLINE bool QuantizeActQ8K(const float* x, int64_t n, kernels::ActQ8K* out) {
#if !JEVONS_MM_ENABLED
  return false;
#else
  QuantizeRowQ8K(x, n, out);
  return true;
#endif
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace jevons
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
