// Per-sequence key/value cache: for every layer and position, the key vector
// (k_dim floats) and value vector (v_dim floats) that attention reads back.
#pragma once
#include <cstdint>
#include <vector>

namespace jevons {

class KvCache {
 public:
  KvCache(int n_layer, int n_ctx, int k_dim, int v_dim)
      : n_layer_(n_layer), n_ctx_(n_ctx), k_dim_(k_dim), v_dim_(v_dim),
        k_(size_t(n_layer) * size_t(n_ctx) * size_t(k_dim)), v_(size_t(n_layer) * size_t(n_ctx) * size_t(v_dim)) {}

  int n_ctx() const { return n_ctx_; }
  int k_dim() const { return k_dim_; }
  int v_dim() const { return v_dim_; }
  // Positions already filled (the next token goes at n_past()).
  int n_past() const { return n_past_; }
  void set_n_past(int n) { n_past_ = n; }
  void clear() { n_past_ = 0; }

  float* k(int layer, int pos) { return k_.data() + (size_t(layer) * size_t(n_ctx_) + size_t(pos)) * size_t(k_dim_); }
  float* v(int layer, int pos) { return v_.data() + (size_t(layer) * size_t(n_ctx_) + size_t(pos)) * size_t(v_dim_); }
  size_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }

 private:
  int n_layer_, n_ctx_, k_dim_, v_dim_;
  int n_past_ = 0;
  std::vector<float> k_, v_;
};

}  // namespace jevons
