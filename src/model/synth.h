// Writes a GGUF with a real model's exact tensor shapes, seeded random weights
// and a real tokenizer vocabulary. Speed does not depend on weight values, so
// this is how benchmarks get realistic sizes where weights cannot be downloaded.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "model/presets.h"
#include "quant/types.h"

namespace jevons {

struct SynthOptions {
  const Preset* preset = nullptr;
  TensorType type = TensorType::Q4_0;  // matrices; norms stay F32
  // llama.cpp's Q4_K_M recipe instead of one type (`type` is then ignored): Q6_K for the
  // output matrix (the token embedding when it is tied) and for attn_v and ffn_down in
  // the layers llama.cpp's use_more_bits picks, Q4_K for every other matrix. Most
  // published GGUFs are this mix, not pure Q4_K.
  bool q4_k_m = false;
  // MoE presets: the routed experts (ffn_{gate,up,down}_exps) in this type, every other
  // matrix in `type`, as published low-bit MoE files are (llama-quantize's MXFP4_MOE:
  // MXFP4 experts, Q8_0 elsewhere; DeepSeek-R1 at ~2 bits: i-quant experts). Q8_K = none.
  TensorType experts_type = TensorType::Q8_K;
  // F32 and F16 matrices hold BF16 values (random values rounded to BF16), as an F16
  // file converted from a preset's BF16 release does (every preset's model was
  // released in BF16); false: random values of the type's full precision.
  bool bf16_values = true;
  std::string vocab_path;              // GGUF whose tokenizer.* metadata is copied
  std::string out_path;
  uint64_t seed = 1;
  int threads = 1;
  // DeepSeek presets: multi-token prediction layers appended after the trunk (GGUF
  // blk.N.nextn.*, as DeepSeek-V3/R1 ship one); the trunk's weights do not change.
  int mtp_layers = 0;
  // Called after each tensor is written: (tensors done, tensors total, bytes written).
  std::function<void(size_t, size_t, uint64_t)> progress;
};

struct SynthResult {
  uint64_t file_bytes = 0;
  int64_t parameters = 0;
  std::string notes;  // e.g. which tensors fell back to another type and why
};

SynthResult synthesize(const SynthOptions& o);

// The type llama.cpp's quantizer falls back to when a row length is not a
// multiple of a k-quant's 256-element block.
TensorType fallback_type(TensorType t);

// llama.cpp's use_more_bits: the layers its *_K_M mixes quantize with more bits (the
// first and last eighth of the layers, and every third one in between).
bool use_more_bits(int layer, int n_layer);

}  // namespace jevons
