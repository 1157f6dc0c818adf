#include "kernels/ops.h"

#include <cmath>
#include <vector>

#include "core/thread_pool.h"

namespace jevons {

void dequantize_row(const Tensor& w, int64_t r, float* out) {
  type_traits(w.type).to_float(w.row(r), out, w.cols);
  if (w.block_scale) {  // FP8 checkpoints: one scale per scale_block x scale_block tile
    const float* scales = w.block_scale + ((r + w.scale_row0) / w.scale_block) * w.scale_cols;
    for (int64_t c = 0; c < w.cols; ++c) out[c] *= scales[c / w.scale_block];
  }
}

void matmul_reference(const Tensor& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool) {
  auto rows = [&](int64_t begin, int64_t end) {
    std::vector<float> row(size_t(w.cols));
    for (int64_t r = begin; r < end; ++r) {
      dequantize_row(w, r, row.data());  // once per row, reused for every token
      for (int64_t t = 0; t < n_tokens; ++t) {
        const float* xt = x + t * w.cols;
        double sum = 0.0;
        for (int64_t c = 0; c < w.cols; ++c) sum += double(row[size_t(c)]) * double(xt[c]);
        y[t * w.rows + r] = float(sum);
      }
    }
  };
  if (pool) pool->parallel_for(w.rows, rows);
  else rows(0, w.rows);
}

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float scale = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * (weight ? weight[i] : 1.0f);
}

namespace {

// YaRN: which rotary dims are interpolated, which extrapolated (Peng et al. 2023).
float yarn_corr_dim(int n_rot, int n_ctx_orig, float n_rotations, float base) {
  return float(n_rot) * std::log(float(n_ctx_orig) / (n_rotations * 2.0f * float(M_PI))) / (2.0f * std::log(base));
}

float yarn_ramp(float low, float high, int i0) {
  const float y = (float(i0) / 2.0f - low) / std::max(0.001f, high - low);
  return 1.0f - std::min(1.0f, std::max(0.0f, y));
}

}  // namespace

void rope(float* x, int n_heads, int head_dim, int64_t pos, const RopeConfig& rc, const float* freq_factors) {
  const int n_rot = rc.n_rot;
  const float theta_scale = std::pow(rc.freq_base, -2.0f / float(n_rot));
  float corr_low = 0.0f, corr_high = 0.0f;
  if (rc.yarn_ext_factor != 0.0f) {
    corr_low = std::max(0.0f, std::floor(yarn_corr_dim(n_rot, rc.n_ctx_orig, rc.yarn_beta_fast, rc.freq_base)));
    corr_high = std::min(float(n_rot - 1), std::ceil(yarn_corr_dim(n_rot, rc.n_ctx_orig, rc.yarn_beta_slow, rc.freq_base)));
  }
  float mscale = rc.attn_factor;
  if (rc.yarn_ext_factor != 0.0f) mscale *= 1.0f + 0.1f * std::log(1.0f / rc.freq_scale);

  for (int i = 0; i < n_rot / 2; ++i) {
    float theta_extrap = float(pos) * std::pow(theta_scale, float(i));
    if (freq_factors) theta_extrap /= freq_factors[i];
    float theta = rc.freq_scale * theta_extrap;  // interpolated
    if (rc.yarn_ext_factor != 0.0f) {
      const float mix = yarn_ramp(corr_low, corr_high, 2 * i) * rc.yarn_ext_factor;
      theta = theta * (1.0f - mix) + theta_extrap * mix;
    }
    const float c = std::cos(theta) * mscale, s = std::sin(theta) * mscale;
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + int64_t(h) * head_dim;
      const int a = rc.style == RopeStyle::kHalves ? i : 2 * i;
      const int b = rc.style == RopeStyle::kHalves ? i + n_rot / 2 : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * c - x1 * s;
      v[b] = x0 * s + x1 * c;
    }
  }
}

void softmax(float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void silu_mul_reference(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void attention_head_reference(const float* q, const float* const* k_rows, int64_t k_offset, const float* const* v_rows,
                    int64_t v_offset, int64_t n_kv, int head_dim_k, int head_dim_v, float scale, float* out) {
  std::vector<float> score(static_cast<size_t>(n_kv));
  for (int64_t j = 0; j < n_kv; ++j) {
    const float* kj = k_rows[j] + k_offset;
    double dot = 0.0;
    for (int d = 0; d < head_dim_k; ++d) dot += double(q[d]) * double(kj[d]);
    score[size_t(j)] = float(dot) * scale;
  }
  softmax(score.data(), n_kv);
  for (int d = 0; d < head_dim_v; ++d) out[d] = 0.0f;
  for (int64_t j = 0; j < n_kv; ++j) {
    const float* vj = v_rows[j] + v_offset;
    const float p = score[size_t(j)];
    for (int d = 0; d < head_dim_v; ++d) out[d] += p * vj[d];
  }
}

}  // namespace jevons
