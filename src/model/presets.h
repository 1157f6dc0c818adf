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
  int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
  float rope_base, rms_eps;
  bool tied_embeddings;
  // llama3-style RoPE scaling (rope_freqs tensor), factor 0 = none.
  float llama3_factor = 0, llama3_low_freq = 1, llama3_high_freq = 4;
  int llama3_orig_ctx = 8192;
};

const std::vector<Preset>& presets();
// nullptr if unknown.
const Preset* find_preset(const std::string& name);

}  // namespace jevons
