// Hyperparameters of a transformer, read from the model file's metadata (never
// from presets), with everything the forward pass needs spelled out.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/rope.h"
#include "quant/types.h"

namespace jevons {

class ModelSource;

// Multi-head Latent Attention (DeepSeek-V2/V3): keys and values are compressed to
// a kv_lora_rank latent plus one shared RoPE key of qk_rope_head_dim per token.
struct MlaConfig {
  int q_lora_rank = 0;        // 0: plain q projection (V2-Lite); else q_a -> norm -> q_b (V3)
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;
  float yarn_log_multiplier = 0.0f;  // 0.1 * mscale_all_dim: YaRN's softmax-scale correction
};

enum class MoeGating { kSoftmax = 1, kSigmoid = 2 };  // GGUF expert_gating_func values

// DeepSeekMoE: dense first layers, then shared experts plus top-k routed experts.
struct MoeConfig {
  int n_expert = 0;           // routed experts
  int n_expert_used = 0;      // top-k
  int n_shared = 0;           // shared experts (always on)
  int n_ff_expert = 0;
  int first_dense = 0;        // first_k_dense_replace
  int n_group = 1;            // group-limited routing: n_group groups ...
  int topk_group = 1;         // ... of which topk_group are kept
  MoeGating gating = MoeGating::kSoftmax;
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
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
  MlaConfig mla;              // deepseek2 only
  MoeConfig moe;              // deepseek2 only
  // Multi-token prediction modules (DeepSeek-V3's nextn layers) stored after the n_layer
  // layers of the trunk (GGUF block_count counts both, as llama.cpp writes them).
  int n_mtp = 0;
  // Floats cached per token per layer (K and V); MLA caches only the latent + RoPE key.
  int cache_k_dim = 0;
  int cache_v_dim = 0;
  int cache_heads = 1;  // the KV heads those floats split into (MLA: one latent row)

  int q_dim() const { return n_head * head_dim_k; }
  int k_dim() const { return n_head_kv * head_dim_k; }
  int v_dim() const { return n_head_kv * head_dim_v; }
  bool is_mla() const { return mla.kv_lora_rank > 0; }
  // KV cache bytes per token (f32 cache).
  // Bytes of keys and values one token adds to the cache in a KV type (f32, f16, bf16,
  // q8_0: 34 bytes per 32 elements).
  size_t kv_bytes_per_token(TensorType kv_type = TensorType::F32) const {
    return size_t(n_layer) * row_bytes(kv_type, cache_k_dim + cache_v_dim);
  }
};

// Reads and validates the hyperparameters of a llama/qwen2/qwen3 GGUF.
ModelConfig read_config(const ModelSource& source);

}  // namespace jevons
