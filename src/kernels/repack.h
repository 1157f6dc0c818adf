// Load-time repacking of weight matrices into the layout the x86 kernels read fastest,
// done once into an arena the model owns (the file's map stays the source of truth:
// every other reader, and every kernel without a repacked path, uses it unchanged).
//
// The x8 layout of Q4_0 and Q8_0 (8 rows interleaved). For each group of 8 consecutive
// rows g and each 32-block b of a row, at byte (g * blocks_per_row + b) * 8 * sizeof(block):
//   uint16_t d[8];              the fp16 scales of rows 8g .. 8g+7, block b
//   uint8_t  qs[8 * Q];         code bytes 4j .. 4j+3 of row 8g+r at (8j + r) * 4
// with Q = 16 nibble bytes (Q4_0) or 32 int8 codes (Q8_0). One 256-bit load then holds
// the same four code bytes of 8 rows, one row per 32-bit lane: dot products against
// broadcast activations finish with one row per lane (no horizontal sums), and one
// vcvtph2ps converts the 8 scales. A group takes exactly the bytes of its 8 rows, so
// rows [8g, 8g + 8) start at packed + 8g * row_bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace jevons {

inline constexpr int64_t kRepackRows = 8;

// Types with an x8 layout (Q4_0, Q8_0).
bool has_x8_layout(TensorType type);

// Writes rows [0, t.rows / 8 * 8) of t in the x8 layout (that many rows x row_bytes).
void repack_x8(const Tensor& t, uint8_t* out);

// Owns the repacked copies of a model's matrices.
class RepackArena {
 public:
  // t with `packed` set when the matmul kernels of this CPU read a repacked layout of
  // its type (and repacking is not turned off with JEVONS_REPACK=0); else t unchanged.
  // The copy lives as long as the arena.
  Tensor repack(const Tensor& t);
  size_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::vector<std::unique_ptr<uint8_t, Free>> buffers_;
  size_t bytes_ = 0;
};

// Whether RepackArena::repack repacks at all in this process (x86 with AVX2 or better,
// kernels in fast mode, JEVONS_REPACK not 0).
bool repacking_enabled();

}  // namespace jevons
