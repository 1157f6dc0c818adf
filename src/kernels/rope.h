// Rotary position embedding settings (RoPE: Su et al. 2021; YaRN: Peng et al. 2023),
// as the rope() op of ops.h applies them; model/config.h reads them from metadata.
#pragma once
#include <vector>

namespace jevons {

enum class RopeStyle {
  kAdjacentPairs,  // rotate (x[2i], x[2i+1]); ggml "NORM"; GGUF llama (q/k permuted at conversion)
  kHalves,         // rotate (x[i], x[i + n/2]); ggml "NEOX"; Qwen2/3, HF's rotate_half
};

enum class RopeScaling { kNone, kLinear, kYarn };

struct RopeConfig {
  RopeStyle style = RopeStyle::kAdjacentPairs;
  int n_rot = 0;                // rotated dims per head (the rest pass through)
  float freq_base = 10000.0f;
  RopeScaling scaling = RopeScaling::kNone;
  float freq_scale = 1.0f;      // 1 / scaling factor
  int n_ctx_orig = 0;           // YaRN: original training context
  float yarn_beta_fast = 32.0f;
  float yarn_beta_slow = 1.0f;
  float yarn_ext_factor = 0.0f; // 1 with YaRN
  float attn_factor = 1.0f;     // multiplies cos/sin (YaRN magnitude correction)
};

// Llama 3's RoPE frequency factors (one per rotated pair; GGUF stores them as the
// rope_freqs tensor): long wavelengths are divided by `factor`, short ones kept,
// with a smooth ramp between low_freq_factor and high_freq_factor.
std::vector<float> llama3_rope_freqs(int head_dim, float base, float factor, float low_freq_factor,
                                     float high_freq_factor, int original_context);

}  // namespace jevons
