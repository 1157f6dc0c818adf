#include "kernels/rope.h"

#include <cmath>

namespace jevons {

std::vector<float> llama3_rope_freqs(int head_dim, float base, float factor, float low_freq_factor,
                                     float high_freq_factor, int original_context) {
  std::vector<float> f;
  const float low_wavelen = float(original_context) / low_freq_factor;
  const float high_wavelen = float(original_context) / high_freq_factor;
  for (int i = 0; i < head_dim / 2; ++i) {
    const float wavelen = 2.0f * float(M_PI) / std::pow(base, -2.0f * float(i) / float(head_dim));
    if (wavelen < high_wavelen) {
      f.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      f.push_back(factor);
    } else {
      const float smooth = (float(original_context) / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      f.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
    }
  }
  return f;
}

}  // namespace jevons
