// Tensor element types, with ggml's numeric ids (they are what GGUF files store).
// A type is one row in the traits table (types.cc): block size, bytes per block,
// and reference conversions. Block layouts are documented in blocks.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace jevons {

enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ4_NL = 20,
  IQ4_XS = 23,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  // Not a ggml type (never read from or written to GGUF): FP8 E4M3 as DeepSeek-V3/R1
  // ship it in safetensors, scaled per 128x128 block (Tensor::block_scale).
  F8_E4M3 = 1000,
};

// True for the types a GGUF file may contain.
inline bool is_gguf_type(TensorType t) { return uint32_t(t) < 1000; }

struct TypeTraits {
  TensorType type;
  const char* name;       // ggml's name, e.g. "q4_K"
  int64_t block_size;     // elements per block (1 for float types)
  size_t type_size;       // bytes per block
  // Reference (scalar, exact) conversion of n elements; n must be a multiple of block_size.
  void (*to_float)(const void* src, float* dst, int64_t n);
  // Reference quantization of n elements (n a multiple of block_size). Always present
  // for the types listed in this table.
  void (*from_float)(const float* src, void* dst, int64_t n);
};

// Traits for a raw type id from a file, or nullptr when jevons does not support it.
const TypeTraits* find_type_traits(uint32_t id);
// Traits for a supported type (never null).
const TypeTraits& type_traits(TensorType t);
// Parses "q4_0", "Q4_K", "bf16", ... (case-insensitive); nullptr if unknown.
const TypeTraits* type_traits_by_name(std::string_view name);

inline const char* type_name(TensorType t) { return type_traits(t).name; }

// Bytes needed for n elements of a type (n must be a multiple of the block size).
inline size_t row_bytes(TensorType t, int64_t n) {
  const TypeTraits& tr = type_traits(t);
  return size_t(n / tr.block_size) * tr.type_size;
}

}  // namespace jevons
