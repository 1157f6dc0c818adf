#include "model/presets.h"

namespace jevons {

// Values from each model's published config.json.
const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = {
      {"tinyllama-1.1b", "TinyLlama-1.1B (Llama 2 architecture, GQA 32/4)", "llama",
       2048, 22, 32, 4, 64, 5632, 32000, 2048, 10000.0f, 1e-5f, false},
      {"llama-3.2-1b", "Llama-3.2-1B (GQA 32/8, llama3 RoPE scaling, tied embeddings)", "llama",
       2048, 16, 32, 8, 64, 8192, 128256, 131072, 500000.0f, 1e-5f, true, 32.0f, 1.0f, 4.0f, 8192},
      {"qwen2.5-0.5b", "Qwen2.5-0.5B (q/k/v biases, GQA 14/2, tied embeddings)", "qwen2",
       896, 24, 14, 2, 64, 4864, 151936, 32768, 1000000.0f, 1e-6f, true},
      {"qwen2.5-1.5b", "DeepSeek-R1-Distill-Qwen-1.5B (= Qwen2.5-Math-1.5B shape; untied lm_head, theta 1e4)", "qwen2",
       1536, 28, 12, 2, 128, 8960, 151936, 131072, 10000.0f, 1e-6f, false},
      {"smollm2-135m", "SmolLM2-135M (Llama architecture, GQA 9/3, tied embeddings)", "llama",
       576, 30, 9, 3, 64, 1536, 49152, 8192, 100000.0f, 1e-5f, true},
  };
  return all;
}

const Preset* find_preset(const std::string& name) {
  for (const Preset& p : presets())
    if (name == p.name) return &p;
  return nullptr;
}

}  // namespace jevons
