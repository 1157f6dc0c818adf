// Hyperparameters of a transformer, read from the model file's metadata (never
// from presets), with everything the forward pass needs spelled out.
#pragma once
#include <cstdint>
#include <string>

namespace jevons {

class GgufFile;

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

struct ModelConfig {
  std::string arch;   // general.architecture: llama, qwen2, qwen3
  std::string name;   // general.name, if any
  int n_layer = 0;
  int n_embd = 0;
  int n_ff = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim_k = 0;  // attention.key_length (defaults to n_embd / n_head)
  int head_dim_v = 0;  // attention.value_length
  int n_vocab = 0;
  int n_ctx_train = 0;
  float rms_eps = 1e-5f;
  RopeConfig rope;
  bool has_qkv_bias = false;  // qwen2
  bool has_qk_norm = false;   // qwen3
  bool tied_output = false;   // lm head shares token_embd

  int q_dim() const { return n_head * head_dim_k; }
  int k_dim() const { return n_head_kv * head_dim_k; }
  int v_dim() const { return n_head_kv * head_dim_v; }
  // KV cache bytes per token (f32 cache).
  size_t kv_bytes_per_token() const { return size_t(n_layer) * size_t(k_dim() + v_dim()) * sizeof(float); }
};

// Reads and validates the hyperparameters of a llama/qwen2/qwen3 GGUF.
ModelConfig read_config(const GgufFile& file);

}  // namespace jevons
