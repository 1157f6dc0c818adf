// Hugging Face directory -> GGUF, in llama.cpp's conventions so other engines load
// the result: llama q/k rows permuted for adjacent-pair RoPE, DeepSeek experts
// stacked per layer and kv_b split into per-head attn_k_b / attn_v_b.
#pragma once
#include <functional>
#include <optional>
#include <string>

#include "quant/types.h"

namespace jevons {

struct ConvertOptions {
  std::string hf_dir, out_path;
  std::optional<TensorType> type;  // matrices; default: keep F32/F16/BF16, FP8 -> BF16
  int threads = 1;
  std::function<void(size_t done, size_t total)> progress;
};

struct ConvertResult {
  size_t tensors = 0;
  uint64_t bytes = 0;
  std::string notes;
};

ConvertResult convert_hf_to_gguf(const ConvertOptions& o);

}  // namespace jevons
