// A fragment of matmul-inl.h, included once per target inside its HWY_NAMESPACE (no
// guard of its own): the decoders and the tile of the table-level and ternary types
// (blocks.h). Their codes become int8 weights; the signed ones are multiplied with the
// int8 activations by the sign trick (DotI8I8): levels |v| <= 127 keep every pair of
// products within int16.
//   IQ4_NL, MXFP4   32-blocks x ActQ8, the legacy types' kernels (one byte shuffle turns the
//                   nibbles into levels): IQ4_NL as Q8_0 (signed), MXFP4 as Q4_0 (offset codes).
//   IQ4_XS, TQ1_0, TQ2_0
//                   256-blocks x ActQ8K (TileLevels256): each (row, block) decoded once
//                   per tile into 256 int8 weights and eight integer sub-block scales, then
//                   integer dot products per 32 elements, scaled, summed in int32, and
//                   multiplied by d_w * d_x once per block, as ggml's vec_dot does.

// The 16 levels twice, for byte shuffles within each 128-bit half.
template <const int8_t* kLevels>
struct LevelTable {
  alignas(32) static constexpr int8_t bytes[32] = {
      kLevels[0], kLevels[1], kLevels[2],  kLevels[3],  kLevels[4],  kLevels[5],  kLevels[6],  kLevels[7],
      kLevels[8], kLevels[9], kLevels[10], kLevels[11], kLevels[12], kLevels[13], kLevels[14], kLevels[15],
      kLevels[0], kLevels[1], kLevels[2],  kLevels[3],  kLevels[4],  kLevels[5],  kLevels[6],  kLevels[7],
      kLevels[8], kLevels[9], kLevels[10], kLevels[11], kLevels[12], kLevels[13], kLevels[14], kLevels[15]};
};

// 16 bytes of nibbles (Q4_0 layout) -> the levels of elements 0..31, as kSub vectors.
template <const int8_t* kLevels>
HWY_INLINE void LevelsOfNibbles32(const uint8_t* qs, V8* w) {
  const D8 d8;
  VU8 q[kSub];
  LoadNibbles32(qs, q);
  const V8 table = hn::Load(d8, LevelTable<kLevels>::bytes);
  for (size_t s = 0; s < kSub; ++s) w[s] = hn::TableLookupBytes(table, hn::BitCast(d8, q[s]));
}

#if JEVONS_MM_X86
template <const int8_t* kLevels>
HWY_INLINE void LevelsPair(const uint8_t* q0, const uint8_t* q1, __m256i& lo, __m256i& hi) {
  NibblesPair(q0, q1, lo, hi);
  const __m256i table = _mm256_load_si256(reinterpret_cast<const __m256i*>(LevelTable<kLevels>::bytes));
  lo = _mm256_shuffle_epi8(table, lo);
  hi = _mm256_shuffle_epi8(table, hi);
}
#endif

struct DecIQ4_NL {
  using Block = BlockIQ4_NL;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = false, kSigned = true;
  static HWY_INLINE void DecodeSigned(const Block& b, V8* w) { LevelsOfNibbles32<kIq4nlLevels>(b.qs, w); }
  static HWY_INLINE float Scale(const Block& b) { return F16ToF32(b.d); }
  static HWY_INLINE float Min(const Block&) { return 0.0f; }
#if JEVONS_MM_X86
  static HWY_INLINE void DecodePair(const Block& b0, const Block& b1, __m256i& lo, __m256i& hi) {
    LevelsPair<kIq4nlLevels>(b0.qs, b1.qs, lo, hi);
  }
#endif
};

// MXFP4's levels (-12..12) as unsigned codes with an offset of 12, so that it runs the
// unsigned path of Q4_0 (offset 8). Not the signed one: with VNNI that path adds 128 to
// every weight and removes it through the activation sums, and the lanes' partial sums,
// 128 times larger than these small levels, then cancel in f32 (measured: 3e-5 relative).
inline constexpr int kMxfp4Offset = 12;
struct Mxfp4Codes {
  int8_t v[16];
  constexpr Mxfp4Codes() : v{} {
    for (int c = 0; c < 16; ++c) v[c] = int8_t(kMxfp4Levels[c] + kMxfp4Offset);
  }
};
inline constexpr Mxfp4Codes kMxfp4CodesTable{};
inline constexpr const int8_t* kMxfp4Codes = kMxfp4CodesTable.v;

struct DecMXFP4 {
  using Block = BlockMXFP4;
  static constexpr int kOffset = kMxfp4Offset;
  static constexpr bool kMin = false, kSigned = false;
  static HWY_INLINE void Decode(const Block& b, VU8* q) {
    V8 w[kSub];
    LevelsOfNibbles32<kMxfp4Codes>(b.qs, w);
    for (size_t s = 0; s < kSub; ++s) q[s] = hn::BitCast(DU8(), w[s]);
  }
  static HWY_INLINE float Scale(const Block& b) { return e8m0_to_float_half(b.e); }
  static HWY_INLINE float Min(const Block&) { return 0.0f; }
#if JEVONS_MM_X86
  static HWY_INLINE void DecodePair(const Block& b0, const Block& b1, __m256i& lo, __m256i& hi) {
    LevelsPair<kMxfp4Codes>(b0.qs, b1.qs, lo, hi);
  }
  static HWY_INLINE __m256 ScalePair(const Block& b0, const Block& b1) {
    return _mm256_set_m128(_mm_set1_ps(Scale(b1)), _mm_set1_ps(Scale(b0)));
  }
#endif
};

// ------------------------------------------------------------------ 256-element blocks
// Decode(block, w, sc) writes the 256 signed weights and the 8 sub-block scales and
// returns the block's float scale: x[e] = scale * sc[e / 32] * w[e].

struct DecIQ4_XS {
  using Block = BlockIQ4_XS;
  static constexpr bool kUnitScales = false;
  static HWY_INLINE float Decode(const Block& b, int8_t* HWY_RESTRICT w, int32_t* HWY_RESTRICT sc) {
    const D8 d8;
    for (int c = 0; c < 8; ++c) {
      V8 v[kSub];
      LevelsOfNibbles32<kIq4nlLevels>(b.qs + 16 * c, v);
      for (size_t s = 0; s < kSub; ++s) hn::Store(v[s], d8, w + 32 * c + s * kL8);
      sc[c] = iq4_xs_scale(b, c) - 32;
    }
    return F16ToF32(b.d);
  }
};

struct DecTQ2_0 {
  using Block = BlockTQ2_0;
  static constexpr bool kUnitScales = true;
  static HWY_INLINE float Decode(const Block& b, int8_t* HWY_RESTRICT w, int32_t*) {
    const D8 d8;
    const DU8 du8;
    for (int c = 0; c < 8; ++c) {  // crumb layout: chunk c is bits 2 (c % 4) of bytes 32 (c / 4) ..
      for (size_t s = 0; s < kSub; ++s) {
        const VU8 raw = hn::LoadU(du8, b.qs + 32 * (c / 4) + s * kL8);
        const VU8 t = hn::And(hn::ShiftRightSame(raw, 2 * (c % 4)), hn::Set(du8, 3));
        hn::Store(hn::Sub(hn::BitCast(d8, t), hn::Set(d8, 1)), d8, w + 32 * c + s * kL8);
      }
    }
    return F16ToF32(b.d);
  }
};

// Every byte's five base-3 digits minus 1 (TQ1_0: blocks.h's tq1_trit), looked up.
struct Tq1Digits {
  int8_t v[256][5];
  constexpr Tq1Digits() : v{} {
    for (int b = 0; b < 256; ++b)
      for (int n = 0; n < 5; ++n) v[b][n] = int8_t(tq1_trit(uint8_t(b), n) - 1);
  }
};
inline constexpr Tq1Digits kTq1Digits{};

struct DecTQ1_0 {
  using Block = BlockTQ1_0;
  static constexpr bool kUnitScales = true;
  static HWY_INLINE float Decode(const Block& b, int8_t* HWY_RESTRICT w, int32_t*) {
    for (int n = 0; n < 5; ++n) {
      for (int m = 0; m < 32; ++m) w[32 * n + m] = kTq1Digits.v[b.qs[m]][n];
      for (int m = 0; m < 16; ++m) w[160 + 16 * n + m] = kTq1Digits.v[b.qs[32 + m]][n];
    }
    for (int n = 0; n < 4; ++n)
      for (int j = 0; j < 4; ++j) w[240 + 4 * n + j] = kTq1Digits.v[b.qh[j]][n];
    return F16ToF32(b.d);
  }
};

template <class Dec, size_t R, size_t T>
HWY_NOINLINE void TileLevels256(const TileArgs<ActQ8K>& a) {
  using Block = typename Dec::Block;
  const DF df;
  const D8 d8;
  const D32 d32;
  VF acc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) acc[r][t] = hn::Zero(df);
  const Block* rows[R];
  for (size_t r = 0; r < R; ++r) rows[r] = reinterpret_cast<const Block*>(a.w + r * a.w_stride);
  alignas(64) int8_t w[R][QK_K];
  int32_t sc[R][8];
  float dw[R];
  for (size_t b = 0; b < a.nb; ++b) {
    for (size_t r = 0; r < R; ++r) {
      PrefetchAhead<sizeof(Block)>(&rows[r][b], a.prefetch);
      dw[r] = Dec::Decode(rows[r][b], w[r], sc[r]);
    }
    for (size_t t = 0; t < T; ++t) {
      const ActQ8K& x = a.act[t * a.act_stride + b];
      const VF vdx = hn::Set(df, x.d);
      for (size_t r = 0; r < R; ++r) {
        V32 isum = hn::Zero(d32);
        for (int c = 0; c < 8; ++c) {
          V32 p = hn::Zero(d32);
          for (size_t s = 0; s < kSub; ++s)
            p = DotI8I8(p, hn::Load(d8, w[r] + 32 * c + s * kL8), hn::LoadU(d8, x.qs + 32 * c + s * kL8));
          if constexpr (Dec::kUnitScales) isum = hn::Add(isum, p);
          else isum = hn::Add(isum, hn::Mul(p, hn::Set(d32, sc[r][c])));
        }
        acc[r][t] = hn::MulAdd(hn::ConvertTo(df, isum), hn::Mul(hn::Set(df, dw[r]), vdx), acc[r][t]);
      }
    }
  }
  for (size_t t = 0; t < T; ++t)
    for (size_t r = 0; r < R; ++r) a.y[t * a.y_stride + r] = ReduceSum(acc[r][t]);
}
