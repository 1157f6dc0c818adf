#include "kernels/repack.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/float16.h"
#include "kernels/matmul.h"
#include "quant/blocks.h"
#include "quant/types.h"

namespace jevons {
namespace {

// A block's layout as the x8 layout sees it: `halves` fp16 fields (d; Q2_K, Q4_K, Q5_K: d,
// dmin) at byte `halves_at` (first, or Q2_K's, Q3_K's and Q6_K's last), and the rest of its bytes, moved
// in 4-byte chunks (codes; Q4_K: scales and codes; Q5_K: scales, 5th bits, codes),
// repacked chunk j taking the rest's chunk order[j] (in order if null). BF16 / F16: a
// block is one 2-byte value, moved as it is.
struct X8Shape {
  size_t block_bytes, halves, halves_at = 0;
  const uint8_t* order = nullptr;
  bool transposed_qh = false;  // Q5_0: its first chunk (qh) bit-transposed, see q5_0_qh_by_chunk
  size_t field_bytes = 2;      // bytes of each scale field (MXFP4: its 1-byte E8M0 exponent)
  size_t chunk_bytes() const { return block_bytes - field_bytes * halves; }
  size_t rest_at() const { return halves_at == 0 ? field_bytes * halves : 0; }
  size_t source_chunk(size_t j) const { return order ? order[j] : j; }
};

// Q6_K's chunks (ql: 0..31, qh: 32..47, scales: 48..51) in the order its decode kernel
// reads them (kernels/repack.h), so that it streams each block front to back: the
// hardware prefetchers lost track of the same kernel taking them in the stored order
// (1 thread, Zen 4, from DRAM: 6 GB/s; in this order 25 GB/s, Q4_K's 26).
constexpr std::array<uint8_t, 52> kQ6KChunkOrder = [] {
  std::array<uint8_t, 52> order{};
  size_t j = 0;
  for (uint8_t i = 0; i < 4; ++i) order[j++] = 48 + i;  // scales
  for (uint8_t h = 0; h < 2; ++h)
    for (uint8_t half = 0; half < 2; ++half)
      for (uint8_t c4 = 0; c4 < 4; ++c4) {
        const uint8_t c = 4 * half + c4;
        order[j++] = 16 * h + c;        // ql: low nibbles of elements 128h + 4c .. +3 (and of 128h + 64 + 4c ..)
        order[j++] = 16 * h + 8 + c;    // ql: of 128h + 32 + 4c .. (and 128h + 96 + 4c ..)
        order[j++] = 32 + 8 * h + c;    // qh: their high 2 bits
      }
  return order;
}();

// Q3_K's chunks (hmask: 0..7, qs: 8..23, scales: 24..26) in the order its kernel reads
// them (see kQ6KChunkOrder): the 3 scale chunks, then for each half and c4 (bytes
// l = 16 half + 4 c4 .. +3) the qs chunks of h = 0 and h = 1 and the hmask chunk, which
// together hold elements 128h + 32k + l for h < 2, k < 4.
constexpr std::array<uint8_t, 27> kQ3KChunkOrder = [] {
  std::array<uint8_t, 27> order{};
  size_t j = 0;
  for (uint8_t i = 0; i < 3; ++i) order[j++] = 24 + i;  // scales
  for (uint8_t half = 0; half < 2; ++half)
    for (uint8_t c4 = 0; c4 < 4; ++c4) {
      const uint8_t c = 4 * half + c4;
      order[j++] = 8 + c;      // qs: low 2 bits of elements 32k + 4c .. +3
      order[j++] = 8 + 8 + c;  // qs: of 128 + 32k + 4c .. +3
      order[j++] = c;          // hmask: their third bits
    }
  return order;
}();

// Q2_K's chunks (scales: 0..3, qs: 4..19) likewise: the 4 scale chunks, then for each
// half and c4 the qs chunks of h = 0 and h = 1.
constexpr std::array<uint8_t, 20> kQ2KChunkOrder = [] {
  std::array<uint8_t, 20> order{};
  size_t j = 0;
  for (uint8_t i = 0; i < 4; ++i) order[j++] = i;  // scales
  for (uint8_t c = 0; c < 8; ++c) {
    order[j++] = 4 + c;      // qs: elements 32k + 4c .. +3
    order[j++] = 4 + 8 + c;  // qs: 128 + 32k + 4c .. +3
  }
  return order;
}();

// Q5_0's 32 flag bits (bit e: the 5th bit of element e) rearranged so that the kernel
// takes the 5th bits of code chunk c with one shift and one mask: byte i holds, in bit c,
// the flag of element 4c + i (low nibble of qs byte 4c + i) and, in bit 4 + c, that of
// element 16 + 4c + i (its high nibble).
uint32_t q5_0_qh_by_chunk(uint32_t qh) {
  uint32_t out = 0;
  for (uint32_t i = 0; i < 4; ++i)
    for (uint32_t c = 0; c < 4; ++c) {
      out |= ((qh >> (4 * c + i)) & 1u) << (8 * i + c);
      out |= ((qh >> (16 + 4 * c + i)) & 1u) << (8 * i + 4 + c);
    }
  return out;
}

X8Shape x8_shape(TensorType type) {
  switch (type) {
    case TensorType::Q4_0: return {sizeof(BlockQ4_0), 1};
    case TensorType::IQ4_NL: return {sizeof(BlockIQ4_NL), 1};  // Q4_0's layout
    case TensorType::MXFP4: return {sizeof(BlockMXFP4), 1, 0, nullptr, false, 1};  // e, then Q4_0's nibbles
    case TensorType::IQ4_XS: return {sizeof(BlockIQ4_XS), 2};  // d and scales_h as its 16-bit fields
    case TensorType::Q5_0: return {sizeof(BlockQ5_0), 1, 0, nullptr, true};
    case TensorType::Q8_0: return {sizeof(BlockQ8_0), 1};
    case TensorType::Q2_K: return {sizeof(BlockQ2_K), 2, offsetof(BlockQ2_K, d), kQ2KChunkOrder.data()};
    case TensorType::Q3_K: return {sizeof(BlockQ3_K), 1, offsetof(BlockQ3_K, d), kQ3KChunkOrder.data()};
    case TensorType::Q4_K: return {sizeof(BlockQ4_K), 2};
    case TensorType::Q5_K: return {sizeof(BlockQ5_K), 2};
    case TensorType::Q6_K: return {sizeof(BlockQ6_K), 1, offsetof(BlockQ6_K, d), kQ6KChunkOrder.data()};
    case TensorType::BF16: case TensorType::F16: return {2, 0};
    default: fail("repack: tensor type {} has no x8 layout", type_name(type));
  }
}

static_assert(offsetof(BlockQ4_0, qs) == 2 && offsetof(BlockIQ4_NL, qs) == 2 && offsetof(BlockMXFP4, qs) == 1 && offsetof(BlockIQ4_XS, scales_h) == 2 && offsetof(BlockQ8_0, qs) == 2 && offsetof(BlockQ5_0, qh) == 2 &&
              offsetof(BlockQ5_0, qs) == 6 && offsetof(BlockQ4_K, dmin) == 2 &&
              offsetof(BlockQ4_K, scales) == 4 && sizeof(BlockQ4_K::scales) % 4 == 0 &&
              offsetof(BlockQ5_K, dmin) == 2 && offsetof(BlockQ5_K, scales) == 4 &&
              offsetof(BlockQ5_K, qh) == 4 + sizeof(BlockQ5_K::scales) && offsetof(BlockQ5_K, qs) == 48 &&
              offsetof(BlockQ6_K, d) == sizeof(BlockQ6_K) - 2 && offsetof(BlockQ6_K, d) % 4 == 0 &&
              offsetof(BlockQ3_K, qs) == 32 && offsetof(BlockQ3_K, scales) == 96 &&
              offsetof(BlockQ3_K, d) == sizeof(BlockQ3_K) - 2 && offsetof(BlockQ2_K, qs) == 16 &&
              offsetof(BlockQ2_K, d) == sizeof(BlockQ2_K) - 4 && offsetof(BlockQ2_K, dmin) == sizeof(BlockQ2_K) - 2);

}  // namespace

bool has_x8_layout(TensorType type) {
  return type == TensorType::Q4_0 || type == TensorType::IQ4_NL || type == TensorType::MXFP4 || type == TensorType::IQ4_XS || type == TensorType::Q5_0 || type == TensorType::Q8_0 || type == TensorType::Q2_K ||
         type == TensorType::Q3_K || type == TensorType::Q4_K || type == TensorType::Q5_K || type == TensorType::Q6_K ||
         type == TensorType::BF16 || type == TensorType::F16;
}

void repack_x8(const Tensor& t, uint8_t* out, int64_t g_begin, int64_t g_end, bool f16_to_bf16) {
  const X8Shape s = x8_shape(t.type);
  if (g_end < 0) g_end = t.rows / kRepackRows;
  if (s.block_bytes == 2) {
    // F16: 8 rows' values of a column, column after column. BF16: the same with pairs of
    // columns (row r's two values side by side), then a last odd column alone.
    f16_to_bf16 = f16_to_bf16 && t.type == TensorType::F16;
    const int64_t unit = t.type == TensorType::BF16 || f16_to_bf16 ? 2 : 1;
    const int64_t whole = t.cols / unit * unit;
    // One value: moved as it is, or an F16 value rounded to the nearest BF16 (exact
    // widening to f32 first, so one rounding), looked up in a table of all 65536: the
    // conversion's branches ran at a third of the speed of the copy.
    static const std::vector<uint16_t> to_bf16 = [] {
      std::vector<uint16_t> table(65536);
      for (uint32_t h = 0; h < 65536; ++h) table[h] = float_to_bf16(fp16_to_float(uint16_t(h)));
      return table;
    }();
    auto put = [f16_to_bf16](uint16_t* o, const uint8_t* from) {
      uint16_t v;
      std::memcpy(&v, from, 2);
      *o = f16_to_bf16 ? to_bf16[v] : v;
    };
    uint16_t* o = reinterpret_cast<uint16_t*>(out) + size_t(g_begin * kRepackRows * t.cols);
    for (int64_t g = g_begin; g < g_end; ++g) {
      const uint8_t* rows[kRepackRows];
      for (int64_t r = 0; r < kRepackRows; ++r) rows[r] = t.row(g * kRepackRows + r);
      for (int64_t c = 0; c < whole; c += unit, o += unit * kRepackRows)
        for (int64_t r = 0; r < kRepackRows; ++r)
          for (int64_t u = 0; u < unit; ++u) put(o + unit * r + u, rows[r] + 2 * (c + u));
      for (int64_t c = whole; c < t.cols; ++c, o += kRepackRows)
        for (int64_t r = 0; r < kRepackRows; ++r) put(o + r, rows[r] + 2 * c);
    }
    return;
  }
  const int64_t nb = t.row_bytes() / s.block_bytes;
  const size_t chunks_at = s.field_bytes * s.halves * kRepackRows;
  for (int64_t g = g_begin; g < g_end; ++g)
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* o = out + size_t(g * nb + b) * kRepackRows * s.block_bytes;
      for (int64_t r = 0; r < kRepackRows; ++r) {
        const uint8_t* blk = t.row(g * kRepackRows + r) + size_t(b) * s.block_bytes;
        for (size_t h = 0; h < s.halves; ++h)
          std::memcpy(o + s.field_bytes * (h * kRepackRows + size_t(r)), blk + s.halves_at + s.field_bytes * h, s.field_bytes);
        for (size_t j = 0; j < s.chunk_bytes() / 4; ++j)
          std::memcpy(o + chunks_at + (j * kRepackRows + size_t(r)) * 4, blk + s.rest_at() + 4 * s.source_chunk(j), 4);
        if (s.transposed_qh) {
          uint8_t* chunk0 = o + chunks_at + size_t(r) * 4;
          uint32_t qh;
          std::memcpy(&qh, chunk0, 4);
          qh = q5_0_qh_by_chunk(qh);
          std::memcpy(chunk0, &qh, 4);
        }
      }
    }
}

bool repacking_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("JEVONS_REPACK");
    return !(env && std::strcmp(env, "0") == 0);
  }();
  return enabled && kernel_mode() == KernelMode::kFast;
}

uint8_t* RepackArena::allocate(size_t n, const std::string& what) {
  constexpr size_t kAlign = 64;
  n = (n + kAlign - 1) / kAlign * kAlign;
  if (chunks_.empty() || chunks_.back().size() - chunk_used_ < n) {
    chunks_.emplace_back(std::max(n, chunk_bytes_), what.c_str());
    chunk_used_ = 0;
  }
  uint8_t* p = chunks_.back().data() + chunk_used_;
  chunk_used_ += n;
  return p;
}

namespace {
// fn(u0, u1) over [0, units), on every core for large tensors: the copy, and above all
// the first touch of the new pages (the kernel zeroes them), dominates loading on some
// VMs.
template <class Fn>
void InParallel(size_t bytes, int64_t units, const Fn& fn) {
  const int64_t workers = bytes >= (size_t(8) << 20) ? std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, 16) : 1;
  if (workers <= 1 || units < workers) return fn(int64_t(0), units);
  std::vector<std::thread> threads;
  for (int64_t w = 1; w < workers; ++w) threads.emplace_back([&fn, units, workers, w] { fn(units * w / workers, units * (w + 1) / workers); });
  fn(0, units / workers);
  for (std::thread& th : threads) th.join();
}
// Whether the first `rows` rows of an F16 tensor hold only BF16 values; stops at the
// first value that is not one (for F16 files of full precision: within the first row).
bool values_are_bf16(const Tensor& t, int64_t rows) {
  std::atomic<bool> all{true};
  InParallel(size_t(rows) * t.row_bytes(), rows, [&t, &all](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1 && all.load(std::memory_order_relaxed); ++r)
      if (!all_fp16_are_bf16_values(t.row(r), size_t(t.cols))) all.store(false, std::memory_order_relaxed);
  });
  return all.load();
}
}  // namespace

Tensor RepackArena::repack(const Tensor& t, bool may_copy) {
  if (!repacking_enabled() || t.block_scale) return t;
  if (!has_x8_layout(t.type) || !matmul_reads_x8(t.type) || t.rows < kRepackRows ||
      t.cols % type_traits(t.type).block_size != 0)
    return may_copy ? copy_to_huge_pages(t) : t;
  Tensor out = t;
  out.packed_rows = t.rows / kRepackRows * kRepackRows;
  bool rounded = false;
  if (t.type == TensorType::F16 && f16_as_bf16_ == F16AsBf16::kAlways) {
    out.packed_as_bf16 = true;
    rounded = !values_are_bf16(t, out.packed_rows);
  } else if (t.type == TensorType::F16 && f16_as_bf16_ == F16AsBf16::kWhereExact) {
    out.packed_as_bf16 = matmul_uses_bf16_dot() && values_are_bf16(t, out.packed_rows);
  }
  const size_t n = size_t(out.packed_rows) * t.row_bytes();
  uint8_t* p = allocate(n, "repacking tensor " + t.name);
  InParallel(n, out.packed_rows / kRepackRows,
             [&t, p, &out](int64_t g0, int64_t g1) { repack_x8(t, p, g0, g1, out.packed_as_bf16); });
  out.packed = p;
  bytes_ += n;
  if (out.packed_as_bf16) f16_as_bf16_bytes_ += n;
  if (rounded) f16_rounded_bytes_ += n;
  return out;
}

Tensor RepackArena::copy_to_huge_pages(const Tensor& t) {
  const size_t n = size_t(t.rows) * t.row_bytes();
  if (!huge_pages_requested() || n == 0) return t;
  uint8_t* p = allocate(n, "copying tensor " + t.name);
  const size_t row = t.row_bytes();
  InParallel(n, t.rows, [&t, p, row](int64_t r0, int64_t r1) {
    std::memcpy(p + size_t(r0) * row, t.data + size_t(r0) * row, size_t(r1 - r0) * row);
  });
  Tensor out = t;
  out.data = p;
  copied_bytes_ += n;
  return out;
}

}  // namespace jevons
