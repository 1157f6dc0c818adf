// Load-time repacking of weight matrices into the layout the x86 kernels read fastest,
// done once into an arena the model owns (the file's map stays the source of truth:
// every other reader, and every kernel without a repacked path, uses it unchanged).
//
// The x8 layout (8 rows interleaved) of Q4_0 (and IQ4_NL, the same bytes; and MXFP4, whose
// one-byte E8M0 scales take the place of the fp16 d: uint8_t e[8], then the chunks), IQ4_XS
// (d, then scales_h as its second 16-bit field; scales_l is chunk 0), Q5_0, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16 and F16. For each group
// of 8 consecutive rows g and each block b of a row, at byte (g * blocks_per_row + b) * 8 * sizeof(block):
//   uint16_t h[H][8];           the block's H fp16 fields of rows 8g .. 8g+7 (Q4_0, Q5_0,
//                               Q8_0, Q3_K, Q6_K: d; Q2_K, Q4_K, Q5_K: d, then dmin)
//   uint8_t  chunk[C / 4][8][4]; bytes 4j .. 4j+3 of the rest of row 8g+r's block at (8j + r) * 4
// with C the block's other bytes, in order: the 16 nibble bytes (Q4_0), 4 bytes of 5th
// bits then the 16 nibble bytes (Q5_0; the 5th bits rearranged so that bits c and 4 + c
// of byte i are those of the two codes in byte i of nibble chunk c), 32 int8 codes
// (Q8_0), 12 packed 6-bit scales and mins then 128 nibble bytes (Q4_K; Q5_K has its 32
// bytes of 5th bits between them). Q6_K (d at the
// end of its block; then ql[128], qh[64], scales[16], as chunks 0..31, 32..47, 48..51)
// has them in the order its kernel reads them: the 4 scale chunks, then for h < 2,
// half < 2, c4 < 4 (c = 4 half + c4) the triple of chunks 16h + c, 16h + 8 + c (ql) and
// 32 + 8h + c (qh), which hold elements 128h + 32k + 4c .. +3 for k < 4. Q3_K (d at the
// end too; hmask[32], qs[64], scales[12] as chunks 0..7, 8..23, 24..26) likewise: the 3
// chunks of packed scales, then for c < 8 the triple 8 + c, 16 + c (qs of h = 0, 1) and
// c (hmask), which hold elements 128h + 32k + 4c .. +3 for h < 2, k < 4. Q2_K (d, dmin
// at the end; scales[16], qs[64] as chunks 0..3, 4..19): the 4 scale chunks, then for
// c < 8 the pair 4 + c, 12 + c (qs of h = 0, 1). One
// 256-bit load then holds the same four bytes of 8 rows, one row per 32-bit lane: dot
// products against broadcast activations finish with one row per lane (no horizontal
// sums), one vcvtph2ps converts the 8 scales, and Q4_K unpacks the scales of 8 rows with
// the same few vector ops. F16 has no fields and 2-byte chunks: column c of a group is
// its 8 rows' values, one widening load. BF16 moves pairs of columns: pair p of a group
// is uint16_t [8][2], row r's values of columns 2p and 2p+1 in its 32-bit lane, the
// operand of vdpbf16ps (an odd last column follows alone, as F16's columns are). A group takes exactly the bytes of
// its 8 rows, so rows [8g, 8g + 8) start at packed + 8g * row_bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/large_buffer.h"
#include "quant/tensor.h"

namespace jevons {

inline constexpr int64_t kRepackRows = 8;

// Types with an x8 layout (Q4_0, IQ4_NL, MXFP4, IQ4_XS, Q5_0, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16, F16).
bool has_x8_layout(TensorType type);

// Writes rows [0, t.rows / 8 * 8) of t in the x8 layout (that many rows x row_bytes).
// With a group range: only groups [g_begin, g_end) (rows 8 g_begin .. 8 g_end), each at
// its place in out, so that threads can share one tensor.
// f16_to_bf16 (F16 tensors): writes BF16's layout of the values rounded to BF16.
void repack_x8(const Tensor& t, uint8_t* out, int64_t g_begin = 0, int64_t g_end = -1, bool f16_to_bf16 = false);

// Which F16 matrices are repacked as BF16 (BF16's x8 layout of their values rounded to
// BF16, Tensor::packed_as_bf16), so that their matmuls run the BF16 kernels: on CPUs
// with a BF16 dot product (AVX512-BF16) prefill goes through vdpbf16ps instead of f32
// FMAs. Activations are then rounded to BF16, as for BF16 weights.
enum class F16AsBf16 {
  // Those whose every value is a BF16 value (all_fp16_are_bf16_values), where the CPU
  // has a BF16 dot product: the weights are unchanged. An F16 file converted from a
  // BF16 checkpoint (Llama 3, Qwen2.5, DeepSeek and most releases since) is one.
  kWhereExact,
  kAlways,  // every one (the user's --f16-as-bf16): lossy where a value has more than 8 significant bits
  kNever,   // none (--no-f16-as-bf16): f32 activations and FMAs
};

// Owns the repacked copies of a model's matrices.
class RepackArena {
 public:
  // Tensors share chunks of chunk_bytes (one tensor larger than that gets its own).
  explicit RepackArena(size_t chunk_bytes = size_t(64) << 20) : chunk_bytes_(chunk_bytes) {}

  // t with `packed` set when the matmul kernels of this CPU read a repacked layout of
  // its type; else, with may_copy, t with `data` pointing to a plain copy in huge pages
  // (decode streams it faster than the file's 4 KiB pages), unless JEVONS_HUGEPAGES=0.
  // t unchanged when repacking is off (JEVONS_REPACK=0). Both live as long as the arena.
  Tensor repack(const Tensor& t, bool may_copy = true);
  size_t bytes() const { return bytes_; }                // repacked
  size_t copied_bytes() const { return copied_bytes_; }  // copied unchanged

  // Applies to the F16 matrices repacked from now on (default kWhereExact).
  void set_f16_as_bf16(F16AsBf16 policy) { f16_as_bf16_ = policy; }
  // Bytes of F16 matrices repacked as BF16 (part of bytes()), and of those among them
  // that rounding changed (at least one value was not a BF16 value: kAlways only).
  size_t f16_as_bf16_bytes() const { return f16_as_bf16_bytes_; }
  size_t f16_rounded_bytes() const { return f16_rounded_bytes_; }

 private:
  uint8_t* allocate(size_t n, const std::string& what);
  Tensor copy_to_huge_pages(const Tensor& t);

  // Tensors are laid out one after the other in chunks of huge pages (decode streams
  // them every token); a chunk's unused end is never touched, so it costs address space
  // only, not memory.
  size_t chunk_bytes_;
  std::vector<LargeBuffer> chunks_;
  size_t chunk_used_ = 0;
  size_t bytes_ = 0, copied_bytes_ = 0, f16_as_bf16_bytes_ = 0, f16_rounded_bytes_ = 0;
  F16AsBf16 f16_as_bf16_ = F16AsBf16::kWhereExact;
};

// Whether RepackArena::repack repacks at all in this process (x86 with AVX2 or better,
// kernels in fast mode, JEVONS_REPACK not 0).
bool repacking_enabled();

}  // namespace jevons
