// The traits table: one row per tensor type jevons supports.
#include "quant/types.h"

#include <array>

#include "core/error.h"
#include "quant/blocks.h"
#include "quant/quants.h"

namespace jevons {
namespace {

using namespace quant;

constexpr std::array<TypeTraits, 21> kTraits = {{
    {TensorType::F32, "f32", 1, sizeof(float), dequantize_f32, quantize_f32},
    {TensorType::F16, "f16", 1, sizeof(uint16_t), dequantize_f16, quantize_f16},
    {TensorType::BF16, "bf16", 1, sizeof(uint16_t), dequantize_bf16, quantize_bf16},
    {TensorType::Q4_0, "q4_0", QK4_0, sizeof(BlockQ4_0), dequantize_q4_0, quantize_q4_0},
    {TensorType::Q4_1, "q4_1", QK4_1, sizeof(BlockQ4_1), dequantize_q4_1, quantize_q4_1},
    {TensorType::Q5_0, "q5_0", QK5_0, sizeof(BlockQ5_0), dequantize_q5_0, quantize_q5_0},
    {TensorType::Q5_1, "q5_1", QK5_1, sizeof(BlockQ5_1), dequantize_q5_1, quantize_q5_1},
    {TensorType::Q8_0, "q8_0", QK8_0, sizeof(BlockQ8_0), dequantize_q8_0, quantize_q8_0},
    {TensorType::Q8_1, "q8_1", QK8_1, sizeof(BlockQ8_1), dequantize_q8_1, quantize_q8_1},
    {TensorType::Q2_K, "q2_K", QK_K, sizeof(BlockQ2_K), dequantize_q2_k, quantize_q2_k},
    {TensorType::Q3_K, "q3_K", QK_K, sizeof(BlockQ3_K), dequantize_q3_k, quantize_q3_k},
    {TensorType::Q4_K, "q4_K", QK_K, sizeof(BlockQ4_K), dequantize_q4_k, quantize_q4_k},
    {TensorType::Q5_K, "q5_K", QK_K, sizeof(BlockQ5_K), dequantize_q5_k, quantize_q5_k},
    {TensorType::Q6_K, "q6_K", QK_K, sizeof(BlockQ6_K), dequantize_q6_k, quantize_q6_k},
    {TensorType::Q8_K, "q8_K", QK_K, sizeof(BlockQ8_K), dequantize_q8_k, quantize_q8_k},
    {TensorType::IQ4_NL, "iq4_nl", QK4_NL, sizeof(BlockIQ4_NL), dequantize_iq4_nl, quantize_iq4_nl},
    {TensorType::IQ4_XS, "iq4_xs", QK_K, sizeof(BlockIQ4_XS), dequantize_iq4_xs, quantize_iq4_xs},
    {TensorType::MXFP4, "mxfp4", QK_MXFP4, sizeof(BlockMXFP4), dequantize_mxfp4, quantize_mxfp4},
    {TensorType::TQ1_0, "tq1_0", QK_K, sizeof(BlockTQ1_0), dequantize_tq1_0, quantize_tq1_0},
    {TensorType::TQ2_0, "tq2_0", QK_K, sizeof(BlockTQ2_0), dequantize_tq2_0, quantize_tq2_0},
    {TensorType::F8_E4M3, "f8_e4m3", 1, 1, dequantize_f8_e4m3, quantize_f8_e4m3},
}};

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

bool equals_ignore_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

}  // namespace

const TypeTraits* find_type_traits(uint32_t id) {
  for (const TypeTraits& t : kTraits) {
    if (uint32_t(t.type) == id) return &t;
  }
  return nullptr;
}

const TypeTraits& type_traits(TensorType t) {
  if (const TypeTraits* tr = find_type_traits(uint32_t(t))) return *tr;
  fail("unsupported tensor type id {}", uint32_t(t));
}

const TypeTraits* type_traits_by_name(std::string_view name) {
  for (const TypeTraits& t : kTraits) {
    if (equals_ignore_case(name, t.name)) return &t;
  }
  return nullptr;
}

}  // namespace jevons
