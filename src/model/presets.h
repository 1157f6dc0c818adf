// Shapes of real models, as data: what `jevons synth` builds with random weights
// so that benchmarks run at realistic sizes without downloading any weights.
#pragma once
#include <string>
#include <vector>

namespace jevons {

struct Preset {
  const char* name;
  const char* description;
  const char* arch;  // GGUF general.architecture
  int n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0, n_vocab = 0, n_ctx = 0;
  float rope_base = 10000.0f, rms_eps = 1e-5f;
  bool tied_embeddings = false;
  // llama3-style RoPE scaling (rope_freqs tensor), factor 0 = none.
  float llama3_factor = 0, llama3_low_freq = 1, llama3_high_freq = 4;
  int llama3_orig_ctx = 8192;
  // deepseek2 (MLA + MoE); head_dim above is unused there.
  int q_lora_rank = 0, kv_lora_rank = 0, qk_nope = 0, qk_rope = 0, v_head = 0;
  int n_expert = 0, n_expert_used = 0, n_shared = 0, n_ff_expert = 0, first_dense = 0, n_group = 1, topk_group = 1;
  bool sigmoid_gating = false, norm_topk = false;
  float routed_scale = 1.0f;
  float yarn_factor = 0.0f, yarn_mscale_all_dim = 0.0f;
  int yarn_orig_ctx = 0;
};

const std::vector<Preset>& presets();
// nullptr if unknown.
const Preset* find_preset(const std::string& name);

}  // namespace jevons
