// The decoder-only transformer of the Llama family, as used by llama, qwen2 and
// qwen3 files. Read top to bottom: embed -> n_layer x (attention, SwiGLU MLP) ->
// norm -> logits. Kernel details live in kernels/; this file is only the math.
//
//   qwen2 = llama + biases on q, k, v;  qwen3 = llama + RMSNorm on each q and k head.
#include <cmath>
#include <deque>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/architectures.h"
#include "model/model.h"
#include "model/weights.h"
#include "model/batch.h"

namespace jevons {
namespace {

struct LayerWeights {
  const float* attn_norm;
  Tensor wq, wk, wv, wo;
  const float* bq = nullptr;  // qwen2 biases (optional for llama)
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* q_norm = nullptr;  // qwen3 per-head norms
  const float* k_norm = nullptr;
  const float* ffn_norm;
  Tensor ffn_gate, ffn_up, ffn_down;
};

class Transformer : public Model {
 public:
  Transformer(const ModelSource& file, const LoadOptions& options) : cfg_(read_config(file)) {
    repacked_.set_f16_as_bf16(options.f16_as_bf16);
    const WeightLoader w(file, &repacked_);
    const GgufTensor* emb = file.find_tensor("token_embd.weight");
    if (!emb) fail("{}: tensor token_embd.weight is missing", file.path());
    if (emb->dims.size() != 2 || emb->dims[0] != cfg_.n_embd)
      fail("{}: tensor token_embd.weight: expected {}x<n_vocab>, file has {}", file.path(), cfg_.n_embd, emb->shape_string());
    cfg_.n_vocab = int(emb->dims[1]);
    const int64_t E = cfg_.n_embd, V = cfg_.n_vocab;
    tok_embd_ = w.table("token_embd.weight", E, V);
    output_norm_ = w.vector("output_norm.weight", E, owned_);
    output_ = w.optional_matrix("output.weight", E, V);
    cfg_.tied_output = !output_;
    if (cfg_.tied_output) output_ = w.for_matmul(tok_embd_);
    rope_freqs_ = w.optional_vector("rope_freqs.weight", cfg_.rope.n_rot / 2, owned_);

    for (int l = 0; l < cfg_.n_layer; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      LayerWeights L;
      L.attn_norm = w.vector(p + "attn_norm.weight", E, owned_);
      L.wq = w.matrix(p + "attn_q.weight", E, cfg_.q_dim());
      L.wk = w.matrix(p + "attn_k.weight", E, cfg_.k_dim());
      L.wv = w.matrix(p + "attn_v.weight", E, cfg_.v_dim());
      L.wo = w.matrix(p + "attn_output.weight", int64_t(cfg_.n_head) * cfg_.head_dim_v, E);
      if (cfg_.has_qkv_bias) {
        L.bq = w.vector(p + "attn_q.bias", cfg_.q_dim(), owned_);
        L.bk = w.vector(p + "attn_k.bias", cfg_.k_dim(), owned_);
        L.bv = w.vector(p + "attn_v.bias", cfg_.v_dim(), owned_);
      } else {
        L.bq = w.optional_vector(p + "attn_q.bias", cfg_.q_dim(), owned_);
        L.bk = w.optional_vector(p + "attn_k.bias", cfg_.k_dim(), owned_);
        L.bv = w.optional_vector(p + "attn_v.bias", cfg_.v_dim(), owned_);
      }
      if (cfg_.has_qk_norm) {
        L.q_norm = w.vector(p + "attn_q_norm.weight", cfg_.head_dim_k, owned_);
        L.k_norm = w.vector(p + "attn_k_norm.weight", cfg_.head_dim_k, owned_);
      }
      L.ffn_norm = w.vector(p + "ffn_norm.weight", E, owned_);
      L.ffn_gate = w.matrix(p + "ffn_gate.weight", E, cfg_.n_ff);
      L.ffn_up = w.matrix(p + "ffn_up.weight", E, cfg_.n_ff);
      L.ffn_down = w.matrix(p + "ffn_down.weight", cfg_.n_ff, E);
      layers_.push_back(L);
    }
  }

  const ModelConfig& config() const override { return cfg_; }

  uint64_t weight_bytes_per_token() const override {
    uint64_t b = tok_embd_.row_bytes() + output_.nbytes();
    for (const LayerWeights& L : layers_)
      for (const Tensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) b += t->nbytes();
    return b;
  }

  double matmul_flops_per_token() const override {
    double weights = double(output_.rows) * double(output_.cols);
    for (const LayerWeights& L : layers_)
      for (const Tensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
        weights += double(t->rows) * double(t->cols);
    return 2.0 * weights;
  }

  double attention_flops(int64_t n_past) const override {
    // q.k and p.v over n_past + 1 positions, per head and layer.
    return 2.0 * double(cfg_.n_layer) * cfg_.n_head * double(cfg_.head_dim_k + cfg_.head_dim_v) * double(n_past + 1);
  }

  void forward_batch(const std::vector<Chunk>& chunks, float* logits) override {
    const ModelConfig& c = cfg_;
    const int64_t E = c.n_embd;
    const Batch b = prepare_batch(chunks, c.n_vocab);
    const int64_t n = b.n_tokens();

    // Activations for all n tokens of all chunks, row-major [n, dim].
    std::vector<float> x(size_t(n * E)), xn(size_t(n * E));
    std::vector<float> q(size_t(n * c.q_dim())), k(size_t(n * c.k_dim())), v(size_t(n * c.v_dim()));
    std::vector<float> attn(size_t(n) * c.n_head * c.head_dim_v), proj(size_t(n * E));
    std::vector<float> gate(size_t(n * c.n_ff)), up(size_t(n * c.n_ff));

    // Per-token work (norms, RoPE, residual adds) split over the pool too: serial, it
    // would cost a 2-thread prefill a few percent.
    auto for_tokens = [&](const auto& fn) {
      auto range = [&fn](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) fn(t);
      };
      if (pool_ && n > 1) pool_->parallel_for(n, range);
      else range(0, n);
    };
    for_tokens([&](int64_t t) { dequantize_row(tok_embd_, b.token[size_t(t)], &x[size_t(t * E)]); });

    const float kq_scale = 1.0f / std::sqrt(float(c.head_dim_k));
    // Causal blocks for attention: up to 8 consecutive tokens of one sequence (the
    // block's 8 x group running sums stay in L2 beside the shared key chunk).
    const std::vector<std::pair<int64_t, int>> blocks = b.causal_blocks(8);
    const int group = c.n_head / c.n_head_kv;  // query heads sharing one kv head (GQA)

    for (int l = 0; l < c.n_layer; ++l) {
      const LayerWeights& L = layers_[size_t(l)];

      // --- attention ---
      for_tokens([&](int64_t t) { rms_norm(&x[size_t(t * E)], L.attn_norm, E, c.rms_eps, &xn[size_t(t * E)]); });
      matmul(L.wq, xn.data(), n, q.data(), pool_);
      matmul(L.wk, xn.data(), n, k.data(), pool_);
      matmul(L.wv, xn.data(), n, v.data(), pool_);
      for_tokens([&](int64_t t) {
        float* qt = &q[size_t(t * c.q_dim())];
        float* kt = &k[size_t(t * c.k_dim())];
        float* vt = &v[size_t(t * c.v_dim())];
        add_bias(qt, L.bq, c.q_dim());
        add_bias(kt, L.bk, c.k_dim());
        add_bias(vt, L.bv, c.v_dim());
        if (L.q_norm) {
          for (int h = 0; h < c.n_head; ++h) rms_norm(qt + h * c.head_dim_k, L.q_norm, c.head_dim_k, c.rms_eps, qt + h * c.head_dim_k);
          for (int h = 0; h < c.n_head_kv; ++h) rms_norm(kt + h * c.head_dim_k, L.k_norm, c.head_dim_k, c.rms_eps, kt + h * c.head_dim_k);
        }
        const int pos = b.pos[size_t(t)];
        KvCache& cache = *b.cache_of(t);
        rope(qt, c.n_head, c.head_dim_k, pos, c.rope, rope_freqs_);
        rope(kt, c.n_head_kv, c.head_dim_k, pos, c.rope, rope_freqs_);
        cache.store(l, pos, kt, vt);
      });
      // Each token attends over its own sequence up to its own position (causal); the
      // `group` query heads of a KV head go together, reading its keys and values once,
      // and so do the tokens of a causal block. Blocks are taken first, last, second,
      // second to last, ...: the pool's contiguous ranges then get equal causal work (in
      // order, the last thread's tokens attend to three times the keys of the first's at
      // 2 threads).
      const KvRows rows = b.kv_rows(l);
      const int64_t n_blocks = int64_t(blocks.size());
      auto groups = [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
          const int64_t bi = ends_inward(item / c.n_head_kv, n_blocks);
          const int kvh = int(item % c.n_head_kv), h = kvh * group;
          const auto [t0, n_queries] = blocks[size_t(bi)];
          const size_t s = b.chunk_of[size_t(t0)];
          attention_causal_block(&q[size_t(t0 * c.q_dim() + h * c.head_dim_k)], c.q_dim(), n_queries, group, rows.type[s],
                                 rows.k[s].data(), kvh * rows.k_head_stride[s], rows.v[s].data(),
                                 kvh * rows.v_head_stride[s], b.pos[size_t(t0)] + 1, c.head_dim_k, c.head_dim_v, kq_scale,
                                 &attn[size_t((t0 * c.n_head + h) * c.head_dim_v)], int64_t(c.n_head) * c.head_dim_v);
        }
      };
      if (pool_) pool_->parallel_for(n_blocks * c.n_head_kv, groups);
      else groups(0, n_blocks * c.n_head_kv);
      matmul(L.wo, attn.data(), n, proj.data(), pool_);
      for_tokens([&](int64_t t) { add_residual(&x[size_t(t * E)], &proj[size_t(t * E)], E); });

      // --- SwiGLU MLP ---
      for_tokens([&](int64_t t) { rms_norm(&x[size_t(t * E)], L.ffn_norm, E, c.rms_eps, &xn[size_t(t * E)]); });
      matmul(L.ffn_gate, xn.data(), n, gate.data(), pool_);
      matmul(L.ffn_up, xn.data(), n, up.data(), pool_);
      auto swiglu = [&](int64_t t0, int64_t t1) {
        silu_mul(&gate[size_t(t0 * c.n_ff)], &up[size_t(t0 * c.n_ff)], (t1 - t0) * c.n_ff);
      };
      if (pool_ && n > 1) pool_->parallel_for(n, swiglu);
      else swiglu(0, n);
      matmul(L.ffn_down, gate.data(), n, proj.data(), pool_);
      for_tokens([&](int64_t t) { add_residual(&x[size_t(t * E)], &proj[size_t(t * E)], E); });
    }

    // --- output: final norm and the vocabulary projection, only for the rows asked for ---
    const std::vector<int64_t> out_rows = b.logit_rows();
    std::vector<float> xo(out_rows.size() * size_t(E));
    for (size_t i = 0; i < out_rows.size(); ++i) rms_norm(&x[size_t(out_rows[i] * E)], output_norm_, E, c.rms_eps, &xo[i * size_t(E)]);
    matmul(output_, xo.data(), int64_t(out_rows.size()), logits, pool_);
    b.advance();
  }

 private:
  static void add_residual(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
  }
  static void add_bias(float* x, const float* bias, int64_t n) {
    if (bias)
      for (int64_t i = 0; i < n; ++i) x[i] += bias[i];
  }

  ModelConfig cfg_;
  std::deque<std::vector<float>> owned_;  // small vectors converted from non-f32 storage
  Tensor tok_embd_, output_;
  const float* output_norm_ = nullptr;
  const float* rope_freqs_ = nullptr;
  std::vector<LayerWeights> layers_;
};

}  // namespace

std::unique_ptr<Model> make_transformer(const ModelSource& source, const LoadOptions& options) {
  return std::make_unique<Transformer>(source, options);
}

}  // namespace jevons
