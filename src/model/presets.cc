#include "model/presets.h"

namespace jevons {

// Values from each model's published config.json (deepseek-v3-mini is jevons' own
// reduction of DeepSeek-V3, see its description).
const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = {
      {.name = "tinyllama-1.1b", .description = "TinyLlama-1.1B (Llama 2 architecture, GQA 32/4)", .arch = "llama",
       .n_embd = 2048, .n_layer = 22, .n_head = 32, .n_head_kv = 4, .head_dim = 64, .n_ff = 5632, .n_vocab = 32000,
       .n_ctx = 2048},
      {.name = "llama-3.2-1b", .description = "Llama-3.2-1B (GQA 32/8, llama3 RoPE scaling, tied embeddings)", .arch = "llama",
       .n_embd = 2048, .n_layer = 16, .n_head = 32, .n_head_kv = 8, .head_dim = 64, .n_ff = 8192, .n_vocab = 128256,
       .n_ctx = 131072, .rope_base = 500000.0f, .tied_embeddings = true, .llama3_factor = 32.0f},
      {.name = "qwen2.5-0.5b", .description = "Qwen2.5-0.5B (q/k/v biases, GQA 14/2, tied embeddings)", .arch = "qwen2",
       .n_embd = 896, .n_layer = 24, .n_head = 14, .n_head_kv = 2, .head_dim = 64, .n_ff = 4864, .n_vocab = 151936,
       .n_ctx = 32768, .rope_base = 1000000.0f, .rms_eps = 1e-6f, .tied_embeddings = true},
      {.name = "qwen2.5-1.5b", .description = "DeepSeek-R1-Distill-Qwen-1.5B (= Qwen2.5-Math-1.5B shape; untied lm_head, theta 1e4)",
       .arch = "qwen2", .n_embd = 1536, .n_layer = 28, .n_head = 12, .n_head_kv = 2, .head_dim = 128, .n_ff = 8960,
       .n_vocab = 151936, .n_ctx = 131072, .rope_base = 10000.0f, .rms_eps = 1e-6f},
      {.name = "smollm2-135m", .description = "SmolLM2-135M (Llama architecture, GQA 9/3, tied embeddings)", .arch = "llama",
       .n_embd = 576, .n_layer = 30, .n_head = 9, .n_head_kv = 3, .head_dim = 64, .n_ff = 1536, .n_vocab = 49152,
       .n_ctx = 8192, .rope_base = 100000.0f, .tied_embeddings = true},
      {.name = "deepseek-v2-lite", .description = "DeepSeek-V2-Lite (15.7B total, 2.4B active: MLA, 64 experts top-6 + 2 shared, YaRN)",
       .arch = "deepseek2", .n_embd = 2048, .n_layer = 27, .n_head = 16, .n_ff = 10944, .n_vocab = 102400, .n_ctx = 163840,
       .rms_eps = 1e-6f, .kv_lora_rank = 512, .qk_nope = 128, .qk_rope = 64, .v_head = 128, .n_expert = 64,
       .n_expert_used = 6, .n_shared = 2, .n_ff_expert = 1408, .first_dense = 1, .yarn_factor = 40.0f,
       .yarn_mscale_all_dim = 0.707f, .yarn_orig_ctx = 4096},
      {.name = "deepseek-v3-mini",
       .description = "DeepSeek-V3's MLA dims and routing (256 experts, top-8, 8 groups keep 4, sigmoid + bias, 1 shared) "
                      "at hidden 2048 x 8 layers: 6.3B total, 0.7B active",
       .arch = "deepseek2", .n_embd = 2048, .n_layer = 8, .n_head = 16, .n_ff = 5632, .n_vocab = 129280, .n_ctx = 163840,
       .rms_eps = 1e-6f, .q_lora_rank = 768, .kv_lora_rank = 512, .qk_nope = 128, .qk_rope = 64, .v_head = 128,
       .n_expert = 256, .n_expert_used = 8, .n_shared = 1, .n_ff_expert = 512, .first_dense = 1, .n_group = 8,
       .topk_group = 4, .sigmoid_gating = true, .norm_topk = true, .routed_scale = 2.5f, .yarn_factor = 40.0f,
       .yarn_mscale_all_dim = 1.0f, .yarn_orig_ctx = 4096},
  };
  return all;
}

const Preset* find_preset(const std::string& name) {
  for (const Preset& p : presets())
    if (name == p.name) return &p;
  return nullptr;
}

}  // namespace jevons
