// A read-only view of a 2-D weight matrix in any supported element type, wherever
// its bytes live (a GGUF map today, a safetensors map tomorrow). Rows are
// contiguous: row r holds `cols` elements starting at data + r * row_bytes.
#pragma once
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

  explicit operator bool() const { return data != nullptr; }
  size_t row_bytes() const { return jevons::row_bytes(type, cols); }
  const uint8_t* row(int64_t r) const { return data + size_t(r) * row_bytes(); }
  size_t nbytes() const { return size_t(rows) * row_bytes(); }
};

}  // namespace jevons
