// A read-only view of a 2-D weight matrix in any supported element type, wherever
// its bytes live (a GGUF map today, a safetensors map tomorrow). Rows are
// contiguous: row r holds `cols` elements starting at data + r * row_bytes.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "quant/types.h"

namespace jevons {

struct Tensor {
  std::string name;
  TensorType type = TensorType::F32;
  int64_t cols = 0;  // elements per row (ggml ne[0])
  int64_t rows = 0;  // product of the other dimensions
  const uint8_t* data = nullptr;
  // FP8 only: per-block scales, element (r, c) times block_scale[(r / scale_block) *
  // scale_cols + c / scale_block] (DeepSeek-V3's 128x128 weight_scale_inv).
  const float* block_scale = nullptr;
  int64_t scale_block = 0, scale_cols = 0;
  int64_t scale_row0 = 0;  // a view of rows starting at this row of the scaled tensor
  // Rows [0, packed_rows) also stored repacked for the matmul kernels (kernels/repack.h:
  // groups of 8 rows, the same bytes as those rows); null when not repacked. Everything
  // except the fast matmul reads `data`.
  const uint8_t* packed = nullptr;
  int64_t packed_rows = 0;
  // F16 only: `packed` holds the rows rounded to BF16, in BF16's layout (the user asked
  // for it at load, --f16-as-bf16); `data` still holds the file's F16 values.
  bool packed_as_bf16 = false;

  explicit operator bool() const { return data != nullptr; }
  size_t row_bytes() const { return jevons::row_bytes(type, cols); }
  const uint8_t* row(int64_t r) const { return data + size_t(r) * row_bytes(); }
  size_t nbytes() const { return size_t(rows) * row_bytes(); }
  // Rows [first, first + n) as a tensor of their own (scales follow along).
  Tensor row_slice(int64_t first, int64_t n) const {
    Tensor t = *this;
    t.rows = n;
    t.data = row(first);
    t.scale_row0 = scale_row0 + first;
    // A repacked view survives when it starts on a group of 8 rows.
    t.packed = nullptr;
    t.packed_rows = 0;
    if (packed && first % 8 == 0 && first < packed_rows && std::min(n, packed_rows - first) >= 8) {
      t.packed = packed + size_t(first) * row_bytes();
      t.packed_rows = std::min(n, packed_rows - first) / 8 * 8;
    }
    return t;
  }
};

}  // namespace jevons
