// A fragment of matmul-inl.h, included once per target inside its HWY_NAMESPACE (no
// guard of its own): the decoders and tiles of the table-level and ternary types
// (blocks.h). Their codes become int8 weights; the signed ones are multiplied with the
// int8 activations by the sign trick (DotI8I8), or with VNNI offset by 128 and corrected
// in int32: levels |v| <= 127 keep every pair of products within int16.
//   IQ4_NL, MXFP4   32-blocks x ActQ8, the legacy types' kernels (one byte shuffle turns the
//                   nibbles into levels): IQ4_NL as Q8_0 (signed), MXFP4 as Q4_0 (offset
//                   codes); repacked, both read TileX8 (matmul-inl.h).
//   IQ4_XS          256-blocks x ActQ8K: repacked rows TileX8IQ4_XS, others TileLevels256.
//   TQ1_0, TQ2_0    TileLevels256: each 32-element chunk of a row decoded once per tile into
//                   signed levels in registers, integer dot products scaled per sub-block,
//                   summed in int32 over the block, then multiplied by d_w * d_x once per
//                   block, as ggml's vec_dot does.

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

#if JEVONS_MM_X86
// Eight E8M0 bytes (a repacked group's scales) -> 2^(e - 128) as floats, e8m0_to_float_half's
// bits: (e - 1) << 23, or the subnormals 0x00200000 << e for e < 2.
HWY_INLINE __m256 E8m0HalfX8(const uint8_t* e8) {
  const __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(e8)));
  const __m256i normal = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
  const __m256i subnormal = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e);
  return _mm256_castsi256_ps(_mm256_blendv_epi8(normal, subnormal, _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e)));
}
#endif

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
// Each decoder's Prep, made once per (row, block), gives chunk c (elements 32c..32c+31) as
// kSub signed int8 vectors (Chunk), its integer sub-block scale (SubScale; kUnitScales:
// always 1) and the block's float scale: x[e] = Scale * SubScale(e / 32) * w[e].

struct DecIQ4_XS {
  using Block = BlockIQ4_XS;
  static constexpr bool kUnitScales = false;
  struct Prep {
    const Block& b;
    HWY_INLINE void Chunk(int c, V8* w) const { LevelsOfNibbles32<kIq4nlLevels>(b.qs + 16 * c, w); }
    HWY_INLINE int SubScale(int c) const { return iq4_xs_scale(b, c) - 32; }
    HWY_INLINE float Scale() const { return F16ToF32(b.d); }
  };
};

struct DecTQ2_0 {
  using Block = BlockTQ2_0;
  static constexpr bool kUnitScales = true;
  struct Prep {
    const Block& b;
    // Crumb layout: chunk c is bits 2 (c % 4) of the 32 bytes at 32 (c / 4).
    HWY_INLINE void Chunk(int c, V8* w) const {
      const D8 d8;
      const DU8 du8;
      for (size_t s = 0; s < kSub; ++s) {
        const VU8 raw = hn::LoadU(du8, b.qs + 32 * (c / 4) + s * kL8);
        const VU8 t = hn::And(hn::ShiftRightSame(raw, 2 * (c % 4)), hn::Set(du8, 3));
        w[s] = hn::Sub(hn::BitCast(d8, t), hn::Set(d8, 1));
      }
    }
    HWY_INLINE int SubScale(int) const { return 1; }
    HWY_INLINE float Scale() const { return F16ToF32(b.d); }
  };
};

// TQ1_0 (blocks.h): digit n of a byte b is (uint8(b * 3^n) * 3) >> 8, computed for every
// byte at once in 16-bit lanes (x86 has no 8-bit multiply), each byte with its own power.
// Chunks 0..4 are digit c of qs[0..31]; chunks 5..7 mix qs[32..47] and qh, so their bytes
// are staged once per block in the order of kTq1TailPowers.
alignas(32) inline constexpr uint8_t kTq1TailPowers[96] = {
    1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,   // chunk 5: qs[32..47] digits 0, 1
    9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27,  // chunk 6: digits 2, 3
    81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 1,  1,  1,  1,  3,  3,  3,  3,  9,  9,  9,  9,  27, 27, 27, 27};  // chunk 7: digit 4, then qh digits 0..3

HWY_INLINE V8 TritsMinusOne(VU8 bytes, VU8 powers) {
  const DU8 du8;
  const hn::Repartition<uint16_t, DU8> du16;
  const auto v = hn::BitCast(du16, bytes), p = hn::BitCast(du16, powers);
  const auto low = hn::Set(du16, 0xFF), three = hn::Set(du16, 3);
  const auto lo = hn::And(hn::Mul(hn::And(v, low), hn::And(p, low)), low);         // (b * p) mod 256, even bytes
  const auto hi = hn::And(hn::Mul(hn::ShiftRight<8>(v), hn::ShiftRight<8>(p)), low);  // odd bytes
  const auto digits = hn::Or(hn::ShiftRight<8>(hn::Mul(lo, three)), hn::ShiftLeft<8>(hn::ShiftRight<8>(hn::Mul(hi, three))));
  return hn::Sub(hn::BitCast(D8(), hn::BitCast(du8, digits)), hn::Set(D8(), 1));
}

struct DecTQ1_0 {
  using Block = BlockTQ1_0;
  static constexpr bool kUnitScales = true;
  struct Prep {
    const Block& b;
    alignas(32) uint8_t tail[96];
    explicit Prep(const Block& blk) : b(blk) {
      for (int k = 0; k < 5; ++k) std::memcpy(tail + 16 * k, blk.qs + 32, 16);
      for (int k = 0; k < 4; ++k) std::memcpy(tail + 80 + 4 * k, blk.qh, 4);
    }
    HWY_INLINE void Chunk(int c, V8* w) const {
      const DU8 du8;
      for (size_t s = 0; s < kSub; ++s) {
        if (c < 5) w[s] = TritsMinusOne(hn::LoadU(du8, b.qs + s * kL8), hn::Set(du8, uint8_t(kPow3[c])));
        else w[s] = TritsMinusOne(hn::Load(du8, tail + 32 * (c - 5) + s * kL8), hn::Load(du8, kTq1TailPowers + 32 * (c - 5) + s * kL8));
      }
    }
    HWY_INLINE int SubScale(int) const { return 1; }
    HWY_INLINE float Scale() const { return F16ToF32(b.d); }
    static constexpr int kPow3[5] = {1, 3, 9, 27, 81};
  };
};

// acc + sc * (a . b) over one 32-element chunk of signed int8 (kUnit: sc == 1).
template <bool kUnit>
HWY_INLINE V32 DotChunkSigned(V32 acc, const V8* a, const V8* b, int sc) {
  const D32 d32;
#if JEVONS_MM_X86
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a[0].raw, a[0].raw), _mm256_sign_epi8(b[0].raw, a[0].raw));
  return V32{_mm256_add_epi32(acc.raw, _mm256_madd_epi16(p, _mm256_set1_epi16(int16_t(kUnit ? 1 : sc))))};
#else
  V32 p = hn::Zero(d32);
  for (size_t s = 0; s < kSub; ++s) p = DotI8I8(p, a[s], b[s]);
  return kUnit ? hn::Add(acc, p) : hn::Add(acc, hn::Mul(p, hn::Set(d32, sc)));
#endif
}

// Chunk by chunk: one chunk of each row's weights decoded and held in registers while every
// token of the tile multiplies it; per (row, token) an int32 sum over the block, then one
// multiply by d_w * d_x.
template <class Dec, size_t R, size_t T>
HWY_NOINLINE void TileLevels256(const TileArgs<ActQ8K>& a) {
  static_assert(R == 1, "one row per tile: its decoded chunk is shared by the tile's tokens");
  using Block = typename Dec::Block;
  const DF df;
  const D8 d8;
  const D32 d32;
  VF acc[T];
  for (size_t t = 0; t < T; ++t) acc[t] = hn::Zero(df);
  const Block* row = reinterpret_cast<const Block*>(a.w);
  for (size_t b = 0; b < a.nb; ++b) {
    PrefetchAhead<sizeof(Block)>(&row[b], a.prefetch);
    const typename Dec::Prep prep{row[b]};
    V32 isum[T];
    for (size_t t = 0; t < T; ++t) isum[t] = hn::Zero(d32);
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      V8 w[kSub];
      prep.Chunk(c, w);
      const int sc = prep.SubScale(c);
#pragma GCC unroll 8
      for (size_t t = 0; t < T; ++t) {
        const int8_t* xq = a.act[t * a.act_stride + b].qs + 32 * c;
        V8 x[kSub];
        for (size_t s = 0; s < kSub; ++s) x[s] = hn::LoadU(d8, xq + s * kL8);
        isum[t] = DotChunkSigned<Dec::kUnitScales>(isum[t], w, x, sc);
      }
    }
    const float dw = prep.Scale();
    for (size_t t = 0; t < T; ++t)
      acc[t] = hn::MulAdd(hn::ConvertTo(df, isum[t]), hn::Set(df, dw * a.act[t * a.act_stride + b].d), acc[t]);
  }
  for (size_t t = 0; t < T; ++t) a.y[t * a.y_stride] = ReduceSum(acc[t]);
}

#if JEVONS_MM_X86
// Repacked IQ4_XS (x8 layout, kernels/repack.h: d[8] and scales_h[8] as its two 16-bit
// fields, then chunk 0 = scales_l, chunks 1 + 4s .. 4 + 4s = sub-block s's 16 code bytes),
// one row per 32-bit lane: each row's 6-bit sub-block scales come out of its lane with a
// few shifts, the nibbles become levels by a byte shuffle, and the dot products need no
// horizontal sums. With VNNI the levels are offset by 128 (vpdpbusd's unsigned operand)
// and the offset removed per sub-block in int32 through the activations' 32-sums.
template <size_t R, size_t T, bool kVnni>
HWY_NOINLINE void TileX8IQ4_XS(const TileArgs<ActQ8K>& a) {
  static_assert(R == 1, "a repacked tile is one group of 8 rows");
  constexpr size_t kGroupBytes = 8 * sizeof(BlockIQ4_XS), kScalesLAt = 2 * 2 * 8, kCodesAt = kScalesLAt + 32;
  __m256 acc[T];
  ForEachIndex<T>([&](auto t) HWY_ATTR { acc[t] = _mm256_setzero_ps(); });
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256i table = _mm256_load_si256(reinterpret_cast<const __m256i*>(LevelTable<kIq4nlLevels>::bytes));
  if constexpr (kVnni) table = _mm256_xor_si256(table, _mm256_set1_epi8(char(0x80)));
  for (size_t b = 0; b < a.nb; ++b) {
    const uint8_t* g = a.w + b * kGroupBytes;
    PrefetchAhead<kGroupBytes>(g, a.prefetch);
    const ActQ8K* x = a.act + b;
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    const __m256i sh = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
    const __m256i sl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kScalesLAt));
    const __m256i* qs = reinterpret_cast<const __m256i*>(g + kCodesAt);
    __m256i isum[T];
    ForEachIndex<T>([&](auto t) HWY_ATTR { isum[t] = _mm256_setzero_si256(); });
    ForEachIndex<8>([&](auto s) HWY_ATTR {
      // Sub-block s's scale in every lane: low 4 bits at bit 4s of scales_l, high 2 at bit 2s of scales_h.
      const __m256i sc = _mm256_sub_epi32(
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(sl, 4 * int(s)), _mm256_set1_epi32(0xF)),
                          _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(sh, 2 * int(s)), _mm256_set1_epi32(3)), 4)),
          _mm256_set1_epi32(32));
      __m256i ssum[T];
      ForEachIndex<T>([&](auto t) HWY_ATTR { ssum[t] = _mm256_setzero_si256(); });
      ForEachIndex<4>([&](auto c) HWY_ATTR {
        const __m256i raw = _mm256_loadu_si256(qs + 4 * s + c);
        const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(raw, m4));
        const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
        const __m256i mlo = _mm256_sign_epi8(lo, lo), mhi = _mm256_sign_epi8(hi, hi);
        ForEachIndex<T>([&](auto t) HWY_ATTR {
          const int8_t* xq = x[t * a.act_stride].qs + 32 * s + 4 * c;
          const __m256i xlo = Broadcast4(xq), xhi = Broadcast4(xq + 16);
          if constexpr (kVnni) {
            ssum[t] = DotU8I8<true>(DotU8I8<true>(V32{ssum[t]}, VU8{lo}, V8{xlo}), VU8{hi}, V8{xhi}).raw;
          } else {
            const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(mlo, _mm256_sign_epi8(xlo, lo)), ones);
            const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(mhi, _mm256_sign_epi8(xhi, hi)), ones);
            V32 sum{_mm256_add_epi32(ssum[t], _mm256_add_epi32(plo, phi))};
            Opaque(sum);  // a chain per token, as TileX8's
            ssum[t] = sum.raw;
          }
        });
      });
      ForEachIndex<T>([&](auto t) HWY_ATTR {
        __m256i v = ssum[t];
        if constexpr (kVnni) v = _mm256_sub_epi32(v, _mm256_set1_epi32(128 * x[t * a.act_stride].bsums32[s]));
        V32 sum{_mm256_add_epi32(isum[t], _mm256_mullo_epi32(v, sc))};
        Opaque(sum);
        isum[t] = sum.raw;
      });
    });
    ForEachIndex<T>([&](auto t) HWY_ATTR {
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, _mm256_set1_ps(x[t * a.act_stride].d)), acc[t]);
    });
  }
  ForEachIndex<T>([&](auto t) HWY_ATTR { _mm256_storeu_ps(a.y + t * a.y_stride, acc[t]); });
}
#endif
